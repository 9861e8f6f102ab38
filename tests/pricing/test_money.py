from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing.money import CURRENCY_EXPONENTS, MoneyError, from_minor, parse_amount, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("19.99", "USD", 1999), ("0.10", "EUR", 10), ("500", "JPY", 500), ("1.234", "KWD", 1234),
     ("19.990", "USD", 1999), ("7", "USD", 700)],
)  # fmt: skip
def test_to_minor_is_exact(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1999, "USD", "19.99"), (0, "USD", "0.00"), (500, "JPY", "500"), (5, "KWD", "0.005")],
)
def test_from_minor_keeps_the_currency_scale(minor, currency, text):
    assert str(from_minor(minor, currency)) == text


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [("1.999", "USD", "more than 2 decimal"), ("1.5", "JPY", "more than 0 decimal"),
     ("1", "XXX", "unsupported currency"), ("1e20", "USD", "too large")],
)  # fmt: skip
def test_to_minor_refuses_what_it_cannot_store(amount, currency, message):
    with pytest.raises(MoneyError, match=message):
        to_minor(Decimal(amount), currency)


@pytest.mark.parametrize("value", [19.99, True, "abc", "NaN", "Infinity", None, [1]])
def test_parse_amount_refuses_floats_and_non_numbers(value):
    with pytest.raises(MoneyError):
        parse_amount(value)


def test_parse_amount_accepts_strings_ints_and_decimals():
    assert parse_amount(" 19.99 ") == Decimal("19.99")
    assert parse_amount(20) == Decimal(20)
    assert parse_amount(Decimal("1.5")) == Decimal("1.5")


@given(
    st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(sorted(CURRENCY_EXPONENTS))
)
def test_minor_units_round_trip(minor, currency):
    assert to_minor(from_minor(minor, currency), currency) == minor
