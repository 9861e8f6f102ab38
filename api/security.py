"""API keys and roles.

A key is ``pe_<prefix>_<secret>``; only its digest is stored: HMAC-SHA256 keyed with the
server's pepper (``PRICING_KEY_PEPPER``) when one is configured, else SHA-256. Keys carry
256 bits of randomness, so a fast hash cannot be brute-forced and keeps authentication off
the latency budget; the pepper makes a stolen copy of the key table useless on its own.
A key is looked up by its public prefix and its digest compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

__all__ = ["Principal", "Role", "digest_matches", "generate_key", "hash_key", "key_prefix"]

#: Digest schemes: plain SHA-256 (no pepper configured) or HMAC-SHA256 with the pepper.
SHA256, HMAC_SHA256 = "sha256", "hmac-sha256"
_KEY = re.compile(r"^pe_([0-9a-f]{8})_[A-Za-z0-9_\-]{16,200}$")


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


def hash_key(key: str, pepper: bytes | None = None) -> tuple[str, str]:
    """The ``(scheme, hex digest)`` under which ``key`` is stored.

    Parameters
    ----------
    key : str
        The full key.
    pepper : bytes, optional
        The server's secret; with it the digest is HMAC-SHA256, without it SHA-256.
    """
    if pepper:
        return HMAC_SHA256, hmac.new(pepper, key.encode("utf-8"), hashlib.sha256).hexdigest()
    return SHA256, hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str | None:
    """The public prefix of a well-formed key (``pe_<prefix>_<secret>``), else None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def digest_matches(key: str, scheme: str, stored: str, pepper: bytes | None) -> bool:
    """Whether ``key`` hashes to ``stored`` under ``scheme`` (constant-time comparison)."""
    if scheme == HMAC_SHA256:
        if not pepper:
            return False
        digest = hmac.new(pepper, key.encode("utf-8"), hashlib.sha256).hexdigest()
    elif scheme == SHA256:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    else:
        return False
    return hmac.compare_digest(digest, stored)


def customer_hash(customer_id: str) -> str:
    """The hex SHA-256 of a customer id: how an erasure names the customer to the workers."""
    return hashlib.sha256(b"customer\x00" + customer_id.encode("utf-8")).hexdigest()


def generate_key(pepper: bytes | None = None) -> tuple[str, str, str, str]:
    """Create a new random key.

    Parameters
    ----------
    pepper : bytes, optional
        The server's secret (see :func:`hash_key`).

    Returns
    -------
    tuple of str
        ``(key, prefix, scheme, digest)``: the key to hand out once, a short public prefix
        to recognise it by in listings, and the digest to store with its scheme.
    """
    prefix = secrets.token_hex(4)
    key = f"pe_{prefix}_{secrets.token_urlsafe(32)}"
    scheme, digest = hash_key(key, pepper)
    return key, prefix, scheme, digest
