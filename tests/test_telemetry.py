"""telemetry/store.py and telemetry/metrics.py: a real SQLite file, real InvocationResults, a real second process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wasmhost.errors import InvalidRequest, InvocationError, Timeout, Trap
from wasmhost.result import InvocationResult
from wasmhost.telemetry import HostCollector, TelemetryStore, render
from wasmhost.telemetry.logs import invocation_lines

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def make_result(
    request_id: str,
    function: str = "fn",
    *,
    duration_ms: float = 12.5,
    billed_ms: int = 13,
    memory_mb: int = 128,
    error: InvocationError | None = None,
    cold: bool = False,
    logs: str = "hello\n",
    fuel_used: int = 0,
    max_memory_bytes: int = 65536,
    version: str = "$LATEST",
) -> InvocationResult:
    return InvocationResult(
        payload=None if error else {"echo": request_id},
        error=error,
        request_id=request_id,
        function_name=function,
        function_version=version,
        duration_ms=duration_ms,
        billed_ms=billed_ms,
        memory_mb=memory_mb,
        fuel_used=fuel_used,
        max_memory_bytes=max_memory_bytes,
        cold=cold,
        logs=logs,
    )


def wait_for(probe: Callable[[], T], timeout_s: float = 5.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout_s} s")
        time.sleep(0.01)
    return value


@pytest.fixture(autouse=True, params=["c", "python"])
def summing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the batch sums from C (``_fastpath.tsum``) and from Python."""
    import wasmhost.telemetry.batches
    import wasmhost.telemetry.store

    if request.param == "python":
        monkeypatch.setattr(wasmhost.telemetry.batches, "_fast", None)
        monkeypatch.setattr(wasmhost.telemetry.store, "_fast", None)
    elif wasmhost.telemetry.batches._fast is None:
        pytest.skip("the C fast path is not built here")
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    with TelemetryStore(tmp_path / "telemetry.db") as s:
        yield s


def test_records_round_trip_as_log_lines_in_order(store: TelemetryStore) -> None:
    ok = make_result("req-1", logs="hello\nworld\n", duration_ms=250.0)
    failed = make_result("req-2", error=Timeout("ran past 3000 ms"), duration_ms=3001.5, logs="", version="3")
    store.record(ok, version="$LATEST", started_at=1000.0)
    store.record(failed, version="3", started_at=2000.0)

    lines = store.logs("fn")

    assert [line["message"] for line in lines] == invocation_lines(ok) + invocation_lines(failed)
    assert [line["message"].split()[0] for line in lines[:5]] == ["START", "hello", "world", "END", "REPORT"]
    assert "req-2\tTimeout: ran past 3000 ms" in [line["message"] for line in lines]
    assert [line["request_id"] for line in lines] == ["req-1"] * 5 + ["req-2"] * 4
    assert [line["version"] for line in lines] == ["$LATEST"] * 5 + ["3"] * 4
    assert [line["timestamp"] for line in lines] == pytest.approx([1000.0] + [1000.25] * 4 + [2000.0] + [2003.0015] * 3)
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_log_filters(store: TelemetryStore) -> None:
    for n, started_at in enumerate((1000.0, 2000.0, 3000.0)):
        store.record(make_result(f"req-{n}"), version="$LATEST", started_at=started_at)
    store.record(make_result("other-0", function="other"), version="$LATEST", started_at=2500.0)
    every = store.logs("fn")
    assert len(every) == 12  # START, hello, END, REPORT × 3; nothing of "other"

    assert {line["request_id"] for line in store.logs("fn", request_id="req-1")} == {"req-1"}
    assert len(store.logs("fn", request_id="req-1")) == 4
    assert store.logs("fn", request_id="other-0") == []

    assert {line["request_id"] for line in store.logs("fn", since=1500.0)} == {"req-1", "req-2"}

    after_first = store.logs("fn", after_id=every[3]["id"])
    assert after_first == every[4:]
    page = store.logs("fn", after_id=every[3]["id"], limit=2)
    assert page == every[4:6]  # the first two after the id: paging forward
    assert store.logs("fn", after_id=page[-1]["id"], limit=2) == every[6:8]

    assert store.logs("fn", limit=3) == every[-3:]  # no since/after_id: the tail, oldest first
    assert store.logs("fn", since=1500.0, limit=1) == [every[4]]

    store.record(make_result("long", duration_ms=10_000.0), version="$LATEST", started_at=4000.0)
    started_before = store.logs("fn", since=4005.0)  # START is stamped 4000, the rest 4010
    assert [line["message"].split()[0] for line in started_before] == ["hello", "END", "REPORT"]

    with pytest.raises(InvalidRequest):
        store.logs("fn", limit=0)


def test_usage_sums_and_prices(store: TelemetryStore) -> None:
    store.record(
        make_result("a", billed_ms=100, duration_ms=99.5, memory_mb=128, fuel_used=10, max_memory_bytes=1000),
        version="$LATEST",
        started_at=1000.0,
    )
    store.record(
        make_result("b", billed_ms=2000, duration_ms=2000.0, memory_mb=1024, error=Timeout("slow"), cold=True),
        version="$LATEST",
        started_at=1001.0,
    )
    store.record(
        make_result("c", billed_ms=1, duration_ms=0.25, memory_mb=512, error=Trap("unreachable"), fuel_used=5),
        version="2",
        started_at=1002.0,
    )
    store.record(make_result("late", billed_ms=50), version="$LATEST", started_at=5000.0)  # outside the window
    store.record(make_result("elsewhere", function="other", billed_ms=70), version="$LATEST", started_at=1000.0)
    store.record_throttle("fn", "$LATEST", 1003.0)
    store.record_throttle("fn", "$LATEST", 1004.0)
    store.record_throttle("fn", "$LATEST", 9000.0)  # outside the window

    usage = store.usage("fn", since=1000.0, until=2000.0)

    gb_seconds = 0.100 * 128 / 1024 + 2.000 * 1024 / 1024 + 0.001 * 512 / 1024  # 2.013
    assert usage["gb_seconds"] == pytest.approx(2.013)
    assert usage["gb_seconds"] == pytest.approx(gb_seconds)
    compute = 2.013 * 0.0000166667
    requests = 3 * 0.20 / 1_000_000
    assert usage["estimated_cost"] == {
        "compute": pytest.approx(compute),
        "requests": pytest.approx(requests),
        "total": pytest.approx(compute + requests),
        "currency": "USD",
    }
    assert usage | {"gb_seconds": None, "estimated_cost": None} == {
        "function": "fn",
        "since": 1000.0,
        "until": 2000.0,
        "invocations": 3,
        "errors": 2,
        "errors_by_type": {"Timeout": 1, "Trap": 1},
        "throttles": 2,
        "cold_starts": 1,
        "duration_ms": pytest.approx(2099.75),
        "billed_ms": 2101,
        "gb_seconds": None,
        "fuel_used": 15,
        "max_memory_bytes": 65536,
        "estimated_cost": None,
    }

    everything = store.usage("fn", price_per_gb_second=1.0, price_per_million_requests=1_000_000.0)
    assert (everything["invocations"], everything["throttles"], everything["billed_ms"]) == (4, 3, 2151)
    assert everything["estimated_cost"]["requests"] == pytest.approx(4.0)
    assert everything["estimated_cost"]["compute"] == pytest.approx(2.013 + 0.050 * 128 / 1024)
    assert store.usage("nobody")["invocations"] == 0


def test_prune_removes_old_rows_and_keeps_the_totals(tmp_path: Path) -> None:
    now = 100_000.0
    with TelemetryStore(tmp_path / "telemetry.db", retention_s=3600) as store:
        store.record(make_result("old"), version="$LATEST", started_at=now - 7200)
        store.record_throttle("fn", "$LATEST", now - 7200)
        store.record(make_result("new"), version="$LATEST", started_at=now - 60)
        store.record_throttle("fn", "$LATEST", now - 60)
        store.flush()

        assert store.prune(now) == 2  # the old invocation (and so its lines) and the old throttle

        assert {line["request_id"] for line in store.logs("fn")} == {"new"}
        usage = store.usage("fn")
        assert (usage["invocations"], usage["throttles"]) == (1, 1)
        (totals,) = store.aggregates()
        assert totals.invocations == {"ok": 2}
        assert totals.throttles == 2
        assert totals.duration_buckets[-1] == (float("inf"), 2)
        assert store.prune(now) == 0


def test_two_stores_on_one_file_see_each_others_flushed_records(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    with TelemetryStore(path, flush_interval_s=3600) as first, TelemetryStore(path, flush_interval_s=3600) as second:
        first.record(make_result("from-first"), version="$LATEST", started_at=1000.0)
        second.record(make_result("from-second", error=Trap("boom")), version="$LATEST", started_at=1001.0)
        assert {line["request_id"] for line in first.logs("fn")} == {"from-first"}  # second's is still buffered

        second.flush()

        assert [line["request_id"] for line in first.logs("fn")] == ["from-first"] * 4 + ["from-second"] * 5
        assert first.usage("fn")["errors_by_type"] == {"Trap": 1}
        (totals,) = first.aggregates()
        assert totals.invocations == {"ok": 1, "error": 1}


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wasmhost.result import InvocationResult
    from wasmhost.telemetry import TelemetryStore

    path, seconds = Path(sys.argv[1]), float(sys.argv[2])
    with TelemetryStore(path, flush_interval_s=0.005) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            result = InvocationResult(None, None, f"child-{n}", "fn", "$LATEST", 1.5, 2, 128, 0, 65536, False, "hi\\n")
            store.record(result, version="$LATEST", started_at=1000.0 + n)
            n += 1
            if n % 10 == 0:
                store.flush()
    print(n, flush=True)
    """
)


@pytest.mark.slow
def test_a_second_process_writes_at_the_same_time(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    seconds = 0.25  # both write for this long, a transaction every 10 records
    with TelemetryStore(path, flush_interval_s=0.005) as store:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(seconds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        child.stdin.write("go\n")
        child.stdin.flush()
        deadline, written = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            store.record(
                make_result(f"parent-{written}", duration_ms=1.5, billed_ms=2), version="$LATEST", started_at=1000.0
            )
            written += 1
            if written % 10 == 0:
                store.flush()
        stdout, stderr = child.communicate(timeout=30)
        assert child.returncode == 0, stderr
        assert "locked" not in stderr
        total = written + int(stdout)

        usage = store.usage("fn")
        assert usage["invocations"] == total
        assert usage["billed_ms"] == 2 * total
        (totals,) = store.aggregates()
        assert totals.invocations == {"ok": total}
        child_lines = store.logs("fn", request_id="child-0")
        assert [line["message"].split()[0] for line in child_lines] == ["START", "hi", "END", "REPORT"]
        lines = store.logs("fn", since=0, limit=10 * total)
        assert len(lines) == 4 * total
        writers = [line["request_id"].split("-")[0] for line in lines]
        switches = sum(1 for a, b in zip(writers, writers[1:], strict=False) if a != b)
        assert switches >= 4, "the two processes' transactions hardly interleaved: little was tested"


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_collector_exposes_counters_histogram_and_gauges(store: TelemetryStore) -> None:
    for n, duration_ms in enumerate((0.3, 3.0, 700.0)):
        store.record(make_result(f"ok-{n}", duration_ms=duration_ms), version="$LATEST", started_at=1000.0)
    store.record(
        make_result("slow", duration_ms=2000.0, error=Timeout("slow"), cold=True), version="$LATEST", started_at=1000.0
    )
    store.record(make_result("v2", duration_ms=20.0, error=Trap("boom")), version="2", started_at=1000.0)
    store.record_throttle("fn", "$LATEST", 1000.0)
    collector = HostCollector(
        store,
        concurrency=lambda: {"fn": 3},
        queue=lambda: {"fn": (5, 12.5)},
        dead_letters=lambda: {"fn-dlq": 2},
    )

    body, content_type = render(collector)  # nothing flushed explicitly: the scrape sees this process's records

    assert content_type.startswith("text/plain; version=")
    metrics = samples(body)
    latest = {"function": "fn", "version": "$LATEST"}
    assert metrics[("wasmhost_invocations_total", labels(**latest, outcome="ok"))] == 3
    assert metrics[("wasmhost_invocations_total", labels(**latest, outcome="error"))] == 1
    assert metrics[("wasmhost_invocations_total", labels(function="fn", version="2", outcome="ok"))] == 0
    assert metrics[("wasmhost_errors_total", labels(**latest, error_type="Timeout"))] == 1
    assert metrics[("wasmhost_errors_total", labels(function="fn", version="2", error_type="Trap"))] == 1
    assert ("wasmhost_errors_total", labels(**latest, error_type="Trap")) not in metrics
    assert metrics[("wasmhost_throttles_total", labels(**latest))] == 1
    assert metrics[("wasmhost_throttles_total", labels(function="fn", version="2"))] == 0
    assert metrics[("wasmhost_cold_starts_total", labels(**latest))] == 1

    def bucket(le: str) -> float:
        return metrics[("wasmhost_invocation_duration_seconds_bucket", labels(**latest, le=le))]

    expected = {"0.0005": 1, "0.001": 1, "0.0025": 1, "0.005": 2, "0.5": 2, "1.0": 3, "2.5": 4, "900.0": 4, "+Inf": 4}
    assert {le: bucket(le) for le in expected} == expected
    assert metrics[("wasmhost_invocation_duration_seconds_count", labels(**latest))] == 4
    assert metrics[("wasmhost_invocation_duration_seconds_sum", labels(**latest))] == pytest.approx(2.7033)

    assert metrics[("wasmhost_concurrent_executions", labels(function="fn"))] == 3
    assert metrics[("wasmhost_async_queue_depth", labels(function="fn"))] == 5
    assert metrics[("wasmhost_async_queue_oldest_age_seconds", labels(function="fn"))] == 12.5
    assert metrics[("wasmhost_dead_letters", labels(queue="fn-dlq"))] == 2


def test_a_failing_gauge_source_leaves_the_rest_of_the_scrape(store: TelemetryStore) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("queue database gone")

    store.record(make_result("a"), version="$LATEST", started_at=1000.0)
    body, _ = render(HostCollector(store, concurrency=lambda: {"fn": 1}, dead_letters=broken))
    metrics = samples(body)
    assert metrics[("wasmhost_invocations_total", labels(function="fn", version="$LATEST", outcome="ok"))] == 1
    assert metrics[("wasmhost_concurrent_executions", labels(function="fn"))] == 1
    assert not any(name == "wasmhost_dead_letters" for name, _ in metrics)
    assert not any(name == "wasmhost_async_queue_depth" for name, _ in metrics)  # no source given


def test_the_flush_thread_writes_without_an_explicit_flush(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    with (
        TelemetryStore(path, flush_interval_s=3600) as reader,
        TelemetryStore(path, flush_interval_s=0.02) as by_interval,
        TelemetryStore(path, flush_interval_s=3600, max_buffer=3) as by_size,
    ):
        by_interval.record(make_result("interval"), version="$LATEST", started_at=1000.0)
        wait_for(lambda: reader.logs("fn", request_id="interval"))

        by_size.record(make_result("size-0"), version="$LATEST", started_at=1000.0)
        by_size.record_throttle("fn", "$LATEST", 1000.0)
        by_size.record(make_result("size-1"), version="$LATEST", started_at=1000.0)  # the third record: flush now
        wait_for(lambda: reader.usage("fn")["invocations"] == 3)
        assert reader.usage("fn")["throttles"] == 1


def test_close_flushes_is_idempotent_and_drops_later_records(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    store = TelemetryStore(path, flush_interval_s=3600)
    store.record(make_result("before-close"), version="$LATEST", started_at=1000.0)
    store.close()
    store.close()
    store.record(make_result("after-close"), version="$LATEST", started_at=1000.0)
    assert store.dropped == 1

    with TelemetryStore(path) as reopened:
        assert {line["request_id"] for line in reopened.logs("fn")} == {"before-close"}


def test_messages_are_stored_whatever_their_characters(store: TelemetryStore) -> None:
    logs = 'quote " backslash \\ tab \t emoji \U0001f600 lone surrogate \ud800 end\n'
    store.record(make_result("odd", logs=logs), version="$LATEST", started_at=1000.0)
    messages = [line["message"] for line in store.logs("fn")]
    assert messages[1] == 'quote " backslash \\ tab \t emoji \U0001f600 lone surrogate ? end'


def test_a_database_of_an_earlier_layout_is_opened_and_written(tmp_path: Path) -> None:
    """The batches table once had a request_ids column; opening such a file drops it and writes on."""
    import sqlite3

    path = tmp_path / "telemetry.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, function TEXT NOT NULL, first_started REAL NOT "
        "NULL, last_started REAL NOT NULL, last_ended REAL NOT NULL, invocations INTEGER NOT NULL, errors INTEGER NOT "
        "NULL, error_types TEXT NOT NULL, cold_starts INTEGER NOT NULL, duration_ms REAL NOT NULL, billed_ms INTEGER "
        "NOT NULL, mb_ms INTEGER NOT NULL, fuel_used INTEGER NOT NULL, max_memory INTEGER NOT NULL, request_ids TEXT "
        "NOT NULL, rows BLOB NOT NULL)"
    )
    old.close()
    with TelemetryStore(path) as store:
        store.record(make_result("after-upgrade"), version="$LATEST", started_at=1000.0)
        assert store.usage("fn")["invocations"] == 1
        assert {line["request_id"] for line in store.logs("fn", request_id="after-upgrade")} == {"after-upgrade"}
