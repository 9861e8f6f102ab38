"""``/v1/context-schema``: the declared context features the demand model may use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ContextSchemaPublic(BaseModel):
    """The schema in force (version None: nothing declared)."""

    version: int | None
    features: list[dict[str, Any]]
    columns: list[str]


EXAMPLE_CONTEXT_SCHEMA = {
    "features": [
        {"name": "device", "kind": "categorical", "levels": ["desktop", "mobile"]},
        {"name": "basket_items", "kind": "numeric", "center": 2, "scale": 2},
    ]
}
