"""Pricing core: money, demand models, posterior draws, price policy and guardrails.

Nothing in this package knows about HTTP or the database; the service in :mod:`api`
calls into it through small protocols.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
