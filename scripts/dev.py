#!/usr/bin/env python3
"""Set up the project's own virtual environment, then serve the demo or run the tests.

    python3 scripts/dev.py serve          # venv + install, migrate, demo, updater + server on :8000
    python3 scripts/dev.py test           # venv + install, ruff, mypy, pytest (SQLite and PostgreSQL)
    python3 scripts/dev.py test --fast    # the same without the long statistical checks (-m "not slow")
    python3 scripts/dev.py notebooks      # re-execute notebooks/ in place against a simulated demo

Needs only Python 3.11+. The environment lives in .venv and is reinstalled when
pyproject.toml changes. Extra arguments after "test" go to pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PRICING_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the project root; exit with its code if it fails."""
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    if code != 0:
        sys.exit(code)


def ensure_env() -> None:
    """Create ``.venv`` and install the project (with dev extras) when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run on any python3
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".pricing-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("installing the engine and its dependencies (first run: 2-3 minutes)", flush=True)
    # pip's and setuptools' notices (the editable-install warning among them) say nothing a
    # user can act on here; errors still show.
    quiet = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run(PY, "-m", "pip", "install", "-qq", "--upgrade", "pip", env=quiet)
    run(PY, "-m", "pip", "install", "-qq", "-e", ".[dev]", env=quiet)
    stamp.write_text(digest)


CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pricing-engine"
#: Where the console's browser tests find axe-core (an npm package, installed on demand).
AXE = CACHE / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"


def ensure_browser_tools() -> None:
    """What the console's browser tests need and pip does not bring: Debian's Chromium
    (when missing and we are root with apt-get) and axe-core (npm). Without them the
    browser tests skip and say why (``.ci/run`` makes that a failure)."""
    if shutil.which("chromium") is None and hasattr(os, "geteuid") and os.geteuid() == 0 \
            and shutil.which("apt-get"):
        print("installing Chromium for the console's browser tests (apt-get, once)", flush=True)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], env=quiet,
                           stdout=subprocess.DEVNULL) != 0:
            subprocess.call(["apt-get", "update", "-qq"], env=quiet, stdout=subprocess.DEVNULL)
            subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], env=quiet,
                            stdout=subprocess.DEVNULL)
    if not AXE.exists() and shutil.which("npm"):
        print("installing axe-core for the console's accessibility checks (npm, once)", flush=True)
        AXE.parents[2].mkdir(parents=True, exist_ok=True)
        subprocess.call(["npm", "install", "--prefix", str(AXE.parents[2]), "axe-core@4",
                         "--no-audit", "--no-fund", "--silent"], stdout=subprocess.DEVNULL)


def pytensor_cache() -> Path:
    """PyTensor's compile directory: ``~/.cache/pricing-engine/pytensor-<release>``.

    It used to live in ``.venv``, so a fresh clone (CI's) compiled every model's C again:
    about half a minute per distinct model graph, 34 s of a 73 s test fit measured cold
    against warm. PyTensor keys the modules inside by platform, Python and the ops' code;
    the release in the name keeps an upgrade from reusing another release's modules."""
    found = sorted(VENV.glob("lib/python*/site-packages/pytensor-*.dist-info")) or sorted(
        VENV.glob("Lib/site-packages/pytensor-*.dist-info"))  # fmt: skip
    release = found[-1].name.removeprefix("pytensor-").removesuffix(".dist-info") if found \
        else "unknown"  # fmt: skip
    return CACHE / f"pytensor-{release}"


def project_env() -> dict[str, str]:
    """The environment for the project's commands: PyTensor's C compiler named, and its
    compile cache kept in the user's cache, one per PyTensor release (C compiled once, on
    the first model fit, then reused by every later run and every checkout: CI's clean
    clone included)."""
    env = dict(os.environ)
    flags = [f"compiledir={pytensor_cache()}"]
    # PyTensor probes for a C compiler once, at import, by running ``g++ -v``; when that
    # probe fails (seen intermittently in CI's test workers) it builds its modes for
    # pure-Python thunks and a fit runs 10-100 times slower. Naming the compiler skips
    # the guess.
    compiler = shutil.which("g++")
    if compiler is not None:
        flags.append(f"cxx={compiler}")
    env.setdefault("PYTENSOR_FLAGS", ",".join(flags))
    # mypy's cache, shared by checkouts too (it checks file contents, not paths or times):
    # a clean clone's mypy took 45 s cold, 1.3 s on this cache.
    env.setdefault("MYPY_CACHE_DIR", str(CACHE / "mypy"))
    env.setdefault("PRICING_AXE_JS", str(AXE))
    return env


def serve(args: list[str]) -> None:
    """Migrate, seed demo data (printing keys and a curl example), then run the updater
    (its own process: a refit never stalls quotes) and the server until Ctrl-C."""
    ensure_env()
    env = project_env()
    cli = BIN / "pricing-engine"
    run(cli, "migrate", env=env)
    # A living demo: traffic, an experiment, a fitted model (kept: later runs add nothing).
    run(cli, "seed-demo", "--simulate", "2000", env=env)
    print("starting the updater (learns from outcomes) and the server; Ctrl-C stops both",
          flush=True)  # fmt: skip
    updater = subprocess.Popen([str(cli), "worker"], cwd=ROOT, env=env)
    try:
        code = subprocess.call([str(cli), "serve", *args], cwd=ROOT, env=env)
    except KeyboardInterrupt:
        code = 0
    finally:
        updater.terminate()
        try:
            updater.wait(timeout=15)
        except subprocess.TimeoutExpired:
            updater.kill()
    sys.exit(code)


def test(args: list[str]) -> None:
    """Lint, type-check and run the test suite (``--fast``: without the slow marker)."""
    ensure_env()
    ensure_browser_tools()
    env = project_env()
    if "--fast" in args:
        args = [a for a in args if a != "--fast"] + ["-m", "not slow"]
    run(BIN / "ruff", "check", ".", env=env)
    run(BIN / "mypy", "pricing", "experiments", "api", "benchmarks", env=env)
    # Tests in parallel, one process per core (pytest-xdist), a module's tests together so
    # its fixtures (fitted models, servers) are made once; "-n 0" runs them in one process.
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
        cores = os.cpu_count() or 1
        if cores > 1:
            args = ["-n", str(min(cores, 4)), "--dist", "loadscope", *args]
    run(PY, "-m", "pytest", *args, env=env)


NOTEBOOK_SCRIPT = """
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

root = Path(sys.argv[1])
for path in sorted((root / "notebooks").glob("*.ipynb")):
    print(f"executing {path.name}", flush=True)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(notebook, path)
"""


def notebooks(args: list[str]) -> None:
    """Execute every notebook in place, with its outputs and pictures, against a fresh
    ``seed-demo --simulate 2000`` database (what the committed notebooks show)."""
    import tempfile

    ensure_env()
    env = project_env()
    with tempfile.TemporaryDirectory(prefix="pricing-notebooks-") as folder:
        url = f"sqlite:///{Path(folder) / 'demo.db'}"
        env["PRICING_DATABASE_URL"] = url
        run(BIN / "pricing-engine", "seed-demo", "--simulate", "2000", "--keys-file",
            str(Path(folder) / "keys.json"), env=env)  # fmt: skip
        run(PY, "-c", NOTEBOOK_SCRIPT, str(ROOT), *args, env=env)


def main() -> None:
    """Dispatch ``serve``, ``test`` or ``notebooks``."""
    commands = {"serve": serve, "test": test, "notebooks": notebooks}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
