"""The layout rules of ``api/`` (docs/architecture.md), checked so they stay true.

- every wire model lives in ``api/schemas/``, and nothing but wire models does;
- services say what went wrong with domain errors, never with an HTTP status;
- routes parse, call a service and shape the response: no queries and no maths.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[2] / "api"


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (API / folder).rglob("*.py") if p.name != "__init__.py")


def _bases(node: ast.ClassDef) -> set[str]:
    return {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}


def _wire_models(tree: ast.Module) -> dict[str, set[str]]:
    return {n.name: _bases(n) for n in tree.body if isinstance(n, ast.ClassDef)}


def test_wire_models_live_only_in_schemas() -> None:
    schema_classes: set[str] = set()
    for path in _modules("schemas"):
        schema_classes |= set(_wire_models(ast.parse(path.read_text())))
    assert schema_classes, "no models found in api/schemas/"
    strays = []
    for path in sorted(API.rglob("*.py")):
        if "schemas" in path.parts or "migrations" in path.parts:
            continue
        for name, bases in _wire_models(ast.parse(path.read_text())).items():
            if bases & ({"BaseModel"} | schema_classes):
                strays.append(f"{path.relative_to(API.parent)}: {name}")
    assert not strays, f"wire models outside api/schemas/: {strays}"


@pytest.mark.parametrize("path", _modules("schemas"), ids=lambda p: p.name)
def test_schemas_hold_nothing_but_wire_models(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imports = {
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    forbidden = {m for m in imports if m.split(".")[0] in {"sqlalchemy", "fastapi", "numpy"}}
    forbidden |= {m for m in imports if m.startswith(("api.services", "api.routes", "api.orm"))}
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            assert node.bases, f"{path.name}: class {node.name} is not a model"


def _http_in(tree: ast.AST) -> list[str]:
    """HTTP leaking into a service: a status in a raise or a message, HTTP names, imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            found += [
                f"line {c.lineno}: raises with {c.value}"
                for c in ast.walk(node)
                if isinstance(c, ast.Constant) and type(c.value) is int and 400 <= c.value < 600
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"\b[45]\d\d\b", node.value):
                found.append(f"line {node.lineno}: text names a status: {node.value[:60]!r}")
        elif isinstance(node, ast.Name | ast.Attribute | ast.keyword):
            name = getattr(node, "id", None) or getattr(node, "attr", None) or node.arg  # type: ignore[union-attr]
            if name in {"status_code", "HTTPException", "JSONResponse"}:
                found.append(f"line {node.lineno}: {name}")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [
                f"line {node.lineno}: imports {m}"
                for m in modules
                # starlette's thread pool helper is not HTTP; its responses and statuses are.
                if m.split(".")[0] in {"fastapi", "starlette"} and m != "starlette.concurrency"
            ]
    return found


@pytest.mark.parametrize("path", _modules("services"), ids=lambda p: p.name)
def test_services_raise_domain_errors_not_http_statuses(path: Path) -> None:
    offending = _http_in(ast.parse(path.read_text()))
    assert not offending, f"HTTP in {path.name}: {offending}"


_QUERY = re.compile(
    r"\bselect\(|\.execute\(|\.scalars?\(|session\.get\(|\.query\(|\btext\(|"
    r"^\s*(from|import) (sqlalchemy|numpy|scipy|pricing\.thompson)\b|\bapi\.orm\b"
)


@pytest.mark.parametrize("path", _modules("routes"), ids=lambda p: p.name)
def test_routes_neither_query_nor_compute(path: Path) -> None:
    offending = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _QUERY.search(line)
    ]
    assert not offending, "a route queries or computes:\n" + "\n".join(offending)


def test_the_checks_would_catch_a_query_and_a_status() -> None:
    assert _QUERY.search("    rows = session.scalars(select(Decision))")
    assert _QUERY.search("from sqlalchemy import select")
    assert not _QUERY.search("    return catalog.get_product(session, sku=sku)")
    assert _http_in(ast.parse("raise Invalid(422, 'x')"))
    assert _http_in(ast.parse('"""Return one product or raise 404."""'))
    assert _http_in(ast.parse("from fastapi import status"))
    assert not _http_in(ast.parse("for chunk in range(0, n, 500):\n    pass"))
