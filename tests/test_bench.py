"""The benchmark instrument (bench/): its statistics, its wasm encoder, its report, a tiny real run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner

from bench import run as bench_run
from bench.load import parse_wrk
from bench.report import render, targets
from bench.stats import alternating, block_summary, percentile, ratios, subsample, summarize
from wasmhost import Host
from wasmhost.abi.sections import custom_section, uleb128, with_custom_section
from wasmhost.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


# --- stats ------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks():
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile(list(range(101)), 0.99) == 99
    assert percentile([7], 0.99) == 7
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_summary_is_median_with_min_max_and_keeps_repetitions():
    assert summarize([3, 1, 2, 10]) == {"median": 2.5, "min": 1, "max": 10, "reps": [3, 1, 2, 10]}


def test_ratios_pair_rounds():
    summary = ratios([10, 20, 30], [10, 10, 10])
    assert summary["median"] == 2 and summary["min"] == 1 and summary["max"] == 3
    with pytest.raises(ValueError):
        ratios([1], [1, 2])


def test_block_summary_and_subsample():
    summary = block_summary([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert summary["p50"]["reps"] == [2, 5, 8] and summary["p50"]["median"] == 5
    assert len(subsample(list(range(1000)), 10)) == 10
    assert subsample([1, 2], 10) == [1, 2]


def test_alternating_order_reverses_every_other_round():
    assert alternating("ABC", 0) == ["A", "B", "C"]
    assert alternating("ABC", 1) == ["C", "B", "A"]


# --- custom sections --------------------------------------------------------------


def test_uleb128():
    assert uleb128(0) == b"\x00"
    assert uleb128(127) == b"\x7f"
    assert uleb128(128) == b"\x80\x01"
    assert uleb128(624485) == b"\xe5\x8e\x26"
    with pytest.raises(ValueError):
        uleb128(-1)


def test_custom_section_layout():
    assert custom_section("ab", b"xyz") == b"\x00\x06\x02abxyz"


def test_a_module_with_a_custom_section_is_accepted_and_has_a_new_digest(tmp_path, guest):
    echo = guest("echo")
    variant = with_custom_section(echo, "wasmhost-bench", b"42")
    wasmtime.Module.validate(wasmtime.Engine(), variant)
    with Host(data_dir=tmp_path) as host:
        assert host.blobs.digest(variant) != host.blobs.digest(echo)
        record = host.deploy("variant", variant)
        assert record.digest == host.blobs.digest(variant)
        assert host.invoke("variant", {"a": 1}).payload == {"a": 1}
    with pytest.raises(ValueError):
        with_custom_section(b"not wasm", "x", b"")


# --- wrk output -------------------------------------------------------------------

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1234/invoke/echo
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms  512.00us  12.00ms   80.00%
  Latency Distribution
     50%    2.50ms
     75%    2.80ms
     90%    3.10ms
     99%  950.00us
  24168 requests in 2.00s, 4.01MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  12084.10
Transfer/sec:      2.00MB
"""


def test_parse_wrk():
    assert parse_wrk(WRK_OUTPUT) == {
        "rps": 12084.10,
        "p50_ms": 2.5,
        "p99_ms": pytest.approx(0.95),
        "requests": 24168,
        "non_2xx": 5,
        "socket_errors": 3,
    }
    with pytest.raises(ValueError):
        parse_wrk("wrk: connection refused")


# --- report -----------------------------------------------------------------------


def _report() -> dict:
    """A small result dict in the shape the scenarios write."""

    def cold(p50_us: float) -> dict:
        return {
            "p50_us": summarize([p50_us, p50_us * 1.1]),
            "p99_us": summarize([p50_us * 2, p50_us * 3]),
            "size_bytes": 8709,
            "kind": "module",
            "n_per_block": 2,
            "blocks": 2,
            "samples_us": [p50_us, p50_us * 1.2, p50_us * 3],
        }

    http_system = {
        f"c{c}": {"rps": summarize([1000.0 * c]), "p50_ms": summarize([0.1]), "p99_ms": summarize([0.3]), "errors": 0}
        for c in (1, 32)
    }
    return {
        "started": "2026-01-01T00:00:00",
        "level": "tiny",
        "elapsed_s": 3.0,
        "argv": ["bench/run.py", "--tiny"],
        "machine": {"nproc": 2, "cpu_model": "test CPU", "git_commit": "abc"},
        "scenarios": {
            "cold_invoke": {
                "elapsed_s": 1.0,
                "result": {
                    "fast_path": True,
                    "languages": {
                        "c": cold(30.0),  # ≤ 40 µs: PASS
                        "python": cold(1500.0),  # > 1 ms: FAIL
                        "javascript": {"unavailable": "not built"},
                    },
                },
            },
            "http": {
                "elapsed_s": 1.0,
                "result": {
                    "systems": {"wasmhost-w1": http_system, "starlette-w1": http_system},
                    "ratios": {
                        "wasmhost/starlette w1 c1": summarize([0.9]),
                        "wasmhost/starlette w1 c32": summarize([0.85, 0.75, 0.9]),  # median 0.85 ≥ 0.8: PASS
                    },
                    "rounds": 3,
                    "seconds_per_run": 1,
                    "concurrency": [1, 32],
                    "workers": [1],
                },
            },
            "peers": {
                "elapsed_s": 1.0,
                "result": {
                    "systems": {
                        "wasmhost": {"first_request_ms": summarize([2.0]), "spawn_to_ready_ms": summarize([200.0])},
                        "workerd-js": {"unavailable": "npm is not installed"},
                    },
                    "ratios": {},
                    "rounds": 1,
                    "seconds_per_run": 1,
                },
            },
            "limits": {"elapsed_s": 1.0, "error": "Traceback (most recent call last):\nRuntimeError: boom\n"},
        },
    }


def test_targets_are_judged_on_the_median():
    status = {t.name: t.status for t in targets(_report())}
    assert status["C echo, in-process fresh invoke p50"] == "PASS"
    assert status["Python echo, fresh invoke p50"] == "FAIL"
    assert status["Javascript echo, fresh invoke p50"] == "n/a"
    assert status["HTTP c=32, wasmhost / bare Starlette, 1 worker"] == "PASS"
    assert status["HTTP c=32, wasmhost --workers 2 / --workers 1"] == "n/a"
    assert status["timeout: stops within 10 ms after the deadline"] == "n/a"
    assert status["cold start below workerd-js's"] == "n/a"


def test_report_is_written_as_markdown_json_and_charts(tmp_path):
    report = _report()
    bench_run.write(report, tmp_path)
    markdown = (tmp_path / "latest.md").read_text()
    assert json.loads((tmp_path / "latest.json").read_text())["level"] == "tiny"
    assert len(list(tmp_path.glob("2*.json"))) == 1
    for chart in ("cold_invoke_latency.png", "cold_start_languages.png", "http_throughput.png", "peers.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({chart})" in markdown
    assert "| C echo, in-process fresh invoke p50 | ≤ 40 µs | 31.5 (30.0–33.0) µs | **PASS** |" in markdown
    assert "| Python echo, fresh invoke p50 | ≤ 1 ms | 1,575.0 (1,500.0–1,650.0) µs | **FAIL** |" in markdown
    assert "workerd-js unavailable: npm is not installed" in markdown
    assert "| workerd-js | unavailable: npm is not installed |" in markdown
    assert "RuntimeError: boom" in markdown  # a failed scenario is shown, not dropped
    assert markdown == render(report, bench_run.draw_all(report, tmp_path))


# --- a real run -------------------------------------------------------------------


def test_a_tiny_run_end_to_end(tmp_path, guests):
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--only", "cold_invoke,limits"]
    command += ["--out", str(out), "--workspace", str(tmp_path / "workspace")]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "cold_invoke: block 1/2" in finished.stderr  # progress, with the scenario
    report = json.loads((out / "latest.json").read_text())
    assert set(report["scenarios"]) == {"cold_invoke", "limits"}
    c_echo = report["scenarios"]["cold_invoke"]["result"]["languages"]["c"]
    assert 0 < c_echo["p50_us"]["median"] < 10_000 and len(c_echo["p50_us"]["reps"]) == 2
    timeout = report["scenarios"]["limits"]["result"]["timeout"]
    assert timeout["by_timeout_ms"]["50"]["n"] == 4 and timeout["concurrency"] >= 1
    assert report["machine"]["nproc"] >= 1 and report["machine"]["wasmtime"]
    markdown = (out / "latest.md").read_text()
    assert "## cold_invoke" in markdown and "## limits" in markdown
    assert (out / "cold_invoke_latency.png").exists() and (out / "timeout_precision.png").exists()


def _operations(overhead: float) -> dict:
    """An operations result in the scenario's shape, metering ``overhead``× ``neither``; wrk unavailable."""
    wall = {"metering": 18.0 * overhead, "metering+logs": 50.0, "neither": 18.0}
    unavailable = "wrk is not installed"
    return {
        "in_process": {
            "per_invocation_us": {variant: summarize([us]) for variant, us in wall.items()},
            "cpu_per_invocation_us": {variant: summarize([us]) for variant, us in wall.items()},
            "ratios": {f"{v} / neither": summarize([wall[v] / 18.0]) for v in ("metering", "metering+logs")},
            "cpu_ratios": {f"{v} / neither": summarize([wall[v] / 18.0]) for v in ("metering", "metering+logs")},
            "breakdown": {"records": 100, "record_cpu_us": 0.5, "flush_cpu_us_per_record": 4.0},
            "invocations_per_block": {"metering": 100, "metering+logs": 40, "neither": 110},
            "block_s": 0.1,
            "rounds": 1,
        },
        "http": {"unavailable": unavailable},
        "async": {
            "events": 1000,
            "workers": 2,
            "drain_events_per_s": summarize([8000.0]),
            "spawn_to_first_done_s": summarize([0.5]),
            "drain_s": summarize([0.125]),
            "dead_letters": 0,
            "enqueue": {"concurrency": 16, "seconds_per_run": 1, "unavailable": unavailable},
            "reps": [{}],
        },
    }


def test_metering_overhead_target_is_metering_over_neither():
    for overhead, status, measured in ((1.05, "PASS", "+5 % wall"), (1.3, "FAIL", "+30 % wall")):
        report = {"scenarios": {"operations": {"elapsed_s": 1.0, "result": _operations(overhead)}}}
        [target] = [t for t in targets(report) if t.name.startswith("metering and logging overhead")]
        assert (target.goal, target.status) == ("≤ 10 %", status)
        assert target.measured.startswith(measured) and "with the logs printed: +178 %" in target.measured
    markdown = render(report, [])
    assert "## operations" in markdown
    assert "| metering | 23.4 | 23.4 | 1.30× | 1.30× |" in markdown
    assert "| drain rate, 2 workers | 8,000 events/s" in markdown
    assert "Through HTTP: unavailable: wrk is not installed" in markdown
    assert "| enqueue over HTTP | unavailable: wrk is not installed |" in markdown


@pytest.mark.slow
def test_a_tiny_operations_run(tmp_path, guests):
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--only", "operations"]
    command += ["--out", str(out), "--workspace", str(tmp_path / "workspace")]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr
    result = json.loads((out / "latest.json").read_text())["scenarios"]["operations"]["result"]
    in_process = result["in_process"]
    assert set(in_process["per_invocation_us"]) == {"metering", "metering+logs", "neither"}
    assert all(len(s["reps"]) == 2 and s["median"] > 0 for s in in_process["per_invocation_us"].values())
    assert set(in_process["ratios"]) == {"metering / neither", "metering+logs / neither"}
    assert in_process["breakdown"]["flush_cpu_us_per_record"] > 0
    queue = result["async"]
    assert queue["events"] == 1000 and queue["dead_letters"] == 0
    assert queue["drain_events_per_s"]["median"] > 0
    if shutil.which("wrk"):
        assert all(server["errors"] == 0 for server in result["http"]["servers"].values())
        assert queue["enqueue"]["accepted_per_s"]["median"] > 0 and queue["enqueue"]["errors"] == 0
    else:
        assert "unavailable" in result["http"] and "unavailable" in queue["enqueue"]
    markdown = (out / "latest.md").read_text()
    assert "## operations" in markdown and "| metering and logging overhead per invocation" in markdown


def test_unknown_scenario_is_refused():
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--only", "nope"])


# --- wasmhost bench ---------------------------------------------------------------


def test_wasmhost_bench_runs_the_source_tree_script_with_the_options(tmp_path, monkeypatch):
    script = tmp_path / "bench" / "run.py"
    script.parent.mkdir()
    script.write_text("import json, sys\nopen(sys.argv[0] + '.args', 'w').write(json.dumps(sys.argv[1:]))\n")
    monkeypatch.setattr("wasmhost.cli.bench_script", lambda: script)
    result = CliRunner().invoke(cli, ["bench", "--quick", "--only", "http,peers", "--out", "x"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path(f"{script}.args").read_text()) == ["--quick", "--only", "http,peers", "--out", "x"]


def test_wasmhost_bench_without_a_source_tree_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("wasmhost.cli.bench_script", lambda: tmp_path / "bench" / "run.py")
    result = CliRunner().invoke(cli, ["bench"])
    assert result.exit_code == 1
    assert "source checkout" in result.output


def test_wasmhost_bench_finds_this_checkout():
    from wasmhost.cli import bench_script

    assert bench_script() == ROOT / "bench" / "run.py"


@pytest.mark.slow
def test_a_tiny_triggers_run_measures_every_running_source(tmp_path, guests):
    """bench/scenarios/triggers.py against the real services: a rate for each, or the reason it has none."""
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--only", "triggers", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    rates = report["scenarios"]["triggers"]["result"]["rates"]
    assert set(rates) == {"queue", "redis", "nats", "amqp", "mqtt", "postgres"}
    for kind, figures in rates.items():
        if "skipped" in figures and os.environ.get("CI") != "true":
            continue
        assert "error" not in figures and "skipped" not in figures, (kind, figures)
        for batch_size in (1, 10):
            assert figures[f"batch_{batch_size}"]["median"] > 0, (kind, figures)
    assert "| postgres |" in (tmp_path / "latest.md").read_text()
