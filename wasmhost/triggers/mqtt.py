"""MQTT topics as an event source mapping (type ``mqtt``), MQTT 5 with paho-mqtt.

The runner keeps a persistent session on the broker (``clean_start`` false, a
session that never expires, one stable client id per trigger) and subscribes
to ``topics`` at QoS 1. It acknowledges by hand (``manual_ack``): a PUBACK goes
out only after the function succeeded for the message. So the broker queues
what is published while no host runs, and resends what was delivered but never
acked when the same client id reconnects, a host killed with ``kill -9``
included. MQTT has no negative acknowledgement: a failed message stays
unacked and the runner hands it to the function again after
``retry_delay_ms`` (the mapping's own retry list).

paho runs its network loop in its thread (``loop_start``; no automatic
reconnect: a lost connection raises out of ``run`` and the supervisor starts
over with back-off); messages cross into asyncio with ``call_soon_threadsafe``.

The broker sends at most ``receive_maximum`` unacked messages (MQTT 5's
Receive Maximum, which Mosquitto honours over its ``max_inflight_messages``,
20 by default, that caps MQTT 3.1.1 clients), so a batch can be larger than
that limit.

QoS 2 subscriptions are acknowledged the same way: paho would send PUBREC on
receipt, which hands the message over before the function ran (a crash would
lose it); here PUBREC waits for the function's success, and PUBCOMP answers
every PUBREL, also one left over from before a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import urllib.parse
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..errors import InvalidConfig, ResourceConflict
from .base import TriggerContext, log
from .mapping import MappingRunner, MappingType, Message, attribute, take
from .store import Trigger

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
#: MQTT 5 Session Expiry Interval meaning "never": the session lives until the trigger is removed.
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
#: Receive Maximum is a 16-bit field.
MAX_RECEIVE_MAXIMUM = 65535
#: Seconds to wait for CONNACK / SUBACK.
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
#: Seconds the broker gets to read our last acks before a stop closes the connection.
ACK_GRACE_S = 0.1


class MqttType(MappingType):
    name = "mqtt"
    source_fields = ("url", "host", "port", "topics", "qos", "client_id", "receive_maximum")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        if "url" in fields:
            if "host" in fields or "port" in fields:
                raise InvalidConfig("mqtt trigger: give either url or host/port, not both")
            url = self.string(fields, "url")
            if broker_address({"url": url}) is None:
                raise InvalidConfig(
                    f"mqtt trigger: url must be mqtt://[user[:password]@]host[:port] (or mqtts://), got {url!r}"
                )
            values["url"] = url
        else:
            values["host"] = self.string(fields, "host", DEFAULT_HOST)
            values["port"] = self.integer(fields, "port", DEFAULT_PORT, 1, 65535)
        topics = self.string_list(fields, "topics")
        if not topics:
            raise InvalidConfig("mqtt trigger: topics is required (a list of topic filters, wildcards + and # allowed)")
        for topic in topics:
            problem = topic_filter_problem(topic)
            if problem:
                raise InvalidConfig(f"mqtt trigger: topics: {topic!r} is not a valid topic filter ({problem})")
        values["topics"] = topics
        qos = self.integer(fields, "qos", 1, 1, 2)
        values["qos"] = qos
        client_id = self.string(fields, "client_id")
        if client_id is not None:
            if len(client_id.encode()) > 65535:
                raise InvalidConfig("mqtt trigger: client_id must be at most 65535 bytes long")
            values["client_id"] = client_id
        default_maximum = default_receive_maximum(values["batch_size"])
        receive_maximum = self.integer(fields, "receive_maximum", default_maximum, 1, MAX_RECEIVE_MAXIMUM)
        if receive_maximum < values["batch_size"]:
            raise InvalidConfig(
                f"mqtt trigger: receive_maximum ({receive_maximum}) must be at least batch_size "
                f"({values['batch_size']}): the broker never has more unacknowledged messages out than that, "
                "so no batch could fill"
            )
        values["receive_maximum"] = receive_maximum
        return values

    def check_conflicts(self, config: dict[str, Any], existing: list[Trigger]) -> None:
        client_id = config.get("client_id")
        if client_id is None:
            return  # the default is unique per trigger
        broker = broker_address(config)
        for trigger in existing:
            if trigger.config.get("client_id") == client_id and broker_address(trigger.config) == broker:
                raise ResourceConflict(
                    f"mqtt trigger: client_id {client_id!r} is already used by trigger {trigger.id} "
                    f"of function {trigger.function!r} on the same broker (two clients with one id disconnect "
                    "each other)"
                )

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> MqttRunner:
        return MqttRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        """End the trigger's persistent session, so the broker stops queueing for it."""
        try:
            end_session(trigger.config, client_id_of(trigger))
        except Exception as error:
            log.warning("trigger %s (mqtt): could not end the session %s: %s", trigger.id, client_id_of(trigger), error)

    def describe(self, config: dict[str, Any]) -> str:
        broker = broker_address(config)
        where = f"{broker[1]}:{broker[2]}" if broker else "?"
        topics = ",".join(config.get("topics", []))
        return f"mqtt {where} {topics} qos {config.get('qos', 1)} (batch {config.get('batch_size', 10)})"


class MqttRunner(MappingRunner):
    """One paho client with a persistent session; see the module doc."""

    event_source = "wasmhost:mqtt"

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        broker = broker_address(config)
        assert broker is not None
        self.tls, self.host, self.port, self.username, self.password = broker
        self.topics: list[str] = config["topics"]
        self.qos: int = config.get("qos", 1)
        self.client_id = client_id_of(trigger)
        self.receive_maximum: int = config.get("receive_maximum", default_receive_maximum(self.batch_size))
        self.client: _Client | None = None
        self.link: _Link | None = None
        self._inbox: asyncio.Queue[Message | BaseException] = asyncio.Queue()

    def source_arn(self) -> str:
        return f"arn:wasmhost:mqtt:local:{self.host}:{self.port}:client/{self.client_id}"

    # --- connection ----------------------------------------------------------------

    async def connect(self) -> None:
        await self.close()
        # What the old connection held unacked, the broker resends on this one (same session).
        self._retry.clear()
        if await asyncio.to_thread(self.ctx.store.get, self.trigger.id) is None:
            # removed meanwhile: do not bring back the session its removal ended
            raise LookupError(f"trigger {self.trigger.id} was removed")
        self._inbox = asyncio.Queue()
        client = self.client = new_client(self.client_id, self.tls, self.username, self.password)
        link = self.link = _Link(self, asyncio.get_running_loop(), self._inbox)
        client.user_data_set(link)
        client.on_connect = _Link.on_connect
        client.on_subscribe = _Link.on_subscribe
        client.on_message = _Link.on_message
        client.on_disconnect = _Link.on_disconnect
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        properties.ReceiveMaximum = self.receive_maximum
        await asyncio.to_thread(
            client.connect, self.host, self.port, KEEPALIVE_S, clean_start=False, properties=properties
        )
        link.start(client)
        reason = await asyncio.wait_for(link.connack, CONNECT_TIMEOUT_S)
        if reason.is_failure:
            raise ConnectionError(f"MQTT broker {self.host}:{self.port} refused the connection: {reason}")
        options = SubscribeOptions(qos=self.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        reasons = await asyncio.wait_for(link.subscribe([(topic, options) for topic in self.topics]), CONNECT_TIMEOUT_S)
        refused = [f"{topic} ({code})" for topic, code in zip(self.topics, reasons, strict=False) if code.is_failure]
        if refused:
            raise ConnectionError(
                f"MQTT broker {self.host}:{self.port} refused the subscription to {', '.join(refused)}"
            )

    async def close(self) -> None:
        """Disconnect (normally: the session and its unacked messages stay on the broker)."""
        link, self.link, self.client = self.link, None, None
        if link is not None:
            await asyncio.to_thread(link.stop)

    # --- the mapping's source operations ----------------------------------------------

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        messages = []
        for entry in await take(self._inbox, max_messages, wait_s):
            if isinstance(entry, BaseException):
                raise entry  # what is unacked stays in the session; the broker resends it on reconnect
            messages.append(entry)
        return messages

    async def ack(self, messages: list[Message]) -> None:
        client = self.client
        if client is None:
            raise ConnectionError("MQTT client closed")
        for message in messages:
            mid, qos = message.handle
            result = client.ack_delivery(mid, qos)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"MQTT ack failed: {mqtt.error_string(result)}")


class _Link:
    """One connection of a runner: paho's network thread (``loop_start``, with
    ``reconnect_on_failure`` off) and the paho callbacks, which run on that thread and
    hand everything to asyncio with ``call_soon_threadsafe``. Each connection has its
    own, so a late callback of an old connection never reaches a new one."""

    def __init__(self, runner: MqttRunner, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any]) -> None:
        self.runner = runner
        self.loop = loop
        self.inbox = inbox
        self.where = f"{runner.host}:{runner.port}"
        self.connack: asyncio.Future[Any] = loop.create_future()
        self.client: _Client | None = None
        self.closing = threading.Event()
        self.subacks: dict[int, asyncio.Future[Any]] = {}
        self.subscribe_lock = threading.Lock()
        self.session = uuid.uuid4().hex[:12]
        self.ids = itertools.count(1)

    def start(self, client: _Client) -> None:
        self.client = client
        client.loop_start()

    def stop(self) -> None:
        """DISCONNECT (after what is queued, acks included) and end the network thread. Blocking."""
        self.closing.set()
        if self.client is not None:
            # Let the last acks reach the broker first: a socket closed with unread data
            # (messages the broker keeps sending) is reset, and a reset drops what the
            # broker has not read yet (those messages would come again: duplicates).
            deadline = time.monotonic() + 2.0
            while self.client.want_write() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(ACK_GRACE_S)
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self.client.loop_stop()

    def subscribe(self, topics: list[tuple[str, SubscribeOptions]]) -> asyncio.Future[Any]:
        """SUBSCRIBE; the future gets the SUBACK's reason codes (one per topic)."""
        assert self.client is not None
        future = self.loop.create_future()
        with self.subscribe_lock:  # the SUBACK may come before subscribe() returns the mid
            result, mid = self.client.subscribe(topics)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise ConnectionError(f"MQTT subscribe failed: {mqtt.error_string(result)}")
            self.subacks[mid] = future
        return future

    def post(self, item: Any, future: asyncio.Future[Any] | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the runner is gone
            if future is not None:
                self.loop.call_soon_threadsafe(_resolve, future, item)
            else:
                self.loop.call_soon_threadsafe(self.inbox.put_nowait, item)

    # paho callbacks (CallbackAPIVersion.VERSION2); userdata is the _Link

    @staticmethod
    def on_connect(client: Any, link: _Link, flags: Any, reason: Any, properties: Any) -> None:
        link.post(reason, link.connack)

    @staticmethod
    def on_subscribe(client: Any, link: _Link, mid: int, reasons: Any, properties: Any) -> None:
        with link.subscribe_lock:
            future = link.subacks.pop(mid, None)
        if future is not None:
            link.post(reasons, future)

    @staticmethod
    def on_disconnect(client: Any, link: _Link, flags: Any, reason: Any, properties: Any) -> None:
        if not link.closing.is_set():
            link.post(ConnectionError(f"MQTT broker {link.where} disconnected: {reason}"))

    @staticmethod
    def on_message(client: Any, link: _Link, delivery: mqtt.MQTTMessage) -> None:
        qos = 2 if getattr(client, "delivering_qos2", False) else delivery.qos
        attributes: dict[str, Any] = {}
        properties = getattr(delivery, "properties", None)
        for name, value in getattr(properties, "UserProperty", None) or []:
            attributes[str(name)] = attribute(value)
        for name, key in (
            ("ContentType", "contentType"),
            ("ResponseTopic", "responseTopic"),
            ("CorrelationData", "correlationData"),
        ):
            value = getattr(properties, name, None)
            if value is not None:
                attributes[key] = attribute(value)
        attributes["topic"] = attribute(delivery.topic)
        attributes["qos"] = attribute(qos)
        attributes["retain"] = attribute(bool(delivery.retain))
        attributes["dup"] = attribute(bool(delivery.dup))
        message = Message.from_bytes(
            f"{link.session}-{next(link.ids)}",
            delivery.payload,
            handle=(delivery.mid, qos),
            receive_count=2 if delivery.dup else 1,
            sent_at=time.time(),
            message_attributes=attributes,
        )
        link.post(message)


class _Client(mqtt.Client):
    """paho's client, with QoS 2 deliveries acknowledged like QoS 1 ones (see the module doc).

    paho answers a QoS 2 PUBLISH with PUBREC at once; here it is delivered as
    paho delivers QoS 1 (``manual_ack``: nothing sent), ``ack_delivery`` sends
    PUBREC, and every PUBREL gets its PUBCOMP (paho holds no QoS 2 state then).
    This uses three private members of paho 2.x (``_in_packet``, ``_send_pubrec``,
    ``_send_pubcomp``), which have been stable since 1.x."""

    delivering_qos2 = False

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        if (command & 0x06) >> 1 != 2:
            return super()._handle_publish()
        self._in_packet["command"] = (command & ~0x06) | 0x02  # QoS bits 2 -> 1
        self.delivering_qos2 = True
        try:
            return super()._handle_publish()
        finally:
            self.delivering_qos2 = False

    def _handle_pubrel(self) -> MQTTErrorCode:
        pubrel = _packet.decode_pubrel(self._in_packet["command"], self._in_packet["packet"], self._protocol)
        return self._send_pubcomp(pubrel.mid)

    def ack_delivery(self, mid: int, qos: int) -> MQTTErrorCode:
        """The function succeeded for message ``mid``: PUBACK (QoS 1) or PUBREC (QoS 2)."""
        if qos == 1:
            return self.ack(mid, 1)
        if qos == 2:
            return self._send_pubrec(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def new_client(client_id: str, tls: bool, username: str | None, password: str | None) -> _Client:
    client = _Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
        reconnect_on_failure=False,  # a lost connection ends run(): the supervisor reconnects with back-off
    )
    if username is not None:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    return client


def end_session(config: dict[str, Any], client_id: str) -> None:
    """Connect as ``client_id`` with a clean start and a session that ends with the
    connection: the broker drops the queued messages and subscriptions. Blocking."""
    broker = broker_address(config)
    assert broker is not None
    tls, host, port, username, password = broker
    client = new_client(client_id, tls, username, password)
    done = threading.Event()
    client.on_connect = lambda *args: done.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(host, port, KEEPALIVE_S, clean_start=True, properties=properties)
    deadline = time.monotonic() + 5
    while not done.is_set() and time.monotonic() < deadline:
        if client.loop(timeout=0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            break
    client.disconnect()
    client.loop(timeout=0.1)
    if not done.is_set():
        raise ConnectionError(f"no CONNACK from {host}:{port}")


def default_receive_maximum(batch_size: int) -> int:
    """Two batches (one in the function, one arriving), at least 100: a window of a few
    messages would make each wait for the previous ack's round trip."""
    return min(MAX_RECEIVE_MAXIMUM, max(100, 2 * batch_size))


def client_id_of(trigger: Trigger) -> str:
    """The trigger's client id: ``client_id`` or one stable per trigger."""
    return trigger.config.get("client_id") or f"wasmhost-{trigger.id}"


def broker_address(config: dict[str, Any]) -> tuple[bool, str, int, str | None, str | None] | None:
    """``(tls, host, port, username, password)`` from ``url`` or ``host``/``port``; None if ``url`` is bad."""
    url = config.get("url")
    if url is None:
        return False, config.get("host", DEFAULT_HOST), config.get("port", DEFAULT_PORT), None, None
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except (TypeError, ValueError):
        return None
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
        return None
    tls = parsed.scheme in ("mqtts", "ssl")
    username = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    return tls, parsed.hostname, port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT), username, password


def topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None."""
    if len(topic.encode()) > 65535:
        return "longer than 65535 bytes"
    if "\0" in topic:
        return "contains a NUL character"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# must be a whole level and the last one"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return None


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


TYPE = MqttType()
