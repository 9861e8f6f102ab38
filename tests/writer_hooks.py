"""Test hooks that run inside the writer process (``GroupWriter.before_commit``).

The child unpickles a hook by reference, so it imports this module: it must stay light
(a test module would pull in the web framework and the suite's fixtures).
"""

from __future__ import annotations

import time

from sqlalchemy.exc import OperationalError


def database_gone(_session: object) -> None:
    """The commit fails as if the disk had gone (an unavailable database)."""
    raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


def a_bug(_session: object) -> None:
    """The commit fails for a reason of the batch's own."""
    raise RuntimeError("a bug in a write")


def slow(_session: object) -> None:
    """The transaction takes three seconds before its commit."""
    time.sleep(3)
