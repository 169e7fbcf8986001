"""The two parts of the scale scenario, each run as its own process (see scale.py).

``python -m bench.scenarios.scale_worker functions --n N --distinct D --picks P``
or ``… inflight --n N --sleep-ms MS``: prints the result as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from wasmhost.abi.sections import with_custom_section

from ..context import DIST, BenchContext
from ..procs import self_rss_bytes
from ..stats import percentile, summarize

SECTION_NAME = "wasmhost-bench"
CHUNK = 250
"""Deploys per chunk: the deploy rate is summarised over chunks."""


def deploy_many(ctx: BenchContext, n: int, distinct: int, picks: int) -> dict[str, Any]:
    from wasmhost import FunctionConfig, Host

    echo = (DIST / "echo.wasm").read_bytes()
    config = FunctionConfig(memory_mb=16, timeout_ms=1000)
    rng = random.Random(42)
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-scale-") as data, Host(data_dir=data) as host:
        rss_start = self_rss_bytes()
        distinct = min(distinct, n)
        codes: list[bytes] = []
        chunk_rates = []
        started = time.perf_counter()
        chunk_started = started
        for i in range(distinct):
            code = with_custom_section(echo, SECTION_NAME, str(i).encode())
            host.deploy(f"fn{i}", code, config)
            codes.append(code)
            if (i + 1) % CHUNK == 0 or i + 1 == distinct:
                now = time.perf_counter()
                chunk_rates.append(((i % CHUNK) + 1) / (now - chunk_started))
                chunk_started = now
                ctx.progress(f"deployed {i + 1}/{distinct} distinct modules ({(i + 1) / (now - started):.0f}/s)")
        deploy_s = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(distinct, n):
            host.deploy(f"fn{i}", codes[i % distinct], config)  # known code: mapped, not compiled
        register_s = time.perf_counter() - started
        rss_deployed = self_rss_bytes()
        ctx.progress(f"{n} functions deployed; first invocation of {picks} random ones")
        compiles = host.engine.cache.compiles
        first_ms, cold = [], 0
        for i in rng.sample(range(n), min(picks, n)):
            started = time.perf_counter()
            result = host.invoke(f"fn{i}", {"i": i})
            first_ms.append((time.perf_counter() - started) * 1000)
            if result.error is not None or result.payload != {"i": i}:
                raise RuntimeError(f"fn{i}: {result.error or result.payload}")
            cold += result.cold
        return {
            "functions": n,
            "distinct_digests": distinct,
            "compiled_by_deploy": distinct,
            "registered_sharing_code": n - distinct,
            "how": (
                f"{distinct} functions deployed with Host.deploy, each echo.wasm plus a unique custom section "
                f"(a real compile each); the other {n - distinct} deployed with Host.deploy too, sharing "
                "that code (deploy maps code it compiled before from the compile cache)"
            ),
            "deploy_s": deploy_s,
            "deploy_per_s": summarize(chunk_rates),
            "register_s": register_s,
            "register_per_s": (n - distinct) / register_s if register_s else None,
            "rss_start_bytes": rss_start,
            "rss_after_deploy_bytes": rss_deployed,
            "rss_after_invokes_bytes": self_rss_bytes(),
            "first_invoke_ms": {
                "p50": percentile(first_ms, 0.5),
                "p99": percentile(first_ms, 0.99),
                "max": max(first_ms),
                "n": len(first_ms),
                "cold": cold,
                "compiled": host.engine.cache.compiles - compiles,
            },
            "instance_cache_size": host.config.instance_cache_size,
        }


def many_in_flight(ctx: BenchContext, n: int, sleep_ms: int) -> dict[str, Any]:
    from wasmhost import FunctionConfig, Host, HostConfig

    slack = 64
    config = HostConfig.from_env(
        worker_threads=n + slack, max_concurrency=n + slack, max_instances=max(1000, n + slack)
    )
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-inflight-") as data:
        config.data_dir = data
        with Host(config=config) as host:
            host.deploy("nap", (DIST / "nap.wasm").read_bytes(), FunctionConfig(memory_mb=16, timeout_ms=60_000))
            host.invoke("nap", {"ms": 1})
            host.warm_up()
            rss_before = self_rss_bytes()
            peak = [rss_before]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.01):
                    peak[0] = max(peak[0], self_rss_bytes())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()

            async def all_at_once() -> tuple[float, list[Any]]:
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(host.ainvoke("nap", {"ms": sleep_ms}) for _ in range(n)), return_exceptions=True
                )
                return time.perf_counter() - started, results

            all_done_s, results = asyncio.run(all_at_once())
            done.set()
            sampler.join()
    errors: Counter[str] = Counter()
    for result in results:
        if isinstance(result, BaseException):
            errors[type(result).__name__] += 1
        elif result.error is not None:
            errors[result.error.type] += 1
    ok = n - sum(errors.values())
    return {
        "n": n,
        "sleep_ms": sleep_ms,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": peak[0],
        "bytes_per_inflight": (peak[0] - rss_before) / n,
        "all_done_s": all_done_s,
        "completed_ok": ok,
        "errors": dict(errors),
        # Each takes at least sleep_ms: all done within twice that means all ran at once.
        "all_in_flight_at_once": ok == n and all_done_s < 2 * sleep_ms / 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One part of the scale scenario; prints its result as JSON.")
    parser.add_argument("part", choices=("functions", "inflight"))
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--distinct", type=int, default=0)
    parser.add_argument("--picks", type=int, default=200)
    parser.add_argument("--sleep-ms", type=int, default=2000)
    parser.add_argument("--elapsed", type=float, default=0.0, help="Seconds the run has been going (for progress).")
    args = parser.parse_args(argv)
    ctx = BenchContext(level="full", started=time.monotonic() - args.elapsed, scenario=f"scale/{args.part}")
    if args.part == "functions":
        result = deploy_many(ctx, args.n, args.distinct, args.picks)
    else:
        result = many_in_flight(ctx, args.n, args.sleep_ms)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
