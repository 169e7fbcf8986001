"""The ``nats`` trigger: a JetStream durable pull consumer feeding SQS-shaped batches,
against the real NATS server on localhost:4222 (skipped without it, failing under CI=true)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from wasmhost import FunctionConfig, Host
from wasmhost.errors import InvalidConfig
from wasmhost.triggers import TriggerContext, validate
from wasmhost.triggers.nats_jetstream import TYPE, NatsJetStreamRunner
from wasmhost.triggers.store import Trigger

from .conftest import ServerThread, free_port
from .triggers_support import (
    ServeProcess,
    batches,
    deploy_cached,
    log_lines,
    processed,
    recorder_wasm,
    require_service,
    wait_for,
)

SOURCE = "wasmhost:nats"
T = TypeVar("T")


def jetstream(call: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run ``call`` with a JetStream context on a connection of its own."""

    async def run() -> T:
        connection = await nats.connect("nats://127.0.0.1:4222")
        try:
            return await call(connection.jetstream())
        finally:
            await connection.close()

    return asyncio.run(run())


def publish(subject: str, bodies: list[bytes | str], headers: dict[str, str] | None = None) -> list[int]:
    async def call(js: JetStreamContext) -> list[int]:
        acks = [await js.publish(subject, b if isinstance(b, bytes) else b.encode(), headers=headers) for b in bodies]
        return [ack.seq for ack in acks]

    return jetstream(call)


def consumer_state(stream: str, durable: str) -> tuple[int, int]:
    """(num_ack_pending, num_pending): delivered and not acknowledged, not delivered yet."""

    async def call(js: JetStreamContext) -> tuple[int, int]:
        info = await js.consumer_info(stream, durable)
        return info.num_ack_pending, info.num_pending

    return jetstream(call)


def consumer_exists(stream: str, durable: str) -> bool:
    try:
        consumer_state(stream, durable)
    except nats.js.errors.NotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nats-trigger") / "data"


@pytest.fixture(scope="module")
def host(data_dir: Path) -> Iterator[Host]:
    """One host for the module: the Python recorder compiles once (seconds)."""
    with Host(data_dir=data_dir) as h:
        yield h


@pytest.fixture
def stream() -> Iterator[str]:
    """A unique stream name (subjects ``<name>.>``), deleted with its consumers afterwards."""
    require_service(4222, "NATS")
    name = f"wasmhost-test-{uuid.uuid4().hex[:10]}"
    yield name

    async def delete(js: JetStreamContext) -> None:
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass

    jetstream(delete)


@pytest.fixture
def recorder(host: Host) -> Iterator[str]:
    name = f"rec-{uuid.uuid4().hex[:8]}"
    deploy_cached(host, name, recorder_wasm(), FunctionConfig(timeout_ms=30000))
    yield name
    host.delete(name)


def spec(stream: str, **fields: Any) -> dict[str, Any]:
    return {"type": "nats", "stream": stream, "subjects": [f"{stream}.>"], **fields}


# --- configuration -------------------------------------------------------------------


def test_fields_are_validated_and_completed():
    _, config = validate({"type": "nats", "stream": "ORDERS"})
    assert config["url"] == "nats://127.0.0.1:4222" and config["deliver_policy"] == "all"
    assert config["ack_wait_s"] == 30 and "durable" not in config and "subjects" not in config
    bad = [
        ({}, "stream is required"),
        ({"stream": "a.b"}, "stream must not contain whitespace, '.'"),
        ({"stream": "s", "durable": "x y"}, "durable must not contain"),
        ({"stream": "s", "deliver_policy": "last"}, "deliver_policy must be one of all, new"),
        ({"stream": "s", "ack_wait_s": 0}, "ack_wait_s must be a number of seconds"),
        ({"stream": "s", "ack_wait_s": 2, "maximum_batching_window_ms": 5000}, "ack_wait_s (2 s) must be longer"),
        ({"stream": "s", "url": "redis://127.0.0.1"}, "url must be nats://host:port"),
        ({"stream": "s", "subjects": []}, "subjects must be a non-empty list"),
        ({"stream": "s", "subject": "a b"}, "subject must not contain whitespace"),
        ({"stream": "s", "queue": "q"}, "unknown field(s) queue"),
    ]
    for fields, message in bad:
        with pytest.raises(InvalidConfig) as caught:
            validate({"type": "nats", **fields})
        assert "nats trigger" in caught.value.message and message in caught.value.message, caught.value.message


def test_source_arn_names_the_server_stream_and_consumer_but_no_password(host: Host):
    _, config = validate({"type": "nats", "stream": "ORDERS", "url": "nats://app:s3cret@bus.local:4333"})
    trigger = Trigger("trg-arn", "billing", "nats", config, time.time())
    runner = NatsJetStreamRunner(trigger, TriggerContext(host, host.trigger_store))
    assert runner.source_arn() == "arn:wasmhost:nats:local:bus.local:4333:stream/ORDERS:consumer/wasmhost-trg-arn"
    assert "s3cret" not in TYPE.describe(config)


# --- the runner on the real server -------------------------------------------------------


def test_records_and_redelivery_at_the_source(host: Host, stream: str, recorder: str):
    """Messages become SQS records (headers as attributes); a failed one is nak-ed and
    comes back after the retry delay with JetStream's delivery count."""
    host.update_config(recorder, env={"FAIL_BODIES": "hello"})
    _, config = validate(spec(stream, retry_delay_ms=300))
    trigger = Trigger(f"trg-{uuid.uuid4().hex[:12]}", recorder, "nats", config, time.time())

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        runner = NatsJetStreamRunner(trigger, TriggerContext(host, host.trigger_store))
        await runner.connect()  # creates the stream (subjects given) and the durable consumer
        try:
            assert runner.connection is not None
            js = runner.connection.jetstream()
            await js.publish(f"{stream}.greeting", b"hello", headers={"Trace-Id": "t-1"})
            await js.publish(f"{stream}.raw", b"\xff\x00")
            first = await runner.fetch(10, 2.0)
            seen["records"] = [runner.record(m) for m in first]
            await runner.deliver(first)  # the recorder fails "hello": acks the other, naks it
            started = time.monotonic()
            again = await runner.fetch(10, 3.0)
            seen["retry_after_s"] = time.monotonic() - started
            seen["retry"] = [runner.record(m) for m in again]
            await runner.ack(again)
        finally:
            await runner.close()
        return seen

    seen = asyncio.run(scenario())
    hello, raw = seen["records"]
    assert [hello["messageId"], raw["messageId"]] == ["1", "2"]  # stream sequences
    assert hello["body"] == "hello" and hello["eventSource"] == SOURCE
    assert hello["messageAttributes"] == {
        "Trace-Id": {"stringValue": "t-1", "dataType": "String", "stringListValues": [], "binaryListValues": []}
    }
    assert hello["attributes"]["Subject"] == f"{stream}.greeting"
    assert hello["attributes"]["ApproximateReceiveCount"] == "1"
    assert hello["eventSourceARN"].endswith(f":stream/{stream}:consumer/wasmhost-{trigger.id}")
    assert raw["body"] == "/wA=" and raw["attributes"]["BodyEncoding"] == "base64"
    assert [rec["body"] for rec in seen["retry"]] == ["hello"]
    assert seen["retry"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert 0.2 <= seen["retry_after_s"] < 2.0
    assert consumer_state(stream, f"wasmhost-{trigger.id}") == (0, 0)


# --- through the host ------------------------------------------------------------------


def test_batches_of_batch_size_and_the_batching_window(host: Host, stream: str, recorder: str):
    trigger = host.add_trigger(recorder, spec(stream, batch_size=3, maximum_batching_window_ms=400))
    durable = f"wasmhost-{trigger.id}"
    with ServerThread(host):
        wait_for(lambda: host.get_trigger(recorder, trigger.id).status.get("state") == "running", 10, "the consumer")
        publish(f"{stream}.b", [f"b{i}" for i in range(7)])
        wait_for(lambda: len(processed(host, recorder, SOURCE)) == 7, 30, "the first 7 messages")
        publish(f"{stream}.w", ["w0"])
        time.sleep(0.1)
        publish(f"{stream}.w", ["w1"])  # within the window opened by w0: the same batch
        wait_for(lambda: len(processed(host, recorder, SOURCE)) == 9, 30, "the last 2 messages")
        wait_for(lambda: consumer_state(stream, durable) == (0, 0), 10, "nothing pending")
    found = batches(host, recorder, outcomes=("processed",), with_outcome=False)
    assert [len(batch) for batch in found[:3]] == [3, 3, 1] and found[3] == ["w0", "w1"]
    assert sum(found, []) == [f"b{i}" for i in range(7)] + ["w0", "w1"]
    host.delete_trigger(recorder, trigger.id)
    assert not consumer_exists(stream, durable)  # its own durable goes with the trigger


def test_only_failed_messages_are_redelivered_until_they_succeed(host: Host, stream: str, recorder: str):
    host.update_config(recorder, env={"FAIL_BODIES": "bad1,bad2"})
    trigger = host.add_trigger(recorder, spec(stream, retry_delay_ms=200, deliver_policy="new"))
    durable = f"wasmhost-{trigger.id}"

    def failures(body: str) -> int:
        return log_lines(host, recorder).count(f"failed {SOURCE} {body}")

    with ServerThread(host):
        wait_for(lambda: host.get_trigger(recorder, trigger.id).status.get("state") == "running", 10, "the consumer")
        publish(f"{stream}.x", ["ok0", "bad1", "ok1", "bad2", "ok2"])
        wait_for(lambda: failures("bad1") >= 3 and failures("bad2") >= 3, 15, "three failures of bad1 and bad2")
        assert consumer_state(stream, durable)[1] == 0  # all delivered; only the two are unacknowledged
        host.update_config(recorder, env={})
        wait_for(lambda: {"bad1", "bad2"} <= set(processed(host, recorder, SOURCE)), 15, "the retries to succeed")
        wait_for(lambda: consumer_state(stream, durable) == (0, 0), 10, "nothing pending")
    assert sorted(processed(host, recorder, SOURCE)) == ["bad1", "bad2", "ok0", "ok1", "ok2"]


def test_an_unreachable_server_or_a_missing_stream_shows_in_the_status(host: Host, stream: str, recorder: str):
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        unreachable = {"type": "nats", "url": f"nats://127.0.0.1:{free_port()}", "stream": "S"}
        missing = {"type": "nats", "stream": stream}  # no subjects: the stream must exist
        for fields in (unreachable, missing):
            created = client.post(f"/functions/{recorder}/triggers", json=fields)
            assert created.status_code == 201, created.text

        def errors() -> list[str] | None:
            listed = client.get(f"/functions/{recorder}/triggers").json()["triggers"]
            found = [t["status"].get("last_error") for t in listed if t["status"].get("state") == "error"]
            return found if len(found) == 2 else None

        unreachable_error, missing_error = wait_for(errors, 20, "both triggers' errors")
        assert unreachable_error.startswith("ConnectionError: cannot connect to NATS at 127.0.0.1:")
        assert f"NATS stream '{stream}' does not exist" in missing_error and "subjects" in missing_error
        assert client.post(f"/invoke/{recorder}", json={"ping": 1}).json() == {"ping": 1}


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing(host: Host, data_dir: Path, stream: str, recorder: str, tmp_path: Path):
    trigger = host.add_trigger(recorder, spec(stream, batch_size=3, ack_wait_s=2))
    durable = f"wasmhost-{trigger.id}"
    bodies = [json.dumps({"n": n, "sleep_ms": 400}) for n in range(6)]

    async def create_stream(js: JetStreamContext) -> None:
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])

    jetstream(create_stream)
    publish(f"{stream}.work", list(bodies))
    server = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(processed(host, recorder, SOURCE)) >= 3, 30, "the first batch")
        server.kill()  # the second batch is in the function (3 x 400 ms)
    finally:
        server.stop()
    assert processed(host, recorder, SOURCE) == bodies[:3]
    assert consumer_state(stream, durable) == (3, 0)  # delivered, not acknowledged
    server = ServeProcess(data_dir, tmp_path / "serve.log")
    try:  # JetStream redelivers them once ack_wait_s has passed
        wait_for(lambda: len(processed(host, recorder, SOURCE)) >= 6, 30, "the redelivered batch")
        wait_for(lambda: consumer_state(stream, durable) == (0, 0), 10, "nothing pending")
    finally:
        server.stop()
    assert processed(host, recorder, SOURCE) == bodies  # the first batch was not redelivered
