"""Redis Streams event source mapping (type ``redis``): a consumer group on one stream.

The trigger reads with ``XREADGROUP`` as one consumer (``wasmhost-<trigger id>``,
stable across restarts: the supervisor's flock lets one process at a time run a
trigger) of a group (``wasmhost-<function>`` unless ``group`` is given), created
with ``MKSTREAM`` at ``start``. An entry is ``XACK``-ed only after the function
succeeded for it. A failed entry is not kept in memory: it stays in the group's
pending entries list (PEL), and is claimed back (``XPENDING`` + ``XCLAIM``) once
``retry_delay_ms`` passed, so retries survive a restart and Redis' delivery count
is the record's ``ApproximateReceiveCount``. After a (re)start the consumer's own
pending entries come first, at once; entries that another consumer of the group
left pending longer than ``claim_idle_ms`` are taken over with ``XAUTOCLAIM``.
"""

from __future__ import annotations

import base64
import collections
import json
import time
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio

from ..errors import InvalidConfig
from .base import TriggerContext, log
from .mapping import MappingRunner, MappingType, Message
from .store import Trigger

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CLAIM_IDLE_MS = 60_000
CONNECT_TIMEOUT_S = 5.0
#: How often this consumer's pending entries are looked at even when no retry is
#: known to be due (a retry whose bookkeeping was lost finds its way back).
SWEEP_S = 30.0
#: Retries are claimed when idle this much less than ``retry_delay_ms`` (clock slack).
DUE_SLACK_MS = 50


def default_group(function: str) -> str:
    return f"wasmhost-{function}"


def consumer_name(trigger: Trigger) -> str:
    return f"wasmhost-{trigger.id}"


def location(url: str) -> str:
    """``host:port/db`` (or the socket path) of a Redis URL: never its user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}/{db}"


class RedisStreamsType(MappingType):
    name = "redis"
    source_fields = ("url", "stream", "group", "start", "claim_idle_ms")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        url = self.string(fields, "url", DEFAULT_URL, pattern_hint="redis://[:password@]host[:port][/db]")
        try:
            redis.connection.parse_url(url)
            parts = urlsplit(url)
            if parts.scheme != "unix" and not parts.path.strip("/").isdigit() and parts.path.strip("/"):
                raise ValueError(f"the database must be a number, got {parts.path.strip('/')!r}")
        except ValueError as error:
            raise InvalidConfig(f"redis trigger: url {location(url)!r} is not a Redis URL: {error}") from None
        values["url"] = url
        values["stream"] = self.string(fields, "stream", required=True, pattern_hint="the stream's key")
        group = self.string(fields, "group", pattern_hint="a consumer group name")
        if group is not None:
            values["group"] = group
        values["start"] = self.string(fields, "start", "latest", choices=("latest", "earliest"))
        values["claim_idle_ms"] = self.integer(fields, "claim_idle_ms", DEFAULT_CLAIM_IDLE_MS, 0, 86_400_000)
        return values

    def describe(self, config: dict[str, Any]) -> str:
        group = config.get("group") or "wasmhost-<function>"
        return f"redis stream {config['stream']} group {group} on {location(config.get('url', DEFAULT_URL))}"

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> RedisStreamsRunner:
        return RedisStreamsRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        """Delete the trigger's consumer from the group if it has nothing pending. The group
        stays (it keeps the position; other triggers may share it); a consumer with pending
        entries stays too, so that ``claim_idle_ms`` of the group's other consumers finds them."""
        config = trigger.config
        group = config.get("group") or default_group(trigger.function)
        consumer = consumer_name(trigger)
        client = redis.Redis.from_url(config["url"], socket_connect_timeout=2, socket_timeout=2)
        try:
            if client.xpending_range(config["stream"], group, "-", "+", 1, consumername=consumer):
                log.info("trigger %s: consumer %s keeps its pending entries in group %s", trigger.id, consumer, group)
            else:
                client.xgroup_delconsumer(config["stream"], group, consumer)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):  # else the stream or the group is gone already
                log.warning("trigger %s: could not remove consumer %s: %s", trigger.id, consumer, error)
        except redis.RedisError as error:
            log.warning(
                "trigger %s: could not remove consumer %s from group %s: %s", trigger.id, consumer, group, error
            )
        finally:
            client.close()


class RedisStreamsRunner(MappingRunner):
    event_source = "wasmhost:redis"

    def __init__(self, trigger: Trigger, ctx: Any) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.url: str = config.get("url", DEFAULT_URL)
        self.stream: str = config["stream"]
        self.group: str = config.get("group") or default_group(trigger.function)
        self.consumer = consumer_name(trigger)
        self.start: str = config.get("start", "latest")
        self.claim_idle_ms: int = config.get("claim_idle_ms", DEFAULT_CLAIM_IDLE_MS)
        self.retry_delay_ms = int(self.retry_delay_s * 1000)
        self.client: redis.asyncio.Redis | None = None
        self._arn = f"arn:wasmhost:redis:local:{location(self.url)}:stream/{self.stream}:group/{self.group}"
        self._reset()

    def _reset(self) -> None:
        #: Own pending entries still to re-read after a (re)start: the XPENDING start, or None when done.
        self._recover_from: str | None = "-"
        #: When released entries become due again (monotonic s), one per ``release``.
        self._retry_due: collections.deque[float] = collections.deque()
        self._next_sweep_at = time.monotonic() + SWEEP_S
        self._claim_cursor = "0-0"
        self._next_claim_at = 0.0
        #: Ids handed out since the current batch began (pending too, but not to be claimed again).
        self._collected: set[str] = set()

    def source_arn(self) -> str:
        return self._arn

    async def connect(self) -> None:
        self._reset()
        self.client = redis.asyncio.Redis.from_url(
            self.url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_keepalive=True
        )
        try:
            # latest: entries added since the trigger was created (by their ids' time), not
            # since the runner first ran, so that nothing added in between is skipped
            first = f"{int(self.trigger.created_at * 1000)}-0" if self.start == "latest" else "0"
            await self.client.xgroup_create(self.stream, self.group, id=first, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    # --- fetching ----------------------------------------------------------------

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        messages = await self._fetch(max_messages, wait_s)
        self._collected.update(m.id for m in messages)
        return messages

    async def _fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        assert self.client is not None
        deadline = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            if self._recover_from is not None:  # after a (re)start: what this consumer had, at once
                messages, last, more = await self._claim_own(self._recover_from, max_messages, 0)
                self._recover_from = f"({last}" if more and last else None
                if messages:
                    return messages
            if (self._retry_due and now >= self._retry_due[0]) or now >= self._next_sweep_at:
                idle_ms = max(0, self.retry_delay_ms - DUE_SLACK_MS)
                messages, _, more = await self._claim_own("-", max_messages, idle_ms)
                if not more:  # every due entry was looked at
                    while self._retry_due and self._retry_due[0] <= now:
                        self._retry_due.popleft()
                    self._next_sweep_at = now + SWEEP_S
                if messages:
                    return messages
            if self.claim_idle_ms and now >= self._next_claim_at:
                messages = await self._claim_abandoned(max_messages)
                if messages:
                    return messages
            # new entries, blocking until the deadline or until a retry is due
            wake_at = [deadline, self._next_sweep_at]
            if self._retry_due:
                wake_at.append(self._retry_due[0])
            if self.claim_idle_ms:
                wake_at.append(self._next_claim_at)
            block_ms = int((min(wake_at) - time.monotonic()) * 1000)
            reply = await self.client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=max_messages,
                block=block_ms if block_ms > 0 else None,
            )
            entries = _entries(reply)
            if entries or time.monotonic() >= deadline:
                return [self._message(entry_id, fields, 1) for entry_id, fields in entries]

    async def _claim_own(self, start: str, count: int, min_idle_ms: int) -> tuple[list[Message], str | None, bool]:
        """This consumer's pending entries from ``start`` (an id, ``(id`` exclusive, or ``-``)
        idle at least ``min_idle_ms``, claimed again (Redis counts one more delivery).
        Returns the messages, the last id looked at and whether more may follow."""
        assert self.client is not None
        limit = count + len(self._collected)
        rows: Any = await self.client.xpending_range(
            self.stream, self.group, start, "+", limit, consumername=self.consumer, idle=min_idle_ms or None
        )
        if not rows:
            return [], None, False
        delivered: dict[str, int] = {}
        last = None
        more = len(rows) >= limit
        for index, row in enumerate(rows):
            entry_id = _text(row["message_id"])
            last = entry_id
            if entry_id not in self._collected:
                delivered[entry_id] = int(row["times_delivered"])
                if len(delivered) == count:
                    more = more or index < len(rows) - 1
                    break
        if not delivered:
            return [], last, more
        claimed: Any = await self.client.xclaim(self.stream, self.group, self.consumer, min_idle_ms, list(delivered))
        messages = [
            self._message(entry_id, fields, delivered[_text(entry_id)] + 1)
            for entry_id, fields in claimed
            if fields is not None
        ]
        await self._forget_deleted(set(delivered) - {m.id for m in messages})
        return messages, last, more

    async def _claim_abandoned(self, count: int) -> list[Message]:
        """Entries any consumer of the group left pending longer than ``claim_idle_ms`` (XAUTOCLAIM,
        one step of a scan over the group's pending list), with their delivery counts."""
        assert self.client is not None
        reply = await self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=count
        )
        cursor, claimed = _text(reply[0]), reply[1]
        self._claim_cursor = cursor
        if cursor == "0-0":  # the scan is complete: the next one in a while
            self._next_claim_at = time.monotonic() + min(max(self.claim_idle_ms / 2000, 1.0), SWEEP_S)
        claimed = [(_text(entry_id), fields) for entry_id, fields in claimed if fields is not None]
        claimed = [(entry_id, fields) for entry_id, fields in claimed if entry_id not in self._collected]
        if not claimed:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id, _ in claimed:
                pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
            counts = await pipe.execute()
        messages = []
        for (entry_id, fields), rows in zip(claimed, counts, strict=True):
            messages.append(self._message(entry_id, fields, int(rows[0]["times_delivered"]) if rows else 2))
        log.info("trigger %s: claimed %d entries left pending in group %s", self.trigger.id, len(messages), self.group)
        return messages

    async def _forget_deleted(self, entry_ids: set[str]) -> None:
        """Pending entries that are no longer in the stream (trimmed, XDEL): nothing to deliver."""
        if entry_ids and self.client is not None:
            log.warning("trigger %s: pending entries deleted from %s: %s", self.trigger.id, self.stream, entry_ids)
            await self.client.xack(self.stream, self.group, *entry_ids)

    def _message(self, entry_id: bytes | str, fields: dict[bytes, bytes], receive_count: int) -> Message:
        entry_id = _text(entry_id)
        names = [_text(name) for name in fields]
        values = list(fields.values())
        try:
            sent_at = int(entry_id.split("-", 1)[0]) / 1000
        except ValueError:
            sent_at = None
        if names == ["body"]:
            return Message.from_bytes(
                entry_id, values[0], handle=entry_id, receive_count=receive_count, sent_at=sent_at
            )
        attributes = dict(zip(names, (_attribute(value) for value in values), strict=True))
        plain = {name: a.get("stringValue", a.get("binaryValue")) for name, a in attributes.items()}
        return Message(
            entry_id,
            json.dumps(plain, ensure_ascii=False, separators=(",", ":")),
            handle=entry_id,
            receive_count=receive_count,
            sent_at=sent_at,
            message_attributes=attributes,
        )

    # --- acknowledging -------------------------------------------------------------

    async def deliver(self, batch: list[Message]) -> None:
        try:
            await super().deliver(batch)
        finally:
            self._collected.clear()

    async def ack(self, messages: list[Message]) -> None:
        assert self.client is not None
        if messages:
            await self.client.xack(self.stream, self.group, *(m.id for m in messages))

    async def release(self, messages: list[Message], delay_s: float) -> None:
        """Leave them pending; reset their idle time so that they are claimed back after ``delay_s``
        (XCLAIM JUSTID, which does not count a delivery)."""
        assert self.client is not None
        if messages:
            await self.client.xclaim(self.stream, self.group, self.consumer, 0, [m.id for m in messages], justid=True)
        self._retry_due.append(time.monotonic() + delay_s)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _attribute(value: bytes) -> dict[str, str]:
    """A field as an SQS message attribute: text, or base64 for bytes that are not UTF-8."""
    try:
        return {"stringValue": value.decode("utf-8"), "dataType": "String"}
    except UnicodeDecodeError:
        return {"binaryValue": base64.b64encode(value).decode(), "dataType": "Binary"}


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREADGROUP reply on one stream: ``[[stream, [(id, fields), ...]]]``."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    for _, stream_entries in reply or ():
        entries.extend((entry_id, fields) for entry_id, fields in stream_entries if fields is not None)
    return entries


TYPE = RedisStreamsType()
