"""The ``queue`` event source mapping (wasmhost/triggers/queue.py) on the embedded queue:
batches, partial failures, the queue's redrive policy, and a ``kill -9`` mid-batch."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wasmhost import FunctionConfig, Host
from wasmhost.errors import InvalidConfig
from wasmhost.queues import OutgoingMessage
from wasmhost.triggers import TriggerContext
from wasmhost.triggers.queue import TYPE, VISIBILITY_MARGIN_S, QueueRunner

from .conftest import ServerThread
from .triggers_support import ServeProcess, batches, deploy_cached, log_lines, processed, recorder_wasm, wait_for

SOURCE = "aws:sqs"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("queue-mapping") / "data"


@pytest.fixture(scope="module")
def recorder(data_dir: Path) -> bytes:
    """The recorder guest, compiled once into the module's data directory (later deploys hit the cache)."""
    code = recorder_wasm()
    with Host(data_dir=data_dir) as host:
        deploy_cached(host, "recorder-compile", code, FunctionConfig(timeout_ms=3000))
        host.delete("recorder-compile")
    return code


@pytest.fixture
def host(data_dir: Path, recorder: bytes) -> Iterator[Host]:
    with Host(data_dir=data_dir) as h:
        yield h


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(host: Host, code: bytes, prefix: str = "rec", **config) -> str:
    name = unique(prefix)
    host.deploy(name, code, FunctionConfig(**{"timeout_ms": 3000, **config}))
    return name


def empty(host: Host, queue: str) -> bool:
    attributes = host.queues.attributes(queue)
    return (
        attributes["approximate_number_of_messages"] == 0
        and attributes["approximate_number_of_messages_not_visible"] == 0
        and attributes["approximate_number_of_messages_delayed"] == 0
    )


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "queue trigger: queue is required"),
        ({"queue": "bad name"}, "queue trigger: queue: queue name must be 1-80 characters"),
        ({"queue": "q", "visibility_timeout_s": 5}, "queue trigger: unknown field(s) visibility_timeout_s"),
        ({"queue": "q", "batch_size": 0}, "queue trigger: batch_size must be an integer from 1 to 10000"),
        ({"queue": "q", "maximum_batching_window_ms": -1}, "maximum_batching_window_ms must be an integer"),
        ({"queue": "q", "on_failure": "bucket:x"}, "queue trigger: on_failure must be"),
    ],
)
def test_bad_fields_are_refused_naming_the_type_and_field(fields, message):
    with pytest.raises(InvalidConfig) as raised:
        TYPE.validate(fields)
    assert message in raised.value.message


def test_defaults_and_description():
    config = TYPE.validate({"queue": "jobs"})
    assert config["batch_size"] == 10 and config["maximum_batching_window_ms"] == 0
    assert config["retry_delay_ms"] == 1000 and config["enabled"] is True
    assert TYPE.describe(config) == "queue jobs (batch 10)"


# --- the runner on its own: records and visibility ------------------------------------


def test_records_are_sqs_shaped_and_hidden_for_the_function_timeout(host, recorder):
    function = deploy(host, recorder, timeout_ms=2500)
    queue = unique("q")
    host.queues.create(queue)
    sent_at = time.time()
    host.queues.send(queue, "hello", {"kind": "greeting", "n": 2})
    trigger = host.add_trigger(function, {"type": "queue", "queue": queue, "maximum_batching_window_ms": 1500})
    runner = TYPE.runner(trigger, TriggerContext(host, host.trigger_store))
    try:
        # timeout 2.5 s + window 1.5 s + margin, in whole seconds
        assert runner.visibility_timeout_s() == 4 + VISIBILITY_MARGIN_S
        [message] = asyncio.run(runner.fetch(10, 0))
        record = runner.record(message)
        hidden_for = host.queues.attributes(queue)
        assert hidden_for["approximate_number_of_messages_not_visible"] == 1
        assert host.queues.receive(queue, now=time.time() + 4 + VISIBILITY_MARGIN_S - 0.5) == []
    finally:
        host.delete(function)
    assert record["eventSource"] == SOURCE
    assert record["eventSourceARN"] == f"arn:aws:sqs:local:000000000000:{queue}"
    assert record["awsRegion"] == "local" and record["body"] == "hello"
    assert record["md5OfBody"] == "5d41402abc4b2a76b9719d911017c592"
    assert record["receiptHandle"] == message.handle and record["receiptHandle"] != record["messageId"]
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert abs(int(attributes["SentTimestamp"]) - sent_at * 1000) < 1000
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
    assert record["messageAttributes"] == {
        "kind": {"dataType": "String", "stringValue": "greeting", "stringListValues": [], "binaryListValues": []},
        "n": {"dataType": "Number", "stringValue": "2", "stringListValues": [], "binaryListValues": []},
    }
    host.queues.delete_queue(queue)


def test_a_stopped_runner_gives_back_what_it_held(host, recorder):
    function = deploy(host, recorder)
    queue = unique("q")
    host.queues.create(queue)
    host.queues.send_batch(queue, [OutgoingMessage(str(i)) for i in range(3)])
    trigger = host.add_trigger(function, {"type": "queue", "queue": queue})
    runner = TYPE.runner(trigger, TriggerContext(host, host.trigger_store))

    async def fetch_then_close() -> int:
        got = await runner.fetch(10, 0)
        await runner.close()
        return len(got)

    try:
        assert asyncio.run(fetch_then_close()) == 3
        assert host.queues.attributes(queue)["approximate_number_of_messages"] == 3
    finally:
        host.delete(function)
        host.queues.delete_queue(queue)


class ShortVisibility(QueueRunner):
    """A runner whose receives hide messages for 1 s only: shorter than the invocation."""

    def visibility_timeout_s(self) -> int:
        return 1


@pytest.mark.slow
def test_an_invocation_longer_than_the_visibility_timeout_keeps_its_batch_hidden(host, recorder):
    function = deploy(host, recorder, timeout_ms=5000)
    queue = unique("q")
    host.queues.create(queue)
    body = json.dumps({"sleep_ms": 2500})
    host.queues.send(queue, body)
    trigger = host.add_trigger(function, {"type": "queue", "queue": queue})
    runner = ShortVisibility(trigger, TriggerContext(host, host.trigger_store))

    async def scenario() -> list:
        batch = await runner.fetch(10, 0)
        delivery = asyncio.ensure_future(runner.deliver(batch))
        await asyncio.sleep(2.0)  # twice the visibility timeout: extended while the function runs
        seen = await asyncio.to_thread(host.queues.receive, queue, 10)
        await delivery
        return seen

    try:
        assert asyncio.run(scenario()) == []
        assert empty(host, queue)
        wait_for(lambda: processed(host, function, SOURCE) == [body], 10, "the one run")
    finally:
        host.delete(function)
        host.queues.delete_queue(queue)


# --- through a server --------------------------------------------------------------


def test_batches_of_batch_size_within_the_batching_window(host, recorder):
    small, large, windowed = (deploy(host, recorder) for _ in range(3))
    queues = {name: unique("q") for name in (small, large, windowed)}
    for function, queue in queues.items():
        host.queues.create(queue)
        if function != windowed:
            for start in (0, 10, 20):
                host.queues.send_batch(queue, [OutgoingMessage(f"m{i}") for i in range(start, min(25, start + 10))])
    host.add_trigger(small, {"type": "queue", "queue": queues[small], "batch_size": 10})
    host.add_trigger(large, {"type": "queue", "queue": queues[large], "batch_size": 25})
    window = {"batch_size": 10, "maximum_batching_window_ms": 1500}
    host.add_trigger(windowed, {"type": "queue", "queue": queues[windowed], **window})
    try:
        with ServerThread(host):
            # Three messages 0.2 s apart: all wait for the window, then go in one batch.
            for body in ("w1", "w2", "w3"):
                host.queues.send(queues[windowed], body)
                time.sleep(0.2)
            assert host.queues.attributes(queues[windowed])["approximate_number_of_messages_not_visible"] == 3
            assert batches(host, windowed, with_outcome=False) == []  # the window is not over yet
            wait_for(lambda: len(processed(host, small, SOURCE)) == 25, 20, "25 messages in batches of 10")
            wait_for(lambda: len(processed(host, large, SOURCE)) == 25, 20, "25 messages in one batch")
            wait_for(lambda: len(processed(host, windowed, SOURCE)) == 3, 20, "the windowed batch")
            wait_for(lambda: all(empty(host, q) for q in queues.values()), 10, "empty queues")
        assert [len(b) for b in batches(host, small, with_outcome=False)] == [10, 10, 5]
        assert batches(host, large, with_outcome=False) == [[f"m{i}" for i in range(25)]]
        assert batches(host, windowed, with_outcome=False) == [["w1", "w2", "w3"]]
    finally:
        for function, queue in queues.items():
            host.delete(function)
            host.queues.delete_queue(queue)


def test_partial_failure_redelivers_only_the_failed_message(host, recorder):
    function = deploy(host, recorder, env={"FAIL_BODIES": "bad"})
    queue = unique("q")
    host.queues.create(queue)
    host.queues.send_batch(queue, [OutgoingMessage(body) for body in ("good1", "bad", "good2")])
    host.add_trigger(function, {"type": "queue", "queue": queue, "retry_delay_ms": 100})
    try:
        with ServerThread(host):
            wait_for(lambda: len(log_lines(host, function, "failed ")) >= 3, 20, "three failed attempts of 'bad'")
            assert sorted(processed(host, function, SOURCE)) == ["good1", "good2"]
            attributes = host.queues.attributes(queue)
            assert (
                attributes["approximate_number_of_messages"] + attributes["approximate_number_of_messages_not_visible"]
                == 1
            )  # only 'bad' is left
            host.update_config(function, env={})
            wait_for(lambda: "bad" in processed(host, function, SOURCE), 20, "'bad' to succeed")
            wait_for(lambda: empty(host, queue), 10, "an empty queue")
        assert Counter(processed(host, function, SOURCE)) == {"good1": 1, "good2": 1, "bad": 1}
        # Redeliveries were received again from the queue: their receive count grew (one batch each).
        assert all(batch == ["bad"] for batch in batches(host, function, with_outcome=False)[1:])
    finally:
        host.delete(function)
        host.queues.delete_queue(queue)


def test_a_poison_message_ends_in_the_dead_letter_queue_after_max_receive_count(host, recorder):
    function = deploy(host, recorder)
    queue, dead = unique("q"), unique("dlq")
    host.queues.create(dead)
    host.queues.create(queue, {"max_receive_count": 3, "dead_letter_queue": dead})
    poison = json.dumps({"fail": True, "id": 1})
    message_id = host.queues.send(queue, poison)
    host.queues.send(queue, "fine")
    host.add_trigger(function, {"type": "queue", "queue": queue, "retry_delay_ms": 50, "batch_size": 1})
    try:
        with ServerThread(host):
            wait_for(lambda: host.queues.attributes(dead)["approximate_number_of_messages"] == 1, 20, "a dead letter")
            wait_for(lambda: empty(host, queue), 10, "an empty source queue")
        assert log_lines(host, function, "failed ") == [f"{SOURCE} {poison}"] * 3
        assert processed(host, function, SOURCE) == ["fine"]
        [dead_letter] = host.queues.receive(dead)
        assert dead_letter.message_id == message_id and dead_letter.body == poison
        assert dead_letter.dead_letter_source == queue
    finally:
        host.delete(function)
        host.queues.delete_queue(queue)
        host.queues.delete_queue(dead)


def test_a_mapping_waits_for_its_queue_to_exist(host, recorder):
    function = deploy(host, recorder)
    queue = unique("q")
    trigger = host.add_trigger(function, {"type": "queue", "queue": queue})
    try:
        with ServerThread(host):

            def status() -> dict:
                return host.get_trigger(function, trigger.id).status

            waiting = wait_for(lambda: status().get("state") == "waiting" and status(), 10, "a waiting mapping")
            assert f"queue {queue!r} does not exist" in waiting["last_error"]
            host.queues.create(queue)
            host.queues.send(queue, "late")
            wait_for(lambda: processed(host, function, SOURCE) == ["late"], 20, "the message")
    finally:
        host.delete(function)
        host.queues.delete_queue(queue)


# --- kill -9 -------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing(host, recorder, data_dir, tmp_path):
    """A real ``wasmhost serve`` killed while a batch runs: after a restart every message is processed."""
    function = deploy(host, recorder, timeout_ms=2000)
    queue = unique("q")
    host.queues.create(queue)
    bodies = [json.dumps({"n": i, "sleep_ms": 300}) for i in range(12)]
    for start in (0, 10):
        host.queues.send_batch(queue, [OutgoingMessage(body) for body in bodies[start : start + 10]])
    host.add_trigger(function, {"type": "queue", "queue": queue, "batch_size": 3})
    server = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(processed(host, function, SOURCE)) >= 3, 30, "the first batch")
        server.kill()  # the second batch is running: it is neither deleted nor released
        done_before = len(processed(host, function, SOURCE))
        assert done_before < len(bodies)
        assert host.queues.attributes(queue)["approximate_number_of_messages_not_visible"] >= 1
        server = ServeProcess(data_dir, tmp_path / "serve.log")
        # The killed batch comes back after its visibility timeout (2 s + margin).
        wait_for(lambda: set(processed(host, function, SOURCE)) == set(bodies), 40, "every message")
        wait_for(lambda: empty(host, queue), 10, "an empty queue")
        response = httpx.get(f"{server.url}/functions/{function}/triggers", timeout=5).json()
        assert response["triggers"][0]["status"]["state"] == "running"
    finally:
        server.stop()
        host.delete(function)
        host.queues.delete_queue(queue)
    repeats = [body for body, count in Counter(processed(host, function, SOURCE)).items() if count > 1]
    assert len(repeats) <= 3  # at most the batch in flight at the kill ran twice
    assert len(set(processed(host, function, SOURCE))) == len(bodies)
