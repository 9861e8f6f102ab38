"""``import-history``: validate a sales-history CSV, fit elasticities, store them as priors."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import ModelPrior, Product, Segment
from pricing.elasticity import HistoryFit, conversion_prior, fit_history

__all__ = ["HISTORY_COLUMNS", "HistoryError", "HistoryImport", "import_history", "read_history"]

HISTORY_COLUMNS = ("segment", "sku", "period", "price", "units")


class HistoryError(ValueError):
    """The history file is unusable; ``problems`` name row and column of each fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class HistoryRows:
    """Validated columns of a history file."""

    segment: np.ndarray
    sku: np.ndarray
    period: np.ndarray
    price: np.ndarray
    units: np.ndarray


def read_history(
    path: Path, *, segments: set[str], skus: set[str], max_problems: int = 50
) -> HistoryRows:
    """Read and validate a history CSV; every fault is reported with its row and column.

    Row numbers count the header as row 1, as a spreadsheet does.

    Raises
    ------
    HistoryError
        Missing columns, non-numeric or non-positive price/units, empty period, unknown
        segment or SKU, or no data rows.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise HistoryError([f"{path}: {exc.strerror}"]) from None
    problems: list[str] = []
    rows: list[tuple[str, str, str, float, float]] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in HISTORY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise HistoryError([f"row 1 (header): missing column(s) {', '.join(missing)}; "
                                f"expected {', '.join(HISTORY_COLUMNS)}"])  # fmt: skip
        for row_no, row in enumerate(reader, start=2):
            fault = _check_row(row, segments, skus)
            if fault:
                problems.extend(f"row {row_no}, column {col}: {msg}" for col, msg in fault)
                if len(problems) >= max_problems:
                    problems.append("... (more problems not shown)")
                    break
                continue
            rows.append(
                (
                    row["segment"],
                    row["sku"],
                    row["period"].strip(),
                    float(row["price"]),
                    float(row["units"]),
                )
            )
    if problems:
        raise HistoryError(problems)
    if not rows:
        raise HistoryError(["the file has no data rows"])
    seg, sku, period, price, units = zip(*rows, strict=True)
    return HistoryRows(
        np.array(seg), np.array(sku), np.array(period), np.array(price), np.array(units)
    )


def _check_row(row: dict[str, Any], segments: set[str], skus: set[str]) -> list[tuple[str, str]]:
    fault = []
    if None in row:
        return [("-", "more values than columns")]
    for column in ("price", "units"):
        raw = (row.get(column) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            fault.append((column, f"{raw!r} is not a number"))
            continue
        if not math.isfinite(value) or value <= 0:
            fault.append((column, f"{raw} must be a positive number"))
    if not (row.get("period") or "").strip():
        fault.append(("period", "empty"))
    if row.get("segment") not in segments:
        fault.append(("segment", f"unknown segment {row.get('segment')!r}"))
    if row.get("sku") not in skus:
        fault.append(("sku", f"unknown sku {row.get('sku')!r}"))
    return fault


@dataclass(frozen=True)
class HistoryImport:
    """Result of an import: the fit and, unless refused, the stored prior."""

    fit: HistoryFit
    prior: dict[str, Any] | None
    prior_id: int | None
    note: str


def import_history(
    sessions: sessionmaker[Session],
    path: Path,
    *,
    elasticity: Literal["pooled", "hierarchical"] = "pooled",
    progressbar: bool = False,
    dry_run: bool = False,
    **fit_kwargs: Any,
) -> HistoryImport:
    """Validate ``path``, fit the elasticity model, and store the derived prior.

    Nothing is written unless the whole file is valid and the fit succeeds; the prior is
    stored in one transaction.
    """
    with sessions() as session:
        segments = set(session.scalars(select(Segment.key)))
        skus = set(session.scalars(select(Product.sku)))
    data = read_history(path, segments=segments, skus=skus)
    fit = fit_history(data.segment, data.sku, data.period, data.price, data.units,
                      elasticity=elasticity, progressbar=progressbar, **fit_kwargs)  # fmt: skip
    try:
        prior = conversion_prior(fit)
    except ValueError as exc:
        return HistoryImport(fit, None, None, f"no prior stored: {exc}")
    if dry_run:
        return HistoryImport(fit, prior, None, "dry run: prior not stored")
    with sessions() as session, session.begin():
        row = ModelPrior(
            source=f"import-history {path.name} ({elasticity})",
            model_config_json=prior,
            summary={
                "elasticity": fit.elasticity,
                "by_segment": fit.by_segment,
                "rows": fit.rows,
                "ols": fit.ols,
                "diagnostics": fit.diagnostics,
            },
        )
        session.add(row)
        session.flush()
        prior_id = row.id
    return HistoryImport(
        fit, prior, prior_id, f"stored as prior {prior_id}; the next refit uses it"
    )
