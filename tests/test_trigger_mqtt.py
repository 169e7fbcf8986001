"""The ``mqtt`` trigger against the real Mosquitto on localhost:1883: a persistent
session with manual acks (QoS 1 and 2), batches, partial failure and redelivery,
``kill -9`` of a real server mid-batch, messages published while no host runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wasmhost import Host
from wasmhost.errors import InvalidConfig, ResourceConflict
from wasmhost.triggers import TriggerContext, validate
from wasmhost.triggers.mqtt import MqttRunner, client_id_of, end_session
from wasmhost.triggers.store import TriggerStore

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

# --- talking to the broker from the test -----------------------------------------------


def publish(topic: str, bodies: list[str], qos: int = 1, retain: bool = False, **user_properties: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        for body in bodies:
            properties = None
            if user_properties:
                properties = Properties(PacketTypes.PUBLISH)
                properties.UserProperty = list(user_properties.items())
            client.publish(topic, body, qos=qos, retain=retain, properties=properties).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def take_session(client_id: str, listen_s: float = 1.0) -> tuple[bool, list[str]]:
    """Connect as ``client_id`` resuming its session: (was there a session, messages the broker
    resent or had queued). The session ends with this connection (expiry 0): a cleanup too."""
    received: list[str] = []
    connected = threading.Event()
    flags: dict[str, bool] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)

    def on_connect(client: Any, userdata: Any, connect_flags: Any, reason: Any, properties: Any) -> None:
        flags["session_present"] = connect_flags.session_present
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda client, userdata, message: received.append(message.payload.decode())
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect("127.0.0.1", 1883, clean_start=False, properties=properties)
    client.loop_start()
    try:
        assert connected.wait(5), "no CONNACK"
        time.sleep(listen_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return flags["session_present"], received


@pytest.fixture(autouse=True)
def end_sessions(tmp_path: Path) -> Iterator[None]:
    """After each test, end the broker sessions of the MQTT triggers it left (their sessions
    never expire): a test that failed half-way leaves nothing on the broker either."""
    yield
    path = tmp_path / "data" / "triggers.db"
    if path.exists():
        store = TriggerStore(path)
        try:
            for trigger in store.list(type_="mqtt"):
                with contextlib.suppress(Exception):
                    end_session(trigger.config, client_id_of(trigger))
        finally:
            store.close()


@pytest.fixture
def topic() -> str:
    require_service(1883, "Mosquitto")
    return f"wasmhost-test/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorder deployed once per session, shared with the other mapping tests."""
    return recorder_seed(tmp_path_factory.getbasetemp())


def data_dir(seeded: Path, tmp_path: Path) -> Path:
    return copy_seed(seeded, tmp_path)


def client_id(trigger: Any) -> str:
    return f"wasmhost-{trigger.id}"


# --- fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "mqtt trigger: topics is required"),
        ({"topics": []}, "mqtt trigger: topics is required"),
        ({"topics": ["a/#/b"]}, "'a/#/b' is not a valid topic filter (# must be a whole level and the last one)"),
        ({"topics": ["a/b+"]}, "+ must be a whole level"),
        ({"topics": "a", "qos": 0}, "mqtt trigger: qos must be an integer from 1 to 2"),
        ({"topics": "a", "url": "http://broker"}, "mqtt trigger: url must be mqtt://"),
        ({"topics": "a", "url": "mqtt://b", "port": 1884}, "give either url or host/port, not both"),
        ({"topics": "a", "port": 0}, "mqtt trigger: port must be an integer from 1 to 65535"),
        ({"topics": "a", "client_id": ""}, "mqtt trigger: client_id must be a non-empty string"),
        ({"topics": "a", "batch_size": 200, "receive_maximum": 50}, "receive_maximum (50) must be at least batch_size"),
        ({"topics": "a", "retain": True}, "mqtt trigger: unknown field(s) retain"),
    ],
)
def test_bad_fields_are_refused_naming_them(fields, message):
    with pytest.raises(InvalidConfig) as caught:
        validate({"type": "mqtt", **fields})
    assert message in caught.value.message


def test_defaults_allow_batches_beyond_mosquittos_inflight_limit():
    _, config = validate({"type": "mqtt", "topics": "sensors/+/temp"})
    assert config["topics"] == ["sensors/+/temp"] and config["qos"] == 1
    assert (config["host"], config["port"]) == ("127.0.0.1", 1883)
    assert config["receive_maximum"] == 100
    _, config = validate({"type": "mqtt", "topics": ["#"], "batch_size": 500, "url": "mqtts://u:p@broker"})
    assert config["receive_maximum"] == 1000, "MQTT 5 Receive Maximum: the broker lets that many be unacked"


def test_an_explicit_client_id_is_used_once_per_broker(host, guest):
    host.deploy("echo", guest("echo"))
    host.add_trigger("echo", {"type": "mqtt", "topics": "a", "client_id": "plant-1"})
    with pytest.raises(ResourceConflict, match="client_id 'plant-1' is already used"):
        host.add_trigger("echo", {"type": "mqtt", "topics": "b", "client_id": "plant-1"})
    host.add_trigger("echo", {"type": "mqtt", "topics": "b", "client_id": "plant-1", "port": 1884})


# --- the runner on the broker ------------------------------------------------------------------


@pytest.mark.slow
def test_records_and_redelivery_of_unacked_messages_for_qos_1_and_2(host, guest, topic):
    """The runner's own steps against Mosquitto: record shape, ids unique per delivery, a
    message not acked is resent (dup) when the session resumes; QoS 2 is acked after the
    fact too, and every PUBCOMP is sent (else receive_maximum=2 would stall after 2)."""
    host.deploy("echo", guest("echo"))
    ctx = TriggerContext(host, host.trigger_store)

    async def collect(runner: MqttRunner, count: int) -> list[Any]:
        messages: list[Any] = []
        deadline = time.monotonic() + 10
        while len(messages) < count and time.monotonic() < deadline:
            messages += await runner.fetch(count - len(messages), 0.5)
        return messages

    async def scenario() -> None:
        one = host.add_trigger("echo", {"type": "mqtt", "topics": [f"{topic}/+"], "batch_size": 2})
        runner = MqttRunner(one, ctx)
        await runner.connect()
        await asyncio.to_thread(publish, f"{topic}/a", ["first", "second"], tenant="acme")
        first, second = await collect(runner, 2)
        record = runner.record(first)
        assert record["eventSource"] == "wasmhost:mqtt" and record["body"] == "first"
        assert record["eventSourceARN"] == f"arn:wasmhost:mqtt:local:127.0.0.1:1883:client/wasmhost-{one.id}"
        attributes = record["messageAttributes"]
        assert attributes["topic"] == {
            "stringValue": f"{topic}/a",
            "dataType": "String",
            "stringListValues": [],
            "binaryListValues": [],
        }
        assert attributes["qos"] == {
            "stringValue": "1",
            "dataType": "Number",
            "stringListValues": [],
            "binaryListValues": [],
        }
        assert attributes["retain"]["stringValue"] == "false" and attributes["dup"]["stringValue"] == "false"
        assert attributes["tenant"]["stringValue"] == "acme"
        assert first.id != second.id
        await runner.ack([first])
        await runner.close()  # "second" was never acked: the session keeps it

        await runner.connect()
        (again,) = await collect(runner, 1)
        assert again.body == "second" and again.receive_count == 2
        assert runner.record(again)["messageAttributes"]["dup"]["stringValue"] == "true"
        assert again.id not in (first.id, second.id), "ids are unique per delivery"
        await runner.ack([again])
        await runner.close()
        assert take_session(client_id(one), 0.5) == (True, []), "nothing left unacked"

        two = host.add_trigger(
            "echo", {"type": "mqtt", "topics": [topic + "/q2"], "qos": 2, "batch_size": 2, "receive_maximum": 2}
        )
        runner = MqttRunner(two, ctx)
        await runner.connect()
        await asyncio.to_thread(publish, topic + "/q2", [f"x{i}" for i in range(6)], 2)
        held = await collect(runner, 2)
        assert [m.body for m in held] == ["x0", "x1"]
        assert runner.record(held[0])["messageAttributes"]["qos"]["stringValue"] == "2"
        await runner.close()  # as if the host died before the function succeeded
        await runner.connect()
        seen = []
        for _ in range(3):
            batch = await collect(runner, 2)
            seen += [m.body for m in batch]
            await runner.ack(batch)
        assert seen == [f"x{i}" for i in range(6)], "resent after the crash, then one PUBREC/PUBCOMP each"
        await runner.close()
        assert take_session(client_id(two), 0.5) == (True, [])

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_batch_can_be_larger_than_mosquittos_inflight_limit(host, guest, topic):
    """Mosquitto lets an MQTT 3.1.1 client have max_inflight_messages (20 by default, as
    on this machine) unacked; the runner's MQTT 5 Receive Maximum lifts that for its batches."""
    host.deploy("echo", guest("echo"))
    trigger = host.add_trigger(
        "echo", {"type": "mqtt", "topics": [topic], "batch_size": 50, "maximum_batching_window_ms": 1000}
    )
    runner = MqttRunner(trigger, TriggerContext(host, host.trigger_store))

    async def scenario() -> None:
        await runner.connect()
        try:
            await asyncio.to_thread(publish, topic, [f"b{i}" for i in range(60)])
            batch = await runner.collect()
            assert len(batch) == 50, "one batch of batch_size, not of the broker's default 20"
            assert len({m.id for m in batch}) == 50
            await runner.ack(batch)
            rest = await runner.collect()
            assert [m.body for m in batch + rest] == [f"b{i}" for i in range(60)]
            await runner.ack(rest)
        finally:
            await runner.close()

    asyncio.run(scenario())
    assert take_session(client_id(trigger), 0.3) == (True, [])


def test_a_retained_message_comes_with_the_new_subscription_only(host, guest, topic):
    host.deploy("echo", guest("echo"))
    trigger = host.add_trigger("echo", {"type": "mqtt", "topics": [topic]})
    runner = MqttRunner(trigger, TriggerContext(host, host.trigger_store))
    publish(topic, ["last-known"], retain=True)

    async def scenario() -> None:
        try:
            await runner.connect()
            (retained,) = await runner.fetch(10, 5)
            assert retained.body == "last-known"
            assert retained.message_attributes["retain"]["stringValue"] == "true"
            await runner.ack([retained])
            await runner.close()
            await runner.connect()
            assert await runner.fetch(10, 0.5) == [], "not again at a reconnect (retain handling 1)"
        finally:
            await runner.close()

    try:
        asyncio.run(scenario())
        assert take_session(client_id(trigger), 0.2) == (True, [])
    finally:
        publish(topic, [""], retain=True)  # clears the retained message


def test_a_lost_connection_raises_out_of_run(host, guest, topic):
    """Another client taking the session over makes the broker drop the runner's
    connection: ``run`` raises (no silent reconnect inside paho)."""
    host.deploy("echo", guest("echo"))
    trigger = host.add_trigger("echo", {"type": "mqtt", "topics": [topic]})
    runner = MqttRunner(trigger, TriggerContext(host, host.trigger_store))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        try:
            for _ in range(100):
                if runner.link is not None and runner.link.connack.done():
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(take_session, client_id(trigger), 0.1)
            with pytest.raises(ConnectionError, match="disconnected"):
                await asyncio.wait_for(task, 5)
        finally:
            task.cancel()
            await runner.close()

    asyncio.run(scenario())


# --- through a server ------------------------------------------------------------------------


@pytest.mark.slow
def test_batches_partial_failure_and_nothing_left_unacked(seeded, tmp_path, topic):
    bodies = [f"m{i}" for i in range(10)]
    with Host(data_dir(seeded, tmp_path)) as host:
        host.update_config("rec", env={"FAIL_BODIES": "m3,m7"})
        trigger = host.add_trigger(
            "rec",
            {
                "type": "mqtt",
                "topics": [f"{topic}/#"],
                "batch_size": 5,
                "maximum_batching_window_ms": 500,
                "retry_delay_ms": 300,
            },
        )
        with ServerThread(host):
            wait_for(lambda: host.get_trigger("rec", trigger.id).status.get("state") == "running", 15, "running")
            publish(f"{topic}/line-1", bodies[:5])
            publish(f"{topic}/line-2/x", bodies[5:])
            wait_for(lambda: len(processed(host, "rec")) >= 8, 30, "the 8 good messages")
            wait_for(lambda: log_lines(host, "rec").count("failed wasmhost:mqtt m3") >= 2, 15, "m3 retried")
            first_two = batches(host, "rec")[:2]
            assert [len(b) for b in first_two] == [5, 5], first_two
            retried = [line for batch in batches(host, "rec")[2:] for line in batch]
            assert retried and set(retried) <= {"failed m3", "failed m7"}, "only the failed ones come back"
            assert log_lines(host, "rec").count("failed wasmhost:mqtt m3") < 10, "retried after retry_delay_ms"
            host.update_config("rec", env={})
            wait_for(lambda: sorted(processed(host, "rec")) == bodies, 30, "m3 and m7 to succeed")
            assert host.get_trigger("rec", trigger.id).status["state"] == "running"
        assert take_session(client_id(trigger)) == (True, []), "reconnecting as the trigger yields nothing"


@pytest.mark.slow
def test_kill_9_mid_batch_and_messages_published_while_down_are_delivered(seeded, tmp_path, topic):
    data = data_dir(seeded, tmp_path)
    early = [json.dumps({"n": i, "sleep_ms": 400}) for i in range(6)]
    while_down = [f"down-{i}" for i in range(3)]
    with Host(data) as host:
        trigger = host.add_trigger("rec", {"type": "mqtt", "topics": [topic], "batch_size": 3, "retry_delay_ms": 200})
    server = ServeProcess(data, tmp_path / "serve-1.log")
    try:
        with Host(data) as reader:
            wait_for(lambda: reader.get_trigger("rec", trigger.id).status.get("state") == "running", 30, "running")
            publish(topic, early)
            wait_for(lambda: len(processed(reader, "rec")) >= 3, 30, "the first batch")
            server.kill()
            assert len(processed(reader, "rec")) < len(early), "killed mid-way"
        publish(topic, while_down)  # the session is persistent: the broker queues these
        server = ServeProcess(data, tmp_path / "serve-2.log")
        with Host(data) as reader:
            wait_for(
                lambda: set(processed(reader, "rec")) == set(early + while_down), 40, "every message after the restart"
            )
            reader.delete_trigger("rec", trigger.id)  # ends the session on the broker
    finally:
        server.stop()
    session_present, left = take_session(client_id(trigger), 0.2)
    assert not session_present and not left, "deleting the trigger ended its session"


def test_an_unreachable_broker_shows_in_the_status(tmp_path, guest):
    async def scenario() -> None:
        with Host(tmp_path / "data") as host:
            host.deploy("echo", guest("echo"))
            trigger = host.add_trigger("echo", {"type": "mqtt", "topics": "t", "port": 1})
            host.start_triggers(poll_s=0.05)
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = host.get_trigger("echo", trigger.id).status
                if status.get("state") == "error":
                    break
                await asyncio.sleep(0.1)
            await host.stop_triggers()
            assert status.get("state") == "error", status
            assert "ConnectionRefusedError" in status["last_error"], status

    asyncio.run(scenario())
