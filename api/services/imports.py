"""History imports started from the console: where uploads are kept, and their progress.

The fit itself (:mod:`api.services.history_import`) imports PyMC, which never runs in an
API process: an upload is stored under ``PRICING_IMPORT_DIR`` and queued as the
``pricing.import_history`` job for the queue workers (PostgreSQL), which read it from
there. This module stays light enough for the API to import.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.orm import ModelPrior, utcnow

__all__ = ["IMPORT_TASK", "import_progress", "store_upload"]

#: The queue task that runs an import (api/queue.py).
IMPORT_TASK = "pricing.import_history"


def store_upload(directory: Path, filename: str, content: bytes) -> Path:
    """Keep an uploaded history file where the workers read it; returns its path.

    The stored name is the upload's own (letters, digits, ``.``, ``-`` and ``_`` kept)
    behind a time stamp and a random part, so uploads never overwrite each other and no
    path from the client is ever used.
    """
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(filename).name)[-80:]
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    path = directory / f"{stamp}-{uuid.uuid4().hex[:8]}-{safe or 'history.csv'}"
    path.write_bytes(content)
    return path


def import_progress(session: Session, *, recent: int = 5) -> dict[str, Any]:
    """What history imports are under way or ended lately, for people to follow (the
    console's models page).

    Returns
    -------
    dict
        ``jobs``: the queue's import jobs waiting, running or failed lately (PostgreSQL;
        file name, status, attempts, since when), newest first; ``priors``: the ``recent``
        newest stored priors (when, from which file, headline elasticity, rows).
    """
    from api.migrate import queue_jobs

    jobs = [{**job, "file": Path(str(job["args"].get("path", "?"))).name}
            for job in queue_jobs(session, (IMPORT_TASK,), ("todo", "doing", "failed"), limit=recent,
                                  newest_first=True)]  # fmt: skip
    priors = [
        {"id": row.id, "created_at": row.created_at, "source": row.source,
         "elasticity": (row.summary or {}).get("elasticity"), "rows": (row.summary or {}).get("rows")}
        for row in session.scalars(select(ModelPrior).order_by(ModelPrior.id.desc()).limit(recent))
    ]  # fmt: skip
    return {"jobs": jobs, "priors": priors}
