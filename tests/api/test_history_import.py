"""``pricing-engine import-history`` and ``refit`` / ``worker`` from the command line."""

import csv
import re

import pytest
from sqlalchemy import func, select

from api.cli import main as cli
from api.orm import ModelPrior
from tests.pricing.test_elasticity import panel

HEADER = ["segment", "sku", "period", "price", "units"]


def write(path, rows, header=HEADER):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def history_catalog(catalog):
    for k in range(12):
        catalog.product(f"s{k}", "10.00", "4.00")
    catalog.segment("a")
    return catalog


def _priors(sessions):
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ModelPrior))


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        ([["a", "s1", "w1", "9.99", "3"]], ["segment", "sku", "price", "units"], "missing column(s) period"),
        ([["a", "s1", "w1", "cheap", "3"]], HEADER, "row 2, column price: 'cheap' is not a number"),
        ([["a", "s1", "w1", "9.99", "3"], ["a", "s1", "w2", "0", "3"]], HEADER, "row 3, column price: 0 must be a positive number"),
        ([["a", "s1", "w1", "9.99", "-2"]], HEADER, "row 2, column units: -2 must be a positive number"),
        ([["martians", "s1", "w1", "9.99", "2"]], HEADER, "row 2, column segment: unknown segment 'martians'"),
        ([["a", "NOPE", "w1", "9.99", "2"]], HEADER, "row 2, column sku: unknown sku 'NOPE'"),
        ([["a", "s1", "", "9.99", "2"]], HEADER, "row 2, column period: empty"),
        ([], HEADER, "no data rows"),
    ],
)  # fmt: skip
def test_bad_history_files_are_rejected_naming_row_and_column(
    history_catalog, sessions, db_url, tmp_path, capsys, rows, header, expected
):
    path = write(tmp_path / "history.csv", rows, header)
    assert cli(["import-history", str(path), "--database-url", db_url, "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert _priors(sessions) == 0


def test_import_history_prints_the_summary_and_stores_a_prior(
    history_catalog, sessions, db_url, tmp_path, capsys
):
    rows = [list(r) for r in zip(*panel(seed=1), strict=True)]
    path = write(tmp_path / "history.csv", rows)
    assert cli(["import-history", str(path), "--database-url", db_url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"rows used: {len(rows)}" in out
    match = re.search(
        r"elasticity \(pooled\): (-[\d.]+)  90% interval \[(-[\d.]+), (-[\d.]+)\]", out
    )
    assert match, out
    mean, lower, upper = map(float, match.groups())
    assert lower < -1.5 < upper and lower < mean < upper
    ols = float(re.search(r"two-way fixed-effects OLS slope: (-[\d.]+)", out).group(1))
    assert mean == pytest.approx(ols, abs=0.01)
    assert "max R-hat" in out and "stored as prior" in out
    with sessions() as session:
        prior = session.scalar(select(ModelPrior))
        assert prior.model_config_json["log_elasticity_mu"]["dist"] == "Normal"
        assert prior.summary["rows"] == len(rows)


def test_refit_and_worker_commands(catalog, sessions, db_url, backend, capsys):
    # No outcomes yet: refit says so, the worker does nothing.
    assert cli(["refit", "--database-url", db_url, "--quiet"]) == 2
    assert "no outcomes" in capsys.readouterr().err
    assert cli(["worker", "--once", "--database-url", db_url]) == 0
    out = capsys.readouterr().out
    assert ("queue worker running" if backend == "postgresql" else "applied 0 outcomes") in out
