"""benchmarks.writer --quick: captures real batches, replays them, prints its table, writes nothing."""

from __future__ import annotations

from benchmarks import writer
from benchmarks.report import DOC


def test_quick_mode_replays_captured_batches_and_leaves_the_docs_alone(capsys, monkeypatch):
    before = DOC.read_bytes() if DOC.exists() else None

    def refuse(*_args, **_kwargs):
        raise AssertionError("--quick must not write docs/benchmarks.md")

    monkeypatch.setattr(writer, "replace_section", refuse)
    assert writer.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "captured batches, 200 quotes" in out
    assert "| a captured batch (" in out and "| one quote |" in out
    assert "Fixed cost per transaction F" in out
    assert (DOC.read_bytes() if DOC.exists() else None) == before


def test_a_replay_writes_every_captured_quote_and_the_baseline_its_decisions(tmp_path):
    captured = writer.capture(tmp_path, 40)
    seconds, transactions, quotes = writer.replay_engine(captured, single=True)
    assert quotes == 40 and transactions == 40 and seconds > 0
    import sqlite3

    engine_rows = sqlite3.connect(captured.before.with_name("engine.db")).execute(
        "SELECT count(*) FROM decisions").fetchone()[0]  # fmt: skip
    writer.replay_baseline(captured, single=False)
    base_rows = sqlite3.connect(captured.before.with_name("baseline.db")).execute(
        "SELECT count(*) FROM decisions").fetchone()[0]  # fmt: skip
    decisions = sum(len(job.decisions) for jobs in captured.jobs(False) for job in jobs)
    assert base_rows == decisions >= 40
    if captured.refused == 0:  # the replay refuses what the app refused, nothing more
        assert engine_rows == decisions
