"""cold_invoke: a fresh sandbox per invocation, in-process (no HTTP), for each guest language.

Every invocation instantiates the function anew (new Store, new memory), as
every wasmhost invocation does; its code is already compiled and mapped. Blocks
of N invocations go round the languages in alternating order; the figure is the
median of the block p50s (and p99s) with the min–max over blocks.
"""

from __future__ import annotations

import time
from typing import Any

from wasmhost import Host

from ..context import BenchContext
from ..stats import alternating, block_summary, subsample
from ..workspace import COMPONENT_LANGUAGES, IN_PROCESS_EVENT, LANGUAGES, artifacts, ensure_deployed, function_name

SIZES = {
    # blocks, invocations per block: (small core modules, Go, components), warm-up
    "tiny": {"blocks": 2, "n": (100, 20, 10), "warmup": 10, "languages": ("c",)},
    "quick": {"blocks": 3, "n": (1000, 100, 60), "warmup": 30, "languages": LANGUAGES},
    "full": {"blocks": 5, "n": (3000, 300, 200), "warmup": 100, "languages": LANGUAGES},
}
SAMPLES_KEPT = 2000


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    found = artifacts(size["languages"], progress=ctx.progress)
    ensure_deployed(ctx.workspace, found, ctx.progress)
    available = [a for a in found if a.path is not None]
    results: dict[str, Any] = {a.language: {"unavailable": a.unavailable} for a in found if a.path is None}
    samples: dict[str, list[list[float]]] = {a.language: [] for a in available}
    with Host(data_dir=ctx.workspace) as host:
        for artifact in available:
            name = function_name(artifact.language)
            for _ in range(size["warmup"]):
                check(host.invoke(name, IN_PROCESS_EVENT), artifact.language)
        for block in range(size["blocks"]):
            ctx.progress(f"block {block + 1}/{size['blocks']}: {', '.join(a.language for a in available)}")
            for artifact in alternating(available, block):
                n = _invocations(artifact.language, size["n"])
                samples[artifact.language].append(_block(host, function_name(artifact.language), n, artifact.language))
        fast_path = bool(host.sandbox.fast)
        kinds = {a.language: host.get(function_name(a.language)).kind for a in available}
    for artifact in available:
        blocks = samples[artifact.language]
        results[artifact.language] = {
            **{f"{key}_us": value for key, value in block_summary(blocks).items()},
            "size_bytes": artifact.size_bytes,
            "kind": kinds[artifact.language],
            "n_per_block": len(blocks[0]),
            "blocks": len(blocks),
            "samples_us": [round(s, 2) for s in subsample([s for b in blocks for s in b], SAMPLES_KEPT)],
        }
    return {"fast_path": fast_path, "event": IN_PROCESS_EVENT, "languages": {k: results[k] for k in _ordered(results)}}


def _invocations(language: str, n: tuple[int, int, int]) -> int:
    if language in COMPONENT_LANGUAGES:
        return n[2]
    return n[1] if language == "go" else n[0]


def _block(host: Host, name: str, n: int, language: str) -> list[float]:
    """``n`` invocations of ``name``, each timed alone (µs)."""
    times = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        result = host.invoke(name, IN_PROCESS_EVENT)
        times.append((clock() - started) / 1000)
        check(result, language)
    return times


def check(result: Any, language: str) -> None:
    if result.error is not None:
        raise RuntimeError(f"{language} echo failed: {result.error.type}: {result.error.message}")


def _ordered(results: dict[str, Any]) -> list[str]:
    return [language for language in LANGUAGES if language in results]
