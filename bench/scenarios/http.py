"""http: ``POST /invoke/echo`` under wrk, wasmhost against the bare Starlette echo, 1 and 2 workers.

Four servers run at once (wasmhost and bare Starlette, with ``--workers 1`` and
``--workers 2``); at each concurrency of each round they are loaded one after
the other, the order reversing at every step. Ratios (wasmhost/Starlette, 2 workers/1 worker)
are taken per round, between runs seconds apart, then summarised.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

from ..context import BenchContext
from ..load import require_wrk, wrk
from ..procs import Server, free_port, started, tree_memory
from ..stats import alternating, ratios, summarize
from ..workspace import artifacts, ensure_deployed

SIZES = {
    "tiny": {"rounds": 1, "seconds": 1, "concurrency": (1, 8), "workers": (1,), "warmup_s": 1},
    "quick": {"rounds": 1, "seconds": 1, "concurrency": (1, 32), "workers": (1, 2), "warmup_s": 1},
    "full": {"rounds": 3, "seconds": 2, "concurrency": (1, 8, 32, 64), "workers": (1, 2), "warmup_s": 1},
}
SYSTEMS = ("wasmhost", "starlette")


def wasmhost_command(data_dir: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "wasmhost", "--data-dir", data_dir, "serve", "--port", str(port)] + [
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


def starlette_command(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "bench.bare_echo:app", "--port", str(port), "--workers", str(workers)] + [
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start_system(stack: ExitStack, system: str, workers: int, data_dir: str) -> Server:
    """Start ``system`` (``wasmhost`` or ``starlette``) with ``workers`` workers; stopped when ``stack`` closes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/invoke/echo"
    if system == "wasmhost":
        command = wasmhost_command(data_dir, port, workers)
    else:
        command = starlette_command(port, workers)
    return stack.enter_context(started(f"{system} --workers {workers}", command, port, url))


def run(ctx: BenchContext) -> dict[str, Any]:
    require_wrk()
    size = ctx.pick(SIZES)
    ensure_deployed(ctx.workspace, artifacts(("c",)), ctx.progress)
    keys = [(system, workers) for workers in size["workers"] for system in SYSTEMS]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {_key(*k): {} for k in keys}
    memory: dict[str, Any] = {}
    with ExitStack() as stack:
        ctx.progress(f"starting {len(keys)} servers")
        servers = {_key(*k): start_system(stack, k[0], k[1], str(ctx.workspace)) for k in keys}
        for key, server in servers.items():
            memory[key] = {"idle": tree_memory(server.pid)}
            wrk(server.url, 32, size["warmup_s"])
        step = 0
        for round_index in range(size["rounds"]):
            for connections in size["concurrency"]:
                # The systems back to back at one concurrency, so the runs a ratio compares are seconds apart.
                order = alternating(list(servers), step)
                step += 1
                ctx.progress(f"round {round_index + 1}/{size['rounds']}, c={connections}: {', '.join(order)}")
                for key in order:
                    runs[key].setdefault(f"c{connections}", []).append(
                        wrk(servers[key].url, connections, size["seconds"])
                    )
        for key, server in servers.items():
            memory[key]["after_load"] = tree_memory(server.pid)
    return summarise(runs, memory, size)


def _key(system: str, workers: int) -> str:
    return f"{system}-w{workers}"


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]], memory: dict[str, Any], size: dict) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for key, by_concurrency in runs.items():
        entry: dict[str, Any] = {"memory": memory.get(key, {})}
        for label, results in by_concurrency.items():
            entry[label] = {
                "rps": summarize([r["rps"] for r in results]),
                "p50_ms": summarize([r["p50_ms"] for r in results if r["p50_ms"] is not None]),
                "p99_ms": summarize([r["p99_ms"] for r in results if r["p99_ms"] is not None]),
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results),
                "runs": results,
            }
        systems[key] = entry
    ratio_table: dict[str, Any] = {}
    for label in (f"c{c}" for c in size["concurrency"]):
        for workers in size["workers"]:
            ratio_table[f"wasmhost/starlette w{workers} {label}"] = _ratio(
                runs, f"wasmhost-w{workers}", f"starlette-w{workers}", label
            )
        if 1 in size["workers"] and 2 in size["workers"]:
            for system in SYSTEMS:
                ratio_table[f"{system} w2/w1 {label}"] = _ratio(runs, f"{system}-w2", f"{system}-w1", label)
    return {
        "systems": systems,
        "ratios": ratio_table,
        "rounds": size["rounds"],
        "seconds_per_run": size["seconds"],
        "concurrency": list(size["concurrency"]),
        "workers": list(size["workers"]),
    }


def _ratio(runs: dict, numerator: str, denominator: str, label: str) -> dict[str, Any]:
    return ratios([r["rps"] for r in runs[numerator][label]], [r["rps"] for r in runs[denominator][label]])
