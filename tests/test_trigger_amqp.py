"""The ``amqp`` trigger against the real RabbitMQ on localhost:5672: batches, partial
failure and redelivery, ``kill -9`` of a real server mid-batch, the record shape."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from wasmhost import Host
from wasmhost.errors import InvalidConfig
from wasmhost.triggers import TriggerContext, validate
from wasmhost.triggers.amqp import TYPE as AMQP_TYPE
from wasmhost.triggers.amqp import AmqpRunner
from wasmhost.triggers.store import Trigger

from .conftest import ServerThread
from .triggers_support import (
    ServeProcess,
    batches,
    copy_seed,
    log_lines,
    processed,
    recorder_seed,
    require_service,
    wait_for,
)

URL = "amqp://guest:guest@127.0.0.1:5672/"


# --- talking to the broker from the test -----------------------------------------------


async def _with_channel(work: Any) -> Any:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        return await work(channel)
    finally:
        await connection.close()


def publish(queue: str, bodies: list[str], **properties: Any) -> None:
    async def work(channel: aio_pika.abc.AbstractChannel) -> None:
        for body in bodies:
            message = aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties)
            await channel.default_exchange.publish(message, routing_key=queue)

    asyncio.run(_with_channel(work))


async def ready_count_async(queue: str) -> int | None:
    async def work(channel: aio_pika.abc.AbstractChannel) -> int | None:
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(declared.declaration_result.message_count or 0)

    return await _with_channel(work)


def ready_count(queue: str) -> int | None:
    """Messages ready in ``queue`` (unacked ones are not counted); None if it does not exist."""
    return asyncio.run(ready_count_async(queue))


def delete_queue(queue: str) -> None:
    async def work(channel: aio_pika.abc.AbstractChannel) -> None:
        await channel.queue_delete(queue)

    asyncio.run(_with_channel(work))


@pytest.fixture
def queue() -> Iterator[str]:
    require_service(5672, "RabbitMQ")
    name = f"wasmhost-test-{uuid.uuid4().hex[:10]}"
    yield name
    delete_queue(name)
    delete_queue(name + "-quorum")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorder deployed once per session, shared with the other mapping tests."""
    return recorder_seed(tmp_path_factory.getbasetemp())


def data_dir(seeded: Path, tmp_path: Path) -> Path:
    return copy_seed(seeded, tmp_path)


def amqp_trigger(queue: str, **fields: Any) -> dict[str, Any]:
    return {"type": "amqp", "url": URL, "queue": queue, **fields}


# --- fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "amqp trigger: queue is required"),
        ({"queue": "q", "url": "http://x/"}, "amqp trigger: url must be amqp://"),
        ({"queue": "q", "url": "amqp://"}, "amqp trigger: url must be amqp://"),
        ({"queue": "q", "declare": "yes"}, "amqp trigger: declare must be true or false"),
        ({"queue": "q", "prefetch": 0}, "amqp trigger: prefetch must be an integer from 1 to 65535"),
        ({"queue": "q", "batch_size": 20, "prefetch": 10}, "prefetch (10) must be at least batch_size (20)"),
        ({"queue": "q", "exchange": "x"}, "amqp trigger: unknown field(s) exchange"),
        ({"queue": "q", "maximum_batching_window_ms": -1}, "amqp trigger: maximum_batching_window_ms must be"),
    ],
)
def test_bad_fields_are_refused_naming_them(fields, message):
    with pytest.raises(InvalidConfig) as caught:
        validate({"type": "amqp", **fields})
    assert message in caught.value.message


def test_defaults_and_an_arn_without_the_password():
    _, config = validate({"type": "amqp", "queue": "orders", "batch_size": 25})
    assert validate({"type": "amqp", "queue": "orders", "batch_size": 80})[1]["prefetch"] == 160
    assert config["url"] == "amqp://guest:guest@127.0.0.1:5672/"
    assert config["declare"] is True and config["prefetch"] == 100
    _, config = validate({"type": "amqp", "queue": "orders", "url": "amqp://app:s3cret@broker:5671/prod"})
    trigger = Trigger("trg-1", "fn", "amqp", config, time.time())
    arn = AmqpRunner(trigger, None).source_arn()  # type: ignore[arg-type]
    assert arn == "arn:wasmhost:amqp:local:broker:5671/prod:queue/orders"
    assert "s3cret" not in arn and "app" not in arn
    _, config = validate({"type": "amqp", "queue": "q", "url": "amqps://broker"})
    arn = AmqpRunner(Trigger("trg-2", "fn", "amqp", config, time.time()), None).source_arn()  # type: ignore[arg-type]
    assert arn == "arn:wasmhost:amqp:local:broker:5671/%2F:queue/q"
    assert AMQP_TYPE.describe(config) == "amqp broker:5671 queue q (batch 10)"


# --- against the broker -------------------------------------------------------------------


def test_records_carry_ids_attributes_and_receive_counts(queue):
    """Messages read from the real broker become records: message_id (unique in a batch
    even when a publisher repeats it), headers and properties, redelivery counts."""
    quorum = queue + "-quorum"
    _, config = validate(amqp_trigger(queue))
    runner = AmqpRunner(Trigger("trg-rec", "fn", "amqp", config, time.time()), None)  # type: ignore[arg-type]
    runner._session = "s1"

    async def scenario(channel: aio_pika.abc.AbstractChannel) -> None:
        classic = await channel.declare_queue(queue, durable=True)
        replicated = await channel.declare_queue(quorum, durable=True, arguments={"x-queue-type": "quorum"})
        publish_at = aio_pika.Message(
            b'{"n": 1}', message_id="order-7", headers={"tenant": "acme", "tries": 3}, content_type="application/json"
        )
        await channel.default_exchange.publish(publish_at, routing_key=queue)
        await channel.default_exchange.publish(aio_pika.Message(b"again", message_id="order-7"), routing_key=queue)
        await channel.default_exchange.publish(aio_pika.Message(b"\xff\xfe"), routing_key=queue)

        first, second, third = [await classic.get(timeout=5) for _ in range(3)]
        third.message_id = None  # type: ignore[misc]  # aiormq always sets one; pika, Java... do not
        records = [runner.record(runner._message(d)) for d in (first, second, third)]
        ids = [r["messageId"] for r in records]
        assert ids[0] == "order-7" and ids[1].startswith("order-7#") and ids[2] == f"s1-{third.delivery_tag}"
        assert len(set(ids)) == 3
        record = records[0]
        assert record["eventSource"] == "wasmhost:amqp" and record["body"] == '{"n": 1}'
        assert record["eventSourceARN"] == f"arn:wasmhost:amqp:local:127.0.0.1:5672/%2F:queue/{queue}"
        attributes = record["messageAttributes"]
        assert attributes["tenant"] == {
            "stringValue": "acme",
            "dataType": "String",
            "stringListValues": [],
            "binaryListValues": [],
        }
        assert attributes["tries"] == {
            "stringValue": "3",
            "dataType": "Number",
            "stringListValues": [],
            "binaryListValues": [],
        }
        assert attributes["contentType"]["stringValue"] == "application/json"
        assert attributes["routingKey"]["stringValue"] == queue
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert records[2]["attributes"]["BodyEncoding"] == "base64"

        # a classic queue has only the redelivered flag; the runner remembers the failures it saw
        await first.nack(requeue=True)
        again = await classic.get(timeout=5)
        assert again.redelivered and runner._message(again).receive_count == 2
        runner._failures["id:order-7"] = 4
        await again.nack(requeue=True)
        again = await classic.get(timeout=5)
        assert runner._message(again).receive_count == 5
        await again.ack()
        await second.ack()
        await third.ack()

        await channel.default_exchange.publish(aio_pika.Message(b"q"), routing_key=quorum)
        counts = []
        delivery = await replicated.get(timeout=5)
        for _ in range(3):
            counts.append(runner._message(delivery).receive_count)
            await delivery.nack(requeue=True)
            delivery = await replicated.get(timeout=5)
        await delivery.ack()
        assert counts == [1, 2, 3], "quorum queues count deliveries exactly (x-delivery-count)"

    asyncio.run(_with_channel(scenario))


@pytest.mark.slow
def test_batches_partial_failure_and_redelivery_of_only_the_failed(seeded, tmp_path, queue):
    bodies = [f"m{i}" for i in range(10)]
    with Host(data_dir(seeded, tmp_path)) as host:
        host.update_config("rec", env={"FAIL_BODIES": "m3,m7"})
        trigger = host.add_trigger(
            "rec", amqp_trigger(queue, batch_size=5, maximum_batching_window_ms=500, retry_delay_ms=300)
        )
        with ServerThread(host):
            wait_for(lambda: ready_count(queue) is not None, 15, "the trigger to declare the queue")
            wait_for(lambda: host.get_trigger("rec", trigger.id).status.get("state") == "running", 15, "running")
            publish(queue, bodies)
            wait_for(lambda: len(processed(host, "rec")) >= 8, 30, "the 8 good messages")
            wait_for(lambda: log_lines(host, "rec").count("failed wasmhost:amqp m3") >= 2, 15, "m3 retried")
            first_two = batches(host, "rec")[:2]
            assert [len(b) for b in first_two] == [5, 5], first_two
            assert sorted(sum(first_two, [])) == sorted(
                ("failed " if b in ("m3", "m7") else "processed ") + b for b in bodies
            )
            retried = [b for b in batches(host, "rec")[2:] for b in b]
            assert retried and set(retried) <= {"failed m3", "failed m7"}, "only the failed ones come back"
            assert log_lines(host, "rec").count("failed wasmhost:amqp m3") < 10, "retried after retry_delay_ms"
            started = time.monotonic()
            host.update_config("rec", env={})
            wait_for(lambda: sorted(processed(host, "rec")) == bodies, 30, "m3 and m7 to succeed")
            assert time.monotonic() - started < 10
            assert host.get_trigger("rec", trigger.id).status["state"] == "running"
        time.sleep(0.5)  # the server closed its connection: anything it left unacked is ready again
        assert ready_count(queue) == 0, "every message was acknowledged"
        assert processed(host, "rec").count("m0") == 1


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing(seeded, tmp_path, queue):
    data = data_dir(seeded, tmp_path)
    bodies = [json.dumps({"n": i, "sleep_ms": 400}) for i in range(6)]
    with Host(data) as host:
        host.add_trigger("rec", amqp_trigger(queue, batch_size=3, retry_delay_ms=200))
    server = ServeProcess(data, tmp_path / "serve-1.log")
    try:
        wait_for(lambda: ready_count(queue) is not None, 30, "the trigger to declare the queue")
        publish(queue, bodies)
        with Host(data) as reader:
            wait_for(lambda: len(processed(reader, "rec")) >= 3, 30, "the first batch")
            server.kill()
            assert len(processed(reader, "rec")) < len(bodies), "killed mid-way"
        wait_for(lambda: (ready_count(queue) or 0) > 0, 10, "the broker to requeue what the killed host held")
        server = ServeProcess(data, tmp_path / "serve-2.log")
        with Host(data) as reader:
            wait_for(lambda: set(processed(reader, "rec")) == set(bodies), 40, "every message after the restart")
    finally:
        server.stop()
    time.sleep(0.5)
    assert ready_count(queue) == 0


def test_a_lost_consumer_raises_out_of_run(host, guest, queue):
    """The broker cancels the consumer when the queue is deleted: ``run`` raises (the
    supervisor then restarts it with back-off, which declares the queue again)."""
    host.deploy("echo", guest("echo"))
    trigger = host.add_trigger("echo", amqp_trigger(queue))
    runner = AmqpRunner(trigger, TriggerContext(host, host.trigger_store))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        try:
            for _ in range(100):
                if await ready_count_async(queue) is not None:
                    break
                await asyncio.sleep(0.05)
            await _with_channel(lambda channel: channel.queue_delete(queue))
            with pytest.raises(ConnectionError, match="cancelled the consumer"):
                await asyncio.wait_for(task, 5)
        finally:
            task.cancel()
            await runner.close()

    asyncio.run(scenario())


def test_a_message_out_of_retries_goes_to_on_failure_and_leaves_the_queue(host, guest, queue):
    """A classic queue only flags redeliveries: the runner counts the failures itself, so
    maximum_retry_attempts=1 dead-letters the message after its second failed run."""
    host.deploy("error", guest("error"))
    trigger = host.add_trigger(
        "error", amqp_trigger(queue, maximum_retry_attempts=1, retry_delay_ms=50, on_failure="queue:amqp-dlq")
    )
    runner = AmqpRunner(trigger, TriggerContext(host, host.trigger_store))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        try:
            for _ in range(100):
                if await ready_count_async(queue) is not None:
                    break
                await asyncio.sleep(0.05)
            await _with_channel(
                lambda channel: channel.default_exchange.publish(aio_pika.Message(b"poison"), routing_key=queue)
            )
            for _ in range(200):
                if runner.stats["dead_lettered"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await runner.close()

    asyncio.run(scenario())
    assert runner.stats["failed"] == 2 and runner.stats["dead_lettered"] == 1, runner.stats
    (letter,) = host.events.dead_letters("amqp-dlq")
    assert letter["record"]["requestContext"]["approximateInvokeCount"] == 2
    assert letter["record"]["record"]["body"] == "poison"
    assert letter["record"]["record"]["eventSource"] == "wasmhost:amqp"
    time.sleep(0.3)
    assert ready_count(queue) == 0, "acknowledged once dead-lettered"


def test_connection_errors_and_a_missing_queue_show_in_the_status(tmp_path, queue, guest):
    async def scenario() -> None:
        with Host(tmp_path / "data") as host:
            host.deploy("rec", guest("echo"))
            down = host.add_trigger("rec", amqp_trigger(queue, url="amqp://guest:guest@127.0.0.1:1/"))
            missing = host.add_trigger("rec", amqp_trigger(queue, declare=False))
            host.start_triggers(poll_s=0.05)
            deadline = time.monotonic() + 10
            statuses: dict[str, Any] = {}
            while time.monotonic() < deadline:
                statuses = {t.id: t.status for t in host.triggers("rec")}
                if all(s.get("state") == "error" for s in statuses.values()):
                    break
                await asyncio.sleep(0.1)
            await host.stop_triggers()
            assert statuses[down.id]["state"] == "error", statuses
            assert "Connect" in statuses[down.id]["last_error"] or "refused" in statuses[down.id]["last_error"]
            assert statuses[missing.id]["state"] == "error", statuses
            assert f"queue {queue!r} does not exist" in statuses[missing.id]["last_error"]

    asyncio.run(scenario())
    assert ready_count(queue) is None, "declare=false never creates the queue"
