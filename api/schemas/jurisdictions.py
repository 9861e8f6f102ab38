"""``/v1/jurisdictions``: what each jurisdiction requires of a personalized price."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import StrictBody

JurisdictionCode = Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$", examples=["US-NY"])]

EXAMPLE_JURISDICTIONS: dict[str, Any] = {
    "default": "US",
    "rules": [
        {"code": "US-NY", "personalization": True,
         "disclosure": "THIS PRICE WAS SET BY AN ALGORITHM USING YOUR PERSONAL DATA",
         "prior_price_rule": False},
        {"code": "FR", "personalization": True,
         "disclosure": "This price was personalised for you on the basis of automated decision-making.",
         "prior_price_rule": True},
        {"code": "US-CA", "personalization": False, "disclosure": None, "prior_price_rule": False},
    ],
}  # fmt: skip


class JurisdictionRuleIn(StrictBody):
    """One jurisdiction's requirements."""

    code: JurisdictionCode
    #: False: personal data may not set prices there (every line gets the list price).
    personalization: bool = True
    #: Shown with every personalized line (at most 500 characters).
    disclosure: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    #: Announced reductions carry the lowest price of the prior 30 days (EU art. 6a).
    prior_price_rule: bool = False


class JurisdictionsIn(StrictBody):
    """A new version of the jurisdiction rules (replaces the whole set)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JURISDICTIONS]})

    #: The jurisdiction of quotes that name none (None: no requirement applies to them).
    default: JurisdictionCode | None = None
    rules: Annotated[list[JurisdictionRuleIn], Field(max_length=1000)]


class JurisdictionsPublic(BaseModel):
    """The rules in force (version None: the shipped defaults)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 3, **EXAMPLE_JURISDICTIONS}]})

    version: int | None = None
    default: str | None = None
    rules: list[dict[str, Any]]
