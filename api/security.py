"""API keys and roles.

A key is ``pe_<prefix>_<secret>``; only its SHA-256 digest is stored (keys carry 256 bits
of randomness, so a fast hash is enough and keeps authentication off the latency budget).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

__all__ = ["Principal", "Role", "generate_key", "hash_key"]


class Role(StrEnum):
    """What a key may do.

    ``checkout`` quotes and reports outcomes; ``merchandiser`` manages the catalog,
    guardrails and promotions; ``analyst`` reads results and logs; ``admin`` manages
    keys and may do everything.
    """

    CHECKOUT = "checkout"
    MERCHANDISER = "merchandiser"
    ANALYST = "analyst"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    key_id: UUID
    name: str
    role: Role


def hash_key(key: str) -> str:
    """Return the hex SHA-256 digest under which ``key`` is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def customer_hash(customer_id: str) -> str:
    """The hex SHA-256 of a customer id: how an erasure names the customer to the workers."""
    return hashlib.sha256(b"customer\x00" + customer_id.encode("utf-8")).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """Create a new random key.

    Returns
    -------
    tuple of str
        ``(key, prefix, digest)``: the key to hand out once, a short public prefix to
        recognise it by in listings, and the digest to store.
    """
    prefix = secrets.token_hex(4)
    key = f"pe_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)
