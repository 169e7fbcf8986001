"""``make bench``: wasmhost's latency and throughput, measured side by side in one run.

Prints a table and writes ``bench/results/<timestamp>.json``. Comparisons with
the bare Starlette echo (the ceiling of the Python HTTP stack) alternate the two
systems and take medians, because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "guests" / "dist"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from wasmhost import FunctionConfig, Host  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


# --- in-process -------------------------------------------------------------


def bench_in_process(n: int) -> dict:
    progress(f"in-process: {n} fresh-sandbox invocations of the C echo")
    with tempfile.TemporaryDirectory() as data, Host(data_dir=data) as host:
        host.deploy("echo", (DIST / "echo.wasm").read_bytes(), FunctionConfig(memory_mb=16))
        event = {"name": "world", "n": 42, "tags": ["a", "b"]}
        for _ in range(500):
            host.invoke("echo", event)
        times = []
        for _ in range(n):
            started = time.perf_counter()
            host.invoke("echo", event)
            times.append((time.perf_counter() - started) * 1e6)
    return {"p50_us": percentile(times, 0.5), "p99_us": percentile(times, 0.99), "n": n}


LANGUAGE_ECHOES = [
    ("c", "echo.wasm"),
    ("zig", "zig-echo.wasm"),
    ("assemblyscript", "as-echo.wasm"),
    ("rust", "rust-echo.wasm"),
    ("go", "go-echo.wasm"),
    ("javascript", "js-echo.wasm"),
]


def bench_languages(n_core: int, n_component: int) -> dict:
    """Fresh-instance invoke of each language's echo, in-process: p50, p99, artifact size."""
    from wasmhost.build import build

    results: dict[str, dict] = {}
    artifacts: list[tuple[str, Path | None, str]] = [
        (lang, DIST / name if (DIST / name).exists() else None, f"guests/dist/{name} not built")
        for lang, name in LANGUAGE_ECHOES
    ]
    try:
        artifacts.append(("python", build(ROOT / "guests" / "python" / "examples" / "kitchen").path, ""))
    except Exception as exc:  # noqa: BLE001 - a missing toolchain is reported, not fatal
        artifacts.append(("python", None, str(exc)))
    event = {"action": "echo", "name": "world", "n": 42, "tags": ["a", "b"]}
    with tempfile.TemporaryDirectory() as data, Host(data_dir=data) as host:
        for lang, path, reason in artifacts:
            if path is None:
                results[lang] = {"skipped": reason}
                continue
            progress(f"cold invoke per language: {lang}")
            host.deploy(lang, path.read_bytes(), FunctionConfig(memory_mb=64, timeout_ms=5000))
            n = n_component if host.get(lang).kind == "component" else n_core
            for _ in range(min(50, n)):
                host.invoke(lang, event)
            times = []
            for _ in range(n):
                started = time.perf_counter()
                result = host.invoke(lang, event)
                times.append((time.perf_counter() - started) * 1e6)
            assert result.error is None, (lang, result.error)
            results[lang] = {
                "p50_us": percentile(times, 0.5),
                "p99_us": percentile(times, 0.99),
                "size_bytes": path.stat().st_size,
                "kind": host.get(lang).kind,
                "n": n,
            }
    return results


def bench_restart(repeats: int) -> dict:
    progress("first invocation after a host restart (code mapped from the compile cache)")
    firsts = []
    with tempfile.TemporaryDirectory() as data:
        with Host(data_dir=data) as host:
            host.deploy("echo", (DIST / "echo.wasm").read_bytes())
        for _ in range(repeats):
            with Host(data_dir=data) as host:
                started = time.perf_counter()
                result = host.invoke("echo", {"a": 1})
                firsts.append((time.perf_counter() - started) * 1000)
                assert result.cold and host.engine.cache.compiles == 0
    return {"median_ms": statistics.median(firsts), "max_ms": max(firsts), "n": repeats}


def bench_timeout(repeats: int) -> dict:
    progress(f"timeout precision: {repeats} runs of an infinite loop with timeout_ms=200")
    stops = []
    with tempfile.TemporaryDirectory() as data, Host(data_dir=data) as host:
        host.deploy("spin", (DIST / "spin.wasm").read_bytes(), FunctionConfig(timeout_ms=200))
        for _ in range(repeats):
            started = time.perf_counter()
            result = host.invoke("spin")
            stops.append((time.perf_counter() - started) * 1000)
            assert result.error is not None and result.error.type == "Timeout"
    return {"min_ms": min(stops), "p50_ms": statistics.median(stops), "max_ms": max(stops), "n": repeats}


# --- HTTP -------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(command: list[str], url: str, env: dict | None = None):
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, seconds: float) -> dict:
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = {
        pct: float(value) * _UNITS[unit]
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def bench_http(rounds: int, seconds: float, workers: int) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does this)")
    data = tempfile.mkdtemp()
    with Host(data_dir=data) as host:
        host.deploy("echo", (DIST / "echo.wasm").read_bytes(), FunctionConfig(memory_mb=16))
    wasm_port, bare_port = free_port(), free_port()
    wasm_url = f"http://127.0.0.1:{wasm_port}/invoke/echo"
    bare_url = f"http://127.0.0.1:{bare_port}/invoke/echo"
    wasmhost_cmd = [sys.executable, "-m", "wasmhost", "--data-dir", data, "serve", "--port", str(wasm_port)]
    wasmhost_cmd += ["--workers", str(workers), "--log-level", "warning"]
    bare_cmd = [sys.executable, "-m", "uvicorn", "bench.bare_echo:app", "--port", str(bare_port)]
    bare_cmd += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    samples: dict[str, dict[str, list]] = {"wasmhost": {}, "starlette": {}}
    with running(wasmhost_cmd, wasm_url), running(bare_cmd, bare_url):
        for url in (wasm_url, bare_url):
            wrk(url, 32, 1)  # warm up
        for r in range(rounds):
            order = [("wasmhost", wasm_url), ("starlette", bare_url)]
            if r % 2:
                order.reverse()  # alternate who goes first
            for system, url in order:
                progress(f"HTTP round {r + 1}/{rounds} ({workers} worker{'s' * (workers > 1)}): {system}")
                for connections in (1, 32):
                    result = wrk(url, connections, seconds)
                    samples[system].setdefault(f"c{connections}", []).append(result)
    shutil.rmtree(data, ignore_errors=True)

    def median(system: str, key: str, field: str) -> float:
        return statistics.median(s[field] for s in samples[system][key])

    summary = {}
    for system in samples:
        summary[system] = {
            "c1_p50_ms": median(system, "c1", "p50_ms"),
            "c1_p99_ms": median(system, "c1", "p99_ms"),
            "c32_rps": median(system, "c32", "rps"),
            "non_2xx": sum(s["non_2xx"] for k in samples[system] for s in samples[system][k]),
        }
    ratios = [w["rps"] / b["rps"] for w, b in zip(samples["wasmhost"]["c32"], samples["starlette"]["c32"], strict=True)]
    summary["c32_ratio_median"] = statistics.median(ratios)
    summary["c32_ratios"] = ratios
    summary["samples"] = samples
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    args = parser.parse_args()
    quick = args.quick
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick}
    report["in_process"] = bench_in_process(5_000 if quick else 30_000)
    report["languages"] = bench_languages(2_000 if quick else 10_000, 100 if quick else 400)
    report["restart"] = bench_restart(3 if quick else 10)
    report["timeout_200ms"] = bench_timeout(5 if quick else 20)
    report["http_1_worker"] = bench_http(1 if quick else 3, 3 if quick else 5, 1)
    if not quick:
        report["http_2_workers"] = bench_http(3, 5, 2)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))

    ip, rs, to, h1 = report["in_process"], report["restart"], report["timeout_200ms"], report["http_1_worker"]
    rows = [
        (
            "in-process invoke, C echo, fresh sandbox",
            f"p50 {ip['p50_us']:.0f} µs, p99 {ip['p99_us']:.0f} µs",
            "p50 ≤ 100 µs",
        ),
        ("first invoke after restart", f"median {rs['median_ms']:.2f} ms, max {rs['max_ms']:.2f} ms", "< 5 ms"),
        (
            "infinite loop, timeout 200 ms, stopped after",
            f"{to['min_ms']:.1f}–{to['max_ms']:.1f} ms (p50 {to['p50_ms']:.1f})",
            "200–230 ms",
        ),
        (
            "HTTP c=1 wasmhost",
            f"p50 {h1['wasmhost']['c1_p50_ms']:.3f} ms, p99 {h1['wasmhost']['c1_p99_ms']:.3f} ms",
            "p50 ≤ 1 ms",
        ),
        (
            "HTTP c=1 bare Starlette",
            f"p50 {h1['starlette']['c1_p50_ms']:.3f} ms, p99 {h1['starlette']['c1_p99_ms']:.3f} ms",
            "",
        ),
        (
            "HTTP c=32 wasmhost / bare Starlette",
            f"{h1['wasmhost']['c32_rps']:.0f} / {h1['starlette']['c32_rps']:.0f} req/s = {h1['c32_ratio_median']:.2f}×",
            "≥ 0.6×",
        ),
    ]
    if "http_2_workers" in report:
        h2 = report["http_2_workers"]
        rows.append(
            (
                "HTTP c=32, 2 workers each",
                f"{h2['wasmhost']['c32_rps']:.0f} / {h2['starlette']['c32_rps']:.0f} req/s = {h2['c32_ratio_median']:.2f}×",
                "",
            )
        )
    for lang, figures in report["languages"].items():
        if "skipped" in figures:
            rows.append((f"cold invoke, {lang} echo", f"skipped: {figures['skipped'][:60]}", ""))
            continue
        target = (
            "p50 ≤ 3 ms" if lang in ("python", "javascript") else ("p50 ≤ 1 ms" if lang == "go" else "p50 ≤ 100 µs")
        )
        rows.append(
            (
                f"cold invoke, {lang} echo ({figures['size_bytes'] / 1e6:.2f} MB)",
                f"p50 {figures['p50_us']:.0f} µs, p99 {figures['p99_us']:.0f} µs",
                target,
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'result':44}  target")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:44}  {target}")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
