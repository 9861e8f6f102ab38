"""Writing benchmark results into docs/benchmarks.md, one marked section per benchmark."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DOC", "replace_section"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure here is reproducible with the command shown next to it.\n"


def replace_section(begin: str, end: str, section: str, doc: Path = DOC) -> None:
    """Replace the text between the ``begin`` and ``end`` markers (inclusive), or append it."""
    text = doc.read_text() if doc.exists() else HEADER
    if begin in text:
        text = re.sub(
            re.escape(begin) + ".*?" + re.escape(end), lambda _m: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)
