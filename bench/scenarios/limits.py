"""limits: how precisely a timeout stops a guest, and what fuel and epochs cost a compute-bound guest.

Timeout precision: the C infinite loop (spin.wasm) with ``timeout_ms`` 50, 200
and 1000, each run timed from just before ``Host.invoke`` to its return; the
figure is that time minus the timeout. Runs go ``CONCURRENCY`` at a time to fit
the time budget. The spinning guests burn CPU, so more of them than cores
delays the very threads that must notice the deadline: measured on 2 cores,
p50 overshoot at 200 ms was ~10 ms alone, ~13 ms with 2 at once, ~16 ms with 4,
~30 ms with 8 and ~100 ms with 16. Concurrency is therefore the number of
cores, and each run also records a short sequential check to show the
distortion that remains.

Fuel and epochs: fib(27) by naive recursion (fib.wasm), through wasmtime-py
directly with three engines — fuel and epochs (wasmhost's settings), epochs
only, neither — in alternating order, timing the guest's ``wasmhost_handle``
call alone (instantiating through wasmtime-py costs a few hundred µs of
Python, which would blur the ratio); plus the whole invocation through
``Host.invoke`` for reference.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wasmtime

from wasmhost import FunctionConfig, Host
from wasmhost.abi.core import decode_response, encode_request

from ..context import DIST, BenchContext
from ..stats import alternating, percentile, ratios, subsample, summarize

TIMEOUTS_MS = (50, 200, 1000)
CONCURRENCY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
SIZES = {
    "tiny": {"runs": (4, 2, 0), "check": (4, 0, 0), "fib_n": 20, "fib_blocks": 2, "fib_per_block": 3},
    "quick": {"runs": (10, 10, 3), "check": (6, 2, 2), "fib_n": 27, "fib_blocks": 3, "fib_per_block": 5},
    "full": {"runs": (100, 100, 100), "check": (20, 5, 3), "fib_n": 27, "fib_blocks": 7, "fib_per_block": 20},
}
WITHIN_MS = 10.0
ENGINES = {"fuel+epoch": (True, True), "epoch only": (False, True), "neither": (False, False)}


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    return {"timeout": timeout_precision(ctx, size), "fuel_epoch": fuel_epoch_overhead(ctx, size)}


def timeout_precision(ctx: BenchContext, size: dict) -> dict[str, Any]:
    spin = (DIST / "spin.wasm").read_bytes()
    results: dict[str, Any] = {}
    all_deltas: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-limits-") as data, Host(data_dir=data) as host:
        for timeout_ms in TIMEOUTS_MS:
            host.deploy(f"spin{timeout_ms}", spin, FunctionConfig(memory_mb=16, timeout_ms=timeout_ms))
        check_runs = dict(zip(TIMEOUTS_MS, size["check"], strict=True))
        check: dict[str, Any] = {}
        for timeout_ms, n in check_runs.items():
            if n:
                ctx.progress(f"timeout {timeout_ms} ms: {n} runs one at a time (distortion check)")
                check[str(timeout_ms)] = _distribution(_stops(host, timeout_ms, n, 1), timeout_ms)
        ticker = {"kind": getattr(host.engine.ticker, "kind", None), "period_ms": host.engine.ticker.period_ms}
        for timeout_ms, n in zip(TIMEOUTS_MS, size["runs"], strict=True):
            if not n:
                continue
            ctx.progress(f"timeout {timeout_ms} ms: {n} runs, {CONCURRENCY} at a time")
            stops = _stops(host, timeout_ms, n, CONCURRENCY)
            results[str(timeout_ms)] = _distribution(stops, timeout_ms)
            all_deltas += [s - timeout_ms for s, _ in stops]
    return {
        "concurrency": CONCURRENCY,
        "epoch_ticker": ticker,
        "by_timeout_ms": results,
        "sequential_check": check,
        "all": {
            "n": len(all_deltas),
            "within_10ms_pct": 100 * sum(0 <= d <= WITHIN_MS for d in all_deltas) / max(1, len(all_deltas)),
            "p99_ms": percentile(all_deltas, 0.99) if all_deltas else None,
            "max_ms": max(all_deltas, default=None),
        },
    }


def _stops(host: Host, timeout_ms: int, n: int, concurrency: int) -> list[tuple[float, float]]:
    """(wall ms from invoke to return, the result's duration_ms) of ``n`` runs of spin."""

    def one(_: int) -> tuple[float, float]:
        started = time.perf_counter()
        result = host.invoke(f"spin{timeout_ms}")
        wall_ms = (time.perf_counter() - started) * 1000
        if result.error is None or result.error.type != "Timeout":
            raise RuntimeError(f"spin with timeout {timeout_ms} ms ended with {result.error}")
        return wall_ms, result.duration_ms

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


def _distribution(stops: list[tuple[float, float]], timeout_ms: int) -> dict[str, Any]:
    deltas = [wall - timeout_ms for wall, _ in stops]
    reported = [duration - timeout_ms for _, duration in stops]
    return {
        "n": len(deltas),
        "p50_ms": percentile(deltas, 0.5),
        "p99_ms": percentile(deltas, 0.99),
        "max_ms": max(deltas),
        "min_ms": min(deltas),
        "within_10ms_pct": 100 * sum(0 <= d <= WITHIN_MS for d in deltas) / len(deltas),
        "reported_duration_p50_ms": percentile(reported, 0.5),
        "deltas_ms": [round(d, 3) for d in subsample(deltas, 500)],
    }


def fuel_epoch_overhead(ctx: BenchContext, size: dict) -> dict[str, Any]:
    fib = (DIST / "fib.wasm").read_bytes()
    n = size["fib_n"]
    runners = {name: _FibRunner(fib, fuel, epoch) for name, (fuel, epoch) in ENGINES.items()}
    times: dict[str, list[float]] = {name: [] for name in (*ENGINES, "Host.invoke")}
    expected = _fib(n)
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-fib-") as data, Host(data_dir=data) as host:
        host.deploy("fib", fib, FunctionConfig(memory_mb=16, timeout_ms=60_000))
        order = [*ENGINES, "Host.invoke"]
        for name in order:  # warm up: first instantiations fault pages in
            _time_one(runners, host, name, n, expected)
        for block in range(size["fib_blocks"]):
            ctx.progress(f"fib({n}) block {block + 1}/{size['fib_blocks']}: {', '.join(order)}")
            for name in alternating(order, block):
                block_times = [_time_one(runners, host, name, n, expected) for _ in range(size["fib_per_block"])]
                times[name].append(statistics.median(block_times))
    return {
        "n": n,
        "per_invocation_ms": {name: summarize(block) for name, block in times.items()},
        "timed": "fuel+epoch, epoch only, neither: the wasmhost_handle call; Host.invoke: the whole invocation",
        "ratios": {
            "fuel+epoch / neither": ratios(times["fuel+epoch"], times["neither"]),
            "epoch only / neither": ratios(times["epoch only"], times["neither"]),
            "fuel+epoch / epoch only": ratios(times["fuel+epoch"], times["epoch only"]),
            "Host.invoke / neither": ratios(times["Host.invoke"], times["neither"]),
        },
        "blocks": size["fib_blocks"],
        "per_block": size["fib_per_block"],
    }


def _time_one(runners: dict[str, _FibRunner], host: Host, name: str, n: int, expected: int) -> float:
    """ms of one fib(n): the guest call alone for our engines, the whole ``Host.invoke`` for the host."""
    if name == "Host.invoke":
        started = time.perf_counter()
        result = host.invoke("fib", {"n": n})
        elapsed_ms = (time.perf_counter() - started) * 1000
        if result.error is not None:
            raise RuntimeError(f"fib failed: {result.error}")
        value = result.payload
    else:
        value, elapsed_ms = runners[name].invoke({"n": n})
    if value != expected:
        raise RuntimeError(f"fib({n}) returned {value!r}, expected {expected}")
    return elapsed_ms


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class _FibRunner:
    """One guest ABI invocation (fresh Store and instance, as wasmhost does) on an engine of our own.

    wasmhost's engine always has fuel and epochs on (wasmhost/engine.py has no
    option to turn them off), so the comparison engines are built here with
    wasmtime-py; the default allocator, since instantiation is microseconds
    against the milliseconds of fib.
    """

    def __init__(self, wasm: bytes, fuel: bool, epoch: bool) -> None:
        config = wasmtime.Config()
        config.consume_fuel = fuel
        config.epoch_interruption = epoch
        self.fuel, self.epoch = fuel, epoch
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, wasm)
        self.linker = wasmtime.Linker(self.engine)
        if self.module.imports:
            self.linker.define_wasi()

    def invoke(self, event: Any) -> tuple[Any, float]:
        """The guest's answer to ``event``, and the ms its ``wasmhost_handle`` call took."""
        store = wasmtime.Store(self.engine)
        if self.fuel:
            store.set_fuel(2**63 - 1)
        if self.epoch:
            store.set_epoch_deadline(1 << 40)
        if self.module.imports:
            store.set_wasi(wasmtime.WasiConfig())
        instance = self.linker.instantiate(store, self.module)
        exports = instance.exports(store)
        if "_initialize" in exports:
            exports["_initialize"](store)
        request = encode_request(event, {"request_id": "bench", "function_name": "fib", "deadline_ms": 0})
        pointer = exports["wasmhost_alloc"](store, len(request))
        memory = exports["memory"]
        memory.write(store, request, pointer)
        handle = exports["wasmhost_handle"]
        started = time.perf_counter()
        packed = handle(store, pointer, len(request)) & 0xFFFFFFFFFFFFFFFF
        elapsed_ms = (time.perf_counter() - started) * 1000
        out_pointer, out_length = packed >> 32, packed & 0xFFFFFFFF
        return decode_response(bytes(memory.read(store, out_pointer, out_pointer + out_length))), elapsed_ms
