"""operations: what metering and logging cost per invocation, and how fast one host drains asynchronous events.

Metering and logging, in-process: the C echo through ``Host.invoke`` on one
Host in three variants, in alternating order, in blocks of about a second
(full run; half a second for ``--quick``):

* ``metering`` — the host as it is: every invocation is appended to the
  telemetry store (``TelemetryStore.record``), which a background thread writes
  to SQLite every 200 ms; the invocation logger is quiet (the host's default
  in-process: logging is not configured);
* ``metering+logs`` — the same with the invocation logs printed, as
  ``wasmhost serve`` does at its default ``--log-level info`` (START, END and
  REPORT lines through Python logging; written to ``/dev/null`` here);
* ``neither`` — ``host.telemetry`` replaced by an object that records nothing.

Each block ends with ``telemetry.flush()`` inside its timing, so the block pays
for writing every record it made (the flush thread's work, every 200 ms or
5,000 records) and leaves nothing for the next block. Figures per invocation: wall time, and CPU time of the
whole process (``time.process_time``: the flush thread's CPU included — it
partly runs on the other core, so wall time understates what it costs a busy
server). Ratios are per round, against ``neither``. Then the cost of metering
taken apart on a store of its own: ``record()`` per call, ``flush()`` per record.

The same through HTTP: two servers with one worker (uvicorn ``--factory``, the
same command but for the factory), the host's and one whose ``host.telemetry``
records nothing (:func:`app_without_metering`); wrk POSTs the echo event at
c=32, alternating; server CPU per request from ``/proc`` (process tree).

Asynchronous invocations: the C echo is deployed on a fresh data directory,
N events are put in its queue (``events.db``) before the server starts, then
``wasmhost serve --workers 2`` drains it; the queue's depth is polled every
20 ms from the spawn. Drain rate = events done from the first poll that saw
one done until the queue is empty, over that time. Then, on the same server,
wrk POSTs events with ``X-Wasmhost-Invocation-Type: Event`` at c=16 (each
202 is an event fsynced to the queue, while the two workers drain it).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import msgpack

from wasmhost import Host
from wasmhost.asyncq import EventQueue, NewEvent
from wasmhost.telemetry.store import TelemetryStore

from ..context import DIST, ROOT, BenchContext
from ..load import POST_SCRIPT, parse_wrk
from ..procs import descendants, free_port, port_accepts, stop
from ..stats import alternating, ratios, summarize
from ..workspace import ECHO_CONFIG, IN_PROCESS_EVENT

SIZES = {
    "tiny": {
        "rounds": 2, "block_s": 0.1, "breakdown_n": 2000,
        "http_rounds": 1, "http_seconds": 1, "http_warmup": False,
        "events": 1000, "drain_reps": 1, "enqueue_seconds": 1,
    },
    "quick": {
        "rounds": 3, "block_s": 0.5, "breakdown_n": 20000,
        "http_rounds": 2, "http_seconds": 1, "http_warmup": True,
        "events": 5000, "drain_reps": 2, "enqueue_seconds": 1,
    },
    "full": {
        "rounds": 5, "block_s": 1.0, "breakdown_n": 50000,
        "http_rounds": 3, "http_seconds": 2, "http_warmup": True,
        "events": 20000, "drain_reps": 3, "enqueue_seconds": 2,
    },
}  # fmt: skip
VARIANTS = ("metering", "metering+logs", "neither")
SERVERS = ("metering", "neither")
FUNCTION = "echo"
HTTP_CONCURRENCY = 32
ENQUEUE_CONCURRENCY = 16
POLL_S = 0.02
DRAIN_TIMEOUT_S = 300.0
CALIBRATION_S = 0.2
WRK_MISSING = "wrk is not installed: apt-get install wrk (`make bench` does it)"
EVENT_SCRIPT = """-- wrk script: POST the echo event as an asynchronous invocation (answered 202 once queued).
wrk.method = "POST"
wrk.body = '{"name":"world","n":42,"tags":["a","b"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Wasmhost-Invocation-Type"] = "Event"
"""


class NoTelemetry:
    """Stands in for the host's ``TelemetryStore``: records nothing (the ``neither`` variant)."""

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass

    pending: tuple[Any, ...] = ()

    def append(self, row: Any) -> None:
        pass

    def pack(self) -> None:
        pass

    def record_throttle(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def app_without_metering() -> Any:
    """``uvicorn --factory`` app: wasmhost's own (``app_from_env``) with a telemetry store that records nothing."""
    from wasmhost.server.app import app_from_env

    app = app_from_env()
    app.host.telemetry.close()
    app.host.telemetry = NoTelemetry()  # type: ignore[assignment]
    return app


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    return {
        "in_process": in_process(ctx, size),
        "http": server_metering(ctx, size),
        "async": async_throughput(ctx, size),
    }


# --- metering and logging, in-process ---------------------------------------------


def in_process(ctx: BenchContext, size: dict) -> dict[str, Any]:
    echo = (DIST / "echo.wasm").read_bytes()
    wall: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-ops-") as data, Host(data_dir=data) as host:
        host.deploy(FUNCTION, echo, ECHO_CONFIG)
        store = host.telemetry
        n: dict[str, int] = {}
        for variant in VARIANTS:  # warm up, and size the blocks: about block_s each
            with _variant(host, variant, store):
                _block(host, 500)
                per_invocation_s = _block(host, _count_in(host, CALIBRATION_S))[0] / 1e6
            n[variant] = max(100, round(size["block_s"] / per_invocation_s))
        for round_index in range(size["rounds"]):
            order = alternating(VARIANTS, round_index)
            ctx.progress(f"round {round_index + 1}/{size['rounds']}: {', '.join(f'{v} ×{n[v]}' for v in order)}")
            for variant in order:
                with _variant(host, variant, store):
                    block_wall, block_cpu = _block(host, n[variant])
                wall[variant].append(block_wall)
                cpu[variant].append(block_cpu)
        ctx.progress(f"metering taken apart: record() and flush() of {size['breakdown_n']} records")
        breakdown = _metering_breakdown(host, Path(data) / "breakdown.db", size["breakdown_n"])
    return {
        "per_invocation_us": {variant: summarize(wall[variant]) for variant in VARIANTS},
        "cpu_per_invocation_us": {variant: summarize(cpu[variant]) for variant in VARIANTS},
        "ratios": {f"{variant} / neither": ratios(wall[variant], wall["neither"]) for variant in VARIANTS[:-1]},
        "cpu_ratios": {f"{variant} / neither": ratios(cpu[variant], cpu["neither"]) for variant in VARIANTS[:-1]},
        "breakdown": breakdown,
        "invocations_per_block": n,
        "block_s": size["block_s"],
        "rounds": size["rounds"],
    }


@contextmanager
def _variant(host: Host, variant: str, store: Any) -> Iterator[None]:
    """``host`` set up as ``variant``: its telemetry store or none; invocation logs printed or not."""
    host.telemetry = NoTelemetry() if variant == "neither" else store  # type: ignore[assignment]
    try:
        if variant == "metering+logs":
            with _printed_logs():
                yield
        else:
            yield
    finally:
        host.telemetry = store


@contextmanager
def _printed_logs() -> Iterator[None]:
    """The ``wasmhost`` logger at INFO with a plain ``%(message)s`` handler, as ``wasmhost serve`` sets it up
    (bench/../wasmhost/server/run.py ``log_config``), writing to ``/dev/null`` instead of stderr."""
    logger = logging.getLogger("wasmhost")
    saved_level, saved_propagate = logger.level, logger.propagate
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved_level)
            logger.propagate = saved_propagate


def _count_in(host: Host, seconds: float) -> int:
    """How many echo invocations fit in ``seconds`` (at least 10)."""
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or count < 10:
        _check(host.invoke(FUNCTION, IN_PROCESS_EVENT))
        count += 1
    return count


def _block(host: Host, n: int) -> tuple[float, float]:
    """``n`` echo invocations then a flush of the telemetry they made: (wall µs, process CPU µs) per invocation."""
    invoke, event = host.invoke, IN_PROCESS_EVENT
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(n):
        result = invoke(FUNCTION, event)
        if result.error is not None:
            _check(result)
    host.telemetry.flush()  # this block's records written on its own time, none left for the next block
    wall_us = (time.perf_counter() - wall_started) * 1e6 / n
    cpu_us = (time.process_time() - cpu_started) * 1e6 / n
    return wall_us, cpu_us


def _check(result: Any) -> None:
    if result.error is not None:
        raise RuntimeError(f"echo failed: {result.error.type}: {result.error.message}")


def _metering_breakdown(host: Host, path: Path, n: int) -> dict[str, Any]:
    """CPU µs of ``TelemetryStore.record`` per call and of ``flush`` per record, on a store of its own
    (its flush thread kept idle, so that all the writing happens in the timed ``flush``)."""
    result = host.invoke(FUNCTION, IN_PROCESS_EVENT)
    _check(result)
    with TelemetryStore(path, flush_interval_s=3600, max_buffer=10 * n) as store:
        started_at = time.time()
        cpu_started = time.process_time()
        for _ in range(n):
            store.record(result, version="$LATEST", started_at=started_at)
        recorded = time.process_time()
        store.flush()
        flushed = time.process_time()
    return {
        "records": n,
        "record_cpu_us": (recorded - cpu_started) * 1e6 / n,
        "flush_cpu_us_per_record": (flushed - recorded) * 1e6 / n,
    }


# --- metering through HTTP ----------------------------------------------------------


def server_metering(ctx: BenchContext, size: dict) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"unavailable": WRK_MISSING}
    runs: dict[str, list[dict[str, Any]]] = {server: [] for server in SERVERS}
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-ops-http-") as data, ExitStack() as stack:
        _deploy_echo(Path(data))
        ctx.progress(f"starting {len(SERVERS)} servers (1 worker each): {', '.join(SERVERS)}")
        ports = {server: free_port() for server in SERVERS}
        urls = {server: f"http://127.0.0.1:{ports[server]}/invoke/{FUNCTION}" for server in SERVERS}
        processes: dict[str, subprocess.Popen] = {}
        for server in SERVERS:
            port = ports[server]
            factory = "wasmhost.server.app:app_from_env" if server == "metering" else f"{__name__}:app_without_metering"
            command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port)]
            command += ["--no-access-log", "--log-level", "warning"]
            processes[server] = stack.enter_context(_spawned(command, {"WASMHOST_DATA_DIR": data}))
        for server in SERVERS:
            _wait_for_port(processes[server], ports[server])
            if size["http_warmup"]:
                _wrk(urls[server], HTTP_CONCURRENCY, 1, POST_SCRIPT)
        for round_index in range(size["http_rounds"]):
            order = alternating(SERVERS, round_index)
            ctx.progress(f"round {round_index + 1}/{size['http_rounds']}, c={HTTP_CONCURRENCY}: {', '.join(order)}")
            for server in order:
                cpu_before = tree_cpu_s(processes[server].pid)
                load = _wrk(urls[server], HTTP_CONCURRENCY, size["http_seconds"], POST_SCRIPT)
                cpu_s = tree_cpu_s(processes[server].pid) - cpu_before
                load["cpu_us_per_request"] = cpu_s * 1e6 / load["requests"] if load["requests"] else None
                runs[server].append(load)
    cpu = {server: [r["cpu_us_per_request"] for r in runs[server]] for server in SERVERS}
    rps = {server: [r["rps"] for r in runs[server]] for server in SERVERS}
    return {
        "servers": {
            server: {
                "rps": summarize(rps[server]),
                "cpu_us_per_request": summarize(cpu[server]),
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs[server]),
                "runs": runs[server],
            }
            for server in SERVERS
        },
        "cpu_ratio": ratios(cpu["metering"], cpu["neither"]),
        "rps_ratio": ratios(rps["metering"], rps["neither"]),
        "concurrency": HTTP_CONCURRENCY,
        "rounds": size["http_rounds"],
        "seconds_per_run": size["http_seconds"],
    }


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (``/proc/<pid>/stat``)."""
    ticks = 0
    for member in descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- asynchronous invocations ---------------------------------------------------------


def async_throughput(ctx: BenchContext, size: dict) -> dict[str, Any]:
    reps: list[dict[str, Any]] = []
    for rep in range(size["drain_reps"]):
        ctx.progress(f"drain {rep + 1}/{size['drain_reps']}: {size['events']:,} queued events, --workers 2")
        reps.append(_drain_once(size["events"], size["enqueue_seconds"]))
    enqueue = [r["enqueue"] for r in reps if r["enqueue"] is not None]
    rates = [r["drain_events_per_s"] for r in reps if r["drain_events_per_s"] is not None]
    return {
        "events": size["events"],
        "workers": 2,
        "drain_events_per_s": summarize(rates) if rates else None,
        "spawn_to_first_done_s": summarize([r["spawn_to_first_done_s"] for r in reps]),
        "drain_s": summarize([r["drain_s"] for r in reps]),
        "dead_letters": sum(r["dead_letters"] for r in reps),
        "enqueue": {
            "concurrency": ENQUEUE_CONCURRENCY,
            "seconds_per_run": size["enqueue_seconds"],
            **(_enqueue_summary(enqueue) if enqueue else {"unavailable": WRK_MISSING}),
        },
        "reps": reps,
    }


def _enqueue_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accepted_per_s": summarize([run["rps"] for run in runs]),
        "p50_ms": summarize([run["p50_ms"] for run in runs if run["p50_ms"] is not None]),
        "p99_ms": summarize([run["p99_ms"] for run in runs if run["p99_ms"] is not None]),
        "backlog_after": summarize([run["backlog_after"] for run in runs]),
        "errors": sum(run["non_2xx"] + run["socket_errors"] for run in runs),
    }


def _drain_once(events: int, enqueue_seconds: int) -> dict[str, Any]:
    """Fill a fresh data directory's queue, start a 2-worker server, time the drain, then load it with events."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-ops-async-") as data_dir:
        data = Path(data_dir)
        _deploy_echo(data)
        with EventQueue(data / "events.db") as queue:
            queue.put_many(NewEvent(FUNCTION, None, msgpack.packb({"i": i}), str(uuid.uuid4())) for i in range(events))
            port = free_port()
            command = [sys.executable, "-m", "wasmhost", "--data-dir", data_dir, "serve", "--port", str(port)]
            command += ["--workers", "2", "--log-level", "warning"]
            spawned_at = time.perf_counter()
            with _spawned(command) as process:
                samples = _poll_until_empty(queue, process, spawned_at)
                first = next(index for index, (_, depth) in enumerate(samples) if depth < events)
                first_at, first_depth = samples[first]
                empty_at = samples[-1][0]
                dead_letters = sum(queue.dead_letter_counts().values())
                enqueue = None
                if shutil.which("wrk") is not None:
                    url = f"http://127.0.0.1:{port}/invoke/{FUNCTION}"
                    _wait_for_port(process, port)
                    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
                        script.write(EVENT_SCRIPT)
                        script.flush()
                        enqueue = _wrk(url, ENQUEUE_CONCURRENCY, enqueue_seconds, Path(script.name))
                    enqueue["backlog_after"] = _depth(queue)
    return {
        "drain_events_per_s": first_depth / (empty_at - first_at) if empty_at > first_at else None,
        "spawn_to_first_done_s": first_at,
        "drain_s": empty_at - first_at,
        "samples": len(samples),
        "dead_letters": dead_letters,
        "enqueue": enqueue,
    }


def _poll_until_empty(queue: EventQueue, process: subprocess.Popen, since: float) -> list[tuple[float, int]]:
    """(seconds since ``since``, events waiting or running) every ``POLL_S`` until none is left."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        depth = _depth(queue)
        samples.append((time.perf_counter() - since, depth))
        if depth == 0:
            return samples
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} with {depth} events left")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{depth} events still queued after {DRAIN_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def _depth(queue: EventQueue) -> int:
    return sum(count for count, _ in queue.depth().values())


# --- helpers ----------------------------------------------------------------------


def _deploy_echo(data: Path) -> None:
    with Host(data_dir=data) as host:
        host.deploy(FUNCTION, (DIST / "echo.wasm").read_bytes(), ECHO_CONFIG)


@contextmanager
def _spawned(command: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """``command`` running (``WASMHOST_*`` variables of ours cleared, ``env`` added); stopped (SIGINT) on exit."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WASMHOST_")}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={**clean, **(env or {})},
            start_new_session=True,
        )
        try:
            yield process
        except Exception as exc:
            if process.poll() is None:
                raise
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; the server's stderr ends with:\n{tail}") from exc
        finally:
            stop(process)


def _wait_for_port(process: subprocess.Popen, port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_accepts(port):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not listen on port {port} within {timeout_s:.0f} s")
        time.sleep(0.01)


def _wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, Any]:
    """wrk with ``script`` (bench/load.py's ``wrk`` always POSTs bench/post.lua); its parsed report."""
    command = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{max(1, seconds)}s"]
    command += ["--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse_wrk(output)
