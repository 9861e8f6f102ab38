"""Admins: API keys and audit entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from api.schemas.common import (
    StrictBody,
)


class KeyCreate(StrictBody):
    """``POST /v1/keys``: a new API key for a role."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "checkout-eu", "role": "checkout"}]})

    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Literal["checkout", "merchandiser", "analyst", "admin"]


class KeyPublic(BaseModel):
    """A key as listed (never the secret)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", "name": "checkout-eu", "role": "checkout", "prefix": "pe_3e4f5a6b", "created_at": "2026-12-01T09:00:00Z", "revoked_at": None}]})  # fmt: skip

    id: UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyPublic):
    """A newly created key: ``key`` is shown this once and cannot be recovered."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", "name": "checkout-eu", "role": "checkout", "prefix": "pe_3e4f5a6b", "created_at": "2026-12-01T09:00:00Z", "revoked_at": None, "key": "pe_3e4f5a6b_examplesecretshownonce"}]})  # fmt: skip

    key: str


class AuditPublic(BaseModel):
    """One audit entry."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ErasureOut(BaseModel):
    """What erasing a customer changed (the identifier itself is stored nowhere now)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "pseudonym": "erased-5f0c1e2d3b4a49688d7e6f5a4b3c2d1e", "decisions": 12,
        "exposures": 1, "promotion_counts": 1, "stored_quotes": 0,
    }]})  # fmt: skip

    #: The random name the customer's rows carry now (not derived from the identifier).
    pseudonym: str
    decisions: int
    exposures: int
    promotion_counts: int
    #: Stored quote responses (idempotency keys) removed.
    stored_quotes: int
