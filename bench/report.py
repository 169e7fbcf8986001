"""Turn a result dict (what ``run.py`` writes as JSON) into ``latest.md``: machine, targets, one table per scenario.

Figures read "median (min–max)" over repetitions. Targets are judged on the median.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .workspace import LANGUAGES

WORKERD = ("workerd-js", "workerd-wasm")
SERVERLESS_OFFLINE = "serverless-offline"


@dataclass
class Target:
    """One line of the targets table."""

    name: str
    goal: str
    measured: str
    status: str
    """``PASS``, ``FAIL`` or ``n/a`` (not measured in this run, or a system that could not run)."""


def fmt(summary: dict[str, Any] | None, scale: float = 1.0, digits: int = 1) -> str:
    """``"13.2 (12.9–14.1)"`` from a summary; ``"13.2"`` when there was one repetition."""
    if not summary:
        return "–"
    median = f"{summary['median'] * scale:,.{digits}f}"
    if len(summary.get("reps", [])) <= 1 or summary["min"] == summary["max"]:
        return median
    return f"{median} ({summary['min'] * scale:,.{digits}f}–{summary['max'] * scale:,.{digits}f})"


def mib(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.1f} MiB"


def result_of(report: dict[str, Any], scenario: str) -> dict[str, Any] | None:
    entry = report.get("scenarios", {}).get(scenario)
    return entry.get("result") if entry else None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


# --- targets ----------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[Target]:
    cold = result_of(report, "cold_invoke")
    http = result_of(report, "http")
    peers = result_of(report, "peers")
    limits = result_of(report, "limits")
    rows: list[Target] = []

    def judge(name: str, goal: str, value: float | None, passes: Callable[[float], bool], measured: str) -> None:
        if value is None:
            rows.append(Target(name, goal, measured or "not measured in this run", "n/a"))
        else:
            rows.append(Target(name, goal, measured, "PASS" if passes(value) else "FAIL"))

    c_p50 = _get(cold, "languages", "c", "p50_us")
    judge("C echo, in-process fresh invoke p50", "≤ 40 µs", c_p50 and c_p50["median"], lambda v: v <= 40, _us(c_p50))
    for language in ("python", "javascript"):
        p50 = _get(cold, "languages", language, "p50_us")
        reason = _get(cold, "languages", language, "unavailable")
        judge(
            f"{language.capitalize()} echo, fresh invoke p50",
            "≤ 1 ms",
            p50 and p50["median"],
            lambda v: v <= 1000,
            reason or _us(p50),
        )
    for workers in (1, 2):
        ratio = _get(http, "ratios", f"wasmhost/starlette w{workers} c32")
        judge(
            f"HTTP c=32, wasmhost / bare Starlette, {workers} worker{'s' * (workers > 1)}",
            "≥ 0.8×",
            ratio and ratio["median"],
            lambda v: v >= 0.8,
            _ratio_text(ratio, http, f"wasmhost-w{workers}", f"starlette-w{workers}"),
        )
    scaling = _get(http, "ratios", "wasmhost w2/w1 c32")
    bare_scaling = _get(http, "ratios", "starlette w2/w1 c32")
    judge(
        "HTTP c=32, wasmhost --workers 2 / --workers 1",
        "≥ 1.6×",
        scaling and scaling["median"],
        lambda v: v >= 1.6,
        f"{fmt(scaling, digits=2)}× (bare Starlette: {fmt(bare_scaling, digits=2)}×)" if scaling else "",
    )
    timeout = _get(limits, "timeout", "all")
    judge(
        "timeout: stops within 10 ms after the deadline",
        "≥ 99 %",
        timeout and timeout["within_10ms_pct"],
        lambda v: v >= 99,
        f"{timeout['within_10ms_pct']:.1f} % of {timeout['n']} (p99 +{timeout['p99_ms']:.1f} ms, max +{timeout['max_ms']:.1f} ms)"
        if timeout
        else "",
    )
    systems = _get(peers, "systems") or {}
    ours = systems.get("wasmhost", {})
    for peer in WORKERD:
        reason = _peer_reason(peers, peer)
        ratio = _get(peers, "ratios", f"{peer}/wasmhost first request")
        measured = reason or (
            f"first request {fmt(ours.get('first_request_ms'), digits=2)} ms vs "
            f"{fmt(systems[peer].get('first_request_ms'), digits=2)} ms = {fmt(ratio, digits=1)}× lower"
            if ratio
            else ""
        )
        judge(f"cold start below {peer}'s", "ratio > 1", ratio and ratio["median"], lambda v: v > 1, measured)
        ratio = _get(peers, "ratios", f"wasmhost/{peer} c32 rps")
        measured = reason or (
            f"{fmt(ours.get('c32_rps'), digits=0)} vs {fmt(systems[peer].get('c32_rps'), digits=0)} req/s "
            f"= {fmt(ratio, digits=2)}×"
            if ratio
            else ""
        )
        judge(f"HTTP c=32 throughput above {peer}'s", "ratio > 1", ratio and ratio["median"], lambda v: v > 1, measured)
    so_reason = _peer_reason(peers, SERVERLESS_OFFLINE)
    so_first = _get(systems, SERVERLESS_OFFLINE, "first_request_ms", "median")
    python_p50 = _get(cold, "languages", "python", "p50_us", "median")
    in_process = so_first / (python_p50 / 1000) if so_first and python_p50 else None
    judge(
        "Python cold start vs serverless-offline: in-process fresh invoke",
        "≥ 30× lower",
        in_process,
        lambda v: v >= 30,
        so_reason
        or (
            f"{python_p50 / 1000:.2f} ms vs first request {so_first:,.1f} ms = {in_process:,.0f}×" if in_process else ""
        ),
    )
    ratio = _get(peers, "ratios", f"{SERVERLESS_OFFLINE}/wasmhost-python first request")
    judge(
        "Python cold start vs serverless-offline: HTTP first request",
        "≥ 30× lower",
        ratio and ratio["median"],
        lambda v: v >= 30,
        so_reason
        or (
            f"{fmt(_get(systems, 'wasmhost-python', 'first_request_ms'), digits=2)} ms vs "
            f"{fmt(_get(systems, SERVERLESS_OFFLINE, 'first_request_ms'), digits=1)} ms = {fmt(ratio, digits=0)}×"
            if ratio
            else ""
        ),
    )
    in_process = _get(result_of(report, "operations"), "in_process")
    overhead = _get(in_process, "ratios", "metering / neither")
    judge(
        "metering and logging overhead per invocation (in-process C echo)",
        "≤ 10 %",
        overhead and (overhead["median"] - 1) * 100,
        lambda v: v <= 10,
        _overhead_text(in_process) if overhead else "",
    )
    return rows


def _overhead_text(in_process: dict[str, Any]) -> str:
    """``+23 % (+20–+25) wall: 20.6 vs 16.8 µs; CPU +31 %; logs printed +180 %``."""
    wall = in_process["per_invocation_us"]
    cpu = _get(in_process, "cpu_ratios", "metering / neither")
    printed = _get(in_process, "ratios", "metering+logs / neither")
    return (
        f"{_percent(in_process['ratios']['metering / neither'])} wall: {fmt(wall['metering'])} vs "
        f"{fmt(wall['neither'])} µs; CPU {_percent(cpu)}; with the logs printed: {_percent(printed)}"
    )


def _percent(ratio: dict[str, Any] | None) -> str:
    """A ratio's summary as an overhead: ``+23 % (+20–+25)``."""
    if not ratio:
        return "–"
    overhead = {key: (ratio[key] - 1) * 100 for key in ("median", "min", "max")}
    text = f"{overhead['median']:+.0f} %"
    if len(ratio.get("reps", [])) > 1 and ratio["min"] != ratio["max"]:
        text += f" ({overhead['min']:+.0f}–{overhead['max']:+.0f})"
    return text


def _us(summary: dict[str, Any] | None) -> str:
    return "" if summary is None else f"{fmt(summary)} µs"


def _ratio_text(ratio: dict | None, http: dict | None, ours: str, bare: str) -> str:
    if not ratio or not http:
        return ""
    ours_rps = _get(http, "systems", ours, "c32", "rps")
    bare_rps = _get(http, "systems", bare, "c32", "rps")
    return f"{fmt(ours_rps, digits=0)} / {fmt(bare_rps, digits=0)} req/s = {fmt(ratio, digits=2)}×"


def _peer_reason(peers: dict | None, peer: str) -> str | None:
    reason = _get(peers, "systems", peer, "unavailable") or _get(peers, "systems", "peers", "unavailable")
    return f"{peer} unavailable: {reason}" if reason else None


# --- the document -----------------------------------------------------------------


def render(report: dict[str, Any], charts: list[str]) -> str:
    """``latest.md`` for ``report``, linking the chart files named in ``charts``."""
    out: list[str] = ["# wasmhost benchmark", ""]
    machine = report.get("machine", {})
    out += [
        f"Run {report.get('started', '?')}, {report.get('level', '?')} run, {report.get('elapsed_s', 0):.0f} s "
        f"(`{' '.join(report.get('argv', []))}`). How to read it: bench/README.md.",
        "",
        "| machine | |",
        "|---|---|",
        f"| cores (nproc) | {machine.get('nproc')} |",
        f"| CPU | {machine.get('cpu_model')} |",
        f"| memory | {mib(machine.get('memory_bytes'))} |",
        f"| Python | {machine.get('python')} |",
        f"| wasmtime | {machine.get('wasmtime')} |",
        f"| git commit | {machine.get('git_commit')}{' (with local changes)' if machine.get('git_dirty') else ''} |",
        f"| load average at start / end | {_load(machine.get('load_average'))} / {_load(report.get('load_average_end'))} |",
        "",
        "## Targets",
        "",
        "| target | goal | measured (median of repetitions) | |",
        "|---|---|---|---|",
    ]
    out += [f"| {t.name} | {t.goal} | {t.measured} | **{t.status}** |" for t in targets(report)]
    out.append("")
    for scenario, section in SECTIONS.items():
        entry = report.get("scenarios", {}).get(scenario)
        if entry is None:
            continue
        out += [f"## {scenario}", ""]
        if "error" in entry:
            out += ["The scenario failed:", "", "```", entry["error"].strip()[-3000:], "```", ""]
            continue
        out += section(entry["result"])
        load = entry.get("load_average_1min")
        load_text = f", load average {load[0]:.1f} → {load[1]:.1f}" if load else ""
        out += [f"_({entry['elapsed_s']:.0f} s{load_text})_", ""]
    if charts:
        out += ["## Charts", ""]
        out += [f"![{name}]({name})" for name in charts]
        out.append("")
    return "\n".join(out)


def _load(values: list[float] | None) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "–"


def _cold_invoke(result: dict[str, Any]) -> list[str]:
    out = [
        f"Fresh sandbox per invocation, in-process (`Host.invoke`, no HTTP); "
        f"C fast path {'on' if result.get('fast_path') else 'off'}. Median of block p50/p99 (min–max over blocks).",
        "",
        "| language | kind | artifact | p50 µs | p99 µs | blocks × n |",
        "|---|---|---|---|---|---|",
    ]
    for language, figures in result["languages"].items():
        if "unavailable" in figures:
            out.append(f"| {language} | – | – | unavailable: {figures['unavailable']} | | |")
            continue
        out.append(
            f"| {language} | {figures['kind']} | {figures['size_bytes'] / 1e6:.2f} MB | {fmt(figures['p50_us'])} | "
            f"{fmt(figures['p99_us'])} | {figures['blocks']} × {figures['n_per_block']} |"
        )
    return [*out, ""]


def _deploy(result: dict[str, Any]) -> list[str]:
    out = [
        f"`Host.deploy` on a fresh data directory ({result['reps']} repetitions): validate, compile, write the cache. "
        f"Then a restarted host (new `Host`, {fmt(result['host_open_ms'], digits=1)} ms to open) invokes each "
        "function once, mapping its code: no compile.",
        "",
        "| language | module | compiled | compile ms | first invoke after restart, ms |",
        "|---|---|---|---|---|",
    ]
    for language, figures in result["languages"].items():
        if "unavailable" in figures or "skipped" in figures:
            out.append(f"| {language} | {figures.get('unavailable') or figures.get('skipped')} | | | |")
            continue
        out.append(
            f"| {language} | {figures['module_bytes'] / 1e6:.2f} MB | {figures['compiled_bytes'] / 1e6:.2f} MB | "
            f"{fmt(figures['compile_ms'])} | {fmt(figures['first_invoke_after_restart_ms'], digits=2)} |"
        )
    return [*out, ""]


def _http(result: dict[str, Any]) -> list[str]:
    concurrency = result["concurrency"]
    out = [
        f"wrk POSTing the echo event, {result['rounds']} rounds × {result['seconds_per_run']} s per concurrency, "
        "systems in alternating order. Requests/s:",
        "",
        "| system | "
        + " | ".join(f"c={c}" for c in concurrency)
        + " | c=1 p50 ms | c=1 p99 ms | RSS idle → after load | errors |",
        "|---|" + "---|" * (len(concurrency) + 4),
    ]
    for key, figures in result["systems"].items():
        rps = " | ".join(fmt(_get(figures, f"c{c}", "rps"), digits=0) for c in concurrency)
        memory = figures.get("memory", {})
        rss = f"{mib(_get(memory, 'idle', 'rss_bytes'))} → {mib(_get(memory, 'after_load', 'rss_bytes'))}"
        errors = sum(figures[f"c{c}"]["errors"] for c in concurrency)
        out.append(
            f"| {key} | {rps} | {fmt(_get(figures, 'c1', 'p50_ms'), digits=3)} | "
            f"{fmt(_get(figures, 'c1', 'p99_ms'), digits=3)} | {rss} | {errors} |"
        )
    out += [
        "",
        "Ratios, per round (median (min–max)):",
        "",
        "| ratio | " + " | ".join(f"c={c}" for c in concurrency) + " |",
    ]
    out.append("|---|" + "---|" * len(concurrency))
    names = sorted({name.rsplit(" ", 1)[0] for name in result["ratios"]})
    for name in names:
        cells = " | ".join(fmt(result["ratios"].get(f"{name} c{c}"), digits=2) for c in concurrency)
        out.append(f"| {name} | {cells} |")
    return [*out, ""]


def _peers(result: dict[str, Any]) -> list[str]:
    out = [
        f"Every system started afresh each round ({result['rounds']} rounds, alternating order), 1 worker each. "
        "Cold start: spawn → port accepts TCP (spawn to ready), then the first POST (first request). "
        "wasmhost serves every request with a fresh instance (see cold_invoke); `wasmhost-python` is its "
        "cold start for the Python echo, the handler serverless-offline runs.",
        "",
        "| system | spawn to ready ms | first request ms | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p50 ms "
        "| c=32 p99 ms | RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system, figures in result["systems"].items():
        if "unavailable" in figures:
            out.append(f"| {system} | unavailable: {figures['unavailable']} | | | | | | | |")
            continue
        rss = _get(figures, "rss_bytes", "median")
        out.append(
            f"| {system} | {fmt(figures['spawn_to_ready_ms'], digits=0)} | {fmt(figures['first_request_ms'], digits=2)} | "
            f"{fmt(figures.get('c1_p50_ms'), digits=3)} | {fmt(figures.get('c1_p99_ms'), digits=3)} | "
            f"{fmt(figures.get('c32_rps'), digits=0)} | {fmt(figures.get('c32_p50_ms'), digits=2)} | "
            f"{fmt(figures.get('c32_p99_ms'), digits=2)} | {mib(rss) if rss else '–'} |"
        )
        for failure in figures.get("failures", []):
            out.append(f"| ↳ {system} failed a round | {failure[:200]} | | | | | | | |")
    if result.get("ratios"):
        out += ["", "| ratio (same round) | median (min–max) |", "|---|---|"]
        out += [f"| {name} | {fmt(value, digits=2)}× |" for name, value in result["ratios"].items()]
    return [*out, ""]


def _limits(result: dict[str, Any]) -> list[str]:
    timeout = result["timeout"]
    out = [
        f"Infinite loop (spin.wasm): time from invoke to return minus `timeout_ms`; {timeout['concurrency']} runs at "
        "a time (one per core: more spinning guests than cores delay the stop). Epoch ticker: "
        f"{_get(timeout, 'epoch_ticker', 'kind') or '?'}, every {_get(timeout, 'epoch_ticker', 'period_ms') or '?'} ms.",
        "",
        "| timeout_ms | runs | p50 | p99 | max | within 10 ms | one at a time: p50 (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for timeout_ms, figures in timeout["by_timeout_ms"].items():
        check = timeout["sequential_check"].get(timeout_ms)
        check_text = f"+{check['p50_ms']:.1f} ms ({check['n']})" if check else "–"
        out.append(
            f"| {timeout_ms} | {figures['n']} | +{figures['p50_ms']:.1f} ms | +{figures['p99_ms']:.1f} ms | "
            f"+{figures['max_ms']:.1f} ms | {figures['within_10ms_pct']:.0f} % | {check_text} |"
        )
    fuel = result["fuel_epoch"]
    out += [
        "",
        f"fib({fuel['n']}), naive recursion, fresh instance per call ({fuel['blocks']} blocks × {fuel['per_block']}, "
        "median per block). The three engines: the guest call alone; `Host.invoke`: the whole invocation.",
        "",
        "| engine | ms per invocation |",
        "|---|---|",
    ]
    out += [f"| {name} | {fmt(value, digits=2)} |" for name, value in fuel["per_invocation_ms"].items()]
    out += ["", "| overhead | ratio |", "|---|---|"]
    out += [f"| {name} | {fmt(value, digits=2)}× |" for name, value in fuel["ratios"].items()]
    return [*out, ""]


def _scale(result: dict[str, Any]) -> list[str]:
    functions, inflight = result["functions"], result["inflight"]
    first = functions["first_invoke_ms"]
    errors = ", ".join(f"{k}: {v}" for k, v in inflight["errors"].items()) or "none"
    return [
        f"{functions['how']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| functions deployed | {functions['functions']:,} ({functions['distinct_digests']:,} distinct digests) |",
        f"| deploy rate (compiling), per chunk of 250 | {fmt(functions['deploy_per_s'], digits=0)} functions/s "
        f"({functions['compiled_by_deploy']:,} in {functions['deploy_s']:.0f} s) |",
        f"| deploy rate (code compiled before) | {functions['register_per_s'] or 0:,.0f} functions/s |",
        f"| host RSS: empty → after deploys → after first invokes | {mib(functions['rss_start_bytes'])} → "
        f"{mib(functions['rss_after_deploy_bytes'])} → {mib(functions['rss_after_invokes_bytes'])} |",
        f"| first invoke of {first['n']} random functions | p50 {first['p50']:.2f} ms, p99 {first['p99']:.2f} ms, "
        f"max {first['max']:.2f} ms ({first['cold']} cold, {first['compiled']} compiled) |",
        f"| {inflight['n']:,} invocations of a {inflight['sleep_ms']} ms sleep at once: memory per in-flight | "
        f"{fmt(inflight['bytes_per_inflight'], scale=1 / 1024, digits=0)} KiB |",
        f"| … all done after | {fmt(inflight['all_done_s'], digits=2)} s "
        f"({inflight['completed_ok']:,} ok; errors: {errors}; all in flight at once: "
        f"{'yes' if inflight['all_in_flight_at_once'] else 'NO'}) |",
        "",
    ]


def _operations(result: dict[str, Any]) -> list[str]:
    in_process, http, queue = result["in_process"], result["http"], result["async"]
    n = in_process["invocations_per_block"]
    out = [
        f"**Metering and logging.** C echo through `Host.invoke`, one host, three variants alternating "
        f"({in_process['rounds']} rounds; blocks of {', '.join(f'{n[v]:,}' for v in n)} invocations, about "
        f"{in_process['block_s']:g} s each, each ending with a flush of the telemetry it made). "
        "`metering`: the host as it is (the "
        "invocation logger quiet, as in-process by default); `metering+logs`: the invocation logs printed too, as "
        "`wasmhost serve` does at `--log-level info` (to /dev/null here); `neither`: a telemetry store that records "
        "nothing. CPU is the whole process's (the flush thread included). Ratios per round.",
        "",
        "| variant | µs per invocation (wall) | CPU µs per invocation | wall / neither | CPU / neither |",
        "|---|---|---|---|---|",
    ]
    for variant, wall in in_process["per_invocation_us"].items():
        key = f"{variant} / neither"
        wall_ratio, cpu_ratio = in_process["ratios"].get(key), in_process["cpu_ratios"].get(key)
        out.append(
            f"| {variant} | {fmt(wall)} | {fmt(in_process['cpu_per_invocation_us'][variant])} | "
            f"{fmt(wall_ratio, digits=2) + '×' if wall_ratio else '–'} | "
            f"{fmt(cpu_ratio, digits=2) + '×' if cpu_ratio else '–'} |"
        )
    breakdown = in_process["breakdown"]
    out += [
        "",
        f"Metering taken apart ({breakdown['records']:,} records on a store of its own, CPU): "
        f"`TelemetryStore.record` {breakdown['record_cpu_us']:.2f} µs per call on the invoke path, "
        f"`flush` (the background thread's SQLite write) {breakdown['flush_cpu_us_per_record']:.2f} µs per record.",
        "",
    ]
    if "unavailable" in http:
        out += [f"Through HTTP: unavailable: {http['unavailable']}", ""]
    else:
        out += [
            f"Through HTTP: one worker each (uvicorn `--factory`: the host's app, and the same with a telemetry store "
            f"that records nothing), wrk at c={http['concurrency']}, {http['rounds']} round{'s' * (http['rounds'] > 1)} × "
            f"{http['seconds_per_run']} s alternating; server CPU per request from /proc.",
            "",
            "| server | req/s | server CPU µs per request | errors |",
            "|---|---|---|---|",
        ]
        for server, figures in http["servers"].items():
            out.append(
                f"| {server} | {fmt(figures['rps'], digits=0)} | {fmt(figures['cpu_us_per_request'])} | "
                f"{figures['errors']} |"
            )
        out += [
            "",
            f"metering / neither: CPU per request {fmt(http['cpu_ratio'], digits=3)}×, "
            f"req/s {fmt(http['rps_ratio'], digits=3)}×.",
            "",
        ]
    enqueue = queue["enqueue"]
    out += [
        f"**Asynchronous invocations.** {queue['events']:,} events queued for the C echo before "
        f"`wasmhost serve --workers {queue['workers']}` starts on a fresh data directory ({len(queue['reps'])} "
        "repetitions); drained = from the first event done until the queue is empty (depth polled every 20 ms). "
        f"Then wrk POSTs events (`X-Wasmhost-Invocation-Type: Event`, answered 202 once fsynced) at "
        f"c={enqueue['concurrency']} for {enqueue['seconds_per_run']} s, "
        "while the workers drain.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| drain rate, 2 workers | {fmt(queue['drain_events_per_s'], digits=0)} events/s "
        f"({fmt(queue['drain_s'], digits=2)} s; dead-lettered: {queue['dead_letters']}) |",
        f"| spawn → first event done | {fmt(queue['spawn_to_first_done_s'], digits=2)} s |",
    ]
    if "unavailable" in enqueue:
        out.append(f"| enqueue over HTTP | unavailable: {enqueue['unavailable']} |")
    else:
        out += [
            f"| enqueue over HTTP (202/s) | {fmt(enqueue['accepted_per_s'], digits=0)} |",
            f"| … latency p50 / p99 | {fmt(enqueue['p50_ms'], digits=2)} / {fmt(enqueue['p99_ms'], digits=1)} ms |",
            f"| … events still queued when wrk stopped | {fmt(enqueue['backlog_after'], digits=0)} "
            f"(errors: {enqueue['errors']}) |",
        ]
    return [*out, ""]


def _triggers(result: dict[str, Any]) -> list[str]:
    out = [
        "**Event source mappings.** Messages per second delivered to the C echo by each kind of mapping "
        "(`maximum_batching_window_ms` 0), N messages written while the mapping was stopped, then the mapping "
        "started; from the first acknowledged message to the last (median of the repetitions, min–max).",
        "",
        "| source | messages | batch size 1 (msgs/s) | batch size 10 (msgs/s) | 10 / 1 |",
        "|---|---|---|---|---|",
    ]
    for kind, figures in result["rates"].items():
        if "skipped" in figures or "error" in figures:
            out.append(f"| {kind} | – | {figures.get('skipped') or figures.get('error')} | | |")
            continue
        one, ten = figures["batch_1"], figures["batch_10"]
        ratio = f"{ten['median'] / one['median']:.1f}×" if one["median"] else "–"
        out.append(f"| {kind} | {figures['messages']:,} | {fmt(one, digits=0)} | {fmt(ten, digits=0)} | {ratio} |")
    return [*out, ""]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "cold_invoke": _cold_invoke,
    "deploy": _deploy,
    "http": _http,
    "peers": _peers,
    "limits": _limits,
    "scale": _scale,
    "operations": _operations,
    "triggers": _triggers,
}

__all__ = ["LANGUAGES", "Target", "fmt", "render", "targets"]
