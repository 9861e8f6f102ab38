import pytest

from pricing.protected import protected_attribute


@pytest.mark.parametrize(
    ("name", "label"),
    [("age", "age"), ("customerAge", "age"), ("Customer_Gender", "sex or gender"), ("race", "race"),
     ("religion", "religion"), ("date_of_birth", "age"), ("marital_status", "marital status"),
     ("nationality", "national origin"), ("is_pregnant", "pregnancy"), ("disability_flag", "disability")],
)  # fmt: skip
def test_protected_names_are_recognised(name, label):
    assert protected_attribute(name) == label


@pytest.mark.parametrize(
    "name", ["device", "page", "usage", "message", "raceway", "cart_value", "channel"]
)
def test_ordinary_features_pass(name):
    assert protected_attribute(name) is None
