"""peers: the same echo on other serverless runtimes, under the same wrk load, in the same run.

Systems: wasmhost and bare Starlette (1 worker each) and every peer of
``bench/peers.py`` (workerd running the echo as JavaScript and as WebAssembly,
serverless-offline running it as a Python Lambda handler). Each round starts
every system afresh, in alternating order: cold start (spawn → port open →
first request), then c=1 and c=32 load, then its memory. wasmhost's cold start
is also measured for the Python echo (``wasmhost-python``, cold start only),
the handler serverless-offline runs. A peer that cannot run is reported with
its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..context import BenchContext
from ..load import require_wrk, wrk
from ..procs import free_port, started, tree_memory
from ..stats import alternating, ratios, summarize
from ..workspace import artifacts, ensure_deployed, function_name
from .http import starlette_command, wasmhost_command

SIZES = {
    "tiny": {"rounds": 1, "seconds": 1, "warmup_s": 1},
    "quick": {"rounds": 1, "seconds": 1, "warmup_s": 1},
    "full": {"rounds": 3, "seconds": 2, "warmup_s": 1},
}
OURS = ("wasmhost", "starlette")
COLD_ONLY = ("wasmhost-python",)


@contextlib.contextmanager
def _ours(system: str, data_dir: str) -> Iterator[Any]:
    port = free_port()
    if system == "starlette":
        command, path = starlette_command(port, 1), "/invoke/echo"
    else:
        command = wasmhost_command(data_dir, port, 1)
        path = "/invoke/" + function_name("python" if system == "wasmhost-python" else "c")
    with started(system, command, port, f"http://127.0.0.1:{port}{path}") as server:
        yield server


def run(ctx: BenchContext) -> dict[str, Any]:
    require_wrk()
    size = ctx.pick(SIZES)
    found = artifacts(("c", "python"), progress=ctx.progress)
    ensure_deployed(ctx.workspace, found, ctx.progress)
    unavailable: dict[str, str] = {}
    peer_names: tuple[str, ...] = ()
    peers: Any = None
    try:
        from .. import peers as peers_module

        peers = peers_module
        peer_names = tuple(peers.PEERS)
        ctx.progress("installing the peers (npm ci, once)")
        peers.ensure_installed()
        for name in peer_names:
            reason = peers.unavailable_reason(name)
            if reason:
                unavailable[name] = reason
    except ImportError as exc:
        unavailable["peers"] = f"bench/peers.py cannot be imported: {exc}"
    except Exception as exc:  # noqa: BLE001 - PeerUnavailable, or npm failing: reported for every peer
        unavailable.update({name: f"{type(exc).__name__}: {exc}" for name in peer_names or ("peers",)})
    if next(a for a in found if a.language == "python").path is None:
        unavailable["wasmhost-python"] = str(next(a for a in found if a.language == "python").unavailable)
    runnable = [s for s in (*OURS, *COLD_ONLY, *peer_names) if s not in unavailable]
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in runnable}
    failures: dict[str, list[str]] = {}
    for round_index in range(size["rounds"]):
        for system in alternating(runnable, round_index):
            ctx.progress(f"round {round_index + 1}/{size['rounds']}: {system}")
            try:
                rounds[system].append(_measure(ctx, peers, system, size))
            except Exception as exc:  # noqa: BLE001 - one failing system must not stop the others
                failures.setdefault(system, []).append(f"{type(exc).__name__}: {exc}"[:1000])
                rounds[system].append({})
    return summarise(rounds, unavailable, failures, size, peer_names)


def _measure(ctx: BenchContext, peers: Any, system: str, size: dict) -> dict[str, Any]:
    if system in OURS or system in COLD_ONLY:
        context = _ours(system, str(ctx.workspace))
    else:
        context = peers.run_peer(system, free_port())
    with context as server:
        figures: dict[str, Any] = {
            "spawn_to_ready_ms": server.spawn_to_ready_ms,
            "first_request_ms": server.first_request_ms,
        }
        if system in COLD_ONLY:
            return figures
        wrk(server.url, 32, size["warmup_s"])
        figures["c1"] = wrk(server.url, 1, size["seconds"])
        figures["c32"] = wrk(server.url, 32, size["seconds"])
        if system in OURS:
            figures["rss_bytes"] = tree_memory(server.pid)["rss_bytes"]
        else:
            figures["rss_bytes"] = server.rss_bytes()
        return figures


def summarise(
    rounds: dict[str, list[dict[str, Any]]],
    unavailable: dict[str, str],
    failures: dict[str, list[str]],
    size: dict,
    peer_names: tuple[str, ...],
) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for system in (*OURS, *COLD_ONLY, *(peer_names or ())):
        if system in unavailable:
            systems[system] = {"unavailable": unavailable[system]}
            continue
        good = [r for r in rounds.get(system, []) if r]
        if not good:
            systems[system] = {"unavailable": "; ".join(failures.get(system, ["no round succeeded"]))}
            continue
        entry: dict[str, Any] = {
            "spawn_to_ready_ms": summarize([r["spawn_to_ready_ms"] for r in good]),
            "first_request_ms": summarize([r["first_request_ms"] for r in good]),
            "rounds_ok": len(good),
        }
        if "c32" in good[0]:
            entry |= {
                "c1_p50_ms": summarize([r["c1"]["p50_ms"] for r in good]),
                "c1_p99_ms": summarize([r["c1"]["p99_ms"] for r in good]),
                "c32_rps": summarize([r["c32"]["rps"] for r in good]),
                "c32_p50_ms": summarize([r["c32"]["p50_ms"] for r in good]),
                "c32_p99_ms": summarize([r["c32"]["p99_ms"] for r in good]),
                "rss_bytes": summarize([r["rss_bytes"] for r in good]),
                "errors": sum(r[c]["non_2xx"] + r[c]["socket_errors"] for r in good for c in ("c1", "c32")),
            }
        if failures.get(system):
            entry["failures"] = failures[system]
        entry["raw"] = rounds[system]
        systems[system] = entry
    if "unavailable" in systems.get("wasmhost", {}) or not rounds.get("wasmhost"):
        compared: dict[str, Any] = {}
    else:
        compared = _ratios(rounds, [s for s in systems if s not in ("wasmhost", *COLD_ONLY)])
    if "peers" in unavailable:
        systems["peers"] = {"unavailable": unavailable["peers"]}
    return {"systems": systems, "ratios": compared, "rounds": size["rounds"], "seconds_per_run": size["seconds"]}


def _ratios(rounds: dict[str, list[dict[str, Any]]], others: list[str]) -> dict[str, Any]:
    """Per round, same round only: wasmhost/peer throughput at c=32, peer/wasmhost cold start."""
    out: dict[str, Any] = {}
    ours = rounds["wasmhost"]
    python = rounds.get("wasmhost-python", [])
    for other in others:
        pairs = [(w, o) for w, o in zip(ours, rounds.get(other, []), strict=False) if w and o]
        if not pairs:
            continue
        out[f"wasmhost/{other} c32 rps"] = ratios(
            [w["c32"]["rps"] for w, _ in pairs], [o["c32"]["rps"] for _, o in pairs]
        )
        out[f"{other}/wasmhost first request"] = ratios(
            [o["first_request_ms"] for _, o in pairs], [w["first_request_ms"] for w, _ in pairs]
        )
        out[f"{other}/wasmhost spawn to ready"] = ratios(
            [o["spawn_to_ready_ms"] for _, o in pairs], [w["spawn_to_ready_ms"] for w, _ in pairs]
        )
        python_pairs = [(p, o) for p, o in zip(python, rounds.get(other, []), strict=False) if p and o]
        if python_pairs and other == "serverless-offline":
            out[f"{other}/wasmhost-python first request"] = ratios(
                [o["first_request_ms"] for _, o in python_pairs], [p["first_request_ms"] for p, _ in python_pairs]
            )
    return out
