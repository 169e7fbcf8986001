"""Event source mappings: poll a queue or stream, hand the function SQS-shaped
``Records`` batches, acknowledge only what succeeded.

A source (the embedded queue, Redis Streams, NATS JetStream, RabbitMQ, MQTT)
subclasses ``MappingRunner`` and implements ``connect``, ``fetch``, ``ack`` and,
where the source can redeliver by itself, ``release``. The loop here is the same
for all of them:

1. collect a batch: up to ``batch_size`` messages, waiting at most
   ``maximum_batching_window_ms`` after the first one;
2. invoke the function with ``{"Records": [...]}`` (SQS's record shape, the
   source's name in ``eventSource``);
3. the function failed (error, timeout, trap): every message failed. It returned
   ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``: those failed (an
   identifier that is not in the batch fails the whole batch, as in Lambda);
4. acknowledge the others; release the failed ones for redelivery after
   ``retry_delay_ms``. A message that has failed ``maximum_retry_attempts`` times
   more than once goes to ``on_failure`` (``queue:NAME``, the host's dead-letter
   queues, or ``function:NAME``, an asynchronous invocation)
   and is acknowledged; without ``on_failure`` it is retried for ever (nothing is
   dropped silently).

At least once: nothing is acknowledged before the function succeeded for it, so
a host killed mid-batch redelivers that batch when it (or another) comes back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from ..errors import FunctionNotFound, Throttled, WasmhostError
from ..result import InvocationResult
from .base import Runner, TriggerType, log
from .store import Trigger

#: Fields every mapping type accepts, beside its source's own.
MAPPING_FIELDS = (
    "batch_size",
    "maximum_batching_window_ms",
    "maximum_retry_attempts",
    "retry_delay_ms",
    "on_failure",
)
#: How long one ``fetch`` waits for the first message of a batch.
POLL_S = 1.0
#: How often a runner writes its counters into the trigger's status.
REPORT_EVERY_S = 2.0


@dataclass
class Message:
    """One message of a source. ``id`` is the ``messageId`` (and ``itemIdentifier``).

    ``body`` is text; a body that is not UTF-8 is given base64-encoded, with
    ``attributes["BodyEncoding"] = "base64"``. ``handle`` is the source's own
    token for ack/release. ``receive_count`` is the source's delivery count when it
    keeps one (1 on first delivery), else 1.
    """

    id: str
    body: str
    handle: Any = None
    receive_count: int = 1
    sent_at: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, Any] = field(default_factory=dict)
    #: Failed runs seen by this runner (for sources that keep no count).
    failures: int = 0
    #: Local redelivery time, for messages kept in the runner's retry list.
    due: float = 0.0

    @classmethod
    def from_bytes(cls, id: str, data: bytes, **kwargs: Any) -> Message:
        try:
            return cls(id, data.decode("utf-8"), **kwargs)
        except UnicodeDecodeError:
            message = cls(id, base64.b64encode(data).decode(), **kwargs)
            message.attributes["BodyEncoding"] = "base64"
            return message


class MappingType(TriggerType):
    """A trigger type that is an event source mapping: adds the batching fields."""

    source_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = (*cls.source_fields, *MAPPING_FIELDS)

    def validate_mapping(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The common fields, checked and with defaults (call from ``validate``)."""
        values = self.check_fields(fields)
        values["batch_size"] = self.integer(fields, "batch_size", 10, 1, 10000)
        values["maximum_batching_window_ms"] = self.integer(fields, "maximum_batching_window_ms", 0, 0, 300_000)
        values["maximum_retry_attempts"] = self.integer(fields, "maximum_retry_attempts", -1, -1, 10000)
        values["retry_delay_ms"] = self.integer(fields, "retry_delay_ms", 1000, 0, 3_600_000)
        on_failure = self.destination(fields, "on_failure")
        if on_failure is not None:
            values["on_failure"] = on_failure
        return values


class MappingRunner(Runner):
    """The poll/invoke/ack loop; subclasses speak to one kind of source."""

    #: ``eventSource`` of the records ("aws:sqs" for the embedded queue, "wasmhost:redis"...).
    event_source: ClassVar[str]

    def __init__(self, trigger: Trigger, ctx: Any) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.batch_size: int = config.get("batch_size", 10)
        self.window_s: float = config.get("maximum_batching_window_ms", 0) / 1000
        self.max_retries: int = config.get("maximum_retry_attempts", -1)
        self.retry_delay_s: float = config.get("retry_delay_ms", 1000) / 1000
        self.on_failure: str | None = config.get("on_failure")
        self._retry: list[Message] = []
        self.stats: dict[str, Any] = {"received": 0, "succeeded": 0, "failed": 0, "dead_lettered": 0}
        self._reported = 0.0

    # --- what a source implements ------------------------------------------

    def source_arn(self) -> str:
        """``eventSourceARN`` of the records."""
        raise NotImplementedError

    async def connect(self) -> None:
        """Open the connection, create the consumer (group, durable...)."""

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to ``max_messages`` new messages, waiting at most ``wait_s`` for the first."""
        raise NotImplementedError

    async def ack(self, messages: list[Message]) -> None:
        """The function succeeded for these: never deliver them again."""
        raise NotImplementedError

    async def release(self, messages: list[Message], delay_s: float) -> None:
        """These failed: deliver them again after ``delay_s``. By default the runner
        keeps them (unacknowledged at the source, so a crash redelivers them) and
        hands them out again itself. Sources that can redeliver override this."""
        due = time.monotonic() + delay_s
        for message in messages:
            message.due = due
        self._retry.extend(messages)

    # --- the loop --------------------------------------------------------------

    async def run(self) -> None:
        await self.connect()
        self.ctx.report(self.trigger, state="running", last_error=None)
        while True:
            batch = await self.collect()
            if batch:
                await self.deliver(batch)
            self.maybe_report()

    async def collect(self) -> list[Message]:
        """A batch: due retries first, then new messages (see the module doc)."""
        now = time.monotonic()
        batch = [m for m in self._retry if m.due <= now][: self.batch_size]
        if batch:
            taken = {id(m) for m in batch}
            self._retry = [m for m in self._retry if id(m) not in taken]
        first_at = now if batch else None
        while len(batch) < self.batch_size:
            if first_at is None:
                wait = POLL_S
                if self._retry:
                    wait = max(0.0, min(wait, min(m.due for m in self._retry) - time.monotonic()))
            else:
                wait = first_at + self.window_s - time.monotonic()
                if wait <= 0 and self.window_s > 0:
                    break
                wait = max(wait, 0.0)
            got = await self.fetch(self.batch_size - len(batch), wait)
            if got:
                self.stats["received"] += len(got)
                batch.extend(got)
                if first_at is None:
                    first_at = time.monotonic()
            elif batch or first_at is None:
                break
            if batch and self.window_s == 0:
                break
        return batch

    async def deliver(self, batch: list[Message]) -> None:
        event = {"Records": [self.record(m) for m in batch]}
        try:
            result = await self.ctx.invoke(self.trigger, event)
        except Throttled as error:
            self.note_error(error)
            await self.release(batch, max(self.retry_delay_s, 0.1))
            return
        except FunctionNotFound as error:
            self.note_error(error)
            await self.release(batch, max(self.retry_delay_s, 1.0))
            return
        except WasmhostError as error:  # the event cannot be encoded, and the like: counts as a failure
            self.note_error(error)
            await self.fail(batch, {"errorType": error.type, "errorMessage": error.message})
            return
        failed_ids, error_info = failed_items(result, batch)
        ok = [m for m in batch if m.id not in failed_ids]
        failed = [m for m in batch if m.id in failed_ids]
        if ok:
            await self.ack(ok)
            self.stats["succeeded"] += len(ok)
        if failed:
            await self.fail(failed, error_info)
        self.stats["last_batch_at"] = time.time()

    async def fail(self, messages: list[Message], error_info: dict[str, Any]) -> None:
        """Count a failed run for each; dead-letter those out of retries, release the rest."""
        self.stats["failed"] += len(messages)
        self.stats["last_failure"] = error_info
        retry, exhausted = [], []
        for message in messages:
            message.failures += 1
            attempts = max(message.failures, message.receive_count)
            if self.max_retries >= 0 and attempts > self.max_retries and self.on_failure:
                exhausted.append(message)
            else:
                retry.append(message)
        if exhausted:
            try:
                await self.dead_letter(exhausted, error_info)
            except Exception as error:  # the destination failed: keep the messages instead
                log.warning("trigger %s: on_failure %s failed: %s", self.trigger.id, self.on_failure, error)
                retry.extend(exhausted)
            else:
                await self.ack(exhausted)
                self.stats["dead_lettered"] += len(exhausted)
        if retry:
            await self.release(retry, self.retry_delay_s)

    async def dead_letter(self, messages: list[Message], error_info: dict[str, Any]) -> None:
        assert self.on_failure is not None
        kind, _, target = self.on_failure.partition(":")
        for message in messages:
            attempts = max(message.failures, message.receive_count)
            record: dict[str, Any] = {
                "version": "1.0",
                "timestamp": _iso_now(),
                "requestContext": {
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": attempts,
                    "functionArn": f"arn:wasmhost:lambda:local:function:{self.trigger.function}",
                    "triggerId": self.trigger.id,
                },
                "responseContext": error_info,
                "record": self.record(message),
            }
            if kind == "function":
                await self.ctx.host.ainvoke_event(target, record)
            else:  # the host's dead-letter queues (as for asynchronous invocation); a redrive reruns the message
                event = msgpack.packb({"Records": [record["record"]]}, use_bin_type=True)
                await asyncio.to_thread(
                    self.ctx.host.events.add_dead_letter,
                    target,
                    request_id=f"{self.trigger.id}:{message.id}",
                    function=self.trigger.function,
                    qualifier=self.trigger.qualifier,
                    event_bytes=event,
                    record=record,
                    attempts=attempts,
                )

    def record(self, message: Message) -> dict[str, Any]:
        sent_ms = str(int((message.sent_at or time.time()) * 1000))
        return {
            "messageId": message.id,
            "receiptHandle": message.id,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(max(message.receive_count, message.failures + 1)),
                "SentTimestamp": sent_ms,
                "ApproximateFirstReceiveTimestamp": sent_ms,
                **message.attributes,
            },
            "messageAttributes": {name: lambda_attribute(a) for name, a in message.message_attributes.items()},
            "md5OfBody": hashlib.md5(message.body.encode()).hexdigest(),
            "eventSource": self.event_source,
            "eventSourceARN": self.source_arn(),
            "awsRegion": "local",
        }

    def note_error(self, error: BaseException) -> None:
        self.stats["last_error"] = f"{type(error).__name__}: {error}"

    def maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported >= REPORT_EVERY_S:
            self._reported = now
            self.ctx.report(self.trigger, state="running", **self.stats)


def attribute(value: Any) -> dict[str, Any]:
    """A header or property as an SQS message attribute (``{"stringValue"|"binaryValue", "dataType"}``)."""
    if isinstance(value, bool):
        return {"stringValue": "true" if value else "false", "dataType": "String"}
    if isinstance(value, (int, float)):
        return {"stringValue": str(value), "dataType": "Number"}
    if isinstance(value, (bytes, bytearray)):
        return {"binaryValue": base64.b64encode(bytes(value)).decode(), "dataType": "Binary"}
    return {"stringValue": str(value), "dataType": "String"}


def lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda's SQS records show it (the list fields always there)."""
    return {"stringListValues": [], "binaryListValues": [], **value}


async def take(inbox: asyncio.Queue[Any], max_items: int, wait_s: float) -> list[Any]:
    """Up to ``max_items`` from ``inbox``: what is there now, or the first to arrive within
    ``wait_s`` and whatever came with it. For sources whose client pushes deliveries into
    a queue (RabbitMQ consumers, the MQTT network thread)."""
    try:
        item = inbox.get_nowait()
    except asyncio.QueueEmpty:
        if wait_s <= 0:
            return []
        try:
            item = await asyncio.wait_for(inbox.get(), wait_s)
        except TimeoutError:
            return []
    items = [item]
    while len(items) < max_items and not inbox.empty():
        items.append(inbox.get_nowait())
    return items


def failed_items(result: InvocationResult, batch: list[Message]) -> tuple[set[str], dict[str, Any]]:
    """The ids that failed in ``batch`` given the function's result, and why (Lambda's rules)."""
    every = {m.id for m in batch}
    if result.error is not None:
        error = result.error
        return every, {"errorType": error.type, "errorMessage": error.message, "requestId": result.request_id}
    payload = result.payload
    if not isinstance(payload, dict) or "batchItemFailures" not in payload:
        return set(), {}
    items = payload["batchItemFailures"]
    if items is None:
        return set(), {}
    why = {"errorType": "BatchItemFailures", "requestId": result.request_id}
    if not isinstance(items, list):
        return every, {**why, "errorMessage": "batchItemFailures is not a list: the whole batch failed"}
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in every:
            message = f"itemIdentifier {identifier!r} is not in the batch: the whole batch failed"
            return every, {**why, "errorMessage": message}
        failed.add(identifier)
    return failed, {**why, "errorMessage": f"the function reported {len(failed)} failed item(s)"}


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
