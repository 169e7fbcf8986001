"""Bucket notifications: an object written to or deleted from the embedded bucket
store invokes a function with S3's event (``Records[].s3``).

The write itself records the notification (an outbox row in the bucket store's
index, in the write's transaction: see ``wasmhost.buckets``). The runner here,
in exactly one process, drains the trigger's outbox in write order and invokes
the function synchronously, one record per event as S3 sends them:

- success: the objects the function asked for (``{"putObjects": [...]}``, a
  wasmhost extension) are written, then the row is deleted;
- a failed run (the function's error, timeout, trap, a bad ``putObjects``):
  retried after ``retry_delay_ms``, then twice that, up to
  ``maximum_retry_attempts`` retries (Lambda's asynchronous invocation: 2 retries,
  1 s and 2 s). Out of retries, the destination record goes to ``on_failure``
  (the trigger's, else the function's, else the dead-letter queue
  ``<function>-failures``) and the row is deleted;
- ``Throttled``: due again after the error's ``retry_after_s``, not counted.

A failed record waits for its retry without holding up the next ones. An object
written by a function carries the number of such writes in a row that led to it;
an event whose object is 16 deep is not delivered but dead-lettered
(``RecursiveInvocationDetected``), as Lambda stops recursive loops.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import socket
import time
import urllib.parse
from typing import Any

import msgpack

from ..async_worker import ARN_PREFIX, default_failure_queue
from ..buckets import (
    CREATED,
    DEFAULT_EVENTS,
    EVENT_TYPES,
    BucketStore,
    Notification,
    check_bucket_name,
    check_content_type,
    check_key,
    check_metadata,
    iso_time,
)
from ..errors import FunctionError, FunctionNotFound, InvalidConfig, InvalidResponse, Throttled, WasmhostError
from .base import Runner, TriggerContext, TriggerType, log
from .store import Trigger

#: Writes by functions in a row after which an event is not delivered (Lambda's loop detection).
MAX_DEPTH = 16
#: How often the runner looks for notifications written by other processes, in seconds.
POLL_S = 0.1
#: Notifications read from the outbox at a time.
BATCH = 32
#: How often the runner writes its counters into the trigger's status, in seconds.
REPORT_EVERY_S = 2.0
#: Largest ``max_body_bytes``: base64 makes it 4/3 larger, under the 6 MiB invocation limit.
MAX_BODY_BYTES = 4 * 1024 * 1024
_HOST_ID = base64.b64encode(hashlib.sha256(socket.gethostname().encode()).digest()).decode()


class BucketType(TriggerType):
    name = "bucket"
    fields = (
        "bucket",
        "events",
        "prefix",
        "suffix",
        "include_body",
        "max_body_bytes",
        "maximum_retry_attempts",
        "retry_delay_ms",
        "on_failure",
    )

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.check_fields(fields)
        bucket = self.string(fields, "bucket", required=True)
        try:
            check_bucket_name(bucket)
        except WasmhostError as error:
            raise InvalidConfig(f"bucket trigger: bucket: {error.message}") from None
        values["bucket"] = bucket
        events = self.string_list(fields, "events", list(DEFAULT_EVENTS))
        unknown = [event for event in events if event not in EVENT_TYPES]
        if unknown or not events:
            raise InvalidConfig(
                f"bucket trigger: events must be a non-empty list of {', '.join(EVENT_TYPES)}; got {unknown or events!r}"
            )
        values["events"] = list(dict.fromkeys(events))
        for key in ("prefix", "suffix"):
            value = fields.get(key, "")
            if not isinstance(value, str):
                raise InvalidConfig(f"bucket trigger: {key} must be a string, got {value!r}")
            values[key] = value
        values["include_body"] = self.boolean(fields, "include_body", False)
        values["max_body_bytes"] = self.integer(fields, "max_body_bytes", 256 * 1024, 0, MAX_BODY_BYTES)
        values["maximum_retry_attempts"] = self.integer(fields, "maximum_retry_attempts", 2, 0, 100)
        values["retry_delay_ms"] = self.integer(fields, "retry_delay_ms", 1000, 0, 3_600_000)
        on_failure = self.destination(fields, "on_failure")
        if on_failure is not None:
            values["on_failure"] = on_failure
        return values

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> Runner | None:
        return BucketRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        dropped = host.buckets.drop_notifications(trigger.id)
        if dropped:
            log.info("bucket trigger %s removed with %d notification(s) not delivered", trigger.id, dropped)

    def describe(self, config: dict[str, Any]) -> str:
        events = ",".join(event.removeprefix("s3:") for event in config.get("events", DEFAULT_EVENTS))
        text = f"{config.get('bucket')} {events}"
        for key in ("prefix", "suffix"):
            if config.get(key):
                text += f" {key}={config[key]}"
        return text + (" +body" if config.get("include_body") else "")


TYPE = BucketType()


class BucketRunner(Runner):
    """Drains one bucket trigger's outbox (see the module doc)."""

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.max_retries: int = config.get("maximum_retry_attempts", 2)
        self.retry_delay_s: float = config.get("retry_delay_ms", 1000) / 1000
        self.include_body: bool = config.get("include_body", False)
        self.max_body_bytes: int = config.get("max_body_bytes", 256 * 1024)
        self.stats: dict[str, Any] = {"delivered": 0, "failed_runs": 0, "throttled": 0, "dead_lettered": 0}
        self._reported = 0.0

    @property
    def store(self) -> BucketStore:
        return self.ctx.host.buckets  # type: ignore[no-any-return]

    async def run(self) -> None:
        store = self.store  # opened here, on the loop's thread: never by two threads at once
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def poke() -> None:  # called on the thread that wrote
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

        unsubscribe = store.subscribe(poke)
        try:
            await self.report(state="running", last_error=None)
            while True:
                wake.clear()
                batch = await asyncio.to_thread(store.pending, self.trigger.id, BATCH)
                for note in batch:
                    await self.deliver(note)
                if time.monotonic() - self._reported >= REPORT_EVERY_S:
                    await self.report(state="running")
                if not batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), POLL_S)
        finally:
            unsubscribe()

    async def report(self, **status: Any) -> None:
        self._reported = time.monotonic()
        pending = await asyncio.to_thread(self.store.outbox_size, self.trigger.id)
        await asyncio.to_thread(self.ctx.report, self.trigger, **status, **self.stats, pending=pending)

    # --- one notification ------------------------------------------------------------

    async def deliver(self, note: Notification) -> None:
        event = {"Records": [await self.record(note)]}
        if note.depth >= MAX_DEPTH:
            log.warning(
                "bucket trigger %s: %s/%s was written by %d functions in a row; not invoking %s (recursive loop)",
                self.trigger.id, note.bucket, note.key, note.depth, self.trigger.function,
            )  # fmt: skip
            error = {
                "errorType": "RecursiveInvocationException",
                "errorMessage": f"the object was written by {note.depth} function invocations in a row "
                f"(limit {MAX_DEPTH}): a recursive loop was stopped",
            }
            await self.give_up(note, event, "RecursiveInvocationDetected", note.attempts, error, None, None)
            return
        try:
            result = await self.ctx.invoke(self.trigger, event)
        except Throttled as exc:
            self.stats["throttled"] += 1
            delay = float(exc.details.get("retry_after_s") or max(self.retry_delay_s, 0.1))
            await asyncio.to_thread(
                self.store.reschedule, note.seq, time.time() + delay, note.attempts, note.last_error
            )
            return
        except WasmhostError as exc:  # FunctionNotFound (a version gone), an event too big...
            await self.failed(note, event, _error(exc), exc.status, None)
            return
        if result.error is not None:
            await self.failed(note, event, _error(result.error), 200, result.function_version)
            return
        try:
            await asyncio.to_thread(self.put_objects, note, result.payload)
        except WasmhostError as exc:
            await self.failed(note, event, _error(exc), 200, result.function_version)
            return
        await asyncio.to_thread(self.store.acknowledge, note.seq)
        self.stats["delivered"] += 1
        self.stats["last_delivered_at"] = time.time()

    async def failed(
        self, note: Notification, event: dict[str, Any], error: dict[str, Any], status: int, version: str | None
    ) -> None:
        self.stats["failed_runs"] += 1
        self.stats["last_failure"] = error
        attempts = note.attempts + 1
        if attempts > self.max_retries:
            await self.give_up(note, event, "RetriesExhausted", attempts, error, status, version)
            return
        delay = self.retry_delay_s * 2 ** (attempts - 1)
        stored = {**error, "statusCode": status, "executedVersion": version}
        await asyncio.to_thread(self.store.reschedule, note.seq, time.time() + delay, attempts, stored)

    async def give_up(
        self,
        note: Notification,
        event: dict[str, Any],
        condition: str,
        attempts: int,
        error: dict[str, Any],
        status: int | None,
        version: str | None,
    ) -> None:
        """Send Lambda's destination record to the failure destination, then forget the row.
        If the destination fails, the row stays (and is handed out again by a restarted runner)."""
        function, qualifier = self.trigger.function, self.trigger.qualifier
        record = {
            "version": "1.0",
            "timestamp": iso_time(time.time()),
            "requestContext": {
                "requestId": f"{self.trigger.id}:{note.seq}",
                "functionArn": f"{ARN_PREFIX}{function}:{qualifier or '$LATEST'}",
                "condition": condition,
                "approximateInvokeCount": attempts,
                "triggerId": self.trigger.id,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": status, "executedVersion": version, "functionError": "Unhandled"},
            "responsePayload": error,
        }
        destination = self.trigger.config.get("on_failure") or await self.function_on_failure()
        kind, _, target = (destination or f"queue:{default_failure_queue(function)}").partition(":")
        log.warning(
            "bucket trigger %s: %s of %s/%s after %d run(s); record to %s:%s",
            self.trigger.id, condition, note.bucket, note.key, attempts, kind, target,
        )  # fmt: skip
        if kind == "function":
            await self.ctx.host.ainvoke_event(target, record)
        else:
            await asyncio.to_thread(
                self.ctx.host.events.add_dead_letter,
                target,
                request_id=f"{self.trigger.id}:{note.seq}",
                function=function,
                qualifier=qualifier,
                event_bytes=msgpack.packb(event, use_bin_type=True),
                record=record,
                attempts=attempts,
            )
        await asyncio.to_thread(self.store.acknowledge, note.seq)
        self.stats["dead_lettered"] += 1

    async def function_on_failure(self) -> str | None:
        try:
            function = await asyncio.to_thread(self.ctx.host.get, self.trigger.function)
        except FunctionNotFound:
            return None
        return function.config.on_failure  # type: ignore[no-any-return]

    # --- the event and what the function answers ------------------------------------

    async def record(self, note: Notification) -> dict[str, Any]:
        """S3's notification record (event structure 2.1), plus ``s3.object.body`` when asked for."""
        obj: dict[str, Any] = {"key": urllib.parse.quote_plus(note.key, safe="/")}
        if note.event_name == CREATED:
            obj.update(size=note.size, eTag=note.etag)
        obj["sequencer"] = note.sequencer
        if self.include_body and note.event_name == CREATED:
            if note.blob is not None:
                try:
                    data = await asyncio.to_thread(self.store.read_blob, note.blob)
                    obj["body"] = base64.b64encode(data).decode()
                except FileNotFoundError:
                    obj["bodyOmitted"] = "the object's bytes are gone"
            else:
                obj["bodyOmitted"] = f"the object is {note.size} bytes, over max_body_bytes ({self.max_body_bytes})"
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "local",
            "eventTime": iso_time(note.event_time),
            "eventName": note.event_name,
            "userIdentity": {"principalId": note.principal},
            "requestParameters": {"sourceIPAddress": note.source_ip},
            "responseElements": {"x-amz-request-id": note.request_id, "x-amz-id-2": _HOST_ID},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": self.trigger.id,
                "bucket": {
                    "name": note.bucket,
                    "ownerIdentity": {"principalId": "wasmhost"},
                    "arn": f"arn:aws:s3:::{note.bucket}",
                },
                "object": obj,
            },
        }

    def put_objects(self, note: Notification, payload: Any) -> None:
        """Write the objects of ``{"putObjects": [...]}`` (all checked first). Raises
        ``InvalidResponse`` naming the bad item, or the store's errors."""
        if not isinstance(payload, dict) or payload.get("putObjects") is None:
            return
        items = payload["putObjects"]
        if not isinstance(items, list):
            raise InvalidResponse(f"putObjects must be a list of objects, got {type(items).__name__}")
        writes = [_put_request(number, item) for number, item in enumerate(items)]
        for bucket, *_ in writes:
            self.store.head_bucket(bucket)
        for bucket, key, body, content_type, metadata in writes:
            self.store.put_object(
                bucket,
                key,
                body,
                content_type=content_type,
                metadata=metadata,
                principal=f"function:{self.trigger.function}",
                depth=note.depth + 1,
            )


def _put_request(number: int, item: Any) -> tuple[str, str, bytes, str, dict[str, str]]:
    where = f"putObjects[{number}]"
    if not isinstance(item, dict):
        raise InvalidResponse(f"{where} must be an object with bucket, key and body, got {item!r}")
    bucket, key, body = item.get("bucket"), item.get("key"), item.get("body", b"")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InvalidResponse(f"{where}: bucket and key must be strings")
    if isinstance(body, str):
        if item.get("isBase64Encoded", False):
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidResponse(f"{where}: body is not valid base64") from None
        else:
            data = body.encode()
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        raise InvalidResponse(f"{where}: body must be a string (or bytes), got {type(body).__name__}")
    try:
        check_bucket_name(bucket)
        check_key(key)
        content_type = check_content_type(item.get("contentType"))
        metadata = check_metadata(item.get("metadata"))
    except WasmhostError as error:
        raise InvalidResponse(f"{where}: {error.message}") from None
    return bucket, key, data, content_type, metadata


def _error(error: WasmhostError) -> dict[str, Any]:
    if isinstance(error, FunctionError):
        return {"errorType": error.error_type, "errorMessage": error.message}
    return {"errorType": error.type, "errorMessage": error.message}
