"""The HTTP service under load on 127.0.0.1: quotes, outcome ingestion, freshness, memory.

    python -m benchmarks.systems                  # full run (~10 min); writes docs/benchmarks.md + plot
    python -m benchmarks.systems --quick --no-doc # smoke run (tiny sizes), prints only

Every server is a real ``pricing-engine serve`` subprocess (one uvicorn worker) on a
migrated SQLite database in a temporary directory, seeded with ``pricing-engine
seed-demo``, API keys from ``pricing-engine create-key`` and a synthetic posterior
snapshot (no PyMC fit) covering the demo's segments and SKUs.

1. Quotes. ``POST /v1/quotes`` with one-line carts (random customer id, demo segment and
   demo SKU). The baseline, measured in the same run with the same client and the same
   request bodies, is a bare FastAPI app served by the same uvicorn: one async endpoint
   that parses the JSON body and returns a body shaped and sized like a quote response.
   Maximum throughput is a closed loop (32 connections; ``wrk`` when installed); latency
   is then measured open-loop at fixed offered rates (25/50/75 % of the engine's maximum):
   requests leave on a fixed schedule whatever the server does, and each latency counts
   from its scheduled send time, so queueing in the client is not hidden.
2. Outcome ingestion. ``POST /v1/outcomes/batch`` with 1,000 outcomes per request for
   decisions created beforehand through 100-line quotes; outcomes stored per second.
3. Freshness. ``serve --updater`` with ``PRICING_UPDATER_INTERVAL_SECONDS=0.5`` and
   ``PRICING_SNAPSHOT_POLL_SECONDS=0.5``: seconds from an outcome batch's acknowledgement
   until ``GET /v1/models`` shows it applied (database) and until the worker's served
   posterior reflects it (``POST /v1/guardrails/preview`` reads the worker's in-memory
   posterior; its expected conversion moves when the new weights are swapped in).
4. Memory. VmRSS of the API worker with 10,000 SKUs x 20 segments (catalog loaded with the
   service function ``catalog.import_products``) and a 500-draw posterior over them, after
   a few seconds of quotes.

5. Log growth. One quote at a time (300, after a warm-up), on the demo database as it is
   and on a copy holding 1,000,000 of today's decisions (2,000 with ``--quick``): the ratio
   of the median latencies.
6. PostgreSQL (full runs; skipped when ``PRICING_BENCH_POSTGRES_URL``, default the local
   server, does not answer): closed-loop quote throughput with 1 and 2 uvicorn workers on a
   fresh demo database, the best of 32, 64 and 128 connections for each.

Every load run also reads the cores in use from /proc (the server's processes and its
event-loop thread, PostgreSQL's processes, the whole host) and the group writer's
transactions from ``/metrics``: where the time goes, measured rather than guessed.

Load generators, best first: ``wrk`` (Debian package) for the closed loop, and an asyncio
+ aiohttp open-loop generator run in ``benchmarks/.venv-peers`` (created on demand, never
an engine dependency). Without them (``--quick`` never installs anything) a small
in-process generator (httpx clients in threads) takes over, and the output says so. A
short ``py-spy`` profile of the quote path is taken when py-spy is in the peers' venv.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import replace_section

os.environ.setdefault("PYTENSOR_FLAGS", "compiledir=/tmp/ptc")

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / ".venv-peers"
PLOT = ROOT / "docs" / "img" / "systems_latency.png"
BEGIN, END = "<!-- systems:begin -->", "<!-- systems:end -->"
ENGINE_CLI = Path(sys.executable).with_name("pricing-engine")
TARGETS = {"ratio": 0.60, "p99_ms": 10.0, "outcomes_per_s": 20_000.0, "freshness_s": 5.0,
           "rss_mb": 500.0, "growth": 1.2, "errors_at": 64}  # fmt: skip
#: Where part 6 (PostgreSQL, 1 vs 2 API workers) runs; skipped when it does not answer.
POSTGRES_URL = os.environ.get("PRICING_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LOAD_FRACTIONS = (0.25, 0.50, 0.75)
CONNECTIONS = (4, 8, 16, 32, 64)
#: Part 6's closed-loop sweep (two workers need more requests in flight than one to be busy).
POSTGRES_CONNECTIONS = (32, 64, 128)
#: Refit threshold of the freshness server: low, so that the measurement stays on the online
#: reweighting path (the synthetic posterior's ESS falls below the default 50 % within ~40
#: outcomes, and the updater would then try a PyMC refit inside the API process).
FRESH_ESS_FRACTION = 0.05

BARE_APP = r'''
"""Baseline: one async JSON endpoint, no database, a response sized like a quote."""
import datetime
import uuid

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/quotes", status_code=201)
async def quote(request: Request) -> dict[str, object]:
    body = await request.json()
    line = body["lines"][0]
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "quote_id": str(uuid.uuid4()), "customer_id": body["customer_id"],
        "segment": body.get("segment") or "default",
        "expires_at": (now + datetime.timedelta(minutes=15)).isoformat(), "personalized": True,
        "lines": [{
            "line_no": 0, "sku": line["sku"], "quantity": line.get("quantity", 1), "currency": "USD",
            "list_price": "21.99", "price": "20.99", "decision_id": str(uuid.uuid4()),
            "propensity": 0.0123456789, "personalized": True, "fallback": False, "reasons": [],
            "promotion": None, "discount": "0", "final_price": "20.99",
        }],
    }
'''

WRK_LUA = r"""
local skus = {__SKUS__}
local segments = {__SEGMENTS__}
local token = "__TOKEN__"
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(__SEED__ + 7919 * tid)
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

-- Non-2xx responses by status (wrk itself only counts them).
statuses = {}

function response(status, headers, body)
  if status < 200 or status > 299 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function request()
  local body = string.format(
    '{"customer_id":"c-%d","segment":"%s","lines":[{"sku":"%s","quantity":1}]}',
    math.random(1, 1000000000), segments[math.random(#segments)], skus[math.random(#skus)])
  return wrk.format("POST", "__PATH__", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local failed = e.connect + e.read + e.write + e.timeout
  if failed > 0 then table.insert(parts, string.format('"failed": %d', failed)) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %.0f, "p99_us": %.0f, "statuses": {%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
"""

#: Open- or closed-loop generator run in the peers' venv (asyncio + aiohttp).
AIOHTTP_LOADGEN = r"""
import asyncio, gc, json, random, sys, time
import aiohttp
# The generator's own collector pauses would count as the server's latency (latency runs
# from each request's scheduled send): it keeps every task of the run, and its full
# collections took 17-65 ms late in a 15 s run at 2,200 req/s (2026-12-08). A run is short
# and its garbage is mostly acyclic, so the collector is off.
gc.disable()
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
cfg = json.loads(sys.argv[1])
rng = random.Random(cfg["seed"])
headers = {"Content-Type": "application/json"}
if cfg["token"]:
    headers["Authorization"] = "Bearer " + cfg["token"]

def body():
    return json.dumps({"customer_id": f"c-{rng.randrange(10**9)}", "segment": rng.choice(cfg["segments"]),
                       "lines": [{"sku": rng.choice(cfg["skus"]), "quantity": 1}]})

async def main():
    latencies, errors, statuses = [], 0, {}
    connector = aiohttp.TCPConnector(limit=cfg["connections"])
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(scheduled):
            nonlocal errors
            try:
                async with session.post(cfg["url"], data=body(), headers=headers) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
                    kind = str(response.status)
            except Exception:
                ok, kind = False, "failed"
            if ok:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1
                statuses[kind] = statuses.get(kind, 0) + 1
        start = time.perf_counter() + 0.05
        if cfg["rate"]:
            tasks, i, interval = [], 0, 1.0 / cfg["rate"]
            while i * interval < cfg["duration"]:
                scheduled = start + i * interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(scheduled)))
                i += 1
            await asyncio.gather(*tasks)
        else:
            deadline = start + cfg["duration"]
            async def worker():
                while time.perf_counter() < deadline:
                    await one(time.perf_counter())
            await asyncio.gather(*(worker() for _ in range(cfg["connections"])))
        elapsed = time.perf_counter() - start
    print(json.dumps({"latencies": latencies, "errors": errors, "elapsed": elapsed,
                      "statuses": statuses}))

asyncio.run(main())
"""


# --------------------------------------------------------------------------- results
@dataclass
class Load:
    """One load run: what was offered, what came back."""

    generator: str
    target: str
    offered_rps: float | None  # None: closed loop
    seconds: float
    completed: int
    errors: int
    p50_ms: float
    p99_ms: float
    #: The errors by HTTP status ("429", "503"...), "failed" for no response at all.
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Completed (2xx) requests per second."""
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_kinds(self) -> str:
        """The errors by status, e.g. ``" (429: 143)"``; empty without errors."""
        if not self.statuses:
            return ""
        return " (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items())) + ")"


def _load_from_latencies(
    generator: str, target: str, rate: float | None, seconds: float, latencies: Sequence[float],
    errors: int, statuses: dict[str, int] | None = None,
) -> Load:  # fmt: skip
    lat = np.asarray(latencies, dtype=float) * 1000.0
    p50 = float(np.percentile(lat, 50)) if lat.size else float("nan")
    p99 = float(np.percentile(lat, 99)) if lat.size else float("nan")
    return Load(generator, target, rate, seconds, int(lat.size), errors, p50, p99,
                dict(statuses or {}))  # fmt: skip


@dataclass
class Target:
    """Where requests go and what they carry (one-line carts)."""

    name: str
    base_url: str
    token: str
    skus: list[str]
    segments: list[str]
    path: str = "/v1/quotes"

    @property
    def url(self) -> str:
        """Full URL of the quote endpoint."""
        return self.base_url + self.path


def quote_body(rng: random.Random, skus: Sequence[str], segments: Sequence[str]) -> bytes:
    """A one-line cart for a random customer."""
    return json.dumps({
        "customer_id": f"c-{rng.randrange(10**9)}", "segment": rng.choice(segments),
        "lines": [{"sku": rng.choice(skus), "quantity": 1}],
    }).encode()  # fmt: skip


# --------------------------------------------------------------------------- load generators
class Generator:
    """Closed loop for throughput, open loop (fixed offered rate) for latency."""

    name = "abstract"

    def closed(self, target: Target, connections: int, seconds: float) -> Load:
        """As many requests as ``connections`` clients can complete in ``seconds``."""
        raise NotImplementedError

    def open(self, target: Target, rate: float, seconds: float) -> Load:
        """Requests sent every ``1 / rate`` seconds, latency from each scheduled send."""
        raise NotImplementedError


class InProcess(Generator):
    """httpx clients in threads of this process (fallback when no peer tool is available).

    Both loops share this interpreter's GIL, so the generator itself may limit what it
    can measure (the benchmark says so in its output)."""

    name = "in-process httpx threads (fallback)"

    def _run(self, target: Target, threads: int, seconds: float, rate: float | None) -> Load:
        import httpx

        headers = {"Content-Type": "application/json"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        latencies: list[float] = []
        errors = [0]
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        counter = [0]
        start = time.perf_counter() + 0.05
        deadline = start + seconds

        def next_slot() -> float | None:
            with lock:
                i = counter[0]
                counter[0] += 1
            assert rate is not None
            scheduled = start + i / rate
            return scheduled if scheduled < deadline else None

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(headers=headers, timeout=60.0) as client:
                while True:
                    if rate is None:
                        scheduled = time.perf_counter()
                        if scheduled >= deadline:
                            return
                    else:
                        slot = next_slot()
                        if slot is None:
                            return
                        scheduled = slot
                        time.sleep(max(0.0, scheduled - time.perf_counter()))
                    try:
                        response = client.post(
                            target.url, content=quote_body(rng, target.skus, target.segments)
                        )
                        ok = 200 <= response.status_code < 300
                        kind = str(response.status_code)
                    except httpx.HTTPError:
                        ok, kind = False, "failed"
                    elapsed = time.perf_counter() - scheduled
                    with lock:
                        if ok:
                            latencies.append(elapsed)
                        else:
                            errors[0] += 1
                            statuses[kind] = statuses.get(kind, 0) + 1

        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(seconds + 120)
        elapsed = max(time.perf_counter() - start, 1e-9)
        return _load_from_latencies(self.name, target.name, rate, elapsed, latencies, errors[0],
                                    statuses)  # fmt: skip

    def closed(self, target: Target, connections: int, seconds: float) -> Load:
        """Closed loop with one thread per connection."""
        return self._run(target, connections, seconds, None)

    def open(self, target: Target, rate: float, seconds: float) -> Load:
        """Paced threads taking scheduled slots (16 threads: enough below ~16 x 1/latency)."""
        return self._run(target, 16, seconds, rate)


class Peers(Generator):
    """wrk for the closed loop; asyncio + aiohttp (peers' venv) for the open loop."""

    def __init__(self, python: str | None, wrk: str | None, workdir: Path) -> None:
        self.python = python
        self.wrk = wrk
        self.workdir = workdir
        parts = []
        if wrk:
            parts.append("wrk 4 (closed loop)")
        if python:
            parts.append("asyncio+aiohttp open-loop generator in benchmarks/.venv-peers")
        self.name = " + ".join(parts)
        self._fallback = InProcess()

    def _aiohttp(
        self, target: Target, connections: int, seconds: float, rate: float | None
    ) -> Load:
        assert self.python is not None
        cfg = {"url": target.url, "token": target.token, "skus": target.skus,
               "segments": target.segments, "connections": connections, "duration": seconds,
               "rate": rate, "seed": random.randrange(10**6)}  # fmt: skip
        out = subprocess.run(
            [self.python, "-c", AIOHTTP_LOADGEN, json.dumps(cfg)],
            check=True, capture_output=True, text=True, timeout=seconds + 180,
        )  # fmt: skip
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return _load_from_latencies(
            "aiohttp open loop" if rate else "aiohttp closed loop", target.name, rate,
            float(data["elapsed"]), data["latencies"], int(data["errors"]),
            {str(k): int(v) for k, v in data.get("statuses", {}).items()},
        )  # fmt: skip

    def closed(self, target: Target, connections: int, seconds: float) -> Load:
        """wrk when installed, else the aiohttp generator, else in-process threads."""
        if self.wrk:
            return run_wrk(self.wrk, target, connections, seconds, self.workdir)
        if self.python:
            return self._aiohttp(target, connections, seconds, None)
        return self._fallback.closed(target, connections, seconds)

    def open(self, target: Target, rate: float, seconds: float) -> Load:
        """The aiohttp open-loop generator (64 connections at most), else in-process threads."""
        if self.python:
            return self._aiohttp(target, 64, seconds, rate)
        return self._fallback.open(target, rate, seconds)


def run_wrk(wrk: str, target: Target, connections: int, seconds: float, workdir: Path) -> Load:
    """One closed-loop wrk run (one thread) with random one-line carts."""
    script = workdir / f"wrk-{target.name}.lua"
    lua_list: Callable[[Sequence[str]], str] = lambda xs: ", ".join(f'"{x}"' for x in xs)  # noqa: E731
    script.write_text(
        WRK_LUA.replace("__SKUS__", lua_list(target.skus))
        .replace("__SEGMENTS__", lua_list(target.segments))
        .replace("__TOKEN__", target.token)
        .replace("__PATH__", target.path)
        .replace("__SEED__", str(random.randrange(10**6)))
    )
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
         "-s", str(script), target.base_url],
        check=True, capture_output=True, text=True, timeout=seconds + 120,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    secs = data["duration_us"] / 1e6
    ok = int(data["requests"]) - int(data["errors"])
    return Load("wrk", target.name, None, secs, ok, int(data["errors"]),
                data["p50_us"] / 1000, data["p99_us"] / 1000,
                {str(k): int(v) for k, v in data.get("statuses", {}).items()})  # fmt: skip


def peer_python(install: bool) -> str | None:
    """The peers' interpreter with aiohttp (and py-spy), created on demand when ``install``."""
    python = PEERS / "bin" / "python"
    if not install:
        if python.exists() and _importable(str(python), "aiohttp"):
            return str(python)
        return None
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(PEERS)])
    if not _importable(str(python), "aiohttp") or not (PEERS / "bin" / "py-spy").exists():
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", "aiohttp", "py-spy"])
    return str(python)


def _importable(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server subprocess in its own process group: :meth:`start`, :meth:`wait`, :meth:`stop`."""

    def __init__(
        self, name: str, command: list[str], workdir: Path, env: dict[str, str], port: int
    ) -> None:
        self.name = name
        self.command = command
        self.workdir = workdir
        self.env = env
        self.port = port
        self.log = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the server (uvicorn with one worker serves in this process)."""
        assert self._process is not None, f"{self.name} was not started"
        return self._process.pid

    def start(self) -> Server:
        """Spawn the process (in a new session, so its whole group can be stopped)."""
        with open(self.log, "wb") as handle:
            self._process = subprocess.Popen(
                self.command, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        return self

    def wait(self, timeout: float = 180.0) -> Server:
        """Block until ``/healthz`` answers 200."""
        import httpx

        assert self._process is not None, f"{self.name} was not started"
        deadline = time.monotonic() + timeout
        rebinds = 3
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                if rebinds and "address already in use" in tail and "--port" in self.command:
                    # free_port() only found a port free: another process (a parallel test,
                    # another server) took it before this one bound it. Take another.
                    rebinds -= 1
                    self.port = free_port()
                    self.command[self.command.index("--port") + 1] = str(self.port)
                    self.start()
                    continue
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the process group (idempotent)."""
        if self._process is not None:
            stop(self._process)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTENSOR_FLAGS", "compiledir=/tmp/ptc")
    env["PRICING_LOG_LEVEL"] = "warning"  # no access log line per request (same as the baseline)
    env.update(extra)
    return env


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def engine_server(
    name: str, db: Path | str, workdir: Path, *, updater: bool = False, workers: int = 1,
    **env: str,
) -> Server:  # fmt: skip
    """``pricing-engine serve`` on ``db`` (a SQLite path or a database URL); not started yet."""
    port = free_port()
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    command = [str(ENGINE_CLI), "serve", "--database-url", url,
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if updater:
        command.append("--updater")
    # The per-key rate limit (PRICING_RATE_LIMIT_QUOTES, default 2,000/s per worker) is a
    # protection, not capacity: on a fast host one worker passes it, and its 429s would be
    # counted as the engine's errors. The benchmark measures capacity, so it is off.
    limits = {"PRICING_RATE_LIMIT_QUOTES": "0", "PRICING_RATE_LIMIT_OUTCOMES": "0"}
    return Server(name, command, workdir, _env(**{**limits, **env}), port)


def bare_server(workdir: Path) -> Server:
    """The baseline FastAPI app under the same uvicorn; not started yet."""
    (workdir / "systems_bare.py").write_text(BARE_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "systems_bare:app", "--app-dir", str(workdir),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return Server("bare", command, workdir, _env(), port)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (MiB), from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn with one worker serves in-process; checked)."""
    pids, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        children = Path(f"/proc/{p}/task/{p}/children")
        if children.exists():
            found = [int(c) for c in children.read_text().split()]
            pids += found
            frontier += found
    return pids


@dataclass
class CpuUse:
    """Cores in use during one load run: CPU seconds over wall seconds, from /proc."""

    #: Every process of the server under test (uvicorn and its workers), all threads.
    server: float
    #: The server's main thread (its event loop) when it serves in one process, else None.
    main_thread: float | None
    #: Every PostgreSQL process on the host (0 when none runs).
    postgres: float
    #: Busy cores of the whole host (the load generator and everything else included).
    host: float
    cores: int
    #: The group writers' processes (``pricing-writer``, :mod:`api.writer_process`), part
    #: of ``server``; 0 when the writers commit on a thread of their worker.
    writer: float = 0.0
    #: Bytes the writer processes sent to the disk during the run (``write_bytes`` of
    #: ``/proc/<pid>/io``: the WAL's frames and their fsyncs), and the run's wall seconds.
    writer_written: float = 0.0
    seconds: float = 0.0

    def brief(self) -> str:
        """E.g. ``"server 1.43 (event loop 0.70, writer process 0.31), host 1.55 of 2"``."""
        parts = [f"event loop {self.main_thread:.2f}"] if self.main_thread is not None else []
        if self.writer >= 0.005:
            parts.append(f"writer process {self.writer:.2f}")
        main = f" ({', '.join(parts)})" if parts else ""
        pg = f", PostgreSQL {self.postgres:.2f}" if self.postgres >= 0.005 else ""
        return f"server {self.server:.2f}{main}{pg}, host {self.host:.2f} of {self.cores}"


def _cpu_seconds(stat: Path) -> float:
    """utime + stime of a process or thread (its ``stat`` file), in seconds; 0 if gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def _host_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the host since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


@contextlib.contextmanager
def cpu_use(server_pid: int) -> Iterator[list[CpuUse]]:
    """Measure the cores used while the block runs; the list holds the :class:`CpuUse`
    once the block has ended. Processes of the server or PostgreSQL that start during
    the block count in full (a new database connection's backend); one that ends during
    it is lost."""

    def reading() -> tuple[dict[int, float], dict[int, float], float, tuple[int, int], float, dict[int, int]]:
        tree = _tree_pids(server_pid)
        return ({p: _cpu_seconds(Path(f"/proc/{p}/stat")) for p in tree},
                {p: _cpu_seconds(Path(f"/proc/{p}/stat")) for p in _postgres_pids()},
                _cpu_seconds(Path(f"/proc/{server_pid}/task/{server_pid}/stat")),
                _host_jiffies(), time.perf_counter(),
                {p: _written_bytes(p) for p in tree if _helper(p) == "writer"})  # fmt: skip

    out: list[CpuUse] = []
    before = reading()
    yield out
    after = reading()
    wall = max(after[4] - before[4], 1e-9)

    def used(a: dict[int, float], b: dict[int, float]) -> float:
        return sum(max(0.0, b[p] - a.get(p, 0.0)) for p in b)

    busy = 1.0 - (after[3][1] - before[3][1]) / max(after[3][0] - before[3][0], 1)
    cores = os.cpu_count() or 1
    writers = [p for p in after[0] if _helper(p) == "writer"]
    # The processes that serve, other than the server itself: uvicorn's workers, if any.
    workers = [p for p in after[0] if p != server_pid and _helper(p) is None]
    out.append(CpuUse(
        server=used(before[0], after[0]) / wall,
        main_thread=(after[2] - before[2]) / wall if not workers else None,
        postgres=used(before[1], after[1]) / wall, host=busy * cores, cores=cores,
        writer=used({p: before[0].get(p, 0.0) for p in writers}, {p: after[0][p] for p in writers}) / wall,
        writer_written=float(sum(max(0, n - before[5].get(p, 0)) for p, n in after[5].items())),
        seconds=wall,
    ))  # fmt: skip


def _written_bytes(pid: int) -> int:
    """Bytes a process has caused to be written to storage (``/proc/<pid>/io``); 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _helper(pid: int) -> str | None:
    """"writer" for a group writer's process (a child of its worker), None for anything
    else (a worker)."""
    from api.writer_process import PROCESS_NAME

    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == PROCESS_NAME:
            return "writer"
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- data
def demo_catalog() -> tuple[list[str], dict[str, str]]:
    """The demo's segment keys and SKU -> category."""
    segments = [r["key"] for r in _demo_rows("segments.csv")]
    skus = {r["sku"]: r["category"] for r in _demo_rows("catalog.csv")}
    return segments, skus


def _demo_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("api.demo").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def synthetic_posterior(
    segments: Sequence[str], sku_category: dict[str, str], n_draws: int = 500, seed: int = 0
) -> Any:
    """A posterior of the engine's shape over these segments, SKUs and their categories
    (every segment x category pair fitted), with a known centre, without running PyMC."""
    from pricing.posterior import DemandPosterior

    rng = np.random.default_rng(seed)
    skus = tuple(sku_category)
    categories = tuple(sorted(set(sku_category.values())))
    pairs = tuple((s, c) for s in segments for c in categories)
    d, intercept, log_e, spread = n_draws, -1.0, float(np.log(1.5)), 0.3
    return DemandPosterior(
        segments=tuple(segments), skus=skus, categories=categories, promotions=(),
        sku_category=dict(sku_category), pairs=pairs,
        a_seg=rng.normal(0.0, spread, (d, len(segments))), a_sku=rng.normal(intercept, spread, (d, len(skus))),
        log_e=rng.normal(log_e, spread, (d, len(pairs))), g=np.zeros((d, 0)),
        mu_a=rng.normal(intercept, 0.1, d), sd_a_sku=np.abs(rng.normal(0.5, 0.05, d)),
        sd_a_seg=np.abs(rng.normal(0.3, 0.05, d)), mu_global=rng.normal(log_e, 0.1, d),
        sd_cat=np.abs(rng.normal(0.3, 0.05, d)), sd_seg=np.abs(rng.normal(0.3, 0.05, d)),
        mu_cat=rng.normal(log_e, 0.1, (d, len(categories))), log_weights=np.zeros(d),
        meta={"version": "systems-benchmark"},
    )  # fmt: skip


def publish(db: Path | str, posterior: Any) -> int:
    """Insert a published snapshot row for ``posterior`` (as a fit would); return its id."""
    from api.db import make_engine, make_session_factory
    from api.orm import ModelSnapshot, utcnow

    engine = make_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with make_session_factory(engine)() as session, session.begin():
            row = ModelSnapshot(
                status="published", method="synthetic", approximate=False, config_hash="systems",
                model_config_json={}, sampler_config_json={},
                data_watermark=utcnow() - timedelta(minutes=1), n_cells=1, n_trials=1,
                n_conversions=0, diagnostics={"passed": True}, message="",
                draws=posterior.to_bytes(), log_weights=posterior.log_weights.tobytes(),
                ess=posterior.ess, weights_updated_at=utcnow(),
            )  # fmt: skip
            session.add(row)
            session.flush()
            return int(row.id)
    finally:
        engine.dispose()


def prepare_demo(workdir: Path, url: str | None = None) -> tuple[Path | str, dict[str, str]]:
    """Seeded demo database with a published posterior; keys by role (checkout, analyst,
    merchandiser), all from the CLI. SQLite in ``workdir`` unless ``url`` names a database."""
    db: Path | str = workdir / "demo.db" if url is None else url
    url = url or f"sqlite:///{db}"
    if not url.startswith("sqlite"):
        subprocess.run([str(ENGINE_CLI), "migrate", "--database-url", url], check=True,
                       capture_output=True, env=_env(), timeout=300)  # fmt: skip
    subprocess.run([str(ENGINE_CLI), "seed-demo", "--database-url", url,
                    "--keys-file", str(workdir / "demo-keys.json")], check=True,
                   capture_output=True, env=_env(), timeout=300)  # fmt: skip
    roles = ("checkout", "analyst", "merchandiser")
    procs = {role: subprocess.Popen(
        [str(ENGINE_CLI), "create-key", "--role", role, "--name", f"systems-{role}", "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()) for role in roles}  # fmt: skip
    keys = {}
    for role, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"create-key --role {role} failed: {err.decode()}")
        keys[role] = out.decode().strip().splitlines()[-1]
    segments, skus = demo_catalog()
    publish(db, synthetic_posterior(segments, skus, 500, seed=1))
    return db, keys


def copy_db(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite database (backup API, WAL included)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return target


def prepare_large(workdir: Path, n_skus: int, n_segments: int, n_draws: int) -> dict[str, Any]:
    """Database with ``n_skus`` products in 20 categories and ``n_segments`` segments
    (service functions), a checkout key and a published posterior over all of them."""
    from api.db import make_engine, make_session_factory
    from api.migrate import upgrade
    from api.schemas.catalog import ProductImportItem, SegmentIn
    from api.security import Role
    from api.services import catalog, keys

    db = workdir / "large.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine)
        sessions = make_session_factory(engine)
        segments = [f"seg{i:02d}" for i in range(n_segments)]
        for key in segments:
            with sessions() as session:
                catalog.put_segment(session, key=key, data=SegmentIn(name=key), actor=None)
        rng = np.random.default_rng(3)
        sku_category = {f"SKU-{j:05d}": f"cat{j % 20:02d}" for j in range(n_skus)}
        prices = rng.integers(300, 20_000, n_skus)
        items = [ProductImportItem(sku=sku, name=f"Product {sku}", category=cat, currency="USD",
                                   list_price=f"{p / 100:.2f}", unit_cost=f"{p * 0.55 / 100:.2f}")
                 for (sku, cat), p in zip(sku_category.items(), prices, strict=True)]  # fmt: skip
        started = time.perf_counter()
        with sessions() as session:
            catalog.import_products(session, items=items, actor=None)
        import_seconds = time.perf_counter() - started
        with sessions() as session:
            key = keys.create_key(
                session, name="systems-checkout", role=Role.CHECKOUT, actor=None
            ).key
    finally:
        engine.dispose()
    publish(db, synthetic_posterior(segments, sku_category, n_draws, seed=2))
    print(f"  large catalog: {n_skus:,} products imported in {import_seconds:.1f} s", flush=True)
    return {"db": db, "key": key, "import_s": import_seconds, "skus": list(sku_category),
            "segments": segments, "draws": n_draws}  # fmt: skip


def count_decisions(db: Path) -> int:
    """Rows in the decision log."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        n: int = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
        return n


# --------------------------------------------------------------------------- part 1: quotes
@dataclass
class QuoteResults:
    """Throughput and latency of the engine and the baseline."""

    connections: list[int] = field(default_factory=list)
    engine_max: list[Load] = field(default_factory=list)
    bare_max: list[Load] = field(default_factory=list)
    engine_open: list[Load] = field(default_factory=list)
    bare_open: list[Load] = field(default_factory=list)
    decisions_before: list[int] = field(default_factory=list)
    #: Per open-loop run of the engine: the share of quotes the app itself (its metrics
    #: middleware, from the request reaching the ASGI app to the response) answered within
    #: each histogram bound (seconds).
    engine_inside: list[dict[float, float]] = field(default_factory=list)
    #: The same for the group writer's commit waits (``pricing_writer_commit_wait_seconds``:
    #: each job's seconds from its submission to its commit), per open-loop run.
    engine_waits: list[dict[float, float]] = field(default_factory=list)
    #: Per open-loop run of the engine: the cyclic garbage collector's pauses in the worker
    #: (``pricing_gc_pause_seconds``): seconds in all, collections, full collections.
    engine_gc: list[tuple[float, float, float]] = field(default_factory=list)
    #: Cores in use during each closed-loop and each open-loop run of the engine.
    engine_cpu: list[CpuUse] = field(default_factory=list)
    engine_open_cpu: list[CpuUse] = field(default_factory=list)
    #: The group writer during each closed-loop and each open-loop run of the engine.
    engine_writer: list[WriterUse] = field(default_factory=list)
    engine_open_writer: list[WriterUse] = field(default_factory=list)
    engine_rss_mb: float = float("nan")
    bare_rss_mb: float = float("nan")
    response_bytes: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def _best(runs: Sequence[Load]) -> Load:
        clean = [x for x in runs if x.errors == 0] or list(runs)
        return max(clean, key=lambda x: x.rps)

    @property
    def engine_best(self) -> Load:
        """The engine's best closed-loop run without errors (if any was)."""
        return self._best(self.engine_max)

    @property
    def bare_best(self) -> Load:
        """The baseline's best closed-loop run without errors (if any was)."""
        return self._best(self.bare_max)

    @property
    def engine_rps(self) -> float:
        """Maximum throughput of the engine over the concurrency sweep."""
        return self.engine_best.rps

    @property
    def bare_rps(self) -> float:
        """Maximum throughput of the baseline over the concurrency sweep."""
        return self.bare_best.rps


def _response_size(target: Target) -> int:
    import httpx

    body = quote_body(random.Random(0), target.skus, target.segments)
    headers = {"Content-Type": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    response = httpx.post(target.url, content=body, headers=headers, timeout=30)
    response.raise_for_status()
    return len(response.content)


def run_quotes(
    gen: Generator, engine: Target, bare: Target, db: Path, *, seconds: float,
    connections: Sequence[int], fractions: Sequence[float], engine_pid: int, bare_pid: int,
) -> QuoteResults:  # fmt: skip
    """Max throughput (closed loop at each concurrency, alternating baseline and engine),
    then fixed offered rates as fractions of the engine's maximum."""
    res = QuoteResults(connections=list(connections))
    res.response_bytes = {t.name: _response_size(t) for t in (engine, bare)}
    if seconds >= 5:  # warm-up (skipped in quick runs)
        gen.closed(bare, connections[0], 3.0)
        gen.closed(engine, connections[0], 3.0)
    for n in connections:
        res.bare_max.append(_show(gen.closed(bare, n, seconds), f"{n} conns"))
        res.decisions_before.append(count_decisions(db))
        written = app_writer(engine)
        with cpu_use(engine_pid) as use:
            load = gen.closed(engine, n, seconds)
        res.engine_max.append(_show(load, f"{n} conns"))
        res.engine_cpu.append(use[0])
        res.engine_writer.append(writer_use(written, app_writer(engine), load.seconds))
        print(f"    cores: {use[0].brief()}; {_writer_brief(res.engine_writer[-1])}", flush=True)
        if res.engine_max[-1].errors or res.engine_max[-1].rps < 0.5 * res.engine_rps:
            drain(engine)
    for fraction in fractions if res.engine_rps > 0 else ():
        rate = fraction * res.engine_rps
        before, gc_before, written = app_histogram(engine), app_gc(engine), app_writer(engine)
        waited = app_histogram(engine, COMMIT_WAIT, ())
        with cpu_use(engine_pid) as use:
            load = gen.open(engine, rate, seconds)
        res.engine_open.append(_show(load))
        res.engine_open_cpu.append(use[0])
        res.engine_open_writer.append(writer_use(written, app_writer(engine), load.seconds))
        print(f"    cores: {use[0].brief()}; {_writer_brief(res.engine_open_writer[-1])}", flush=True)
        res.engine_inside.append(inside_shares(before, app_histogram(engine)))
        res.engine_waits.append(inside_shares(waited, app_histogram(engine, COMMIT_WAIT, ())))
        gc_after = app_gc(engine)
        res.engine_gc.append((gc_after[0] - gc_before[0], gc_after[1] - gc_before[1],
                              gc_after[2] - gc_before[2]))
        drain(engine)
        res.bare_open.append(_show(gen.open(bare, rate, seconds)))
    res.engine_rss_mb = rss_mb(engine_pid)[0]
    res.bare_rss_mb = rss_mb(bare_pid)[0]
    return res


def _metrics_lines(target: Target) -> list[str]:
    """The engine's ``/metrics`` exposition, line by line."""
    import httpx

    return httpx.get(target.base_url + "/metrics", timeout=30).text.splitlines()


def app_histogram(
    target: Target, name: str = "pricing_http_request_duration_seconds",
    labels: Sequence[str] = ('route="/v1/quotes"', 'method="POST"'),
) -> dict[float, float]:  # fmt: skip
    """Cumulative count per bound of a histogram in the engine's ``/metrics``: by default
    the quotes' latency (``pricing_http_request_duration_seconds`` of ``POST /v1/quotes``);
    ``labels`` are the ``key="value"`` pairs its lines must carry. Empty when absent."""
    out: dict[float, float] = {}
    for line in _metrics_lines(target):
        if line.startswith(name + "_bucket") and all(label in line for label in labels):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return out


def app_gc(target: Target) -> tuple[float, float, float]:
    """The worker's garbage-collector pauses so far from ``/metrics``
    (``pricing_gc_pause_seconds``): seconds in all, collections, full (generation 2) ones."""
    seconds = count = full = 0.0
    for line in _metrics_lines(target):
        if line.startswith("pricing_gc_pause_seconds_sum"):
            seconds += float(line.rsplit(" ", 1)[1])
        elif line.startswith("pricing_gc_pause_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
            if 'generation="2"' in line:
                full += float(line.rsplit(" ", 1)[1])
    return seconds, count, full


def app_writer(target: Target) -> tuple[float, ...]:
    """The worker's group writer so far, from ``/metrics`` (``pricing_writer_*``):
    transactions, jobs, busy seconds, and the seconds of its transactions as the writer
    saw them and inside the writer process; zeros from a server without them."""
    found = dict.fromkeys(("transactions_total", "jobs_total", "busy_seconds_total",
                           "transaction_seconds_sum", "process_transaction_seconds_sum"), 0.0)  # fmt: skip
    for line in _metrics_lines(target):
        for name in found:
            if line.startswith(f"pricing_writer_{name} "):
                found[name] = float(line.rsplit(" ", 1)[1])
    return tuple(found.values())


@dataclass
class WriterUse:
    """The group writer during one load run: commits, jobs in them, seconds writing."""

    transactions: float
    jobs: float
    busy_seconds: float
    seconds: float
    #: Seconds of the run's transactions as the API process saw them (statements,
    #: commit, and with the writer process the crossing both ways) ...
    transaction_seconds: float = 0.0
    #: ... and inside the writer process (0 without one).
    process_seconds: float = 0.0

    @property
    def jobs_per_transaction(self) -> float:
        return self.jobs / self.transactions if self.transactions else float("nan")

    @property
    def busy_share(self) -> float:
        """Share of the run the writer spent writing."""
        return self.busy_seconds / self.seconds if self.seconds > 0 else float("nan")

    @property
    def commit_ms(self) -> tuple[float, float]:
        """Mean milliseconds per transaction: as the writer saw it, and inside the writer
        process (NaN without one); their difference is the batch's crossing and the API
        process's waits for its GIL."""
        if not self.transactions:
            return float("nan"), float("nan")
        inside = 1000 * self.process_seconds / self.transactions if self.process_seconds else float("nan")
        return 1000 * self.transaction_seconds / self.transactions, inside


def writer_use(before: tuple[float, ...], after: tuple[float, ...], seconds: float) -> WriterUse:
    """The writer's work between two :func:`app_writer` readings."""
    d = [a - b for a, b in zip(after, before, strict=True)]
    return WriterUse(d[0], d[1], d[2], seconds, d[3], d[4])


#: The group writer's histogram of each job's wait for its commit.
COMMIT_WAIT = "pricing_writer_commit_wait_seconds"


def inside_shares(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """Share of the observations between two :func:`app_histogram` reads within each bound."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return {}
    return {bound: (after[bound] - before.get(bound, 0.0)) / total for bound in sorted(after)}


def inside_p99_ms(shares: dict[float, float]) -> float:
    """The smallest histogram bound holding 99 % of the observations (ms; an upper bound on p99)."""
    for bound, share in sorted(shares.items()):
        if share >= 0.99:
            return 1000 * bound
    return float("nan")


def drain(target: Target, limit: float = 60.0) -> float:
    """Wait until a quote is answered within 0.5 s again (requests stuck behind SQLite's
    10 s busy timeout finish first); seconds waited."""
    import httpx

    started = time.perf_counter()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.token}"}
    rng = random.Random(2)
    while time.perf_counter() - started < limit:
        t0 = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.post(target.url, content=quote_body(rng, target.skus, target.segments),
                                  headers=headers, timeout=30)  # fmt: skip
            if response.status_code < 300 and time.perf_counter() - t0 < 0.5:
                break
        time.sleep(0.5)
    return time.perf_counter() - started


def _show(load: Load, label: str = "") -> Load:
    offered = label or "closed loop"
    if load.offered_rps is not None:
        offered = f"offered {load.offered_rps:7.1f}/s"
    print(f"  {load.target:<6} {offered:<18} {load.rps:8.1f} req/s  p50 {load.p50_ms:7.2f} ms  "
          f"p99 {load.p99_ms:8.2f} ms  errors {load.errors}{load.error_kinds}  "
          f"({load.generator}, {load.seconds:.1f} s)",
          flush=True)  # fmt: skip
    return load


# --------------------------------------------------------------------------- profile
@dataclass
class Profile:
    """Summary of py-spy samples."""

    samples: int
    connections: int
    functions: list[tuple[str, float, float]]  # (function, inclusive %, self %) of busy samples
    packages: list[tuple[str, float]]  # (package, self %) of busy samples
    idle_pct: float  # samples of waiting threads, left out of the shares


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[bool]:
    """Record py-spy samples of ``pid`` into ``out`` (raw collapsed stacks) while the block
    runs; yields False (and records nothing) when py-spy is not in the peers' venv."""
    spy = PEERS / "bin" / "py-spy"
    if not spy.exists():
        yield False
        return
    recorder = subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        yield True
    finally:
        if recorder.poll() is None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(recorder)


def profile_quotes(
    gen: Generator, engine: Target, pid: int, seconds: float, connections: int, workdir: Path
) -> Profile | None:
    """py-spy samples of the engine under closed-loop load."""
    out = workdir / "profile-quotes.txt"
    with py_spy(pid, out) as recording:
        if recording:
            gen.closed(engine, connections, seconds)
    if not out.exists():
        print("  no profile (py-spy unavailable or failed)")
        return None
    return summarise_profile(out.read_text(), connections)


#: Innermost frames of a thread that waits (event loop in epoll, worker threads idle).
IDLE_LEAVES = ("EpollSelector.select (selectors.py)", "Condition.wait (threading.py)",
               "Event.wait (threading.py)", "Thread.join (threading.py)")  # fmt: skip
#: Library frames worth naming next to the engine's own (api/, pricing/) in the summary.
LIBRARY_FRAMES = ("SessionTransaction.commit (sqlalchemy/orm/session.py)",
                  "DefaultDialect.do_execute (sqlalchemy/engine/default.py)",
                  "DefaultDialect.do_commit (sqlalchemy/engine/default.py)",
                  "serialize_response (fastapi/routing.py)", "_run_sync_endpoint (fastapi/telemetry/_api.py)",
                  "H11Protocol.data_received (uvicorn/protocols/http/h11_impl.py)",
                  "_BulkORMUpdate._do_post_synchronize_evaluate (sqlalchemy/orm/bulk_persistence.py)")  # fmt: skip


def summarise_profile(raw: str, connections: int = 0, top: int = 16) -> Profile:
    """Inclusive and self share per function, and self share per package, from py-spy's
    collapsed stacks (``frame;frame;... count`` lines).

    Samples whose innermost frame is a wait (:data:`IDLE_LEAVES`) are counted as idle and
    left out; shares are of the remaining (busy) samples. The function list keeps the
    engine's own code (api/, pricing/) and a few library entry points."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    packages: dict[str, int] = {}
    busy = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames[-1] in IDLE_LEAVES:
            idle += count
            continue
        busy += count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        package = _package(frames[-1])
        packages[package] = packages.get(package, 0) + count
    if not busy:
        return Profile(idle, connections, [], [], 100.0 if idle else 0.0)
    rows = [(name, 100 * n / busy, 100 * own.get(name, 0) / busy) for name, n in inclusive.items()
            if _package(name) in ("api", "pricing") or name in LIBRARY_FRAMES]  # fmt: skip
    rows.sort(key=lambda r: -r[1])
    by_package = sorted(((k, 100 * v / busy) for k, v in packages.items()), key=lambda kv: -kv[1])
    return Profile(busy + idle, connections, rows[:top], by_package[:8], 100 * idle / (busy + idle))


def _package(name: str) -> str:
    """Top-level package of a ``function (path)`` frame name (``stdlib`` for the rest)."""
    path = name.rsplit(" (", 1)[-1].rstrip(")")
    head = path.split("/", 1)[0].removesuffix(".py")
    return "stdlib" if head in sys.stdlib_module_names else head


def _frame_name(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


# --------------------------------------------------------------------------- part 2: outcomes
def _post(client: Any, url: str, token: str, body: Any) -> Any:
    response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    if response.status_code >= 300:
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")
    return response.json()


def create_decisions(
    client: Any, base: str, token: str, n: int, skus: Sequence[str], segments: Sequence[str],
    lines_per_quote: int = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """``n`` decisions through 100-line quotes; their quote lines."""
    rng = random.Random(5)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        k = min(lines_per_quote, n - len(out))
        body = {"customer_id": f"bulk-{uuid.uuid4().hex[:12]}", "segment": rng.choice(segments),
                "lines": [{"sku": skus[(len(out) + i) % len(skus)], "quantity": 1} for i in range(k)]}  # fmt: skip
        out += _post(client, base + "/v1/quotes", token, body)["lines"]
    return out


def outcome_items(
    lines: Sequence[dict[str, Any]], rng: random.Random, p: float = 0.3
) -> list[dict[str, Any]]:
    """One outcome per quote line: converted with probability ``p`` at the final price."""
    items = []
    for line in lines:
        if rng.random() < p:
            items.append({"decision_id": line["decision_id"], "converted": True, "quantity": 1,
                          "revenue": line["final_price"]})  # fmt: skip
        else:
            items.append({"decision_id": line["decision_id"], "converted": False})
    return items


def run_outcomes(
    base: str, token: str, batches: int, batch_size: int, *, profile_pid: int | None = None,
    workdir: Path | None = None,
) -> tuple[dict[str, float], Profile | None]:  # fmt: skip
    """Outcomes stored per second through ``POST /v1/outcomes/batch``, one client; with
    ``profile_pid``, three more batches are then posted under py-spy (not timed)."""
    import httpx

    segments, skus = demo_catalog()
    rng = random.Random(11)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post_all(bodies: Sequence[bytes]) -> tuple[list[float], int]:
        times, created = [], 0
        for body in bodies:
            t0 = time.perf_counter()
            response = client.post(base + "/v1/outcomes/batch", content=body, headers=headers)
            times.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise RuntimeError(f"outcome batch: {response.status_code} {response.text[:500]}")
            created += int(response.json()["counts"].get("created", 0))
        return times, created

    def encode(lines: Sequence[dict[str, Any]]) -> list[bytes]:
        return [json.dumps({"outcomes": outcome_items(lines[i:i + batch_size], rng)}).encode()
                for i in range(0, len(lines), batch_size)]  # fmt: skip

    profile = None
    with httpx.Client(timeout=300) as client:
        started = time.perf_counter()
        lines = create_decisions(client, base, token, batches * batch_size, list(skus), segments)
        prepare_s = time.perf_counter() - started
        times, created = post_all(encode(lines))
        if profile_pid is not None and workdir is not None:
            extra = encode(
                create_decisions(client, base, token, 3 * batch_size, list(skus), segments)
            )
            out = workdir / "profile-outcomes.txt"
            with py_spy(profile_pid, out) as recording:
                if recording:
                    post_all(extra)
            if out.exists():
                profile = summarise_profile(out.read_text(), 1)
    total = sum(times)
    result = {"outcomes": float(batches * batch_size), "created": float(created), "seconds": total,
              "per_s": created / total, "batch_p50_ms": 1000 * float(np.median(times)),
              "batch_max_ms": 1000 * max(times), "decisions_s": prepare_s,
              "batch_size": float(batch_size),
              "promoted": float(sum(1 for line in lines if line.get("promotion")))}  # fmt: skip
    print(f"  {created:,} outcomes in {batches} batches of {batch_size:,}: {result['per_s']:,.0f}/s "
          f"(batch median {result['batch_p50_ms']:.0f} ms, max {result['batch_max_ms']:.0f} ms); "
          f"{batches * batch_size:,} decisions created first in {prepare_s:.1f} s, "
          f"{int(result['promoted']):,} of them with a promotion", flush=True)  # fmt: skip
    if profile is not None:
        for name, inc, own in profile.functions[:8]:
            print(f"    {inc:5.1f} % incl  {own:5.1f} % self  {name}")
    return result, profile


# --------------------------------------------------------------------------- part 3: freshness
def run_freshness(
    base: str, keys: dict[str, str], rounds: int, timeout: float = 30.0
) -> dict[str, Any]:
    """Seconds from an outcome batch's acknowledgement until it is applied (``GET /v1/models``)
    and until the worker serves the new weights (guardrail preview's expected conversion)."""
    import httpx

    _segments, skus = demo_catalog()
    probe_segment, probe_sku = "loyalty", next(iter(skus))
    rng = random.Random(17)
    preview = {"rules": [], "skus": [probe_sku], "segments": [probe_segment], "what_if_rounds": 0}
    auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}

    def applied(client: httpx.Client) -> int:
        models = client.get(base + "/v1/models?limit=5", headers=auth["analyst"]).json()
        return int(next(m["applied_outcomes"] for m in models if m["serving"]))

    def served(client: httpx.Client) -> tuple[int | None, float | None]:
        out = client.post(
            base + "/v1/guardrails/preview", json=preview, headers=auth["merchandiser"]
        )
        out.raise_for_status()
        data = out.json()
        return data["model_version"], data["lines"][0]["expected_conversion"]

    db_lag: list[float] = []
    served_lag: list[float] = []
    with httpx.Client(timeout=60) as client:
        deadline = time.monotonic() + 60
        while served(client)[0] is None:  # the worker has loaded the snapshot
            if time.monotonic() > deadline:
                raise RuntimeError("the posterior was never served")
            time.sleep(0.2)
        for _ in range(rounds):
            body = {"customer_id": f"fresh-{uuid.uuid4().hex[:10]}", "segment": probe_segment,
                    "lines": [{"sku": sku, "quantity": 1} for sku in list(skus)[:10]]}  # fmt: skip
            lines = _post(client, base + "/v1/quotes", keys["checkout"], body)["lines"]
            before_applied, before_served = applied(client), served(client)[1]
            outcomes = {"outcomes": outcome_items(lines, rng)}
            _post(client, base + "/v1/outcomes/batch", keys["checkout"], outcomes)
            acked = time.perf_counter()
            t_db = t_served = None
            while (t_db is None or t_served is None) and time.perf_counter() - acked < timeout:
                if t_db is None and applied(client) > before_applied:
                    t_db = time.perf_counter() - acked
                if t_served is None and served(client)[1] != before_served:
                    t_served = time.perf_counter() - acked
                time.sleep(0.02)
            if t_db is None or t_served is None:
                raise RuntimeError(f"outcomes not reflected within {timeout:.0f} s")
            db_lag.append(t_db)
            served_lag.append(t_served)
            print(f"  round {len(served_lag)}: applied after {t_db:.2f} s, served after {t_served:.2f} s",
                  flush=True)  # fmt: skip
        models = client.get(base + "/v1/models?limit=5", headers=auth["analyst"]).json()
        serving = next(m for m in models if m["serving"])
    return {"db": db_lag, "served": served_lag, "ess": serving["ess"],
            "snapshots": len(models), "applied": serving["applied_outcomes"]}  # fmt: skip


# --------------------------------------------------------------------------- part 4: memory
def run_memory(
    gen: Generator, srv: Server, large: dict[str, Any], warm_seconds: float
) -> dict[str, float]:
    """RSS of one API worker with a large catalog and posterior, after some quotes."""
    pids = _tree_pids(srv.pid)
    loaded, _ = rss_mb(srv.pid)
    target = Target("engine", srv.url, large["key"], large["skus"], large["segments"])
    warm = _show(gen.closed(target, 8, warm_seconds), "8 conns")
    if warm.completed == 0:
        raise RuntimeError(f"no quote succeeded on the large catalog; see {srv.log}")
    rss, hwm = rss_mb(srv.pid)
    # The worker's writer process (PRICING_WRITER_PROCESS) is part of the worker's memory.
    writer_rss = sum(rss_mb(p)[0] for p in _tree_pids(srv.pid) if _helper(p) == "writer")
    personalized = _personalized(target)
    n_skus, n_segments = len(large["skus"]), len(large["segments"])
    result = {"skus": float(n_skus), "segments": float(n_segments), "draws": float(large["draws"]),
              "rss_loaded_mb": loaded, "rss_mb": rss, "hwm_mb": hwm, "quotes": float(warm.completed),
              "processes": float(len(pids)), "import_s": large["import_s"],
              "writer_rss_mb": writer_rss, "worker_rss_mb": rss + writer_rss,
              "personalized": float(personalized)}  # fmt: skip
    print(f"  {n_skus:,} SKUs x {n_segments} segments, {large['draws']} draws: RSS {loaded:.0f} MB after start, "
          f"{rss:.0f} MB after {warm.completed:,} quotes (peak {hwm:.0f} MB), its writer process "
          f"{writer_rss:.0f} MB; {len(pids)} process(es); "
          f"personalized quotes: {personalized}", flush=True)  # fmt: skip
    return result


def import_rss_mb(modules: str) -> float:
    """VmRSS (MB) of a fresh interpreter of the engine's venv right after ``import modules``."""
    code = ("import re; import " + modules + "; print(re.search(r'VmRSS:\\s+(\\d+)', "
            "open('/proc/self/status').read()).group(1))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=_env(), timeout=300)  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def imports_module(modules: str, probe: str) -> bool:
    """Whether ``import modules`` in a fresh interpreter of the engine's venv loads ``probe``."""
    code = f"import sys; import {modules}; print({probe!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=_env(), timeout=300)  # fmt: skip
    return out.stdout.split()[-1] == "True"


def lp_cost(n_draws: int = 500, n_candidates: int = 51, repeats: int = 5) -> dict[str, float]:
    """Time and peak allocation of the pacing LP for one quote line whose offer is paced
    (the demo's COFFEE10): a 50-price ladder with the offer plus the best unpaid column."""
    import tracemalloc

    from pricing.pacing import lp_mixture

    rng = np.random.default_rng(0)
    reward = rng.random((n_draws, n_candidates))
    spend = np.concatenate(
        [np.zeros((n_draws, 1)), rng.random((n_draws, n_candidates - 1))], axis=1
    )
    lp_mixture(reward, spend, 0.3)
    started = time.perf_counter()
    for _ in range(repeats):
        lp_mixture(reward, spend, 0.3)
    seconds = (time.perf_counter() - started) / repeats
    tracemalloc.start()
    lp_mixture(reward, spend, 0.3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"ms": 1000 * seconds, "peak_mb": peak / 2**20, "draws": float(n_draws),
            "candidates": float(n_candidates)}  # fmt: skip


def _personalized(target: Target) -> bool:
    import httpx

    body = quote_body(random.Random(1), target.skus, target.segments)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.token}"}
    line = httpx.post(target.url, content=body, headers=headers, timeout=30).json()["lines"][0]
    return bool(line["personalized"]) and not bool(line["fallback"])


# --------------------------------------------------------------------------- report
def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def fill_today(db: Path, n: int, skus: Sequence[str], segments: Sequence[str]) -> float:
    """Insert ``n`` of today's decisions straight into a SQLite database (seconds taken)."""
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rng = random.Random(5)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    columns = ("id", "quote_id", "line_no", "created_at", "expires_at", "customer_id", "segment",
               "sku", "quantity", "currency", "list_price_minor", "price_minor", "unit_cost_minor",
               "propensity", "personalized", "policy", "context", "guardrail_trail", "context_key",
               "discount_minor", "promotion_cost_minor", "promotion_reserved_minor", "settled",
               "redeemed", "learn", "hold_open")  # fmt: skip
    sql = f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        done = 0
        while done < n:
            rows = []
            for _ in range(min(50_000, n - done)):
                at = now - dt.timedelta(seconds=rng.uniform(0, min(now.hour * 3600 + now.minute * 60, 86_000)))
                rows.append((uuid.uuid4().hex, uuid.uuid4().hex, 0, at.strftime(fmt),
                             (at + dt.timedelta(minutes=15)).strftime(fmt), f"h-{rng.randrange(10**9)}",
                             rng.choice(segments), rng.choice(skus), 1, "USD", 2000, rng.randrange(1500, 2200),
                             900, 0.05, 1, "thompson/1", "{}", "{}", "", 0, 0, 0, 0, 0, 1, 0))  # fmt: skip
            conn.executemany(sql, rows)
            done += len(rows)
        conn.commit()
    return time.perf_counter() - started


def single_quote_latencies(target: Target, n: int, rng: random.Random, warmup: int = 0) -> list[float]:
    """Latencies (s) of ``n`` quotes sent one at a time (after ``warmup`` unrecorded ones)."""
    import httpx

    headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
    latencies = []
    with httpx.Client(timeout=30) as client:
        for i in range(n + warmup):
            body = quote_body(rng, target.skus, target.segments)
            start = time.perf_counter()
            client.post(target.url, content=body, headers=headers)
            if i >= warmup:
                latencies.append(time.perf_counter() - start)
    return latencies


def run_log_growth(
    db: Path, keys: dict[str, str], skus: Sequence[str], segments: Sequence[str], workdir: Path,
    n: int, quotes: int = 300, rounds: int = 6,
) -> dict[str, float]:  # fmt: skip
    """Single-quote p50 with ``n`` of today's decisions in the log vs with none.

    Both servers run side by side and take turns, ``quotes / rounds`` quotes at a time, so
    that the machine's drift (this host is shared) falls on both alike.
    """
    out: dict[str, float] = {"decisions": float(n)}
    servers: dict[str, Server] = {}
    try:
        for label, decisions in (("empty", 0), ("full", n)):
            copy = copy_db(db, workdir / f"growth-{label}.db")
            if decisions:
                out["fill_s"] = fill_today(copy, decisions, skus, segments)
            servers[label] = engine_server(f"engine-{label}", copy, workdir).start().wait()
        targets = {label: Target("engine", srv.url, keys["checkout"], list(skus), list(segments))
                   for label, srv in servers.items()}  # fmt: skip
        rngs = {label: random.Random(11) for label in targets}
        latencies: dict[str, list[float]] = {label: [] for label in targets}
        for label, target in targets.items():
            single_quote_latencies(target, 0, rngs[label], warmup=30)
        for _ in range(rounds):
            for label, target in targets.items():
                latencies[label] += single_quote_latencies(target, quotes // rounds, rngs[label])
    finally:
        for srv in servers.values():
            srv.stop()
    for label, decisions in (("empty", 0), ("full", n)):
        out[f"{label}_p50_ms"] = float(np.median(latencies[label]) * 1000)
        print(f"  {decisions:,} decisions today: single-quote p50 {out[f'{label}_p50_ms']:.2f} ms", flush=True)
    out["ratio"] = out["full_p50_ms"] / out["empty_p50_ms"]
    return out


def run_postgres_workers(
    gen: Generator, workdir: Path, seconds: float, connections: Sequence[int]
) -> dict[str, float] | None:
    """Closed-loop quote throughput on PostgreSQL with 1 and 2 API workers, the best run of
    each over ``connections`` (as part 1 takes the best over its sweep: a closed loop with too
    few connections leaves two workers waiting on their commits, not busy); None without a
    server."""
    from sqlalchemy import make_url, text

    from api.db import make_engine

    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"pricing_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"  PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}): skipped")
        admin.dispose()
        return None
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    out: dict[str, float] = {}
    try:
        _db, keys = prepare_demo(workdir, url)
        segments, skus = demo_catalog()
        for workers in (1, 2):
            srv = engine_server(f"engine-pg-{workers}", url, workdir, workers=workers).start().wait()
            try:
                target = Target("engine", srv.url, keys["checkout"], list(skus), segments)
                runs = []
                for n in connections:
                    with cpu_use(srv.pid) as use:
                        load = gen.closed(target, n, seconds)
                    runs.append((load, use[0], n))
                    print(f"  PostgreSQL, {workers} API worker(s), {n} connections: "
                          f"{load.rps:,.0f} req/s, p99 {load.p99_ms:.1f} ms, errors {load.errors}"
                          f"{load.error_kinds}; cores: {use[0].brief()}", flush=True)  # fmt: skip
                    drain(target)
            finally:
                srv.stop()
            clean = [r for r in runs if r[0].errors == 0] or runs
            load, cpu, n = max(clean, key=lambda r: r[0].rps)
            out[f"rps_{workers}"] = load.rps
            out[f"p99_{workers}"] = load.p99_ms
            out[f"connections_{workers}"] = float(n)
            out[f"server_cores_{workers}"] = cpu.server
            out[f"postgres_cores_{workers}"] = cpu.postgres
            out[f"host_cores_{workers}"] = cpu.host
            out["cores"] = float(cpu.cores)
        out["ratio"] = out["rps_2"] / out["rps_1"] if out["rps_1"] else float("nan")
        return out
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def summary_rows(
    quotes: QuoteResults,
    outcomes: dict[str, float],
    fresh: dict[str, Any],
    memory: dict[str, float],
    growth: dict[str, float] | None = None,
    postgres: dict[str, float] | None = None,
) -> list[tuple[str, str, str, bool]]:
    """(metric, target, measured, met) per target."""
    ratio = quotes.engine_rps / quotes.bare_rps if quotes.bare_rps else float("nan")
    fresh_median = float(np.median(fresh["served"]))
    fresh_max = max(fresh["served"])
    best = quotes.connections[quotes.engine_max.index(quotes.engine_best)]
    rows = [
        ("quote throughput, engine / bare FastAPI (closed loop, max req/s over the concurrency sweep)",
         f">= {TARGETS['ratio']:.2f}",
         f"{ratio:.3f} ({_fmt(quotes.engine_rps)} at {best} connections / {_fmt(quotes.bare_rps)} req/s)",
         ratio >= TARGETS["ratio"]),
    ]  # fmt: skip
    crowd = int(TARGETS["errors_at"])
    if crowd in quotes.connections:  # the full sweep (a quick run stops short of it)
        at = quotes.engine_max[quotes.connections.index(crowd)]
        rows.append((f"engine errors (non-2xx or failed requests) at {crowd} connections, closed loop",
                     "0", f"{at.errors}{at.error_kinds} of {at.completed + at.errors:,} ({_fmt(at.rps)} req/s)",
                     at.errors == 0))  # fmt: skip
    if quotes.engine_open:
        half = min(
            quotes.engine_open, key=lambda x: abs((x.offered_rps or 0) - 0.5 * quotes.engine_rps)
        )
        offered = half.offered_rps or 0.0
        errors = f", {half.errors} errors" if half.errors else ""
        rows.append((f"quote p99 at {offered / quotes.engine_rps:.0%} of engine max ({_fmt(offered)} req/s offered)",
                     f"<= {TARGETS['p99_ms']:.0f} ms", f"{half.p99_ms:.1f} ms (p50 {half.p50_ms:.1f} ms{errors})",
                     half.p99_ms <= TARGETS["p99_ms"] and not half.errors))  # fmt: skip
    else:
        rows.append(("quote p99 at 50% of engine max", f"<= {TARGETS['p99_ms']:.0f} ms",
                     "not measured: the engine completed no request", False))  # fmt: skip
    return [
        *rows,
        (f"outcome ingestion, batches of {int(outcomes['batch_size']):,}", f">= {TARGETS['outcomes_per_s']:,.0f}/s",
         f"{_fmt(outcomes['per_s'], 0)}/s", outcomes["per_s"] >= TARGETS["outcomes_per_s"]),
        (f"freshness, ack -> served posterior (median / max of {len(fresh['served'])})",
         f"<= {TARGETS['freshness_s']:.0f} s", f"{fresh_median:.2f} / {fresh_max:.2f} s",
         fresh_max <= TARGETS["freshness_s"]),
        (f"RSS of one API worker, {int(memory['skus']):,} SKUs x {int(memory['segments'])} segments, "
         f"{int(memory['draws'])} draws", f"<= {TARGETS['rss_mb']:.0f} MB",
         f"{memory.get('worker_rss_mb', memory['rss_mb']):.0f} MB"
         + (f" (API process {memory['rss_mb']:.0f} + writer process {memory['writer_rss_mb']:.0f})"
            if memory.get("writer_rss_mb") else ""),
         memory.get("worker_rss_mb", memory["rss_mb"]) <= TARGETS["rss_mb"]),
        *([(f"single-quote p50 with {int(growth['decisions']):,} of today's decisions / with none",
            f"<= {TARGETS['growth']:.1f}",
            f"{growth['ratio']:.2f} ({growth['full_p50_ms']:.2f} / {growth['empty_p50_ms']:.2f} ms)",
            growth["ratio"] <= TARGETS["growth"])] if growth else []),
        *([("quote throughput, 2 API workers / 1 on PostgreSQL (closed loop)", "report",
            f"{postgres['ratio']:.2f} ({_fmt(postgres['rps_2'])}{_at(postgres, 2)} / "
            f"{_fmt(postgres['rps_1'])} req/s{_at(postgres, 1)})" + _postgres_cores(postgres), True)]
          if postgres else []),
    ]  # fmt: skip


def _at(postgres: dict[str, float], workers: int) -> str:
    n = postgres.get(f"connections_{workers}")
    return f" at {n:.0f} connections" if n else ""


def _postgres_cores(postgres: dict[str, float]) -> str:
    """Where the cores went in the two PostgreSQL runs (empty for results without it)."""
    if "server_cores_1" not in postgres:
        return ""
    return ("; cores in use, 1 / 2 workers: workers "
            f"{postgres['server_cores_1']:.2f} / {postgres['server_cores_2']:.2f}, PostgreSQL "
            f"{postgres['postgres_cores_1']:.2f} / {postgres['postgres_cores_2']:.2f}, whole host "
            f"{postgres['host_cores_1']:.2f} / {postgres['host_cores_2']:.2f} of {postgres['cores']:.0f}")  # fmt: skip


def summary_table(rows: Sequence[tuple[str, str, str, bool]]) -> str:
    """Markdown table of targets."""
    out = ["| metric | target | measured | |", "|---|---|---|---|"]
    out += [f"| {m} | {t} | {v} | {'' if t == 'report' else 'met' if ok else '**missed**'} |"
            for m, t, v, ok in rows]  # fmt: skip
    return "\n".join(out)


def sweep_table(quotes: QuoteResults) -> str:
    """Markdown table: closed-loop throughput at each concurrency, both servers."""
    out = ["| connections | baseline req/s | baseline p99 ms | engine req/s | engine p50 ms | engine p99 ms "
           "| engine errors | engine cores: process (event loop) | host busy cores "
           "| writer: quotes per commit (busy; ms per commit / inside the writer process) "
           "| writer process per quote: CPU ms / KB to disk | decisions logged before |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    cpu: list[CpuUse | None] = list(quotes.engine_cpu) or [None for _ in quotes.engine_max]
    writer: list[WriterUse | None] = list(quotes.engine_writer) or [None for _ in quotes.engine_max]
    for n, b, e, d, c, w in zip(quotes.connections, quotes.bare_max, quotes.engine_max,
                                quotes.decisions_before, cpu, writer, strict=True):  # fmt: skip
        out.append(f"| {n} | {b.rps:,.0f} | {b.p99_ms:.1f} | {e.rps:,.1f} | {e.p50_ms:.1f} | {e.p99_ms:,.1f} "
                   f"| {e.errors}{e.error_kinds} | {_process_cores(c)} | {_host_cores(c)} | {_writer_cell(w)} "
                   f"| {_writer_cost(c, w)} | {d:,} |")  # fmt: skip
    return "\n".join(out)


def _writer_brief(use: WriterUse) -> str:
    total, inside = use.commit_ms
    return (f"writer: {use.transactions:,.0f} transactions, {use.jobs_per_transaction:.1f} jobs each, "
            f"busy {use.busy_share:.0%} of the run, {total:.2f} ms each"
            + (f" ({inside:.2f} ms inside the writer process)" if inside == inside else ""))  # fmt: skip


def _writer_cell(use: WriterUse | None) -> str:
    if use is None or not use.transactions:
        return "n/a"
    total, inside = use.commit_ms
    ms = f"; {total:.1f} / {inside:.1f} ms" if inside == inside else f"; {total:.1f} ms"
    return f"{use.jobs_per_transaction:.1f} ({use.busy_share:.0%}{ms})"


def _writer_cost(use: CpuUse | None, writer: WriterUse | None) -> str:
    """The writer process's CPU milliseconds and kilobytes to disk per quote committed."""
    if use is None or writer is None or not writer.jobs or use.writer < 0.005:
        return "n/a"
    cpu_ms = 1000 * use.writer * use.seconds / writer.jobs
    return f"{cpu_ms:.2f} / {use.writer_written / 1024 / writer.jobs:.0f}"


def _process_cores(use: CpuUse | None) -> str:
    if use is None:
        return "n/a"
    main = f" ({use.main_thread:.2f})" if use.main_thread is not None else ""
    return f"{use.server:.2f}{main}"


def _host_cores(use: CpuUse | None) -> str:
    return "n/a" if use is None else f"{use.host:.2f} of {use.cores}"


def latency_table(quotes: QuoteResults) -> str:
    """Markdown table: latency at each offered rate, engine and baseline."""
    out = ["| offered req/s | % of engine max | engine achieved req/s | engine p50 ms | engine p99 ms "
           "| inside the app: p99 within ms | inside the app: share within 10 ms "
           "| GC pauses in the worker: ms (collections, full) | engine cores: process (event loop) "
           "| writer: quotes per commit (busy; ms per commit / inside the writer process) "
           "| writer process per quote: CPU ms / KB to disk | writer: commit wait p99 within ms "
           "| bare p50 ms | bare p99 ms | errors (engine / bare) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    inside = quotes.engine_inside or [{} for _ in quotes.engine_open]
    collector: list[tuple[float, float, float] | None] = (
        list(quotes.engine_gc) or [None for _ in quotes.engine_open])
    cpu: list[CpuUse | None] = list(quotes.engine_open_cpu) or [None for _ in quotes.engine_open]
    writer: list[WriterUse | None] = (list(quotes.engine_open_writer)
                                      or [None for _ in quotes.engine_open])  # fmt: skip
    waits = quotes.engine_waits or [{} for _ in quotes.engine_open]
    for e, b, shares, gc_run, c, w, wait in zip(quotes.engine_open, quotes.bare_open, inside, collector,
                                                cpu, writer, waits, strict=True):  # fmt: skip
        rate = e.offered_rps or 0.0
        within = f"{shares[0.01]:.2%}" if 0.01 in shares else "n/a"
        paused = "n/a" if gc_run is None else f"{1000 * gc_run[0]:.0f} ({gc_run[1]:.0f}, {gc_run[2]:.0f})"
        out.append(f"| {rate:.0f} | {rate / quotes.engine_rps:.0%} | {e.rps:.0f} | {e.p50_ms:.1f} | "
                   f"{e.p99_ms:.1f} | {_fmt(inside_p99_ms(shares), 0)} | {within} | {paused} | {_process_cores(c)} | "
                   f"{_writer_cell(w)} | {_writer_cost(c, w)} | {_fmt(inside_p99_ms(wait), 1) if wait else 'n/a'} | "
                   f"{b.p50_ms:.1f} | {b.p99_ms:.1f} | {e.errors} / {b.errors} |")  # fmt: skip
    return "\n".join(out)


def plot(quotes: QuoteResults, path: Path) -> None:
    """Latency (p50, p99) vs offered load, engine and baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for loads, label, color in (
        (quotes.engine_open, "engine", "C0"),
        (quotes.bare_open, "bare FastAPI", "C1"),
    ):
        x = [x.offered_rps or 0.0 for x in loads]
        ax.plot(x, [x.p99_ms for x in loads], "o-", color=color, label=f"{label} p99")
        ax.plot(x, [x.p50_ms for x in loads], "s--", color=color, label=f"{label} p50")
    ax.axhline(TARGETS["p99_ms"], color="grey", lw=0.8, ls=":", label="p99 target (10 ms)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("latency (ms, from scheduled send)")
    ax.set_title(f"POST /v1/quotes, 1-line carts; engine max {quotes.engine_rps:.0f} req/s "
                 f"(closed loop)", fontsize=10)  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine(load_avg: tuple[float, float, float]) -> str:
    """One line about the machine and its load when the run started."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{platform.machine()} {model}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"load average at start {load_avg[0]:.2f} / {load_avg[1]:.2f} / {load_avg[2]:.2f} (1/5/15 min)")  # fmt: skip


def write_doc(
    rows: Sequence[tuple[str, str, str, bool]], quotes: QuoteResults, outcomes: dict[str, float],
    fresh: dict[str, Any], memory: dict[str, float], profile: Profile | None,
    outcome_profile: Profile | None, lp: dict[str, float],
    gen: Generator, command: str, load_avg: tuple[float, float, float], seconds: float, elapsed: float,
) -> None:  # fmt: skip
    """Replace the systems section of docs/benchmarks.md."""
    lines = [
        BEGIN,
        "## Systems: the HTTP service under load",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; run time {elapsed / 60:.1f} min",
        f"- machine: {machine(load_avg)}; shared, so figures move between runs: ratios are against a baseline "
        "measured in the same run",
        f"- command: `{command}`",
        f"- load generators: {gen.name}; all on 127.0.0.1, sharing the 2 cores with the server under test",
        f"- servers: `pricing-engine serve --workers 1` (uvicorn, SQLite WAL in a temp dir, demo catalog of 30 SKUs x 5 "
        "segments, synthetic 500-draw posterior, `PRICING_LOG_LEVEL=warning`, per-key rate limits off: `PRICING_RATE_LIMIT_QUOTES=0`, `PRICING_RATE_LIMIT_OUTCOMES=0`) and the baseline, a bare FastAPI app "
        "with one async endpoint that parses the body and returns a quote-shaped JSON "
        f"({quotes.response_bytes.get('bare', 0)} bytes vs the engine's {quotes.response_bytes.get('engine', 0)}), "
        f"served by the same uvicorn ({_server_stack()}) with the same log level. Since 2026-12-04 both run "
        "on uvloop and httptools (the engine's dependencies); before, on asyncio and h11: the baseline gains "
        "more from them than the engine (its time is almost all HTTP), so the ratio fell with them "
        "(0.224 -> 0.182 across runs) while the engine's own throughput rose (one A/B run on the same "
        "machine: 493 -> 587 req/s at 16 connections)",
        "",
        summary_table(rows),
        "",
        "### Quotes",
        "",
        f"Maximum throughput: closed loop ({seconds:.0f} s per run) at each concurrency, baseline then engine; the "
        "maximum is the best run without errors. Latency: open loop at fixed rates (fractions of the engine's "
        f"maximum, {seconds:.0f} s each, at most 64 connections), the same absolute rates for both servers; latency "
        "counts from each request's scheduled send time; errors are non-2xx responses, left out of the percentiles.",
        "",
        sweep_table(quotes),
        "",
        latency_table(quotes),
        "",
        f"![latency vs offered load](img/{PLOT.name})",
        "",
        f"RSS after the quote runs: engine {quotes.engine_rss_mb:.0f} MB, baseline {quotes.bare_rss_mb:.0f} MB.",
        "",
    ]
    if profile:
        lines += [
            f"Where the time goes: py-spy (250 Hz, non-blocking; {profile.samples:,} samples of all threads) on the "
            f"engine during a {min(seconds, 10.0):.0f} s closed-loop run at {profile.connections} connections. "
            f"{profile.idle_pct:.0f} % of the samples were threads waiting (event loop in epoll, idle worker threads) "
            "and are left out; the shares below are of the remaining samples: the stack contains the function "
            "(inclusive) or ends in it (self). `_begin` is `BEGIN IMMEDIATE`, i.e. waiting for and taking SQLite's "
            "write lock; `cmd_serve` is the event-loop thread (HTTP parsing, routing, JSON). Self time by package: "
            + ", ".join(f"{k} {v:.0f} %" for k, v in profile.packages)
            + ".",
            "",
            "| function | inclusive % | self % |",
            "|---|---:|---:|",
            *[f"| `{name}` | {inc:.1f} | {own:.1f} |" for name, inc, own in profile.functions],
            "",
            f"The pacing LP alone, timed in-process on a line like the demo's paced `COFFEE10` offer "
            f"({lp['draws']:.0f} draws x {lp['candidates']:.0f} candidates): {lp['ms']:.1f} ms per line and a "
            f"{lp['peak_mb']:.0f} MB peak allocation (`pricing.pacing._single_budget` builds (draws, n, n) float64 "
            "arrays).",
            "",
        ]
    db_median = float(np.median(fresh["db"]))
    lines += [
        "### Outcome ingestion, freshness, memory",
        "",
        f"- ingestion: {int(outcomes['created']):,} outcomes (30 % converted) in batches of "
        f"{int(outcomes['batch_size']):,} for decisions created beforehand through 100-line quotes; one client, "
        f"sequential; batch latency median {outcomes['batch_p50_ms']:.0f} ms, max {outcomes['batch_max_ms']:.0f} ms. "
        f"{int(outcomes['promoted']):,} of the decisions carried a promotion (the demo's `FREESHIP` applies to "
        "every line of a 100-line cart), and each of their outcomes settles the offer (see Findings).",
        *([f"  py-spy over three more batches (not timed; {outcome_profile.idle_pct:.0f} % idle samples left out): "
           + "; ".join(f"`{name}` {inc:.0f} %" for name, inc, _own in outcome_profile.functions[:7]) + " (inclusive)."]
          if outcome_profile else []),
        f"- freshness: `serve --updater`, updater interval 0.5 s, snapshot poll 0.5 s; {len(fresh['served'])} rounds "
        "of 10 outcomes. Applied in the database (`GET /v1/models` `applied_outcomes` moves) after a median of "
        f"{db_median:.2f} s; served by the worker (its in-memory posterior, read through "
        f"`POST /v1/guardrails/preview`) after {float(np.median(fresh['served'])):.2f} s (max {max(fresh['served']):.2f} s). "
        f"Polling every 20 ms. ESS afterwards {fresh['ess']:.0f} of 500; `PRICING_REFIT_ESS_FRACTION={FRESH_ESS_FRACTION}` "
        f"keeps the updater from refitting during the measurement (model versions at the end: {fresh['snapshots']}).",
        f"- memory: {int(memory['skus']):,} SKUs in 20 categories x {int(memory['segments'])} segments (every pair "
        f"fitted), {int(memory['draws'])} draws; VmRSS {memory['rss_loaded_mb']:.0f} MB after start-up with the "
        f"snapshot loaded, {memory['rss_mb']:.0f} MB after {int(memory['quotes']):,} quotes (peak VmHWM "
        f"{memory['hwm_mb']:.0f} MB); uvicorn with one worker serves in-process"
        + (f", and its writer process (`api/writer_process.py`: SQLAlchemy and the write path only) held "
           f"{memory['writer_rss_mb']:.0f} MB" if memory.get("writer_rss_mb") else "")
        + ". For scale, a fresh "
        f"interpreter holds {memory['import_app_mb']:.0f} MB right after `import api.app`, {memory['import_pymc_mb']:.0f} "
        f"MB after `import pymc` alone, and {memory['import_web_mb']:.0f} MB after importing FastAPI, SQLAlchemy, "
        "NumPy, pydantic and uvicorn; `import api.app` "
        + ("loads PyMC although the API worker never fits. " if memory.get("app_imports_pymc")
           else "does not load PyMC (fits import it when they run). ")
        + "Catalog import of "
        f"{int(memory['skus']):,} products through `catalog.import_products`: {memory['import_s']:.1f} s.",
        "",
        *findings(quotes)[:-1],
        *ingestion_findings(outcomes),
        "",
        END,
    ]  # fmt: skip
    replace_section(BEGIN, END, "\n".join(lines))


def _server_stack() -> str:
    """Which event loop and HTTP parser uvicorn picks here ("auto": the C ones when installed)."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop}, {http}"


def findings(quotes: QuoteResults) -> list[str]:
    """What the run shows about the engine, with the evidence this run produced."""
    first, last = quotes.engine_max[0], quotes.engine_max[-1]
    errors = sum(x.errors for x in quotes.engine_max) + sum(x.errors for x in quotes.engine_open)
    per_quote_ms = 1000.0 / quotes.engine_rps if quotes.engine_rps > 0 else float("nan")
    return [
        "### Findings",
        "",
        "- The quote path reads no table that grows with traffic: the cart's context comes from the worker's "
        "in-memory state (`api/hot/`), the decision from the pure `price_cart` (`pricing/cart.py`), and the "
        "rows go to the worker's group writer (`api/writer.py`), which commits every ready quote in one "
        "transaction before any of their responses is released. Nothing on the path reads the database: "
        "the sticky-quote check of customers this worker's map does not know is one indexed read per writer "
        "batch (`_check_sticky` in `api/services/quote_writes.py`). A Thompson decision samples the line's "
        "action distribution, computed once per posterior (`pricing/choices.py`). The log-growth row above "
        "measures that the cost does not depend on the day's traffic (both servers take turns, so the "
        "host's drift falls on both).",
        _throughput_finding(quotes, per_quote_ms)
        + " More connections add queueing once that is spent "
        f"({first.rps:,.0f} req/s, p99 {first.p99_ms:,.0f} ms at {quotes.connections[0]} connections; "
        f"{last.rps:,.0f} req/s, p99 {last.p99_ms:,.0f} ms at {quotes.connections[-1]}). The bare endpoint does "
        "none of this work, so the 0.6 target is not met by one worker; several API workers (processes) are "
        "the way past it, and part 6 measures that on PostgreSQL (its row above says where the cores went). "
        f"Non-2xx responses from the engine in this run: {errors:,}.",
        *_inside_finding(quotes),
        "",
    ]


def _throughput_finding(quotes: QuoteResults, per_quote_ms: float) -> str:
    """What bounds one worker's throughput, from the cores its best run used."""
    best = quotes.engine_max.index(quotes.engine_best)
    use = quotes.engine_cpu[best] if len(quotes.engine_cpu) == len(quotes.engine_max) else None
    work = (
        "the event loop (HTTP parsing by uvicorn's httptools on uvloop; the quote's validation, "
        "authentication and rate limit in `api/fast_path.py`, the app's outermost layer, which skips "
        "FastAPI's middlewares, routing and dependencies; the decision; the response; with `PRICING_WRITER_PROCESS` and `PRICING_WRITER_ON_LOOP`, the "
        "defaults, the group writer's batching too: the loop hands each batch to the worker's writer "
        "process, which runs the statements and the commit on a core of its own) and the background "
        "threads (the refresher's reads; with `PRICING_PACING_PROCESS`, the default, the pacing LP's "
        "re-solves run in a child process of their own and the thread only waits for them)"
    )
    if use is None or use.main_thread is None:
        return (f"- Throughput is bounded by CPU in one Python process: {quotes.engine_rps:,.0f} req/s at "
                f"best is about {per_quote_ms:.1f} ms of interpreter time per quote, shared by {work}.")  # fmt: skip
    spare = use.cores - use.host
    api = use.server - use.writer
    split = (
        f"the API process {api:.2f} (its event-loop thread {use.main_thread:.2f}) and the writer process "
        f"{use.writer:.2f}" if use.writer >= 0.005
        else f"its event-loop thread {use.main_thread:.2f}, the writer and background threads the rest"
    )  # fmt: skip
    if api < 1.25 and spare >= 0.3:
        bound = (
            f"the bound is the interpreter, not the host: at its best run the worker used {use.server:.2f} "
            f"cores ({split}) while the host had {spare:.2f} of its {use.cores} cores idle (load generator "
            "included). Python runs one thread's bytecode at a time (the GIL), so the threads of the API "
            "process add up to about one core however many the host has"
            + ("; the writer process takes the statements and the commit off that core" if use.writer >= 0.005
               else "")
        )  # fmt: skip
    else:
        bound = (
            f"at its best run the worker used {use.server:.2f} cores ({split}) and the host "
            f"{use.host:.2f} of {use.cores}: the host's cores, shared with the load generator, were the bound"
        )
    return (f"- {quotes.engine_rps:,.0f} req/s at best is about {per_quote_ms:.2f} ms of one worker's time "
            f"per quote, shared by {work}; {bound}.")  # fmt: skip


def ingestion_findings(outcomes: dict[str, float]) -> list[str]:
    """How an outcome batch is stored, with this run's figures."""
    per_outcome_us = 1000.0 * outcomes["batch_p50_ms"] / max(outcomes["batch_size"], 1.0)
    return [
        f"- Outcome ingestion: a median batch of {int(outcomes['batch_size']):,} took "
        f"{outcomes['batch_p50_ms']:.0f} ms end to end (about {per_outcome_us:.0f} µs an outcome: the client's "
        "request, body validation, the writer's transaction, the response). The writer does a fixed number of "
        "statements per batch, on the driver (`api/services/raw_sql.py`: no SQLAlchemy processing per value): "
        "one read of the batch's decisions, one multi-row insert, and for promoted offers the settlement's "
        "updates (decision flags on the driver, then the promotion's running totals). New row ids are "
        "time-ordered (UUIDv7), so a batch's index entries land on the last pages of each index, and SQLite's "
        "WAL checkpoint runs on a thread of its own every `PRICING_SQLITE_CHECKPOINT_SECONDS`: inside a commit "
        "it stalled that commit, and every request waiting on it, for 17-34 ms on a quiet disk. The response is "
        "written from templates (byte-identical to the response model, tested). What remains per outcome is "
        "spread thin: FastAPI's JSON parse and validation of the body, reading and inserting the rows, "
        "the response.",
    ]


def _inside_finding(quotes: QuoteResults) -> list[str]:
    """Where the open-loop p99 is spent: inside the app or before it sees the request."""
    if not quotes.engine_inside or not quotes.engine_open:
        return []
    half = min(range(len(quotes.engine_open)), key=lambda i: abs(
        (quotes.engine_open[i].offered_rps or 0) - 0.5 * quotes.engine_rps))  # fmt: skip
    shares, load = quotes.engine_inside[half], quotes.engine_open[half]
    if 0.01 not in shares:
        return []
    inside = inside_p99_ms(shares)
    head = (
        f"- At {load.offered_rps:,.0f} req/s offered (50 % of the maximum), the app itself answered "
        f"{shares[0.01]:.2%} of the quotes within 10 ms (p99 within {_fmt(inside, 0)} ms, measured by "
        "its metrics middleware from the request reaching the ASGI app to the response), while the "
        f"clients saw p99 {load.p99_ms:,.0f} ms: "
    )
    waits = quotes.engine_waits[half] if len(quotes.engine_waits) == len(quotes.engine_open) else {}
    waited = inside_p99_ms(waits) if waits else float("nan")
    if inside == inside and inside >= 0.5 * load.p99_ms and waited == waited:
        # Both histograms have the same bounds (api.writer.LATENCY_BOUNDS).
        commit_share = waited / inside
        where = (
            f"the tail is inside the app, and {'most' if commit_share >= 0.5 else 'little'} of it is "
            f"the wait for the group commit: each quote waited p99 within {_fmt(waited, 1)} ms "
            "from its hand-over to the writer until its rows were committed "
            "(`pricing_writer_commit_wait_seconds`: the linger that lets a batch fill, the "
            "transaction in progress, then its own statements and the flush to disk)"
            + (", the rest is the interpreter (the event loop and the worker's other threads share "
               "one GIL, and 2 cores with the load generator)." if commit_share < 0.5 else ".")
        )  # fmt: skip
    elif inside == inside and inside >= 0.5 * load.p99_ms:  # nan: p99 beyond the last bound
        where = (
            "the tail is inside the app: a request waits there for the interpreter (the event loop "
            "and the worker's other threads share one GIL, and 2 cores with the load generator) or for "
            "the group commit (a server without `pricing_writer_commit_wait_seconds` cannot say "
            "which)."
        )
    else:
        where = (
            "most of the tail is spent before the app sees a request (uvicorn's HTTP parsing and "
            "the event loop waiting for a core or the GIL, on 2 cores shared with the load "
            "generator and the writer), not in pricing or the commit."
        )
    best = quotes.engine_max.index(quotes.engine_best)
    if len(quotes.engine_open_cpu) == len(quotes.engine_open) and len(quotes.engine_cpu) == len(
        quotes.engine_max
    ):
        at_half, at_best = quotes.engine_open_cpu[half].server, quotes.engine_cpu[best].server
        where += (
            f" At this rate the worker's threads used {at_half:.2f} cores, {at_half / at_best:.0%} of "
            f"what they used at the maximum ({at_best:.2f}): half the quotes are not half the work."
        )
        if len(quotes.engine_open_writer) == len(quotes.engine_open) and len(
            quotes.engine_writer
        ) == len(quotes.engine_max):
            w_half, w_best = quotes.engine_open_writer[half], quotes.engine_writer[best]
            where += (
                f" The writer committed {w_half.jobs_per_transaction:.1f} quotes per transaction here "
                f"and was busy {w_half.busy_share:.0%} of the time, against "
                f"{w_best.jobs_per_transaction:.1f} and {w_best.busy_share:.0%} at the maximum: it "
                "writes whatever has arrived as soon as one commits, so at a lower rate each quote "
                "carries more of a transaction's cost."
            )
            total, inside = w_half.commit_ms
            if inside == inside:
                where += (
                    f" A transaction took {total:.1f} ms as the API process saw it and {inside:.1f} ms "
                    "inside the writer process (`pricing_writer_process_transaction_seconds`): the "
                    f"{total - inside:.1f} ms between is the batch waiting in the writer process's socket for the commit "
                    "before it, the crossing both ways and its answer waiting for the event loop's turn; "
                    "the time inside includes waiting for a core on a host that also runs the load."
                )
            if len(quotes.engine_open_cpu) == len(quotes.engine_open) and len(
                quotes.engine_cpu
            ) == len(quotes.engine_max):
                half_cost = _writer_cost(quotes.engine_open_cpu[half], w_half)
                best_cost = _writer_cost(quotes.engine_cpu[best], w_best)
                if half_cost != "n/a" and best_cost != "n/a":
                    where += (
                        f" Per quote the writer process spent {half_cost.replace(' / ', ' ms of CPU and wrote ')} KB "
                        f"to disk here ({best_cost.replace(' / ', ' ms and ')} KB at the maximum): "
                        "SQLite's WAL takes whole 4 KB pages, and a decision row dirties the table's "
                        "last page, a page of each of its six secondary indexes (two of them, customer "
                        "× SKU and SKU × time, at places that differ from row to row), the day's "
                        "per-SKU price row and the quote's other rows; the more quotes share a "
                        "transaction, the more of those pages they share. The writer's cost per "
                        "quote, not the API process's, sets how long each commit takes, and each "
                        "commit's length sets how many quotes wait for the next one."
                    )
    return [head + where]


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, a few seconds per part, no document, installs nothing")  # fmt: skip
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per load run (default 15; 1 with --quick)")  # fmt: skip
    parser.add_argument("--generator", choices=["auto", "inprocess"], default="auto",
                        help="auto: wrk and the peers' aiohttp generator when available")  # fmt: skip
    args = parser.parse_args(argv)
    quick = args.quick
    seconds = args.duration or (1.0 if quick else 15.0)
    load_avg = os.getloadavg()
    started = time.perf_counter()
    print(f"systems benchmark ({'quick' if quick else 'full'}); {machine(load_avg)}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="pricing-systems-"))
    servers: list[Server] = []

    def launch(srv: Server) -> Server:
        servers.append(srv)
        return srv.start()

    try:
        if args.generator == "inprocess":
            gen: Generator = InProcess()
        else:
            python = peer_python(install=not quick)
            wrk = shutil.which("wrk")
            gen = Peers(python, wrk, workdir) if (python or wrk) else InProcess()
        if isinstance(gen, InProcess):
            print("load generator: no wrk or peers' venv available: falling back to the in-process "
                  "httpx-threads generator (it shares this process's GIL; figures are indicative)")  # fmt: skip
        elif isinstance(gen, Peers) and not gen.python:
            print(f"load generator: {gen.name}; open loop falls back to in-process httpx threads")
        else:
            print(f"load generator: {gen.name}")

        db, keys = prepare_demo(workdir)
        assert isinstance(db, Path)
        fresh_db = copy_db(db, workdir / "fresh.db")  # before part 1 logs anything
        segments, skus = demo_catalog()
        large = prepare_large(workdir, *((200, 5) if quick else (10_000, 20)), 500)
        bare = launch(bare_server(workdir))
        eng = launch(engine_server("engine", db, workdir))
        upd = engine_server("engine-updater", fresh_db, workdir, updater=True,
                            PRICING_UPDATER_INTERVAL_SECONDS="0.5", PRICING_SNAPSHOT_POLL_SECONDS="0.5",
                            PRICING_REFIT_ESS_FRACTION=str(FRESH_ESS_FRACTION))  # fmt: skip
        big = engine_server("engine-large", large["db"], workdir)
        if quick:  # start every server at once: quick timings mean nothing anyway
            launch(upd)
            launch(big)
        bare.wait()
        eng.wait()

        print(f"[1/4] quotes: engine vs bare FastAPI ({seconds:.1f} s per run)", flush=True)
        engine_t = Target("engine", eng.url, keys["checkout"], list(skus), segments)
        bare_t = Target("bare", bare.url, "", list(skus), segments)
        quotes = run_quotes(
            gen, engine_t, bare_t, db, seconds=seconds,
            connections=(8,) if quick else CONNECTIONS, fractions=(0.5,) if quick else LOAD_FRACTIONS,
            engine_pid=eng.pid, bare_pid=bare.pid,
        )  # fmt: skip
        profile = None
        if not quick:
            print("  profiling the quote path (py-spy)...", flush=True)
            best = quotes.connections[quotes.engine_max.index(quotes.engine_best)]
            drain(engine_t)
            profile = profile_quotes(gen, engine_t, eng.pid, min(seconds, 10.0), best, workdir)
            if profile is not None:
                for name, inc, own in profile.functions:
                    print(f"    {inc:5.1f} % incl  {own:5.1f} % self  {name}")
                print(
                    "    self time by package: "
                    + ", ".join(f"{k} {v:.0f} %" for k, v in profile.packages)
                )
        print("[2/4] outcome ingestion", flush=True)
        drain(engine_t)
        outcomes, outcome_profile = run_outcomes(
            eng.url, keys["checkout"], 2 if quick else 10, 200 if quick else 1000,
            profile_pid=None if quick else eng.pid, workdir=workdir,
        )  # fmt: skip
        bare.stop()
        eng.stop()

        print("[3/4] freshness (serve --updater)", flush=True)
        if not quick:
            launch(upd)
        fresh = run_freshness(upd.wait().url, keys, 1 if quick else 5)
        upd.stop()

        print("[4/4] memory", flush=True)
        if not quick:
            launch(big)
        memory = run_memory(gen, big.wait(), large, seconds if quick else min(seconds, 10.0))
        big.stop()
        lp: dict[str, float] = {}
        if not quick:
            memory["import_app_mb"] = import_rss_mb("api.app")
            memory["import_pymc_mb"] = import_rss_mb("pymc")
            memory["import_web_mb"] = import_rss_mb("fastapi, sqlalchemy, numpy, pydantic, uvicorn")
            memory["app_imports_pymc"] = float(imports_module("api.app", "pymc"))
            print(f"  RSS right after import: api.app {memory['import_app_mb']:.0f} MB, pymc "
                  f"{memory['import_pymc_mb']:.0f} MB, fastapi+sqlalchemy+numpy+pydantic+uvicorn "
                  f"{memory['import_web_mb']:.0f} MB")  # fmt: skip
            lp = lp_cost()
            print(f"  pacing LP for one paced line ({lp['draws']:.0f} draws x {lp['candidates']:.0f} candidates): "
                  f"{lp['ms']:.1f} ms, peak allocation {lp['peak_mb']:.0f} MB")  # fmt: skip

        print("[5/6] log growth: one quote at a time, today's log empty vs full", flush=True)
        growth = run_log_growth(db, keys, list(skus), segments, workdir, 2_000 if quick else 1_000_000)
        postgres = None
        if not quick:
            print("[6/6] PostgreSQL: 1 vs 2 API workers", flush=True)
            postgres = run_postgres_workers(gen, workdir, seconds, (32,) if quick else POSTGRES_CONNECTIONS)
        rows = summary_rows(quotes, outcomes, fresh, memory, growth, postgres)
        elapsed = time.perf_counter() - started
        print()
        print(summary_table(rows))
        print()
        print(sweep_table(quotes))
        print()
        print(latency_table(quotes))
        print(f"\nrun time {elapsed:.0f} s")
        if not (quick or args.no_doc):
            plot(quotes, PLOT)
            command = "python -m benchmarks.systems" + "".join(
                f" {a}" for a in (argv if argv is not None else sys.argv[1:])
            )
            write_doc(rows, quotes, outcomes, fresh, memory, profile, outcome_profile, lp, gen, command,
                      load_avg, seconds, elapsed)  # fmt: skip
            print(f"wrote {PLOT.relative_to(ROOT)} and the systems section of docs/benchmarks.md")
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
