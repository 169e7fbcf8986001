"""Metering, stored logs (read, filtered, followed live), usage and cost, Prometheus
metrics, log tails, and concurrency limits that hold across ``--workers 2``."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from wasmhost import FunctionConfig, Host
from wasmhost.cli import main as cli

from .conftest import ServerThread
from .test_async import wait_for
from .test_serve import ServeProcess


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_every_invocation_is_metered_and_logged(host, guest):
    host.deploy("hello", guest("hello"), FunctionConfig(memory_mb=64, fuel=10**9))
    first = host.invoke("hello", {"name": "a"})
    host.invoke("hello", {"name": "b"})
    lines = host.logs("hello")
    mine = [line["message"] for line in lines if line["request_id"] == first.request_id]
    assert mine[0] == f"START RequestId: {first.request_id} Version: $LATEST"
    assert any("hello: invoked" in m for m in mine)
    assert mine[-2] == f"END RequestId: {first.request_id}"
    assert mine[-1].startswith(f"REPORT RequestId: {first.request_id}\tDuration: ") and "Cold" not in mine[-1]
    assert [line["message"] for line in host.logs("hello", request_id=first.request_id)] == mine
    assert len(host.logs("hello", limit=3)) == 3
    assert host.logs("hello", since=time.time() + 60) == []
    after = host.logs("hello", after_id=lines[-2]["id"])
    assert [line["id"] for line in after] == [lines[-1]["id"]]

    usage = host.usage("hello")
    # deploy loaded the code, so neither call was cold (see test_logs_survive_a_restart)
    assert (usage["invocations"], usage["errors"], usage["throttles"], usage["cold_starts"]) == (2, 0, 0, 0)
    billed = usage["billed_ms"]
    assert billed >= 2 and usage["fuel_used"] > 0
    assert usage["gb_seconds"] == pytest.approx(billed / 1000 * 64 / 1024)
    expected = usage["gb_seconds"] * 0.0000166667 + 2 * 0.20 / 1e6
    assert usage["estimated_cost"]["total"] == pytest.approx(expected)


def test_errors_and_throttles_are_counted_by_type(host, guest):
    host.deploy("err", guest("error"))
    host.deploy("off", guest("echo"), FunctionConfig(reserved_concurrency=0))
    host.invoke("err", {})
    with pytest.raises(Exception, match="reserved concurrency"):
        host.invoke("off", {})
    assert host.usage("err")["errors_by_type"] == {"FunctionError": 1}
    assert host.usage("off")["throttles"] == 1 and host.usage("off")["invocations"] == 0


def test_logs_survive_a_restart(tmp_path, guest):
    with Host(tmp_path / "d") as first:
        first.deploy("echo", guest("echo"))
        request_id = first.invoke("echo", 1).request_id
    with Host(tmp_path / "d") as second:
        assert [line["request_id"] for line in second.logs("echo")] == [request_id] * 3
        assert second.invoke("echo", 2).cold  # a new process loads the code: a cold start
        assert "Cold: true" in second.logs("echo")[-1]["message"]
        assert second.usage("echo")["cold_starts"] == 1


def test_logs_usage_and_metrics_over_http(host, guest):
    host.deploy("echo", guest("echo"), FunctionConfig(memory_mb=32))
    host.deploy("err", guest("error"))
    host.deploy("off", guest("echo"), FunctionConfig(reserved_concurrency=0))
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        ok = http.post("/invoke/echo", json={"a": 1}, headers={"x-wasmhost-log-type": "Tail"})
        tail = base64.b64decode(ok.headers["x-wasmhost-log-result"]).decode()
        assert tail.startswith("START RequestId: ") and "REPORT RequestId: " in tail
        http.post("/invoke/echo", json={"a": 2})
        http.post("/invoke/err", json={})
        assert http.post("/invoke/off", json={}).status_code == 429
        request_id = ok.headers["x-wasmhost-request-id"]

        logs = http.get("/functions/echo/logs", params={"request_id": request_id}).json()["logs"]
        assert [line["message"].split(" ")[0] for line in logs] == ["START", "END", "REPORT"]
        assert http.get("/functions/echo/logs", params={"limit": 0}).status_code == 400
        assert http.get("/functions/echo/logs", params={"bogus": 1}).status_code == 400

        usage = http.get("/functions/echo/usage").json()
        assert usage["invocations"] == 2 and usage["gb_seconds"] > 0
        assert http.get("/functions/echo/usage", params={"since": "yesterday"}).status_code == 400

        scraped = http.get("/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        samples = metric_samples(scraped.text)
    by = lambda name, **labels: samples.get((name, tuple(sorted(labels.items()))))  # noqa: E731
    assert by("wasmhost_invocations_total", function="echo", version="$LATEST", outcome="ok") == 2
    assert by("wasmhost_errors_total", function="err", version="$LATEST", error_type="FunctionError") == 1
    assert by("wasmhost_throttles_total", function="off", version="$LATEST") == 1
    assert by("wasmhost_cold_starts_total", function="echo", version="$LATEST") == 0
    assert by("wasmhost_invocation_duration_seconds_count", function="echo", version="$LATEST") == 2
    assert by("wasmhost_concurrent_executions", function="echo") == 0


def test_logs_follow_streams_new_lines_as_server_sent_events(host, guest):
    host.deploy("echo", guest("echo"))
    seen: list[dict] = []
    with ServerThread(host) as server:

        def follow() -> None:
            with httpx.stream("GET", f"{server.url}/functions/echo/logs", params={"follow": 1}, timeout=30) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
                        if len(seen) == 3:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        time.sleep(0.3)  # the stream is open before the invocation
        request_id = httpx.post(f"{server.url}/invoke/echo", json=7).headers["x-wasmhost-request-id"]
        reader.join(timeout=20)
    assert [line["request_id"] for line in seen] == [request_id] * 3
    assert seen[0]["message"].startswith("START")


def test_cli_log_tail_logs_and_usage(tmp_path, guests):
    data = str(tmp_path / "cli")
    runner = CliRunner()
    runner.invoke(cli, ["--data-dir", data, "deploy", "hello", str(guests / "hello.wasm")], catch_exceptions=False)
    invoked = runner.invoke(cli, ["--data-dir", data, "invoke", "hello", "--log-tail", "--data", '{"name": "x"}'])
    assert invoked.exit_code == 0 and "START RequestId:" in invoked.stderr and "REPORT RequestId:" in invoked.stderr
    logs = runner.invoke(cli, ["--data-dir", data, "logs", "hello", "--since", "1h"])
    assert logs.exit_code == 0 and "hello: invoked" in logs.stdout and "REPORT RequestId:" in logs.stdout
    usage = json.loads(runner.invoke(cli, ["--data-dir", data, "usage", "hello"]).stdout)
    assert usage["invocations"] == 1
    bad = runner.invoke(cli, ["--data-dir", data, "logs", "hello", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "duration" in bad.output


@pytest.mark.slow
def test_reserved_concurrency_holds_across_two_workers(tmp_path, guests):
    data = tmp_path / "data"
    with Host(data) as host:
        config = FunctionConfig(reserved_concurrency=2, timeout_ms=5000)
        host.deploy("slow", (guests / "sleep_ms.wasm").read_bytes(), config)
    with ServeProcess(data, "--workers", "2") as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(40):  # both workers are up once each has answered
            http.post("/invoke/slow", json={"ms": 0})
        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(lambda _: http.post("/invoke/slow", json={"ms": 1500}).status_code, range(8)))
        assert statuses.count(200) == 2, statuses
        assert statuses.count(429) == 6
        # Throttles from both workers land in one count.
        wait_for(lambda: http.get("/functions/slow/usage").json()["throttles"] == 6, what="6 throttles")
