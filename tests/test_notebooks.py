"""The analysts' notebooks run, top to bottom, against a simulated demo database."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """seed-demo --simulate on a fresh SQLite file: an experiment, promotions and a model."""
    from api.cli import main

    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    assert main(["seed-demo", "--simulate", "1200", "--database-url", url]) == 0
    return url


@pytest.mark.parametrize(
    "name", ["experiment_review.ipynb", "demand_posteriors.ipynb", "market_simulator.ipynb"]
)
def test_notebook_executes(demo_database: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PRICING_DATABASE_URL", demo_database)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS.parent)}}).execute()  # fmt: skip
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots were drawn
