"""Request and response bodies of API v1: every wire model, one module per resource.

``common`` (money, identifiers, strict bodies), ``catalog``, ``quotes``, ``outcomes``,
``guardrails`` (and previews), ``promotions``, ``context``, ``experiments``,
``demand_models``, ``decisions``, ``admin`` (keys, audit). Nothing but wire models and
their examples lives here; services and routes import them.

Money travels as decimal strings (``"19.99"``) with an explicit currency; a JSON number
in a money field is refused, since it would have passed through a binary float.
Timestamps are ISO 8601 with an offset and come back in UTC.
"""
