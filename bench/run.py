"""``make bench``: wasmhost measured in one run — in-process, deploy, HTTP, peers, limits, scale.

Writes ``<out>/<timestamp>.json`` (every repetition), ``latest.json``,
``latest.md`` (tables and PASS/FAIL against the targets) and PNG charts.
Progress goes to stderr. A full run takes under ten minutes on 2 cores;
``--quick`` about a minute. How to read the results: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.charts import draw_all  # noqa: E402
from bench.context import RESULTS, WORKSPACE, BenchContext, machine_info  # noqa: E402
from bench.report import render, targets  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402

PARTIAL_RESULTS = RESULTS / "partial"
"""Where --quick and --only runs write by default, so they never replace the committed full report."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a short run of every scenario (about a minute)")
    size.add_argument("--tiny", action="store_true", help="seconds-long run for the test suite (C guests only)")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        metavar="SCENARIO[,SCENARIO]",
        help=f"run only these scenarios, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"directory for the results (default {RESULTS.relative_to(RESULTS.parent.parent)} for a full run, "
        f"{PARTIAL_RESULTS.relative_to(RESULTS.parent.parent)} for --quick/--only)",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=WORKSPACE,
        help="data directory kept between runs with every language's echo deployed (default %(default)s)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.only or [] if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def run(args: argparse.Namespace, argv: list[str]) -> tuple[dict[str, Any], Path]:
    level = "quick" if args.quick else "tiny" if args.tiny else "full"
    names = args.only or list(SCENARIOS)
    partial = level != "full" or args.only is not None
    out: Path = args.out or (PARTIAL_RESULTS if partial else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(level=level, workspace=args.workspace.resolve(), scenario="bench")
    report: dict[str, Any] = {
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "level": level,
        "argv": ["bench/run.py", *argv],
        "scenarios_run": names,
        "machine": machine_info(),
        "scenarios": {},
    }
    ctx.progress(f"{level} run of {', '.join(names)}; results in {out}")
    for name in names:
        ctx.scenario = name
        ctx.progress("starting")
        started, load_before = time.monotonic(), os.getloadavg()[0]
        entry: dict[str, Any] = {}
        try:
            entry["result"] = SCENARIOS[name].run(ctx)
            ctx.progress(f"done in {time.monotonic() - started:.1f} s")
        except Exception:  # noqa: BLE001 - one failing scenario is reported; the others still run
            entry["error"] = traceback.format_exc()
            ctx.progress(f"FAILED after {time.monotonic() - started:.1f} s:\n{entry['error']}")
        entry["elapsed_s"] = time.monotonic() - started
        # The machine is shared: a load well above the cores during a scenario explains a wide spread.
        entry["load_average_1min"] = [load_before, os.getloadavg()[0]]
        report["scenarios"][name] = entry
    ctx.scenario = "bench"
    report["elapsed_s"] = time.monotonic() - ctx.started
    report["load_average_end"] = list(os.getloadavg())
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write(report, out)
    ctx.progress(f"total {report['elapsed_s']:.0f} s; wrote {out / 'latest.md'}")
    return report, out


def write(report: dict[str, Any], out: Path) -> None:
    """``<timestamp>.json``, ``latest.json``, the charts and ``latest.md`` into ``out``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    timestamped = out / f"{stamp}.json"
    timestamped.write_text(json.dumps(report, indent=1, default=str))
    shutil.copyfile(timestamped, out / "latest.json")
    charts = draw_all(report, out)
    (out / "latest.md").write_text(render(report, charts))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    report, _ = run(parse_args(argv), argv)
    print("\n".join(f"{t.status:4}  {t.name}: {t.measured}" for t in targets(report)))
    failed = [name for name, entry in report["scenarios"].items() if "error" in entry]
    if failed:
        print(f"scenario(s) failed: {', '.join(failed)} (see latest.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
