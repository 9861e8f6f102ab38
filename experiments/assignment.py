"""Deterministic assignment of units (customers) to experiment variants.

``u = blake2b(salt, unit id) / 2**64`` is uniform on [0, 1) and the same in every worker,
process and restart; the unit gets the variant whose cumulative allocation interval holds
``u``. Changing the salt re-randomises; changing allocations moves only the units whose
``u`` crosses a boundary.

Examples
--------
>>> assign("customer-42", "salt-1", [("control", 0.5), ("engine", 0.5)])
'engine'
>>> assign("customer-42", "salt-1", [("control", 0.5), ("engine", 0.5)])  # stable
'engine'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["assign", "unit_position"]


def unit_position(unit_id: str, salt: str) -> float:
    """The unit's position u in [0, 1) for this salt (64-bit hash, uniform)."""
    digest = hashlib.blake2b(
        unit_id.encode("utf-8"), key=salt.encode("utf-8")[:64], digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(unit_id: str, salt: str, allocation: Sequence[tuple[str, float]]) -> str:
    """Variant of ``unit_id`` under ``allocation`` (name, share) whose shares sum to 1.

    Raises
    ------
    ValueError
        If the allocation is empty, has a negative share, or does not sum to 1.
    """
    if not allocation:
        raise ValueError("allocation: at least one variant is needed")
    total = sum(share for _, share in allocation)
    if any(share < 0 for _, share in allocation) or abs(total - 1.0) > 1e-9:
        raise ValueError(f"allocation: shares must be non-negative and sum to 1 (got {total})")
    u = unit_position(unit_id, salt)
    edge = 0.0
    for name, share in allocation:
        edge += share
        if u < edge:
            return name
    return allocation[-1][0]
