"""RabbitMQ (AMQP 0-9-1) queues as an event source mapping (type ``amqp``).

The runner consumes one queue with manual acknowledgements and a prefetch
window (``basic.qos``), hands the function SQS-shaped batches (``eventSource``
``wasmhost:amqp``), acks each message the function succeeded for and, after
``retry_delay_ms``, ``basic.nack(requeue=True)``s the ones that failed, so the
broker redelivers them (to this or another consumer). A host that dies holds
no message: the broker requeues every unacked delivery when the channel's
connection closes.

Delivery counts come from ``x-delivery-count`` (quorum queues count exactly);
on a classic queue the ``redelivered`` flag says "at least the second time",
and this runner remembers how many times it saw a message fail (by
``message_id``, else by a digest of its body and properties).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import urllib.parse
import uuid
from collections import OrderedDict
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from yarl import URL

from ..errors import InvalidConfig
from .base import TriggerContext
from .mapping import MappingRunner, MappingType, Message, attribute, take
from .store import Trigger

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: basic.qos prefetch_count is a 16-bit field.
MAX_PREFETCH = 65535
#: Seconds to wait for the broker when connecting.
CONNECT_TIMEOUT_S = 10.0
#: How many failed messages of a classic queue the runner remembers the failure count of.
REMEMBERED_FAILURES = 10_000


class AmqpType(MappingType):
    name = "amqp"
    source_fields = ("url", "queue", "declare", "prefetch")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        url = self.string(fields, "url", DEFAULT_URL)
        parsed = _parse_url(url)
        if parsed is None:
            raise InvalidConfig(
                f"amqp trigger: url must be amqp://[user[:password]@]host[:port][/vhost] (or amqps://), got {url!r}"
            )
        values["url"] = url
        values["queue"] = self.string(fields, "queue", required=True)
        if len(values["queue"].encode()) > 255:
            raise InvalidConfig("amqp trigger: queue must be at most 255 bytes long")
        values["declare"] = self.boolean(fields, "declare", True)
        default_prefetch = default_prefetch_for(values["batch_size"])
        prefetch = self.integer(fields, "prefetch", default_prefetch, 1, MAX_PREFETCH)
        if prefetch < values["batch_size"]:
            raise InvalidConfig(
                f"amqp trigger: prefetch ({prefetch}) must be at least batch_size ({values['batch_size']}): "
                "the broker never has more unacknowledged messages out than that, so no batch could fill"
            )
        values["prefetch"] = prefetch
        return values

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> AmqpRunner:
        return AmqpRunner(trigger, ctx)

    def describe(self, config: dict[str, Any]) -> str:
        url = _parse_url(config.get("url", DEFAULT_URL))
        where = f"{url.host}:{_port(url)}" if url is not None else "?"
        return f"amqp {where} queue {config.get('queue')} (batch {config.get('batch_size', 10)})"


class AmqpRunner(MappingRunner):
    """Consumes ``queue`` on one channel; see the module doc."""

    event_source = "wasmhost:amqp"

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.url: str = config.get("url", DEFAULT_URL)
        self.queue_name: str = config["queue"]
        self.declare: bool = config.get("declare", True)
        self.prefetch: int = config.get("prefetch", default_prefetch_for(self.batch_size))
        self.connection: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage | BaseException] = asyncio.Queue()
        #: Ids of the messages handed out and not yet acked or released (unique within a batch).
        self._outstanding: set[str] = set()
        #: Delivery tags of the channel not yet acked or nacked (for ``basic.ack(multiple)``).
        self._unacked: set[int] = set()
        #: Delayed ``nack``s of failed messages.
        self._pending_nacks: set[asyncio.Task[None]] = set()
        #: receive count of failed classic-queue messages, by ``_fingerprint``.
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._session = ""
        self._ids = itertools.count(1)

    def source_arn(self) -> str:
        url = _parse_url(self.url)
        assert url is not None
        vhost = urllib.parse.quote(url.path[1:] or "/", safe="")
        return f"arn:wasmhost:amqp:local:{url.host}:{_port(url)}/{vhost}:queue/{self.queue_name}"

    # --- connection ----------------------------------------------------------

    async def connect(self) -> None:
        await self.close()  # a restart after an error: the broker has requeued what the old channel held
        self._inbox = asyncio.Queue()
        self._unacked = set()
        self._session = uuid.uuid4().hex[:12]
        self.connection = await aio_pika.connect(
            self.url,
            timeout=CONNECT_TIMEOUT_S,
            client_properties={"connection_name": f"wasmhost trigger {self.trigger.id}"},
        )
        self.connection.close_callbacks.add(self._on_close)
        queue = await self._open_queue()
        underlay = await queue.channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
        await queue.consume(self._on_message, no_ack=False)

    async def _open_queue(self) -> AbstractQueue:
        """The queue, on a channel with ``prefetch``. A passive declare first (on a
        throwaway channel: a missing queue closes it), so that an existing queue is used
        whatever its type and arguments; declared durable only if missing and ``declare``."""
        assert self.connection is not None
        probe = await self.connection.channel(publisher_confirms=False)
        try:
            await probe.declare_queue(self.queue_name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            if not self.declare:
                raise LookupError(
                    f"queue {self.queue_name!r} does not exist on {self.source_arn()} (declare is false)"
                ) from None
            probe = await self.connection.channel(publisher_confirms=False)
            await probe.declare_queue(self.queue_name, durable=True)
        finally:
            if not probe.is_closed:
                with contextlib.suppress(Exception):
                    await probe.close()
        self.channel = await self.connection.channel(publisher_confirms=False)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        self.channel.close_callbacks.add(self._on_close)
        return await self.channel.declare_queue(self.queue_name, passive=True)

    async def close(self) -> None:
        for task in self._pending_nacks:
            task.cancel()
        self._pending_nacks.clear()
        self._outstanding.clear()
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT_S)

    # --- broker callbacks (on the event loop) ----------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._unacked.add(message.delivery_tag or 0)
        self._inbox.put_nowait(message)

    def _on_close(self, sender: Any, error: BaseException | None = None) -> None:
        if sender is self.connection or sender is self.channel:
            why = f": {error}" if error else ""
            self._inbox.put_nowait(ConnectionError(f"AMQP connection to {self.source_arn()} closed{why}"))

    def _on_cancel(self, frame: Any) -> None:
        self._inbox.put_nowait(ConnectionError(f"the broker cancelled the consumer of {self.queue_name!r} (deleted?)"))

    # --- the mapping's source operations -----------------------------------------

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        messages = []
        for entry in await take(self._inbox, max_messages, wait_s):
            if isinstance(entry, BaseException):
                raise entry  # unacked deliveries go back to the queue with the channel
            messages.append(self._message(entry))
        return messages

    async def ack(self, messages: list[Message]) -> None:
        """One ``basic.ack(multiple=True)`` when the batch holds every unacked delivery up
        to its highest tag (the usual case), else one ack per message."""
        tags = {message.handle.delivery_tag for message in messages}
        for message in messages:
            self._outstanding.discard(message.id)
            if message.handle.redelivered:
                self._failures.pop(_fingerprint(message.handle), None)
        top = max(messages, key=lambda message: message.handle.delivery_tag)
        if len(messages) > 1 and all(tag in tags for tag in self._unacked if tag <= top.handle.delivery_tag):
            await top.handle.ack(multiple=True)
        else:
            for message in messages:
                await message.handle.ack()
        self._unacked -= tags

    async def release(self, messages: list[Message], delay_s: float) -> None:
        """``nack(requeue=True)`` after ``delay_s``: meanwhile the messages stay unacked
        (they count against ``prefetch``), so a poison message is not redelivered in a loop."""
        for message in messages:
            self._outstanding.discard(message.id)
            if "x-delivery-count" in (message.handle.headers or {}):
                continue  # the broker counts (quorum queue)
            key = _fingerprint(message.handle)
            self._failures[key] = max(message.receive_count, message.failures)
            self._failures.move_to_end(key)
        while len(self._failures) > REMEMBERED_FAILURES:
            self._failures.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._nack_later([m.handle for m in messages], delay_s))
        self._pending_nacks.add(task)
        task.add_done_callback(self._pending_nacks.discard)

    async def _nack_later(self, deliveries: list[AbstractIncomingMessage], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        for delivery in deliveries:
            self._unacked.discard(delivery.delivery_tag or 0)
            try:
                await delivery.nack(requeue=True)
            except Exception:  # the channel is gone: the broker requeued the message already
                return

    def _message(self, delivery: AbstractIncomingMessage) -> Message:
        message_id = delivery.message_id or f"{self._session}-{delivery.delivery_tag}"
        while message_id in self._outstanding:  # a publisher reused a message_id: keep ids unique in a batch
            message_id = f"{delivery.message_id}#{next(self._ids)}"
        self._outstanding.add(message_id)
        headers = dict(delivery.headers or {})
        delivery_count = headers.get("x-delivery-count")
        if isinstance(delivery_count, int) and not isinstance(delivery_count, bool):
            receive_count = delivery_count + 1
        elif delivery.redelivered:
            receive_count = max(2, self._failures.get(_fingerprint(delivery), 0) + 1)
        else:
            receive_count = 1
        sent_at = delivery.timestamp.timestamp() if delivery.timestamp is not None else None
        return Message.from_bytes(
            message_id,
            delivery.body,
            handle=delivery,
            receive_count=receive_count,
            sent_at=sent_at,
            message_attributes=message_attributes(delivery, headers),
        )


def message_attributes(delivery: AbstractIncomingMessage, headers: dict[str, Any]) -> dict[str, Any]:
    """SQS-shaped ``messageAttributes``: the message's headers under their own names,
    then its properties (``routingKey``, ``contentType``...), which win a name clash."""
    attributes = {str(name): attribute(value) for name, value in headers.items()}
    properties = {
        "exchange": delivery.exchange,
        "routingKey": delivery.routing_key,
        "redelivered": delivery.redelivered,
        "contentType": delivery.content_type,
        "contentEncoding": delivery.content_encoding,
        "correlationId": delivery.correlation_id,
        "replyTo": delivery.reply_to,
        "type": delivery.type,
        "appId": delivery.app_id,
        "userId": delivery.user_id,
        "priority": delivery.priority,
        "deliveryMode": int(delivery.delivery_mode) if delivery.delivery_mode is not None else None,
        "expiration": delivery.expiration,
        "timestamp": int(delivery.timestamp.timestamp()) if delivery.timestamp is not None else None,
    }
    for name, value in properties.items():
        if value is not None and value != "":
            attributes[name] = attribute(value)
    return attributes


def _fingerprint(delivery: AbstractIncomingMessage) -> str:
    """What identifies a message across redeliveries on a classic queue (no delivery count there)."""
    if delivery.message_id:
        return "id:" + delivery.message_id
    digest = hashlib.sha256(delivery.body)
    headers = sorted((k, v) for k, v in (delivery.headers or {}).items() if not k.startswith("x-"))  # the broker's own
    digest.update(repr((delivery.routing_key, headers)).encode())
    digest.update(repr((delivery.timestamp, delivery.correlation_id, delivery.type)).encode())
    return "sha256:" + digest.hexdigest()


def default_prefetch_for(batch_size: int) -> int:
    """Two batches (one in the function, one arriving), at least 100: a window of one or
    two messages would make every message wait for the previous ack's round trip."""
    return min(MAX_PREFETCH, max(100, 2 * batch_size))


def _port(url: URL) -> int:
    return url.port or (5671 if url.scheme == "amqps" else 5672)


def _parse_url(url: str) -> URL | None:
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return None
    if parsed.scheme not in ("amqp", "amqps") or not parsed.host:
        return None
    return parsed


TYPE = AmqpType()
