"""Types every resource shares: money as decimal strings, identifiers, strict bodies."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

from pricing.money import CURRENCY_EXPONENTS, MoneyError, parse_amount

#: Largest id the database stores (a signed 64-bit integer): a larger one is a 422, not a 500.
MAX_ROW_ID = 2**63 - 1
#: Largest version number (model, guardrail and context schema versions are 32-bit) and the
#: largest count limit a promotion may declare.
MAX_VERSION = 2**31 - 1
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"


def _money(value: Any) -> Decimal:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A JSON number, integer or not: JSON parsers elsewhere (JavaScript's among them)
        # read every number as a binary float, so money never travels as one.
        raise ValueError(f'money must be a decimal string such as "{value}", not a JSON number')
    try:
        return parse_amount(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


#: A money amount: accepted only as a decimal string (a JSON number, even an integer, is
#: a 422), emitted as a string. Python callers may pass a Decimal.
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
]


Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["COF-001"])]


SkuId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["COF-001"])]


SegmentKey = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["loyalty"])]


CategoryKey = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["coffee"])]


#: A decision id of the examples (the /docs examples use the demo catalog's SKUs and segments).
EXAMPLE_DECISION = "5b0f6c1e-8d2a-4c1b-9a57-3f2e1d0c9b8a"


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]


def check_currency(value: str) -> str:
    if value not in CURRENCY_EXPONENTS:
        raise ValueError(f"unsupported currency {value!r}; supported: {sorted(CURRENCY_EXPONENTS)}")
    return value


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


#: A stored version number (guardrails, demand models): 1 .. 2**31 - 1.
VersionId = Annotated[int, Field(ge=1, le=MAX_VERSION)]
