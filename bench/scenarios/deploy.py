"""deploy: compile time per language, and the first invocation after a host restart.

``Host.deploy`` on a fresh data directory validates and compiles the module
with wasmtime and writes the compile cache; each repetition uses a new
directory. Then a new ``Host`` on the same directory (a restarted host) invokes
each function once: its code is mapped from the cache, nothing is compiled
(checked: ``host.engine.cache.compiles == 0`` and ``result.cold``).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from wasmhost import Host

from ..context import BenchContext
from ..stats import alternating, summarize
from ..workspace import COMPONENT_LANGUAGES, ECHO_CONFIG, IN_PROCESS_EVENT, LANGUAGES, artifacts, function_name

SIZES = {
    "tiny": {"reps": 1, "restarts": 1, "languages": ("c",)},
    # The components take ~15 s each to compile: measured by full runs only.
    "quick": {"reps": 1, "restarts": 2, "languages": tuple(x for x in LANGUAGES if x not in COMPONENT_LANGUAGES)},
    "full": {"reps": 3, "restarts": 2, "languages": LANGUAGES},
}


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    found = artifacts(size["languages"], progress=ctx.progress)
    available = [a for a in found if a.path is not None]
    compile_ms: dict[str, list[float]] = {a.language: [] for a in available}
    first_ms: dict[str, list[float]] = {a.language: [] for a in available}
    compiled_bytes: dict[str, int] = {}
    host_open_ms: list[float] = []
    for rep in range(size["reps"]):
        with tempfile.TemporaryDirectory(prefix="wasmhost-bench-deploy-") as data:
            with Host(data_dir=data) as host:
                for artifact in alternating(available, rep):
                    ctx.progress(f"rep {rep + 1}/{size['reps']}: compiling the {artifact.language} echo")
                    code = artifact.path.read_bytes()  # type: ignore[union-attr]
                    compiles = host.engine.cache.compiles
                    started = time.perf_counter()
                    record = host.deploy(function_name(artifact.language), code, ECHO_CONFIG)
                    compile_ms[artifact.language].append((time.perf_counter() - started) * 1000)
                    assert host.engine.cache.compiles == compiles + 1, "deploy did not compile"
                    compiled_bytes[artifact.language] = host.engine.cache.path(record.digest).stat().st_size
            for restart in range(size["restarts"]):
                ctx.progress(f"rep {rep + 1}/{size['reps']}: restart {restart + 1}, first invocations")
                started = time.perf_counter()
                with Host(data_dir=data) as host:
                    host_open_ms.append((time.perf_counter() - started) * 1000)
                    for artifact in alternating(available, rep + restart):
                        started = time.perf_counter()
                        result = host.invoke(function_name(artifact.language), IN_PROCESS_EVENT)
                        first_ms[artifact.language].append((time.perf_counter() - started) * 1000)
                        if result.error is not None:
                            raise RuntimeError(f"{artifact.language}: {result.error.type}: {result.error.message}")
                        assert result.cold, f"{artifact.language}: first invocation after a restart was not cold"
                    assert host.engine.cache.compiles == 0, "a restarted host compiled instead of mapping the cache"
    languages: dict[str, Any] = {}
    for artifact in found:
        if artifact.path is None:
            languages[artifact.language] = {"unavailable": artifact.unavailable}
            continue
        languages[artifact.language] = {
            "compile_ms": summarize(compile_ms[artifact.language]),
            "first_invoke_after_restart_ms": summarize(first_ms[artifact.language]),
            "module_bytes": artifact.size_bytes,
            "compiled_bytes": compiled_bytes[artifact.language],
        }
    for language in LANGUAGES:
        if language not in languages and language in COMPONENT_LANGUAGES:
            languages[language] = {"skipped": "compiled by full runs only (about 15 s each)"}
    return {
        "languages": {x: languages[x] for x in LANGUAGES if x in languages},
        "host_open_ms": summarize(host_open_ms),
        "reps": size["reps"],
        "restarts_per_rep": size["restarts"],
    }
