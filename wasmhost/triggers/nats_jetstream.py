"""NATS JetStream event source mapping (type ``nats``): a durable pull consumer on a stream.

The runner creates (or reuses) the durable consumer ``durable`` (``wasmhost-<trigger
id>`` by default) with explicit acks, pulls batches with ``fetch``, acknowledges a
message with a synchronous ack (the server confirmed it) only after the function
succeeded for it, and ``nak``s a failed one with ``retry_delay_ms`` as the delay,
so the server redelivers it and counts the deliveries (``num_delivered`` is the
record's ``ApproximateReceiveCount``). While the function runs, the batch is kept
alive with ``in_progress`` so that a long invocation is not redelivered after
``ack_wait_s``. A connection that fails or drops ends ``run()`` with the error;
the supervisor reconnects with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api

from ..errors import InvalidConfig
from .base import TriggerContext, log
from .mapping import MappingRunner, MappingType, Message
from .store import Trigger

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_ACK_WAIT_S = 30
CONNECT_TIMEOUT_S = 5.0
#: How long an acknowledgement may take to be confirmed by the server.
ACK_TIMEOUT_S = 5.0
#: How often a consumer that receives nothing checks that its stream and consumer still exist.
CHECK_EVERY_S = 10.0
#: JetStream stream and consumer names: no whitespace, dots, wildcards or path separators.
NAME = re.compile(r"^[^\s.*>/\\]+$")
SUBJECT = re.compile(r"^[^\s]+$")
SCHEMES = ("nats", "tls", "ws", "wss")


def default_durable(trigger: Trigger) -> str:
    return f"wasmhost-{trigger.id}"


def location(url: str) -> str:
    """``host:port`` of a NATS URL: never its user, password or token."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 4222}"


async def open_connection(url: str) -> NatsClient:
    """Connect once (no reconnecting: a dropped connection ends the runner, which the
    supervisor restarts); ``ConnectionError`` naming the server and the cause."""
    errors: list[Exception] = []  # the last one: why connecting failed

    async def on_error(error: Exception) -> None:
        errors[:] = [error]
        log.debug("nats %s: %s", location(url), error)

    try:
        return await nats.connect(
            url,
            name="wasmhost",
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            connect_timeout=CONNECT_TIMEOUT_S,
            error_cb=on_error,
        )
    except nats.errors.NoServersError:
        cause = errors[-1] if errors else "no server answered"
        raise ConnectionError(f"cannot connect to NATS at {location(url)}: {cause}") from None


class NatsJetStreamType(MappingType):
    name = "nats"
    source_fields = ("url", "stream", "subjects", "subject", "durable", "deliver_policy", "ack_wait_s")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        url = self.string(fields, "url", DEFAULT_URL, pattern_hint="nats://[user:password@]host[:port]")
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise InvalidConfig(
                f"nats trigger: url must be {' or '.join(s + '://host:port' for s in SCHEMES)}, got {location(url)!r}"
            )
        values["url"] = url
        values["stream"] = self.name_field(fields, "stream", required=True)
        if "subjects" in fields:
            subjects = self.string_list(fields, "subjects")
            if not subjects or not all(SUBJECT.match(s) for s in subjects):
                raise InvalidConfig(f"nats trigger: subjects must be a non-empty list of subjects, got {subjects!r}")
            values["subjects"] = subjects
        subject = self.string(fields, "subject", pattern_hint="a subject, wildcards allowed")
        if subject is not None:
            if not SUBJECT.match(subject):
                raise InvalidConfig(f"nats trigger: subject must not contain whitespace, got {subject!r}")
            values["subject"] = subject
        durable = self.name_field(fields, "durable")
        if durable is not None:
            values["durable"] = durable
        values["deliver_policy"] = self.string(fields, "deliver_policy", "all", choices=("all", "new"))
        ack_wait = fields.get("ack_wait_s", DEFAULT_ACK_WAIT_S)
        if isinstance(ack_wait, bool) or not isinstance(ack_wait, int | float) or not 1 <= ack_wait <= 43_200:
            raise InvalidConfig(
                f"nats trigger: ack_wait_s must be a number of seconds from 1 to 43200, got {ack_wait!r}"
            )
        if ack_wait * 1000 <= values["maximum_batching_window_ms"]:
            raise InvalidConfig(
                f"nats trigger: ack_wait_s ({ack_wait} s) must be longer than maximum_batching_window_ms "
                f"({values['maximum_batching_window_ms']} ms), or messages are redelivered while a batch is collected"
            )
        values["ack_wait_s"] = ack_wait
        return values

    def name_field(self, fields: dict[str, Any], key: str, *, required: bool = False) -> str | None:
        value = self.string(fields, key, required=required, pattern_hint="a JetStream name")
        if value is not None and not NAME.match(value):
            raise InvalidConfig(
                f"nats trigger: {key} must not contain whitespace, '.', '*', '>', '/' or '\\', got {value!r}"
            )
        return value  # type: ignore[no-any-return]

    def describe(self, config: dict[str, Any]) -> str:
        subject = f" subject {config['subject']}" if config.get("subject") else ""
        return f"nats stream {config['stream']}{subject} on {location(config.get('url', DEFAULT_URL))}"

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> NatsJetStreamRunner:
        return NatsJetStreamRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        """Delete the durable consumer if the trigger named it itself (``wasmhost-<id>``: nobody
        else uses it); a ``durable`` the user gave, and the stream, are left alone."""
        if trigger.config.get("durable"):
            return
        config = trigger.config

        async def delete() -> None:
            connection = await open_connection(config["url"])
            try:
                await connection.jetstream().delete_consumer(config["stream"], default_durable(trigger))
            except nats.js.errors.NotFoundError:
                pass
            finally:
                await connection.close()

        try:
            _run_in_thread(delete())
        except Exception as error:
            log.warning("trigger %s: could not delete its NATS consumer: %s", trigger.id, error)


class NatsJetStreamRunner(MappingRunner):
    event_source = "wasmhost:nats"

    def __init__(self, trigger: Trigger, ctx: Any) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.url: str = config.get("url", DEFAULT_URL)
        self.stream: str = config["stream"]
        self.subjects: list[str] | None = config.get("subjects")
        self.subject: str | None = config.get("subject")
        self.durable: str = config.get("durable") or default_durable(trigger)
        self.deliver_policy: str = config.get("deliver_policy", "all")
        self.ack_wait_s: float = config.get("ack_wait_s", DEFAULT_ACK_WAIT_S)
        self.connection: NatsClient | None = None
        self.subscription: Any = None
        self._checked_at = 0.0
        self._arn = f"arn:wasmhost:nats:local:{location(self.url)}:stream/{self.stream}:consumer/{self.durable}"

    def source_arn(self) -> str:
        return self._arn

    def consumer_config(self) -> api.ConsumerConfig:
        if self.deliver_policy == "new":
            # messages published since the trigger was created, not since the runner first ran,
            # so that nothing published in between is skipped
            policy = api.DeliverPolicy.BY_START_TIME
            start: datetime.datetime | None = datetime.datetime.fromtimestamp(self.trigger.created_at, datetime.UTC)
        else:
            policy, start = api.DeliverPolicy.ALL, None
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            deliver_policy=policy,
            opt_start_time=start,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            filter_subject=self.subject,
            max_ack_pending=max(1000, 2 * self.batch_size),
        )

    async def connect(self) -> None:
        self.connection = await open_connection(self.url)
        js = self.connection.jetstream()
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not self.subjects:
                raise LookupError(
                    f"NATS stream {self.stream!r} does not exist on {location(self.url)} "
                    "(create it, or give the trigger 'subjects' to create it)"
                ) from None
            await js.add_stream(name=self.stream, subjects=self.subjects)
            log.info("trigger %s: created NATS stream %s (%s)", self.trigger.id, self.stream, self.subjects)
        await self.ensure_consumer(js)
        self.subscription = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._checked_at = time.monotonic()

    async def ensure_consumer(self, js: Any) -> None:
        """Create the durable consumer, or check that the existing one is the trigger's
        (same filter and deliver policy) and update what may change (ack wait, max pending)."""
        wanted = self.consumer_config()
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(self.stream, config=wanted)
            return
        current = info.config
        same_policy = (current.deliver_policy in ("new", "by_start_time")) == (self.deliver_policy == "new")
        if (current.filter_subject or None) != self.subject or not same_policy:
            raise LookupError(
                f"NATS consumer {self.durable!r} on stream {self.stream!r} exists with filter "
                f"{current.filter_subject or '(none)'} and deliver policy {current.deliver_policy}, not "
                f"{self.subject or '(none)'} and {self.deliver_policy}: delete it or choose another durable"
            )
        if current.ack_wait != wanted.ack_wait or (current.max_ack_pending or 0) < (wanted.max_ack_pending or 0):
            try:
                await js.add_consumer(
                    self.stream, config=current.evolve(ack_wait=wanted.ack_wait, max_ack_pending=wanted.max_ack_pending)
                )
            except nats.js.errors.APIError as error:
                # e.g. nats-server 2.9 refuses any update of a consumer that has a start time:
                # go on with the consumer as it is, and say so in the status
                self.ack_wait_s = current.ack_wait or self.ack_wait_s
                self.note_error(
                    LookupError(f"NATS consumer {self.durable!r} kept its ack wait {current.ack_wait} s: {error}")
                )
                log.warning("trigger %s: %s", self.trigger.id, self.stats["last_error"])

    async def close(self) -> None:
        connection, self.connection, self.subscription = self.connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        assert self.subscription is not None and self.connection is not None
        if self.connection.is_closed:
            raise ConnectionError(f"the connection to NATS at {location(self.url)} was closed")
        try:
            fetched = await self.subscription.fetch(max_messages, timeout=max(wait_s, 0.01))
        except nats.errors.TimeoutError:
            fetched = []
        if not fetched and time.monotonic() - self._checked_at > CHECK_EVERY_S:
            # a consumer or stream deleted under us only shows as silence: ask
            self._checked_at = time.monotonic()
            await self.connection.jetstream().consumer_info(self.stream, self.durable)
        return [self.message(msg) for msg in fetched]

    def message(self, msg: Msg) -> Message:
        metadata = msg.metadata
        message = Message.from_bytes(
            str(metadata.sequence.stream),
            msg.data,
            handle=msg,
            receive_count=metadata.num_delivered or 1,
            sent_at=metadata.timestamp.timestamp() if metadata.timestamp else None,
            message_attributes={
                name: {"stringValue": value, "dataType": "String"} for name, value in (msg.headers or {}).items()
            },
        )
        message.attributes["Subject"] = msg.subject
        return message

    async def deliver(self, batch: list[Message]) -> None:
        keepalive = asyncio.create_task(self.keep_alive(batch))
        try:
            await super().deliver(batch)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    async def keep_alive(self, batch: list[Message]) -> None:
        """Tell the server the batch is being worked on (``+WPI``) every third of ``ack_wait_s``."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            try:
                for message in batch:
                    await message.handle.in_progress()
            except Exception as error:  # the connection is gone: the ack will fail and say so
                log.debug("trigger %s: in_progress failed: %s", self.trigger.id, error)
                return

    async def ack(self, messages: list[Message]) -> None:
        """Acknowledge and wait for the server's confirmation (an ack is lost with a dropped
        connection otherwise, and the message is delivered again)."""
        await asyncio.gather(*(m.handle.ack_sync(timeout=ACK_TIMEOUT_S) for m in messages))

    async def release(self, messages: list[Message], delay_s: float) -> None:
        for message in messages:
            await message.handle.nak(delay=delay_s)


def _run_in_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to the end on a new event loop in another thread (the caller may be
    on an event loop already) and raise what it raised."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="wasmhost-nats-cleanup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


TYPE = NatsJetStreamType()
