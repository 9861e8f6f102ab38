"""benchmarks.systems --quick: real servers on 127.0.0.1, tiny sizes, prints its table, writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import systems
from benchmarks.report import DOC


def _state(path: Path) -> Any:
    return (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None


def test_quick_mode_prints_the_table_and_leaves_the_docs_alone(capsys, monkeypatch):
    before = _state(DOC), _state(systems.PLOT)

    def refuse(*_args, **_kwargs):
        raise AssertionError("--quick --no-doc must not write docs/benchmarks.md")

    monkeypatch.setattr(systems, "replace_section", refuse)
    assert systems.main(["--quick", "--no-doc"]) == 0
    out = capsys.readouterr().out
    assert "| metric | target | measured | |" in out
    for metric in (
        "quote throughput",
        "quote p99",
        "outcome ingestion",
        "freshness",
        "RSS of one API worker",
    ):
        assert f"| {metric}" in out, metric
    assert "| offered req/s |" in out
    assert "GC pauses in the worker" in out  # read from the worker's /metrics per run
    assert (_state(DOC), _state(systems.PLOT)) == before


def test_profile_summary_reads_py_spy_collapsed_stacks():
    root = systems.ROOT
    boot = "_bootstrap (/usr/lib/python3.11/threading.py:1002)"
    raw = "\n".join([
        f"{boot};post_quote ({root}/api/routes/quotes.py:38);create_quote ({root}/api/services/quotes.py:174);"
        "DefaultDialect.do_execute (/venv/lib/python3.11/site-packages/sqlalchemy/engine/default.py:1192) 6",
        f"{boot};post_quote ({root}/api/routes/quotes.py:38);decide ({root}/pricing/policy.py:231) 3",
        f"{boot};loads (/usr/lib/python3.11/json/decoder.py:337) 1",
        f"{boot};Condition.wait (/usr/lib/python3.11/threading.py:327) 10",
        "not a stack line",
    ])  # fmt: skip
    profile = systems.summarise_profile(raw, connections=4)
    assert profile.samples == 20 and profile.idle_pct == 50.0
    by_name = {name: (inc, own) for name, inc, own in profile.functions}
    assert by_name["post_quote (api/routes/quotes.py)"] == (90.0, 0.0)
    assert by_name["DefaultDialect.do_execute (sqlalchemy/engine/default.py)"] == (60.0, 60.0)
    assert "loads (json/decoder.py)" not in by_name  # neither engine code nor a named entry point
    assert dict(profile.packages) == {"sqlalchemy": 60.0, "pricing": 30.0, "stdlib": 10.0}


def test_the_summary_reports_errors_at_64_connections_when_the_sweep_reaches_them():
    def load(target, rps, errors=0, statuses=None):
        return systems.Load("wrk", target, None, 10.0, int(rps * 10), errors, 5.0, 20.0,
                            statuses or {})  # fmt: skip

    quotes = systems.QuoteResults(connections=[32, 64])
    quotes.bare_max = [load("bare", 5000), load("bare", 5100)]
    quotes.engine_max = [load("engine", 1000), load("engine", 900, errors=3, statuses={"503": 1, "429": 2})]
    rows = systems.summary_rows(quotes, {"batch_size": 1000, "per_s": 21000.0},
                                {"served": [0.5, 1.0]}, {"skus": 10, "segments": 2, "draws": 50,
                                                         "rss_mb": 100.0})  # fmt: skip
    crowd = [r for r in rows if r[0].startswith("engine errors")]
    assert crowd == [("engine errors (non-2xx or failed requests) at 64 connections, closed loop",
                      "0", "3 (429: 2, 503: 1) of 9,003 (900.0 req/s)", False)]  # fmt: skip
    quotes.connections, quotes.engine_max = [32], quotes.engine_max[:1]
    assert not [r for r in systems.summary_rows(quotes, {"batch_size": 1000, "per_s": 1.0},
                                                {"served": [1.0]}, {"skus": 1, "segments": 1,
                                                                    "draws": 1, "rss_mb": 1.0})
                if r[0].startswith("engine errors")]  # fmt: skip


def test_cpu_use_counts_this_process_and_the_host_while_it_computes():
    import os
    import time

    with systems.cpu_use(os.getpid()) as use:
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:  # one thread spinning: up to one core
            pass
    [cpu] = use
    assert 0.2 < cpu.server < 1.3, cpu  # shared machine: the spin may not get a whole core
    assert cpu.main_thread is None or cpu.main_thread <= cpu.server + 0.05
    assert cpu.server <= cpu.host + 0.1 and cpu.host <= cpu.cores
    assert cpu.postgres >= 0.0 and "host" in cpu.brief()


def test_the_writer_processes_cost_per_quote_from_their_cpu_and_the_bytes_they_wrote(tmp_path):
    import os

    # What this process writes and syncs reaches /proc/<pid>/io's write_bytes.
    before = systems._written_bytes(os.getpid())
    with open(tmp_path / "blob", "wb") as handle:
        handle.write(os.urandom(1 << 20))
        handle.flush()
        os.fsync(handle.fileno())
    assert systems._written_bytes(os.getpid()) - before >= 1 << 20
    assert systems._written_bytes(2**22 + 7) == 0  # no such process
    # 0.5 core for 2 s and 20 KB over 10 quotes: 100 ms of CPU and 2 KB a quote.
    use = systems.CpuUse(server=1.0, main_thread=0.5, postgres=0.0, host=1.5, cores=2,
                         writer=0.5, writer_written=20 * 1024, seconds=2.0)  # fmt: skip
    writer = systems.writer_use((0, 0, 0, 0, 0), (5, 10, 1, 0.02, 0.01), 2.0)
    assert systems._writer_cost(use, writer) == "100.00 / 2"
    # Writing on the worker's thread (no writer process), or nothing committed: n/a.
    assert systems._writer_cost(systems.CpuUse(1.0, 0.5, 0.0, 1.5, 2), writer) == "n/a"
    assert systems._writer_cost(use, systems.writer_use((0,) * 5, (0,) * 5, 2.0)) == "n/a"


def test_writer_use_reads_jobs_per_transaction_and_busy_share():
    use = systems.writer_use((10.0, 40.0, 1.0, 0.5, 0.2), (30.0, 140.0, 4.0, 0.58, 0.25), 10.0)
    assert (use.jobs_per_transaction, use.busy_share) == (5.0, 0.3)
    assert use.commit_ms == pytest.approx((4.0, 2.5))
    assert systems._writer_cell(use) == "5.0 (30%; 4.0 / 2.5 ms)"
    assert "2.50 ms inside the writer process" in systems._writer_brief(use)
    # On the writer thread (no process): the writer's own time only.
    thread = systems.writer_use((0, 0, 0, 0, 0), (20, 100, 3, 0.08, 0), 10.0)
    assert systems._writer_cell(thread) == "5.0 (30%; 4.0 ms)" and "inside" not in systems._writer_brief(thread)
    assert systems._writer_cell(systems.writer_use((1, 1, 0, 0, 0), (1, 1, 0, 0, 0), 1.0)) == "n/a"


def test_the_half_load_finding_names_the_commit_wait_when_it_is_the_tail():
    def load(rate, p99):
        return systems.Load("aiohttp", "engine", rate, 10.0, int((rate or 2000) * 10), 0, 4.0, p99)

    quotes = systems.QuoteResults(connections=[64])
    quotes.engine_max = [load(None, 30.0)]  # 2,000 req/s at best
    quotes.engine_open = [load(1000.0, 12.0)]
    quotes.engine_inside = [{0.005: 0.9, 0.01: 0.985, 0.015: 0.995, float("inf"): 1.0}]
    quotes.engine_waits = [{0.005: 0.95, 0.01: 0.992, float("inf"): 1.0}]
    [finding] = systems._inside_finding(quotes)
    assert "p99 within 15 ms" in finding and "most of it is the wait for the group commit" in finding
    assert "p99 within 10.0 ms from its hand-over to the writer" in finding
    quotes.engine_waits = [{0.002: 0.995, float("inf"): 1.0}]
    [finding] = systems._inside_finding(quotes)
    assert "little of it is the wait" in finding and "the rest is the interpreter" in finding
