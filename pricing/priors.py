"""Priors as small immutable objects, so model configs are data that merge and hash.

Examples
--------
>>> Normal(mu=0.4, sigma=1.0).to_dict()
{'dist': 'Normal', 'mu': 0.4, 'sigma': 1.0}
>>> prior_from_dict({'dist': 'HalfNormal', 'sigma': 0.5})
HalfNormal(sigma=0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pymc as pm

__all__ = ["HalfNormal", "Normal", "Prior", "prior_from_dict"]


@dataclass(frozen=True, slots=True)
class Normal:
    """Normal(mu, sigma) on the real line."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"Normal prior needs sigma > 0, got {self.sigma}")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Add this prior to the current PyMC model as ``name`` (returns the PyMC variable)."""
        return pm.Normal(name, mu=self.mu, sigma=self.sigma, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in config hashes and snapshots)."""
        return {"dist": "Normal", **asdict(self)}


@dataclass(frozen=True, slots=True)
class HalfNormal:
    """HalfNormal(sigma) on the positive half line (scale parameters)."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"HalfNormal prior needs sigma > 0, got {self.sigma}")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Add this prior to the current PyMC model as ``name`` (returns the PyMC variable)."""
        return pm.HalfNormal(name, sigma=self.sigma, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in config hashes and snapshots)."""
        return {"dist": "HalfNormal", **asdict(self)}


Prior = Normal | HalfNormal
_REGISTRY: dict[str, type[Normal] | type[HalfNormal]] = {"Normal": Normal, "HalfNormal": HalfNormal}


def prior_from_dict(data: dict[str, Any]) -> Prior:
    """Rebuild a prior from :meth:`to_dict` output.

    Raises
    ------
    ValueError
        If ``dist`` is not a known distribution.
    """
    params = dict(data)
    name = params.pop("dist", None)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown prior distribution {name!r}; expected one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name](**params)
