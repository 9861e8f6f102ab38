"""Merchandisers: products and segments."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, StateDep, require
from api.errors import FieldProblem, Invalid, UnsupportedMedia
from api.schemas.catalog import (
    ImportResult,
    ProductImportItem,
    ProductIn,
    ProductPage,
    ProductPublic,
    SegmentIn,
    SegmentPublic,
)
from api.schemas.common import IDENTIFIER_PATTERN
from api.security import Principal, Role
from api.services import catalog

router = APIRouter(prefix="/v1", tags=["catalog"])
Merchandiser = Annotated[Principal, Depends(require(Role.MERCHANDISER))]
Reader = Annotated[Principal, Depends(require(Role.MERCHANDISER, Role.ANALYST))]
SkuPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]
KeyPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]
_import_items = TypeAdapter(list[ProductImportItem])

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ProductImportItem"},
                    "examples": [
                        [
                            {
                                "sku": "COF-101",
                                "name": "Espresso beans 250g",
                                "category": "coffee",
                                "list_price": "7.49",
                                "unit_cost": "4.10",
                                "currency": "USD",
                            },
                            {
                                "sku": "TEA-101",
                                "name": "Sencha 100g",
                                "category": "tea",
                                "list_price": "8.99",
                                "unit_cost": "3.95",
                                "currency": "USD",
                            },
                        ]
                    ],
                }
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": "sku,name,category,list_price,unit_cost,currency\n"
                "COF-101,Espresso beans 250g,coffee,7.49,4.10,USD\n",
            },
        },
    }
}


@router.put("/products/{sku}", response_model=ProductPublic)
def put_product(
    sku: SkuPath,
    body: ProductIn,
    session: SessionDep,
    state: StateDep,
    response: Response,
    actor: Merchandiser,
) -> ProductPublic:
    """Create or replace a product (201 when created, 200 when replaced); audited."""
    product, created = catalog.put_product(session, sku=sku, data=body, actor=actor)
    state.catalog_changed()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return product


@router.post(
    "/products:import",
    response_model=ImportResult,
    openapi_extra=_IMPORT_BODY,
    responses={422: {"description": "Rows and columns at fault; nothing is imported"}},
)
async def import_products(
    request: Request, state: StateDep, session: SessionDep, actor: Merchandiser
) -> ImportResult:
    """Import many products, as a JSON array or CSV; every row is applied or none is."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid(["body"], "body must be UTF-8 text") from None
    if content_type in {"text/csv", "application/csv"}:
        items = catalog.parse_product_csv(text, max_rows=state.settings.max_import_rows)
    elif content_type in {"application/json", ""}:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(["body"], f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
        if isinstance(payload, dict) and "products" in payload:
            payload = payload["products"]
        if not isinstance(payload, list) or not payload:
            raise Invalid(["body"], "expected a non-empty JSON array of products")
        if len(payload) > state.settings.max_import_rows:
            raise Invalid(
                ["body"], f"more than {state.settings.max_import_rows} rows; split the import"
            )
        try:
            items = _import_items.validate_python(payload)
        except ValidationError as exc:
            raise Invalid(
                [
                    FieldProblem(
                        ["body", *e["loc"]], e["msg"].removeprefix("Value error, "), e["type"]
                    )
                    for e in exc.errors()
                ],
            ) from None
    else:
        raise UnsupportedMedia(
            f"unsupported content type {content_type!r}; send application/json or text/csv"
        )
    result = await run_in_threadpool(catalog.import_products, session, items=items, actor=actor)
    await run_in_threadpool(state.catalog_changed)
    return result


@router.get("/products", response_model=ProductPage)
def list_products(
    session: SessionDep,
    _: Reader,
    category: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    active: bool | None = None,
    after: Annotated[
        str | None, Query(pattern=IDENTIFIER_PATTERN, description="last SKU of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ProductPage:
    """List products by SKU, a page at a time."""
    return catalog.list_products(
        session, category=category, active=active, after=after, limit=limit
    )


@router.get("/products/{sku}", response_model=ProductPublic)
def get_product(sku: SkuPath, session: SessionDep, _: Reader) -> ProductPublic:
    """One product."""
    return catalog.get_product(session, sku=sku)


@router.get("/segments", response_model=list[SegmentPublic])
def list_segments(session: SessionDep, _: Reader) -> list[SegmentPublic]:
    """All segments."""
    return catalog.list_segments(session)


@router.get("/segments/{key}", response_model=SegmentPublic)
def get_segment(key: KeyPath, session: SessionDep, _: Reader) -> SegmentPublic:
    """One segment."""
    return catalog.get_segment(session, key=key)


@router.put("/segments/{key}", response_model=SegmentPublic)
def put_segment(
    key: KeyPath,
    body: SegmentIn,
    session: SessionDep,
    state: StateDep,
    response: Response,
    actor: Merchandiser,
) -> SegmentPublic:
    """Create or replace a segment (201 when created); audited."""
    segment, created = catalog.put_segment(session, key=key, data=body, actor=actor)
    state.catalog_changed()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return segment


@router.delete("/segments/{key}", response_model=SegmentPublic)
def delete_segment(
    key: KeyPath, session: SessionDep, state: StateDep, actor: Merchandiser
) -> SegmentPublic:
    """Deactivate a segment; its decisions keep their history."""
    segment = catalog.deactivate_segment(session, key=key, actor=actor)
    state.catalog_changed()
    return segment
