"""scale: many deployed functions, and many invocations in flight at once.

Each part runs in a subprocess of its own (``python -m
bench.scenarios.scale_worker functions|inflight``) so the memory it reports is its own.

``functions``: deploy N functions, each distinct code (echo.wasm plus a
unique custom section, so every digest differs and each is really compiled).
A real compile of the C echo takes ~20 ms here, so 10,000 of them would take
over three minutes of a ten-minute budget: full runs compile ``distinct`` of
them and deploy the rest with code compiled before (``Host.deploy`` maps
known code from the compile cache instead of compiling it again). Then the first invocation of
random functions not invoked before (most are not in the host's LRU of
prepared modules, so their code is mapped from the compile cache).

``inflight``: N invocations of a guest that sleeps (nap.wasm, a WASI sleep)
at once through ``Host.ainvoke``; memory per in-flight invocation is
(peak RSS − RSS before) / N, and how long until all N are done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from ..context import ROOT, BenchContext
from ..stats import summarize

SIZES = {
    "tiny": {"functions": 60, "distinct": 20, "picks": 10, "inflight": 20, "sleep_ms": 200, "inflight_reps": 1},
    "quick": {"functions": 1000, "distinct": 200, "picks": 50, "inflight": 200, "sleep_ms": 1000, "inflight_reps": 1},
    "full": {
        "functions": 10_000,
        "distinct": 2000,
        "picks": 200,
        "inflight": 1000,
        "sleep_ms": 2000,
        "inflight_reps": 3,
    },
}


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    ctx.progress(f"{size['functions']} functions ({size['distinct']} compiled) in a subprocess")
    functions = _subprocess(
        ctx, "functions", "--n", size["functions"], "--distinct", size["distinct"], "--picks", size["picks"]
    )
    inflight = []
    for rep in range(size["inflight_reps"]):
        ctx.progress(f"{size['inflight']} invocations in flight, rep {rep + 1}/{size['inflight_reps']}")
        inflight.append(_subprocess(ctx, "inflight", "--n", size["inflight"], "--sleep-ms", size["sleep_ms"]))
    return {"functions": functions, "inflight": _summarise_inflight(inflight)}


def _subprocess(ctx: BenchContext, part: str, *args: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scenarios.scale_worker", part, *map(str, args)]
    command += ["--elapsed", str(time.monotonic() - ctx.started)]
    output = subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _summarise_inflight(reps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "n": reps[0]["n"],
        "sleep_ms": reps[0]["sleep_ms"],
        "bytes_per_inflight": summarize([r["bytes_per_inflight"] for r in reps]),
        "all_done_s": summarize([r["all_done_s"] for r in reps]),
        "completed_ok": min(r["completed_ok"] for r in reps),
        "errors": sum((Counter(r["errors"]) for r in reps), Counter()),
        "all_in_flight_at_once": all(r["all_in_flight_at_once"] for r in reps),
        "reps": reps,
    }
