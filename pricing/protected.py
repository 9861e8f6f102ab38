"""Protected attributes: characteristics a price must never be conditioned on.

Context features whose names denote a protected class (in the sense of anti-discrimination
law in the US and EU) are refused wherever features are declared or sent. Matching is on
normalised feature names, so ``Gender``, ``customer_gender`` and ``gender_code`` are all
caught.
"""

from __future__ import annotations

import re

__all__ = ["PROTECTED_ATTRIBUTES", "protected_attribute"]

#: Normalised name fragment → the protected class it denotes.
PROTECTED_ATTRIBUTES: dict[str, str] = {
    "race": "race",
    "ethnic": "ethnicity",
    "ethnicity": "ethnicity",
    "colour": "colour",
    "color_of_skin": "colour",
    "skin_color": "colour",
    "religion": "religion",
    "religious": "religion",
    "creed": "religion",
    "gender": "sex or gender",
    "sex": "sex or gender",
    "sexual_orientation": "sexual orientation",
    "orientation": "sexual orientation",
    "age": "age",
    "birth_date": "age",
    "date_of_birth": "age",
    "dob": "age",
    "birthdate": "age",
    "disability": "disability",
    "disabled": "disability",
    "pregnancy": "pregnancy",
    "pregnant": "pregnancy",
    "marital": "marital status",
    "marital_status": "marital status",
    "national_origin": "national origin",
    "nationality": "national origin",
    "citizenship": "national origin",
    "genetic": "genetic information",
    "veteran": "veteran status",
    "political": "political opinion",
    "union_membership": "trade-union membership",
    "health": "health",
}

_SPLIT = re.compile(r"[^a-z0-9]+")


def protected_attribute(name: str) -> str | None:
    """Return the protected class a feature name denotes, or ``None`` if it denotes none.

    Parameters
    ----------
    name : str
        A context feature name as sent or declared.

    Returns
    -------
    str or None
        E.g. ``"age"`` for ``"customerAge"``; ``None`` for ``"device"``.

    Examples
    --------
    >>> protected_attribute("Customer_Gender")
    'sex or gender'
    >>> protected_attribute("page") is None
    True
    """
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    tokens = [t for t in _SPLIT.split(snake) if t]
    joined = "_".join(tokens)
    for fragment, label in PROTECTED_ATTRIBUTES.items():
        if "_" in fragment:
            if fragment in joined:
                return label
        elif fragment in tokens:
            return label
    return None
