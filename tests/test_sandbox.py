"""Each limit and its error, on real compiled guests; isolation between invocations."""

from __future__ import annotations

import time

import pytest

from wasmhost import FunctionConfig

from .wat import OK_HI, responder


def test_hello_answers_and_its_output_is_captured(host, guest):
    host.deploy("hello", guest("hello"))
    result = host.invoke("hello", None)
    assert result.error is None
    assert result.payload == {"statusCode": 200, "body": "Hello from Serverless!"}
    assert result.logs == "hello: invoked\n"


def test_echo_round_trips_every_msgpack_type(host, guest):
    host.deploy("echo", guest("echo"))
    event = {
        "str": "héllo",
        "long": "x" * 70000,
        "ints": [0, 1, -1, 127, 128, -33, 65535, 2**32, -(2**40), 2**63 - 1],
        "float": 3.25,
        "bool": [True, False],
        "nil": None,
        "bin": b"\x00\xff" * 300,
        "nested": {"a": [{"b": {"c": []}}], "empty": {}},
    }
    assert host.invoke("echo", event).payload == event


def test_global_state_never_leaks_between_invocations(host, guest):
    host.deploy("counter", guest("counter"))
    assert [host.invoke("counter", {}).payload for _ in range(5)] == [1] * 5


def test_timeout_stops_an_infinite_loop(host, guest):
    host.deploy("spin", guest("spin"), FunctionConfig(timeout_ms=200))
    started = time.monotonic()
    result = host.invoke("spin", {})
    elapsed_ms = (time.monotonic() - started) * 1000
    assert result.error.type == "Timeout"
    assert result.error.status == 504
    assert "timed out after 200 ms" in result.error.message
    assert 200 <= elapsed_ms < 1000
    assert result.duration_ms >= 200


def test_fuel_budget_stops_cpu_bound_work(host, guest):
    host.deploy("fib", guest("fib"), FunctionConfig(fuel=100_000))
    result = host.invoke("fib", {"n": 30})
    assert result.error.type == "FuelExhausted"
    assert "100000" in result.error.message
    small = host.invoke("fib", {"n": 10})
    assert small.payload == 55
    assert 0 < small.fuel_used <= 100_000


def test_fuel_is_counted_with_a_budget_and_not_without(host, guest):
    # Counting fuel slows every instruction, so only budgeted functions pay for it.
    host.deploy("metered", guest("fib"), FunctionConfig(fuel=10**12))
    host.deploy("plain", guest("fib"))
    low, high = host.invoke("metered", {"n": 10}), host.invoke("metered", {"n": 20})
    assert high.payload == 6765
    assert high.fuel_used > low.fuel_used * 50
    plain = host.invoke("plain", {"n": 20})
    assert plain.payload == 6765 and plain.fuel_used == 0


def test_memory_limit_is_out_of_memory(host, guest):
    host.deploy("hog", guest("hog"), FunctionConfig(memory_mb=16))
    result = host.invoke("hog", {})
    assert result.error.type == "OutOfMemory"
    assert "limit 16 MB" in result.error.message
    assert result.max_memory_bytes <= 16 * 1024 * 1024


def test_trap_keeps_the_trap_message(host, guest):
    host.deploy("trap", guest("trap"))
    result = host.invoke("trap", {})
    assert result.error.type == "Trap"
    assert "unreachable" in result.error.message


def test_failed_invocations_do_not_affect_the_next_one(host, guest):
    for name in ("spin", "hog", "trap", "echo"):
        host.deploy(name, guest(name), FunctionConfig(memory_mb=16, timeout_ms=100))
    for name in ("spin", "hog", "trap"):
        assert host.invoke(name, {}).error is not None
        assert host.invoke("echo", {"after": name}).payload == {"after": name}


def test_guest_error_is_a_function_error(host, guest):
    host.deploy("error", guest("error"))
    result = host.invoke("error", {})
    assert result.error.type == "FunctionError"
    assert result.error.error_type == "ValidationError"
    assert result.error.message == "name is required"
    assert host.invoke("error", {"name": "Ada"}).payload == {"greeting": "hello Ada"}


def test_guest_sees_only_its_configured_environment(host, guest, monkeypatch):
    monkeypatch.setenv("HOST_SECRET", "do-not-leak")
    host.deploy("getenv", guest("getenv"), FunctionConfig(env={"GREETING": "hi", "STAGE": "test"}))
    assert host.invoke("getenv", {}).payload == {"GREETING": "hi", "STAGE": "test"}


def test_guest_has_no_files(host, guest):
    host.deploy("readfile", guest("readfile"))
    for path in ("/etc/passwd", "data.txt", "."):
        result = host.invoke("readfile", {"path": path})
        assert result.error.type == "FunctionError", path
        assert result.error.error_type == "FileError"


def test_sleeping_guest_is_stopped_at_its_deadline(host, guest):
    # nanosleep goes through WASI poll_oneoff, which epochs cannot interrupt;
    # the host's poll_oneoff never sleeps past the deadline.
    host.deploy("nap", guest("nap"), FunctionConfig(timeout_ms=300))
    started = time.monotonic()
    result = host.invoke("nap", {"ms": 5000})
    elapsed_ms = (time.monotonic() - started) * 1000
    assert result.error.type == "Timeout"
    assert elapsed_ms < 1000
    ok = host.invoke("nap", {"ms": 20})
    assert ok.error is None and ok.payload["slept_ms"] >= 20


def test_logs_are_bounded_with_a_marker(tmp_path, guest):
    from wasmhost import Host, HostConfig

    with Host(config=HostConfig(data_dir=str(tmp_path), log_limit_bytes=1000)) as small:
        small.deploy("chatty", guest("chatty"))
        result = small.invoke("chatty", {"lines": 500})
        assert result.error is None
        assert "log output truncated at 1000 bytes" in result.logs
        assert len(result.logs) < 1200


def test_metering_fields(host, guest):
    host.deploy("echo", guest("echo"), FunctionConfig(memory_mb=16, fuel=10**9))
    first = host.invoke("echo", {"a": 1})
    assert first.duration_ms > 0
    assert first.billed_ms == max(1, -(-first.duration_ms // 1))
    assert first.memory_mb == 16
    assert first.max_memory_bytes > 0 and first.max_memory_bytes % 65536 == 0
    assert first.fuel_used > 0
    report = first.report_line()
    assert report.startswith(f"REPORT RequestId: {first.request_id}\tDuration: ")
    used_mb = -(-first.max_memory_bytes // (1024 * 1024))
    billed = f"Billed Duration: {first.billed_ms} ms"  # the first call may take over 1 ms on a loaded machine
    assert f"{billed}\tMemory Size: 16 MB\tMax Memory Used: {used_mb} MB" in report


@pytest.mark.parametrize("event", [{1, 2}, object()])
def test_unencodable_event_is_an_invalid_request(host, event):
    from wasmhost import InvalidRequest

    host.deploy("f", responder(OK_HI))
    with pytest.raises(InvalidRequest):
        host.invoke("f", event)
