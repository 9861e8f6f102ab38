"""Catalog: products and segments, with price history and audit."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.errors import FieldProblem, Invalid, NotFound
from api.orm import PriceHistory, Product, Segment
from api.schemas.catalog import (
    ImportResult,
    ProductImportItem,
    ProductIn,
    ProductPage,
    ProductPublic,
    SegmentIn,
    SegmentPublic,
)
from api.security import Principal
from api.services.audit import record_change
from pricing.money import from_minor, to_minor

__all__ = [
    "get_product",
    "import_products",
    "list_products",
    "list_segments",
    "parse_product_csv",
    "product_public",
    "put_product",
    "put_segment",
]

PRODUCT_CSV_COLUMNS = ("sku", "name", "category", "list_price", "unit_cost", "currency")


def product_public(product: Product) -> ProductPublic:
    """API view of a stored product."""
    return ProductPublic(
        sku=product.sku,
        name=product.name,
        category=product.category,
        list_price=from_minor(product.list_price_minor, product.currency),
        unit_cost=from_minor(product.unit_cost_minor, product.currency),
        currency=product.currency,
        active=product.active,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


def _product_state(product: Product) -> dict[str, Any]:
    return product_public(product).model_dump(mode="json", exclude={"created_at", "updated_at"})


def _apply_product(session: Session, *, sku: str, data: ProductIn, actor: Principal | None) -> str:
    """Create or update one product in the open transaction; return what happened."""
    list_minor = to_minor(data.list_price, data.currency)
    cost_minor = to_minor(data.unit_cost, data.currency)
    product = session.get(Product, sku, with_for_update=True)
    if product is None:
        product = Product(
            sku=sku,
            name=data.name,
            category=data.category,
            list_price_minor=list_minor,
            unit_cost_minor=cost_minor,
            currency=data.currency,
            active=data.active,
        )
        session.add(product)
        session.flush()
        session.add(
            PriceHistory(sku=sku, price_minor=list_minor, currency=data.currency, kind="list")
        )
        record_change(
            session, actor=actor, action="create", entity="product", entity_id=sku,
            before=None, after=_product_state(product),
        )  # fmt: skip
        return "created"
    before = _product_state(product)
    price_changed = (product.list_price_minor, product.currency) != (list_minor, data.currency)
    product.name = data.name
    product.category = data.category
    product.list_price_minor = list_minor
    product.unit_cost_minor = cost_minor
    product.currency = data.currency
    product.active = data.active
    after = _product_state(product)
    if after == before:
        return "unchanged"
    if price_changed:
        session.add(
            PriceHistory(sku=sku, price_minor=list_minor, currency=data.currency, kind="list")
        )
    record_change(
        session, actor=actor, action="update", entity="product", entity_id=sku,
        before=before, after=after,
    )  # fmt: skip
    return "updated"


def put_product(
    session: Session, *, sku: str, data: ProductIn, actor: Principal | None
) -> tuple[ProductPublic, bool]:
    """Create or replace a product.

    Returns
    -------
    tuple
        The stored product and whether it was newly created.
    """
    with session.begin():
        outcome = _apply_product(session, sku=sku, data=data, actor=actor)
        product = session.get(Product, sku)
        assert product is not None
        return product_public(product), outcome == "created"


def import_products(
    session: Session, *, items: Sequence[ProductImportItem], actor: Principal | None
) -> ImportResult:
    """Apply a validated import in one transaction: all rows or none.

    Raises
    ------
    Invalid
        If the same SKU appears twice, naming both rows.
    """
    seen: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        if item.sku in seen:
            problems.append(
                FieldProblem(
                    ["body", index, "sku"],
                    f"duplicate sku {item.sku!r} (also row {seen[item.sku]})",
                )
            )
        seen.setdefault(item.sku, index)
    if problems:
        raise Invalid(problems)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    with session.begin():
        for item in items:
            data = ProductIn.model_validate(item.model_dump(exclude={"sku"}))
            counts[_apply_product(session, sku=item.sku, data=data, actor=actor)] += 1
    return ImportResult(**counts)


def parse_product_csv(text: str, *, max_rows: int) -> list[ProductImportItem]:
    """Parse a product CSV (header ``sku,name,category,list_price,unit_cost,currency[,active]``).

    Raises
    ------
    Invalid
        Naming the row (1-based, header is row 1) and column of every bad value, or
        the missing columns; or the line at which the text stops being CSV at all
        (a NUL byte, a stray carriage return, a field over the csv module's size limit).
    """
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _parse_rows(reader, max_rows=max_rows)
    except csv.Error as exc:
        raise Invalid(["body", f"line {reader.line_num}"], f"not valid CSV: {exc}") from None


def _parse_rows(reader: csv.DictReader[str], *, max_rows: int) -> list[ProductImportItem]:
    columns = reader.fieldnames or []
    missing = [c for c in PRODUCT_CSV_COLUMNS if c not in columns]
    if missing:
        raise Invalid(["body", "header"], f"missing column(s): {', '.join(missing)}")
    unknown = [c for c in columns if c not in (*PRODUCT_CSV_COLUMNS, "active")]
    if unknown:
        raise Invalid(["body", "header"], f"unknown column(s): {', '.join(unknown)}")
    items: list[ProductImportItem] = []
    problems: list[FieldProblem] = []
    for row_no, row in enumerate(reader, start=2):
        if len(items) + len(problems) >= max_rows:
            raise Invalid(["body"], f"more than {max_rows} rows; split the import")
        if None in row:
            problems.append(FieldProblem(["body", f"row {row_no}"], "more values than columns"))
            continue
        record: dict[str, Any] = dict(row)
        if "active" in record:
            flag = (record["active"] or "true").strip().lower()
            if flag not in {"true", "false", "1", "0", "yes", "no"}:
                problems.append(
                    FieldProblem(["body", f"row {row_no}", "active"], "expected true or false")
                )
                continue
            record["active"] = flag in {"true", "1", "yes"}
        try:
            items.append(ProductImportItem.model_validate(record))
        except ValidationError as exc:
            for error in exc.errors():
                loc = ["body", f"row {row_no}", *[str(p) for p in error["loc"]]]
                problems.append(
                    FieldProblem(loc, error["msg"].removeprefix("Value error, "), error["type"])
                )
    if problems:
        raise Invalid(problems)
    if not items:
        raise Invalid(["body"], "no rows to import")
    return items


def get_product(session: Session, *, sku: str) -> ProductPublic:
    """Return one product, or raise :class:`NotFound`."""
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(["path", "sku"], f"unknown sku {sku!r}")
    return product_public(product)


def list_products(
    session: Session,
    *,
    category: str | None,
    active: bool | None,
    after: str | None,
    limit: int,
    search: str | None = None,
) -> ProductPage:
    """Keyset-paginated products ordered by SKU (``search``: SKU or name contains it,
    case-insensitive)."""
    query = select(Product).order_by(Product.sku).limit(limit + 1)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Product.sku.ilike(pattern, escape="\\"),
                                Product.name.ilike(pattern, escape="\\")))  # fmt: skip
    if category is not None:
        query = query.where(Product.category == category)
    if active is not None:
        query = query.where(Product.active == active)
    if after is not None:
        query = query.where(Product.sku > after)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return ProductPage(
        items=[product_public(p) for p in rows], next_after=rows[-1].sku if more else None
    )


# --------------------------------------------------------------------------- segments
def segment_public(segment: Segment) -> SegmentPublic:
    """API view of a stored segment."""
    return SegmentPublic.model_validate(segment, from_attributes=True)


def put_segment(
    session: Session, *, key: str, data: SegmentIn, actor: Principal | None
) -> tuple[SegmentPublic, bool]:
    """Create or replace a segment; deactivating keeps its history."""
    with session.begin():
        segment = session.get(Segment, key, with_for_update=True)
        if segment is None:
            segment = Segment(
                key=key, name=data.name, description=data.description, active=data.active
            )
            session.add(segment)
            session.flush()
            record_change(
                session, actor=actor, action="create", entity="segment", entity_id=key,
                before=None, after=data.model_dump(mode="json"),
            )  # fmt: skip
            return segment_public(segment), True
        before = {
            "name": segment.name,
            "description": segment.description,
            "active": segment.active,
        }
        after = data.model_dump(mode="json")
        if before != after:
            segment.name, segment.description, segment.active = (
                data.name,
                data.description,
                data.active,
            )
            session.flush()
            record_change(
                session, actor=actor, action="update", entity="segment", entity_id=key,
                before=before, after=after,
            )  # fmt: skip
        return segment_public(segment), False


def get_segment(session: Session, *, key: str) -> SegmentPublic:
    """Return one segment, or raise :class:`NotFound`."""
    segment = session.get(Segment, key)
    if segment is None:
        raise NotFound(["path", "key"], f"unknown segment {key!r}")
    return segment_public(segment)


def deactivate_segment(session: Session, *, key: str, actor: Principal | None) -> SegmentPublic:
    """Deactivate a segment (decisions keep referring to it, so it is never deleted)."""
    with session.begin():
        segment = session.get(Segment, key, with_for_update=True)
        if segment is None:
            raise NotFound(["path", "key"], f"unknown segment {key!r}")
        if segment.active:
            segment.active = False
            session.flush()
            record_change(
                session, actor=actor, action="deactivate", entity="segment", entity_id=key,
                before={"active": True}, after={"active": False},
            )  # fmt: skip
        return segment_public(segment)


def list_segments(session: Session) -> list[SegmentPublic]:
    """All segments ordered by key."""
    return [segment_public(s) for s in session.scalars(select(Segment).order_by(Segment.key))]
