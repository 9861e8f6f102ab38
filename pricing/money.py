"""Money as integer minor units with an explicit ISO 4217 currency.

Prices never exist as binary floats in storage or on the wire: the API carries decimal
strings (``"19.99"``), the database integer minor units (``1999``), and this module
converts between the two exactly.

Examples
--------
>>> to_minor(Decimal("19.99"), "USD")
1999
>>> from_minor(1999, "USD")
Decimal('19.99')
>>> from_minor(500, "JPY")
Decimal('500')
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

__all__ = [
    "CURRENCY_EXPONENTS",
    "MoneyError",
    "from_minor",
    "minor_unit_exponent",
    "parse_amount",
    "to_minor",
]

#: Minor-unit exponent of the currencies the engine accepts (ISO 4217).
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2,
    "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
    "ISK": 0, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2,
    "PHP": 2, "PLN": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2,
    "TWD": 2, "USD": 2, "ZAR": 2,
}  # fmt: skip

#: Largest amount in minor units we store (fits a signed 64-bit integer with room).
MAX_MINOR = 10**15


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def minor_unit_exponent(currency: str) -> int:
    """Return the number of decimal places of ``currency``.

    Parameters
    ----------
    currency : str
        Upper-case ISO 4217 code, e.g. ``"USD"``.

    Returns
    -------
    int
        Decimal places of the minor unit (2 for USD, 0 for JPY, 3 for KWD).

    Raises
    ------
    MoneyError
        If the currency is not supported.
    """
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(
            f"unsupported currency {currency!r}; expected an ISO 4217 code such as 'USD'"
        ) from None


def parse_amount(value: str | int | Decimal) -> Decimal:
    """Parse a decimal string or integer into a finite :class:`~decimal.Decimal`.

    Binary floats are refused: they cannot carry money exactly.

    Parameters
    ----------
    value : str, int or Decimal
        ``"19.99"``, ``20`` or ``Decimal("19.99")``.

    Returns
    -------
    Decimal
        The same amount.

    Raises
    ------
    MoneyError
        If the value is a float, not a number, or not finite.
    """
    if isinstance(value, bool | float):
        raise MoneyError('money must be a decimal string such as "19.99", not a binary float')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f'{value!r} is not a decimal amount such as "19.99"') from None
    else:
        raise MoneyError(f"money must be a decimal string, got {type(value).__name__}")
    if not amount.is_finite():
        raise MoneyError(f"{value!r} is not a finite amount")
    return amount


def to_minor(amount: Decimal, currency: str) -> int:
    """Convert an amount in major units to integer minor units, exactly.

    Parameters
    ----------
    amount : Decimal
        Amount in major units (e.g. dollars).
    currency : str
        ISO 4217 code.

    Returns
    -------
    int
        Amount in minor units (e.g. cents).

    Raises
    ------
    MoneyError
        If ``amount`` has more decimal places than the currency allows, or is too large.
    """
    exponent = minor_unit_exponent(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{amount} has more than {exponent} decimal place(s), the minor unit of {currency}"
        )
    minor = int(scaled)
    if abs(minor) > MAX_MINOR:
        raise MoneyError(f"{amount} {currency} is too large")
    return minor


@functools.lru_cache(maxsize=65536)
def from_minor(minor: int, currency: str) -> Decimal:
    """Convert integer minor units to a :class:`~decimal.Decimal` in major units.

    Parameters
    ----------
    minor : int
        Amount in minor units.
    currency : str
        ISO 4217 code.

    Returns
    -------
    Decimal
        Amount in major units with exactly the currency's number of decimal places.
    """
    exponent = minor_unit_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
