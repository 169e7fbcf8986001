"""The asynchronous-invocation queue (real SQLite, real processes) and its worker (fake runs).

End-to-end behaviour with the real host and ``kill -9`` of a server is tested
with the server; here ``run`` is a fake, so retries and destinations are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from wasmhost import asyncq
from wasmhost.async_worker import MAX_HOPS, AsyncWorker
from wasmhost.asyncq import EventQueue, QueuedEvent
from wasmhost.config import FunctionConfig
from wasmhost.errors import FunctionError, FunctionNotFound, Throttled, Trap
from wasmhost.result import InvocationResult

ROOT = Path(asyncq.__file__).resolve().parent.parent
# Child processes load wasmhost.asyncq (and wasmhost.sqlitedb) from this checkout, without
# running wasmhost/__init__.py, which would load wasmtime.
CHILD_PRELUDE = f"""
import importlib.util, sys, types
package = types.ModuleType("wasmhost")
package.__path__ = [{str(ROOT / "wasmhost")!r}]
sys.modules["wasmhost"] = package
import wasmhost.asyncq as asyncq
"""


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.fixture
def queue(tmp_path: Path):
    with EventQueue(tmp_path / "events.db") as q:
        yield q


# --- the queue ---------------------------------------------------------------


def test_put_claim_complete(queue: EventQueue) -> None:
    ids = [queue.put("fn", None, pack({"n": n}), f"req-{n}") for n in range(3)]
    first = queue.claim("worker-a", lease_s=30, limit=2)
    assert [item.id for item in first] == ids[:2]
    item = first[0]
    assert (item.request_id, item.function, item.qualifier, item.attempts, item.owner) == (
        "req-0",
        "fn",
        None,
        0,
        "worker-a",
    )
    assert msgpack.unpackb(item.event_bytes) == {"n": 0}
    assert item.lease_until == pytest.approx(time.time() + 30, abs=2)
    assert [item.id for item in queue.claim("worker-a", 30, 10)] == ids[2:]
    assert queue.claim("worker-a", 30, 10) == []
    assert queue.complete(ids[0], owner="worker-a")
    assert not queue.complete(ids[0])
    assert queue.depth()["fn"][0] == 2


def test_claims_never_overlap_across_connections_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    total = 1500
    with EventQueue(path) as setup:
        setup.put_many(asyncq.NewEvent("fn", None, b"\x90", f"r{n}") for n in range(total))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_PRELUDE
            + f"""
import json, pathlib
q = asyncq.EventQueue(pathlib.Path({str(path)!r}))
print("ready", flush=True)
sys.stdin.readline()
got = []
while batch := q.claim("child", 60, 5):
    got += [item.id for item in batch]
print(json.dumps(got), flush=True)
""",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    queues = [EventQueue(path), EventQueue(path)]
    claimed: list[list[int]] = [[] for _ in range(6)]

    def claim_all(slot: int) -> None:
        q = queues[slot % 2]
        while batch := q.claim(f"thread-{slot}", 60, 7):
            claimed[slot] += [item.id for item in batch]

    threads = [threading.Thread(target=claim_all, args=(slot,)) for slot in range(6)]
    child.stdin.write("go\n")
    child.stdin.flush()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    child_ids = json.loads(child.stdout.readline())
    assert child.wait(10) == 0
    for q in queues:
        q.close()
    every = child_ids + [i for ids in claimed for i in ids]
    assert len(every) == total and len(set(every)) == total
    assert child_ids and sum(1 for ids in claimed if ids) >= 2  # the claimers really raced


def test_an_expired_lease_is_claimable_again(queue: EventQueue) -> None:
    now = time.time()
    event_id = queue.put("fn", "v1", b"\xc0", "req", now=now)
    assert [item.id for item in queue.claim("dead-worker", 10, 5, now=now)] == [event_id]
    assert queue.claim("other", 10, 5, now=now + 5) == []
    assert queue.renew([event_id], "dead-worker", 10, now=now + 5) == 1
    assert queue.claim("other", 10, 5, now=now + 11) == []  # renewed until now + 15
    [again] = queue.claim("other", 10, 5, now=now + 16)
    assert (again.id, again.owner, again.qualifier) == (event_id, "other", "v1")
    assert queue.renew([event_id], "dead-worker", 10) == 0
    assert not queue.complete(event_id, owner="dead-worker")  # it lost the lease
    assert queue.lease_owners() == {"other"}
    assert queue.release("other") == 1
    assert [item.owner for item in queue.claim("third", 10, 5)] == ["third"]


def test_retry_delays_and_counts_attempts(queue: EventQueue) -> None:
    now = time.time()
    event_id = queue.put("fn", None, b"\xc0", "req", now=now)
    queue.claim("w", 30, 1, now=now)
    error = {"errorType": "Trap", "errorMessage": "unreachable"}
    assert queue.retry(event_id, delay_s=5, count_attempt=True, error=error, owner="w", now=now)
    assert queue.claim("w", 30, 1, now=now + 4) == []
    [item] = queue.claim("w", 30, 1, now=now + 6)
    assert (item.attempts, item.last_error, item.not_before) == (1, error, pytest.approx(now + 5))
    assert queue.retry(event_id, delay_s=1, count_attempt=False, owner="w", now=now + 6)  # throttled
    [item] = queue.claim("w", 30, 1, now=now + 7)
    assert (item.attempts, item.last_error) == (1, error)
    assert not queue.retry(event_id, delay_s=1, count_attempt=True, owner="someone-else")


def test_dead_letters_list_get_redrive_delete(queue: EventQueue) -> None:
    ids = [queue.put("fn", None, pack(n), f"req-{n}") for n in range(4)]
    queue.claim("w", 30, 4)
    for event_id in ids[:3]:
        assert queue.dead_letter(event_id, "dlq", {"condition": "RetriesExhausted", "blob": b"\x00\x01"}, owner="w")
    assert queue.dead_letter(ids[3], "other", {"condition": "Success"})
    assert not queue.dead_letter(ids[3], "other", {})  # already moved
    assert queue.depth() == {}
    assert queue.dead_letter_counts() == {"dlq": 3, "other": 1}

    entries = queue.dead_letters("dlq")
    assert [entry["request_id"] for entry in entries] == ["req-0", "req-1", "req-2"]
    assert entries[0]["record"] == {"condition": "RetriesExhausted", "blob": b"\x00\x01"}
    assert set(entries[0]) == {
        "id", "queue", "request_id", "function", "qualifier", "record", "attempts", "enqueued_at", "failed_at",
    }  # fmt: skip
    page = queue.dead_letters("dlq", limit=1, after_id=entries[0]["id"])
    assert [entry["request_id"] for entry in page] == ["req-1"]
    assert queue.get_dead_letter("dlq", entries[1]["id"]) == entries[1]
    assert queue.get_dead_letter("other", entries[1]["id"]) is None

    assert queue.redrive("dlq", [entries[1]["id"], 999_999]) == 1
    [redriven] = queue.claim("w", 30, 10)
    assert (redriven.request_id, redriven.attempts, msgpack.unpackb(redriven.event_bytes)) == ("req-1", 0, 1)
    assert redriven.enqueued_at > entries[1]["enqueued_at"]  # its age starts again
    assert queue.redrive("dlq") == 2
    assert queue.dead_letter_counts() == {"other": 1}
    assert queue.depth()["fn"][0] == 3
    assert queue.delete_dead_letters("other") == 1
    assert queue.dead_letter_counts() == {}


def test_depth_counts_and_ages_per_function(queue: EventQueue) -> None:
    now = time.time()
    queue.put("a", None, b"\xc0", "1", now=now - 30)
    queue.put("a", None, b"\xc0", "2", now=now - 5)
    queue.put("b", None, b"\xc0", "3", now=now - 2)
    depth = queue.depth(now=now)
    assert depth == {"a": (2, pytest.approx(30)), "b": (1, pytest.approx(2))}


def test_an_accepted_event_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_PRELUDE
            + f"""
import pathlib, time
q = asyncq.EventQueue(pathlib.Path({str(path)!r}))
q.put("fn", None, b"\\x81\\xa1k\\x01", "accepted")
print("put", flush=True)
time.sleep(60)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "put"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    with EventQueue(path) as q:
        [item] = q.claim("w", 30, 10)
    assert (item.request_id, msgpack.unpackb(item.event_bytes)) == ("accepted", {"k": 1})


def test_aput_commits_concurrent_callers_together(queue: EventQueue) -> None:
    async def scenario() -> list[int]:
        return await asyncio.gather(*(queue.aput("fn", None, pack(n), f"r{n}") for n in range(50)))

    ids = asyncio.run(scenario())
    assert len(set(ids)) == 50
    claimed = queue.claim("w", 30, 100)
    assert [item.id for item in claimed] == sorted(ids)
    assert {msgpack.unpackb(item.event_bytes) for item in claimed} == set(range(50))


# --- the worker --------------------------------------------------------------


def result_for(item: QueuedEvent, payload: Any = None, error: Any = None) -> InvocationResult:
    return InvocationResult(payload, error, item.request_id, item.function, "$LATEST", 1.0, 1, 128, 0, 0, False, "")


class Harness:
    """A worker on ``queue`` whose runs are ``behaviour(item, call_number)``."""

    def __init__(
        self,
        queue: EventQueue,
        behaviour: Callable[[QueuedEvent, int], Awaitable[InvocationResult]],
        configs: dict[str, FunctionConfig],
        **options: Any,
    ) -> None:
        self.queue = queue
        self.runs: list[tuple[float, QueuedEvent]] = []
        self.outcomes: list[str] = []

        async def run(item: QueuedEvent) -> InvocationResult:
            self.runs.append((time.monotonic(), item))
            return await behaviour(item, len(self.runs))

        self.worker = AsyncWorker(
            queue,
            run,
            lambda name, qualifier: configs.get(name),
            on_outcome=lambda item, outcome: self.outcomes.append(outcome),
            **{"retry_delay_s": 0.05, "poll_interval_s": 0.01, **options},
        )

    def runs_of(self, function: str) -> list[QueuedEvent]:
        return [item for _, item in self.runs if item.function == function]

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out; outcomes so far: {self.outcomes}"
            await asyncio.sleep(0.01)


def run_scenario(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


async def succeed(item: QueuedEvent, call: int) -> InvocationResult:
    return result_for(item, payload={"echo": msgpack.unpackb(item.event_bytes)})


async def trap(item: QueuedEvent, call: int) -> InvocationResult:
    return result_for(item, error=Trap("wasm trap: unreachable"))


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_success_delivers_the_record_to_the_on_success_function(queue: EventQueue) -> None:
    configs = {"fn": FunctionConfig(on_success="function:sink"), "sink": FunctionConfig()}
    harness = Harness(queue, succeed, configs)

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack({"a": 1}), "req-1")
        harness.worker.wake()
        await harness.until(lambda: harness.outcomes.count("Success") == 2)
        await harness.worker.stop()

    run_scenario(scenario)
    [sink_run] = harness.runs_of("sink")
    record = msgpack.unpackb(sink_run.event_bytes)
    assert ISO_MS.match(record.pop("timestamp"))
    assert record == {
        "version": "1.0",
        "requestContext": {
            "requestId": "req-1",
            "functionArn": "arn:aws:lambda:local:000000000000:function:fn:$LATEST",
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"a": 1},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"echo": {"a": 1}},
    }
    assert sink_run.request_id != "req-1" and sink_run.hops == 1
    assert queue.depth() == {} and queue.dead_letter_counts() == {}


def test_failures_are_retried_with_backoff_then_dead_lettered(queue: EventQueue) -> None:
    async def guest_error(item: QueuedEvent, call: int) -> InvocationResult:
        return result_for(item, error=FunctionError("bad input", error_type="ValueError"))

    harness = Harness(queue, guest_error, {"fn": FunctionConfig(on_failure="queue:dlq")}, retry_delay_s=0.1)

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", "v2", pack([1, 2]), "req-1")
        await harness.until(lambda: "RetriesExhausted" in harness.outcomes)
        await harness.worker.stop()

    run_scenario(scenario)
    times = [at for at, _ in harness.runs]
    assert len(times) == 3
    assert 0.1 <= times[1] - times[0] < 0.1 + 0.15
    assert 0.2 <= times[2] - times[1] < 0.2 + 0.15
    assert [item.attempts for _, item in harness.runs] == [0, 1, 2]
    assert harness.outcomes == ["Retry", "Retry", "RetriesExhausted"]
    [entry] = queue.dead_letters("dlq")
    record = entry["record"]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(":function:fn:v2")
    assert record["requestPayload"] == [1, 2]
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"] == {"errorType": "ValueError", "errorMessage": "bad input"}
    assert (entry["function"], entry["qualifier"], entry["attempts"]) == ("fn", "v2", 3)
    assert queue.depth() == {}


def test_no_retries_and_no_on_failure_goes_to_the_default_failure_queue(queue: EventQueue) -> None:
    harness = Harness(queue, trap, {"fn": FunctionConfig(max_retry_attempts=0)})

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(None), "req-1")
        await harness.until(lambda: "RetriesExhausted" in harness.outcomes)
        await asyncio.sleep(0.2)  # no further run comes
        await harness.worker.stop()

    run_scenario(scenario)
    assert len(harness.runs) == 1
    [entry] = queue.dead_letters("fn-failures")
    assert entry["record"]["requestContext"]["approximateInvokeCount"] == 1
    assert entry["record"]["responsePayload"]["errorType"] == "Trap"


def test_failures_can_be_dropped_when_no_failure_queue_is_wanted(queue: EventQueue) -> None:
    harness = Harness(queue, trap, {"fn": FunctionConfig(max_retry_attempts=0)}, failure_queue=lambda name: None)

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(None), "req-1")
        await harness.until(lambda: "RetriesExhausted" in harness.outcomes)
        await harness.worker.stop()

    run_scenario(scenario)
    assert queue.depth() == {} and queue.dead_letter_counts() == {}


def test_an_event_older_than_max_event_age_is_not_run(queue: EventQueue) -> None:
    harness = Harness(queue, succeed, {"fn": FunctionConfig(max_event_age_s=60, on_failure="queue:old")})

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack("stale"), "req-old", now=time.time() - 61)
        queue.put("fn", None, pack("fresh"), "req-new", now=time.time() - 59)
        await harness.until(lambda: len(harness.outcomes) == 2)
        await harness.worker.stop()

    run_scenario(scenario)
    assert [item.request_id for _, item in harness.runs] == ["req-new"]
    [entry] = queue.dead_letters("old")
    context = entry["record"]["requestContext"]
    assert (context["requestId"], context["condition"], context["approximateInvokeCount"]) == (
        "req-old",
        "EventAgeExceeded",
        0,
    )
    assert entry["record"]["responsePayload"]["errorType"] == "EventAgeExceeded"


def test_throttled_runs_wait_and_are_not_counted(queue: EventQueue) -> None:
    async def throttled_twice(item: QueuedEvent, call: int) -> InvocationResult:
        if call <= 2:
            raise Throttled("function 'fn' is at its reserved concurrency of 1", retry_after_s=0.05)
        return await succeed(item, call)

    # No retries at all: a throttle counted as a failed run would end the event.
    harness = Harness(queue, throttled_twice, {"fn": FunctionConfig(max_retry_attempts=0, on_success="queue:ok")})

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(1), "req-1")
        await harness.until(lambda: "Success" in harness.outcomes)
        await harness.worker.stop()

    run_scenario(scenario)
    assert harness.outcomes == ["Throttled", "Throttled", "Success"]
    times = [at for at, _ in harness.runs]
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.05
    [entry] = queue.dead_letters("ok")
    assert entry["record"]["requestContext"]["approximateInvokeCount"] == 1


def test_function_not_found_is_final(queue: EventQueue) -> None:
    async def gone(item: QueuedEvent, call: int) -> InvocationResult:
        raise FunctionNotFound("function 'fn' is not deployed")

    harness = Harness(queue, gone, {"fn": FunctionConfig(on_failure="queue:dlq")})

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(1), "req-1")  # deleted while queued: run raises
        queue.put("unknown", None, pack(2), "req-2")  # config() says None: never run
        await harness.until(lambda: harness.outcomes.count("FunctionNotFound") == 2)
        await harness.worker.stop()

    run_scenario(scenario)
    assert [item.function for _, item in harness.runs] == ["fn"]
    [entry] = queue.dead_letters("dlq")
    assert entry["record"]["requestContext"]["condition"] == "FunctionNotFound"
    assert entry["record"]["responseContext"]["statusCode"] == 404
    [unknown] = queue.dead_letters("unknown-failures")
    assert unknown["record"]["responsePayload"]["errorType"] == "FunctionNotFound"


def test_a_destination_loop_is_cut_after_max_hops(queue: EventQueue) -> None:
    harness = Harness(queue, succeed, {"fn": FunctionConfig(on_success="function:fn")})

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(0), "req-1")
        await harness.until(lambda: queue.dead_letter_counts().get("fn-failures") == 1)
        await harness.worker.stop()

    run_scenario(scenario)
    assert len(harness.runs) == MAX_HOPS + 1
    assert queue.depth() == {}


def test_stop_waits_for_running_events(queue: EventQueue) -> None:
    async def slow(item: QueuedEvent, call: int) -> InvocationResult:
        await asyncio.sleep(0.3)
        return await succeed(item, call)

    harness = Harness(queue, slow, {"fn": FunctionConfig()})

    async def scenario() -> None:
        harness.worker.start()
        for n in range(3):
            queue.put("fn", None, pack(n), f"req-{n}")
        await harness.until(lambda: harness.worker.in_flight == 3)
        await harness.worker.stop(grace_s=5)
        assert harness.outcomes == ["Success"] * 3
        queue.put("fn", None, pack(9), "after-stop")
        await asyncio.sleep(0.1)

    run_scenario(scenario)
    assert len(harness.runs) == 3
    assert [item.request_id for item in queue.claim("w", 30, 10)] == ["after-stop"]


def test_stop_past_its_grace_leaves_the_event_leased(queue: EventQueue) -> None:
    async def hang(item: QueuedEvent, call: int) -> InvocationResult:
        await asyncio.sleep(60)
        raise AssertionError("cancelled before")

    harness = Harness(queue, hang, {"fn": FunctionConfig()}, lease_s=20)

    async def scenario() -> None:
        harness.worker.start()
        queue.put("fn", None, pack(1), "req-1")
        await harness.until(lambda: harness.worker.in_flight == 1)
        started = time.monotonic()
        await harness.worker.stop(grace_s=0.1)
        assert time.monotonic() - started < 1

    run_scenario(scenario)
    assert queue.claim("other", 30, 10) == []  # still leased by the stopped worker
    [item] = queue.claim("other", 30, 10, now=time.time() + 21)
    assert item.request_id == "req-1" and item.attempts == 0


def test_leases_of_a_dead_process_are_taken_over_at_once(queue: EventQueue) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    queue.put("fn", None, pack(1), "orphan")
    queue.claim(f"{socket.gethostname()}:{dead.pid}:0000", 600, 10)
    queue.put("fn", None, pack(2), "alive-elsewhere")
    queue.claim("other-machine:1:0000", 600, 10)
    harness = Harness(queue, succeed, {"fn": FunctionConfig()})

    async def scenario() -> None:
        harness.worker.start()
        await harness.until(lambda: "Success" in harness.outcomes)
        await asyncio.sleep(0.1)
        await harness.worker.stop()

    run_scenario(scenario)
    assert [item.request_id for _, item in harness.runs] == ["orphan"]


def test_two_workers_share_a_queue_and_run_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventQueue(path) as first, EventQueue(path) as second:
        runs: list[str] = []

        async def slowish(item: QueuedEvent, call: int) -> InvocationResult:
            await asyncio.sleep(0.001)
            return await succeed(item, call)

        harnesses = [Harness(q, slowish, {"fn": FunctionConfig()}, max_in_flight=8) for q in (first, second)]

        async def scenario() -> None:
            first.put_many(asyncq.NewEvent("fn", None, pack(n), f"req-{n}") for n in range(200))
            for harness in harnesses:
                harness.worker.start()
            await harnesses[0].until(lambda: sum(h.outcomes.count("Success") for h in harnesses) >= 200)
            await asyncio.sleep(0.1)
            for harness in harnesses:
                await harness.worker.stop()

        run_scenario(scenario)
        for harness in harnesses:
            runs += [item.request_id for _, item in harness.runs]
            assert harness.runs, "both workers took part"
        assert sorted(runs) == sorted(f"req-{n}" for n in range(200))
        assert first.depth() == {}
