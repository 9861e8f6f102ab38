"""Test hooks that run inside the writer process (``GroupWriter.before_commit``).

The child unpickles a hook by reference, so it imports this module: it must stay light
(a test module would pull in the web framework and the suite's fixtures).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

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


class Probe:
    """A writer job that writes nothing; its result is the thread that settled it."""

    kind: ClassVar[str] = "probe"
    rows = 1

    @classmethod
    def write_batch(cls, session: Any, jobs: Any) -> None:
        """Nothing to write."""
        del session, jobs

    def result(self) -> int:
        """The settling thread's ident."""
        return threading.get_ident()

    def committed(self) -> None:
        """Nothing to update."""

    def failed(self, error: BaseException) -> None:
        """Nothing to undo."""
        del error

    def report(self) -> None:
        """Nothing to report."""

    def absorb(self, report: None) -> None:
        """Nothing to take in."""
        del report


class Broken(Probe):
    """A writer job whose write fails for a reason of its own (a bug)."""

    kind: ClassVar[str] = "broken"

    @classmethod
    def write_batch(cls, session: Any, jobs: Any) -> None:
        """Fails."""
        raise RuntimeError("a bug in this job")
