"""PNG charts of a result dict, with matplotlib's Agg backend (no display needed).

Each function draws one figure from the scenarios it needs and returns the
file name written, or None when those scenarios are not in the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .report import result_of  # noqa: E402

DPI = 110


def _errorbars(summaries: list[dict[str, Any] | None], scale: float = 1.0) -> tuple[list[float], list[list[float]]]:
    medians = [(s["median"] if s else 0.0) * scale for s in summaries]
    low = [((s["median"] - s["min"]) if s else 0.0) * scale for s in summaries]
    high = [((s["max"] - s["median"]) if s else 0.0) * scale for s in summaries]
    return medians, [low, high]


def cold_invoke_latency(report: dict[str, Any], out: Path) -> str | None:
    result = result_of(report, "cold_invoke")
    if not result:
        return None
    languages = {k: v for k, v in result["languages"].items() if v.get("samples_us")}
    if not languages:
        return None
    figure, axes = plt.subplots(figsize=(9, 4.5))
    axes.boxplot(
        [v["samples_us"] for v in languages.values()],
        tick_labels=list(languages),
        whis=(1, 99),
        showfliers=False,
    )
    axes.set_yscale("log")
    axes.set_ylabel("µs per invocation (log)")
    axes.set_title("Fresh-sandbox invoke, in-process: distribution (box 25–75 %, whiskers 1–99 %)")
    axes.grid(True, which="both", axis="y", alpha=0.3)
    return _save(figure, out, "cold_invoke_latency.png")


def cold_start_languages(report: dict[str, Any], out: Path) -> str | None:
    cold = result_of(report, "cold_invoke") or {}
    deploy = result_of(report, "deploy") or {}
    names = [
        x
        for x in (*cold.get("languages", {}), *deploy.get("languages", {}))
        if "p50_us" in cold.get("languages", {}).get(x, {})
        or "first_invoke_after_restart_ms" in deploy.get("languages", {}).get(x, {})
    ]
    names = list(dict.fromkeys(names))
    if not names:
        return None
    figure, axes = plt.subplots(figsize=(9, 4.5))
    width = 0.4
    positions = range(len(names))
    fresh, fresh_err = _errorbars([cold.get("languages", {}).get(x, {}).get("p50_us") for x in names], 1e-3)
    restart, restart_err = _errorbars(
        [deploy.get("languages", {}).get(x, {}).get("first_invoke_after_restart_ms") for x in names]
    )
    axes.bar([p - width / 2 for p in positions], fresh, width, yerr=fresh_err, capsize=3, label="fresh instance (p50)")
    axes.bar(
        [p + width / 2 for p in positions],
        restart,
        width,
        yerr=restart_err,
        capsize=3,
        label="first invoke after restart",
    )
    axes.set_xticks(list(positions), names)
    axes.set_yscale("log")
    axes.set_ylabel("ms (log), median with min–max")
    axes.set_title("Cold start per guest language, in-process")
    axes.legend()
    axes.grid(True, which="both", axis="y", alpha=0.3)
    return _save(figure, out, "cold_start_languages.png")


def http_throughput(report: dict[str, Any], out: Path) -> str | None:
    result = result_of(report, "http")
    if not result:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5))
    concurrency = result["concurrency"]
    for key, figures in result["systems"].items():
        medians, errors = _errorbars([figures.get(f"c{c}", {}).get("rps") for c in concurrency])
        axes.errorbar(concurrency, medians, yerr=errors, marker="o", capsize=3, label=key)
    axes.set_xscale("log", base=2)
    axes.set_xticks(concurrency, [str(c) for c in concurrency])
    axes.set_xlabel("concurrent connections")
    axes.set_ylabel("requests/s, median with min–max")
    axes.set_title("POST /invoke/echo: throughput against concurrency")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.grid(True, alpha=0.3)
    return _save(figure, out, "http_throughput.png")


def peers(report: dict[str, Any], out: Path) -> str | None:
    result = result_of(report, "peers")
    if not result:
        return None
    systems = result["systems"]
    names = list(systems)
    figure, (cold_axes, rps_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    positions = list(range(len(names)))
    width = 0.4
    first, first_err = _errorbars([systems[x].get("first_request_ms") for x in names])
    ready, ready_err = _errorbars([systems[x].get("spawn_to_ready_ms") for x in names])
    cold_axes.bar([p - width / 2 for p in positions], ready, width, yerr=ready_err, capsize=3, label="spawn to ready")
    cold_axes.bar([p + width / 2 for p in positions], first, width, yerr=first_err, capsize=3, label="first request")
    cold_axes.set_yscale("log")
    cold_axes.set_ylabel("ms (log), median with min–max")
    cold_axes.set_title("Cold start per system")
    cold_axes.legend()
    rps, rps_err = _errorbars([systems[x].get("c32_rps") for x in names])
    rps_axes.bar(positions, rps, yerr=rps_err, capsize=3, color="tab:green")
    rps_axes.set_ylabel("requests/s at c=32")
    rps_axes.set_title("Throughput at 32 connections")
    for axes in (cold_axes, rps_axes):
        axes.set_xticks(positions, names, rotation=25, ha="right")
        axes.grid(True, which="both", axis="y", alpha=0.3)
        for position, name in zip(positions, names, strict=True):
            if "unavailable" in systems[name]:
                axes.annotate(
                    "unavailable",
                    (position, 0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    rotation=90,
                    color="tab:red",
                    fontsize=8,
                )
    figure.suptitle("The same echo on wasmhost, bare Starlette and peer runtimes")
    return _save(figure, out, "peers.png")


def timeout_precision(report: dict[str, Any], out: Path) -> str | None:
    result = result_of(report, "limits")
    if not result:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for timeout_ms, figures in result["timeout"]["by_timeout_ms"].items():
        deltas = sorted(figures["deltas_ms"])
        axes.step(deltas, [(i + 1) / len(deltas) for i in range(len(deltas))], where="post", label=f"{timeout_ms} ms")
    axes.axvline(10, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("stopped after the deadline by, ms")
    axes.set_ylabel("fraction of runs (cumulative)")
    axes.set_title("Timeout precision: infinite loop stopped (10 ms line = target)")
    axes.legend(title="timeout_ms")
    axes.grid(True, alpha=0.3)
    return _save(figure, out, "timeout_precision.png")


def _save(figure: Any, out: Path, name: str) -> str:
    figure.tight_layout()
    figure.savefig(out / name, dpi=DPI)
    plt.close(figure)
    return name


CHARTS: list[Callable[[dict[str, Any], Path], str | None]] = [
    cold_invoke_latency,
    cold_start_languages,
    http_throughput,
    peers,
    timeout_precision,
]


def draw_all(report: dict[str, Any], out: Path) -> list[str]:
    """Every chart the report has data for, written to ``out``; their file names."""
    return [name for chart in CHARTS if (name := chart(report, out))]
