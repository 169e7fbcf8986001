"""Asynchronous invocation end to end: HTTP ``Event`` invocations, retries, destinations,
dead-letter queues over HTTP and the CLI, throttled events that wait, and a real
``kill -9`` of ``wasmhost serve`` that loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from wasmhost import FunctionConfig, FunctionNotFound, Host, HostConfig, PayloadTooLarge
from wasmhost.cli import main as cli

from .conftest import ServerThread, free_port


def wait_for(check, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fast_host(tmp_path):
    config = HostConfig(data_dir=str(tmp_path / "data"), async_retry_delay_s=0.05)
    with Host(config=config) as host:
        yield host


def test_event_is_accepted_at_once_and_runs_with_its_record_delivered(fast_host, guest):
    host = fast_host
    host.deploy("echo", guest("echo"), FunctionConfig(on_success="queue:done"))
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        accepted = http.post("/invoke/echo", json={"n": 1}, headers={"x-wasmhost-invocation-type": "Event"})
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["request_id"]
        assert accepted.headers["x-wasmhost-request-id"] == request_id
        messages = wait_for(lambda: http.get("/dead-letters/done").json()["messages"], what="the success record")
    record = messages[0]["record"]
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == {"n": 1} and record["responsePayload"] == {"n": 1}
    assert record["responseContext"]["executedVersion"] == "$LATEST"


def test_failures_are_retried_then_dead_lettered(fast_host, guest):
    host = fast_host
    host.deploy("bad", guest("error"), FunctionConfig(max_retry_attempts=1, on_failure="queue:failed"))
    host.deploy("bad0", guest("error"), FunctionConfig(max_retry_attempts=0))
    with ServerThread(host):
        request_id = host.invoke_event("bad", {"x": 1})
        host.invoke_event("bad0", {"x": 2})
        failed = wait_for(lambda: host.dead_letters("failed"), what="the failure record")
        default = wait_for(lambda: host.dead_letters("bad0-failures"), what="the default failure queue")
    context = failed[0]["record"]["requestContext"]
    assert (context["requestId"], context["condition"], context["approximateInvokeCount"]) == (
        request_id,
        "RetriesExhausted",
        2,
    )
    assert failed[0]["record"]["responseContext"]["functionError"] == "Unhandled"
    assert default[0]["record"]["requestContext"]["approximateInvokeCount"] == 1
    assert host.dead_letter_queues() == {"failed": 1, "bad0-failures": 1}


def test_a_function_destination_receives_the_record(fast_host, guest):
    host = fast_host
    host.deploy("first", guest("echo"), FunctionConfig(on_success="function:second"))
    host.deploy("second", guest("echo"), FunctionConfig(on_success="queue:end"))
    with ServerThread(host):
        host.invoke_event("first", {"hop": 1})
        end = wait_for(lambda: host.dead_letters("end"), what="the second function's record")
    # second's event was first's record; second echoed it; its own record carries both.
    inner = end[0]["record"]["responsePayload"]
    assert inner["requestContext"]["functionArn"].endswith(":function:first:$LATEST")
    assert inner["responsePayload"] == {"hop": 1}


def test_throttled_events_wait_instead_of_failing(fast_host, guest):
    host = fast_host
    host.deploy(
        "one", guest("sleep_ms"), FunctionConfig(reserved_concurrency=1, on_success="queue:ok", timeout_ms=2000)
    )
    with ServerThread(host):
        for i in range(5):
            host.invoke_event("one", {"ms": 50, "i": i})
        done = wait_for(lambda: len(host.dead_letters("ok")) == 5 and host.dead_letters("ok"), what="5 successes")
    assert sorted(m["record"]["requestPayload"]["i"] for m in done) == [0, 1, 2, 3, 4]
    assert "one-failures" not in host.dead_letter_queues()


def test_redrive_runs_dead_letters_again(fast_host, guest):
    host = fast_host
    host.deploy("f", guest("error"), FunctionConfig(max_retry_attempts=0, on_failure="queue:dlq"))
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        host.invoke_event("f", {"k": "v"})
        wait_for(lambda: http.get("/dead-letters").json()["queues"].get("dlq") == 1, what="one dead letter")
        host.deploy("f", guest("echo"), FunctionConfig(on_success="queue:fixed"))  # the bug is fixed
        redriven = http.post("/dead-letters/dlq/redrive", json={})
        assert redriven.status_code == 200 and redriven.json()["redriven"] == 1
        fixed = wait_for(lambda: host.dead_letters("fixed"), what="the redriven event's success")
        assert http.get("/dead-letters/dlq").json()["messages"] == []
    assert fixed[0]["record"]["requestPayload"] == {"k": "v"}


def test_bad_event_invocations_are_refused_at_once(fast_host, guest):
    host = fast_host
    host.deploy("echo", guest("echo"))
    with pytest.raises(FunctionNotFound):
        host.invoke_event("missing", {})
    with pytest.raises(PayloadTooLarge):
        host.invoke_event("echo", {"big": "x" * 300_000})
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        bad_type = http.post("/invoke/echo", json={}, headers={"x-wasmhost-invocation-type": "Later"})
        assert bad_type.status_code == 400 and "Event" in bad_type.json()["error"]["message"]
        missing = http.post("/invoke/nope", json={}, headers={"x-wasmhost-invocation-type": "Event"})
        assert missing.status_code == 404
        too_big = http.post(
            "/invoke/echo", content=b'"' + b"x" * 300_000 + b'"', headers={"x-wasmhost-invocation-type": "Event"}
        )
        assert too_big.status_code == 413
        dry = http.post("/invoke/echo", json={}, headers={"x-wasmhost-invocation-type": "DryRun"})
        assert dry.status_code == 204 and dry.headers["x-wasmhost-executed-version"] == "$LATEST"


def test_async_invocation_and_dead_letters_from_the_cli(tmp_path, guests):
    data = str(tmp_path / "cli")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--data-dir", data, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("deploy", "bad", str(guests / "error.wasm"), "--max-retry-attempts", "0", "--on-failure", "queue:dlq")
    queued = json.loads(run("invoke", "bad", "--async", "--data", '{"a": 1}'))
    assert queued["status"] == "queued"
    # No server runs here: the event waits on disk. A host with a worker runs it.
    config = HostConfig(data_dir=data, async_retry_delay_s=0.05)
    with Host(config=config) as host, ServerThread(host):
        wait_for(lambda: host.dead_letters("dlq"), what="the dead letter")
    assert "dlq" in run("dead-letters", "list")
    messages = json.loads(run("dead-letters", "list", "dlq"))
    assert messages[0]["record"]["requestContext"]["requestId"] == queued["request_id"]
    assert "redriven 1" in runner.invoke(cli, ["--data-dir", data, "dead-letters", "redrive", "dlq"]).output


# --- a real process killed with SIGKILL ----------------------------------------------


@pytest.mark.slow
def test_kill_9_loses_no_queued_or_running_event(tmp_path, guests):
    data = tmp_path / "data"
    with Host(data) as host:
        host.deploy(
            "slow", (guests / "sleep_ms.wasm").read_bytes(), FunctionConfig(timeout_ms=5000, on_success="queue:done")
        )

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASMHOST_")}
        env["WASMHOST_ASYNC_MAX_IN_FLIGHT"] = "4"
        log = (tmp_path / f"serve-{port}.log").open("wb")
        command = [sys.executable, "-m", "wasmhost", "--data-dir", str(data), "serve", "--port", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), timeout_s=60, what="the server")
        return process, url

    process, url = start()
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(20):
            answer = http.post(
                "/invoke/slow", json={"ms": 300, "i": i}, headers={"x-wasmhost-invocation-type": "Event"}
            )
            assert answer.status_code == 202
    with Host(data) as reader:
        wait_for(lambda: len(reader.dead_letters("done")) >= 2, what="some events done before the kill")
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Host(data) as reader:
        done_before = {m["record"]["requestPayload"]["i"] for m in reader.dead_letters("done", limit=100)}
    assert len(done_before) < 20, "the kill came too late to test anything"

    process, url = start()
    try:
        with Host(data) as reader:
            wait_for(
                lambda: (
                    {m["record"]["requestPayload"]["i"] for m in reader.dead_letters("done", limit=100)}
                    == set(range(20))
                ),
                timeout_s=60,
                what="all 20 events done after the restart",
            )
            assert reader.dead_letter_queues().get("slow-failures") is None
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_host_invoke_with_invocation_type_event_queues_it(fast_host, guest):
    host = fast_host
    host.deploy("echo", guest("echo"), FunctionConfig(on_success="queue:done"))
    accepted = host.invoke("echo", {"z": 1}, invocation_type="Event")
    assert (accepted.status_code, accepted.payload, accepted.error) == (202, None, None)
    with pytest.raises(Exception, match="invocation_type must be"):
        host.invoke("echo", {}, invocation_type="Sometime")
    with ServerThread(host):
        done = wait_for(lambda: host.dead_letters("done"), what="the queued event's record")
    assert done[0]["request_id"] == accepted.request_id
