"""The embedded durable queues (SQS-like), in SQLite (WAL): ``<data_dir>/queues.db``.

One file shared by every process on a data directory. A queue is a row of
``queues`` (its attributes); a message is a row of ``messages`` from ``send``
until it is deleted, purged, expires or moves to its dead-letter queue.

SQS's model, kept as is:

* a received message stays in the queue, invisible for the visibility timeout,
  with a fresh receipt handle. Deleting it needs that handle; once the message
  is received again, the old handle is stale (``ReceiptHandleIsInvalid``);
* each receive counts (``ApproximateReceiveCount``). With a redrive policy, a
  message that would be received more than ``max_receive_count`` times moves to
  the dead-letter queue instead, in the receiving transaction;
* ``delay_s`` (the queue's, or the message's) hides a new message for a while;
  ``message_retention_s`` deletes it, received or not, that long after it was sent.

Durability: sends, batch sends, queue creation and deletion commit with
``synchronous=FULL`` (the WAL is fsynced before they return), so an
acknowledged message survives power loss. Receives, deletes and visibility
changes commit with ``synchronous=NORMAL``: losing one to power loss brings back
the state before it (a message is delivered again), never loses one.

Long polling: ``receive``/``areceive`` with ``wait_time_s`` return as soon as a
message is visible. A send through this ``QueueStore`` wakes them at once; a
send by another process (or another ``QueueStore``) is seen within ``poll_s``
(``POLL_S``, 50 ms). Between looks, an asynchronous receiver only asks SQLite
whether the file changed (``PRAGMA data_version``), so an idle one costs nearly nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    InvalidConfig,
    InvalidRequest,
    MessageTooLarge,
    QueueAlreadyExists,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
)
from .queue_validation import (
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_RECEIVE,
    MAX_VISIBILITY_S,
    MAX_WAIT_S,
    SETTING_NAMES,
    attributes_size,
    check_body,
    check_number,
    check_queue_name,
    check_receive,
    describe_difference,
    message_attributes,
    queue_settings,
)
from .sqlitedb import connect, immediate

log = logging.getLogger("wasmhost.queues")

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name       TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,             -- JSON: the queue's settings, validated and completed
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an old receipt handle never names a new message
    queue             TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    body              TEXT NOT NULL,
    message_attributes TEXT,              -- JSON {name: {"dataType", "stringValue" | "binaryValue"}}
    sent_at           REAL NOT NULL,      -- Unix time of the send (kept when moved to a dead-letter queue)
    visible_at        REAL NOT NULL,      -- Unix time from which it can be received (delay, visibility timeout)
    expires_at        REAL NOT NULL,      -- Unix time it is deleted (retention)
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt           TEXT,               -- the current receipt handle's secret part
    dead_letter_source TEXT               -- the queue it came from, in a dead-letter queue
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (queue, expires_at);
"""

#: How often a long poll looks for messages sent by other processes (seconds).
POLL_S = 0.05
RECEIPT = re.compile(r"^([0-9]{1,19})\.([0-9a-f]{24})$")


def arn(queue: str) -> str:
    """The queue's ARN, as in SQS's event records."""
    return f"arn:aws:sqs:local:000000000000:{queue}"


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: its body, message attributes and delay (None: the queue's ``delay_s``)."""

    body: str
    message_attributes: dict[str, Any] | None = None
    delay_s: float | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as received. Times are Unix seconds; ``receive_count`` includes this receive."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: float
    first_received_at: float
    message_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: In a dead-letter queue: the queue the message came from.
    dead_letter_source: str | None = None

    @property
    def md5_of_body(self) -> str:
        return hashlib.md5(self.body.encode()).hexdigest()

    def attributes(self) -> dict[str, str]:
        """SQS's system attributes (strings; timestamps in epoch milliseconds)."""
        values = {
            "ApproximateReceiveCount": str(self.receive_count),
            "SentTimestamp": str(int(self.sent_at * 1000)),
            "ApproximateFirstReceiveTimestamp": str(int(self.first_received_at * 1000)),
            "SenderId": "wasmhost",
        }
        if self.dead_letter_source is not None:
            values["DeadLetterQueueSourceArn"] = arn(self.dead_letter_source)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "receipt_handle": self.receipt_handle,
            "body": self.body,
            "md5_of_body": self.md5_of_body,
            "attributes": self.attributes(),
            "message_attributes": self.message_attributes,
        }


class QueueStore:
    """The queues of one data directory. Thread-safe; a context manager; ``close`` is idempotent.

    Raises ``QueueDoesNotExist`` (404), ``QueueAlreadyExists`` (409),
    ``ReceiptHandleIsInvalid`` (400), ``MessageTooLarge`` (413), ``InvalidName`` and
    ``InvalidRequest``/``InvalidConfig`` (400) naming the bad value; and
    ``sqlite3.OperationalError`` when the file stays locked longer than
    ``busy_timeout_s`` or the disk is full.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0, poll_s: float = POLL_S) -> None:
        self.path = Path(path)
        #: How often a long poll looks for messages sent by other processes (seconds).
        self.poll_s = poll_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two connections: acknowledged writes fsync (FULL), receive-side bookkeeping does not (NORMAL).
        self._durable = connect(self.path, busy_timeout_s, "FULL")
        self._durable.executescript(SCHEMA)
        self._conn = connect(self.path, busy_timeout_s, "NORMAL")
        # A third, only asked for its data_version by long polls (on the event loop).
        self._watch = connect(self.path, busy_timeout_s, "NORMAL")
        self._durable_lock = threading.Lock()
        self._lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._wakeups = _Wakeups()
        self._closed = False

    def close(self) -> None:
        with self._durable_lock, self._lock, self._watch_lock:
            if self._closed:
                return
            self._closed = True
            for conn in (self._durable, self._conn, self._watch):
                conn.close()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queues -------------------------------------------------------------

    def create(self, name: str, attributes: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Create queue ``name`` with ``attributes`` (see ``QUEUE_SETTINGS``, plus
        ``max_receive_count`` and ``dead_letter_queue`` together). Returns the queue's
        attributes and whether it was created. Like SQS: an existing queue with the same
        attributes is returned as is; with different ones, ``QueueAlreadyExists``."""
        check_queue_name(name)
        settings = queue_settings(name, attributes or {})
        with self._durable_lock, immediate(self._durable):
            dead_letter_queue = settings.get("dead_letter_queue")
            if dead_letter_queue is not None and _load(self._durable, dead_letter_queue) is None:
                raise InvalidConfig(f"queue {name}: dead_letter_queue {dead_letter_queue!r} does not exist")
            existing = _load(self._durable, name)
            if existing is not None:
                if existing[0] != settings:
                    difference = describe_difference(existing[0], settings)
                    raise QueueAlreadyExists(f"queue {name!r} already exists with other attributes: {difference}")
                return self._describe(self._durable, name, existing), False
            now = time.time()
            self._durable.execute(
                "INSERT INTO queues (name, attributes, created_at) VALUES (?, ?, ?)",
                (name, json.dumps(settings, sort_keys=True), now),
            )
            return self._describe(self._durable, name, (settings, now)), True

    def exists(self, name: str) -> bool:
        with self._lock:
            return _load(self._conn, name) is not None

    def attributes(self, name: str, *, now: float | None = None) -> dict[str, Any]:
        """The queue's settings, ``arn``, ``created_at`` and approximate counts of messages
        visible (``approximate_number_of_messages``), in flight (``..._not_visible``) and
        delayed (``..._delayed``). Raises ``QueueDoesNotExist``."""
        with self._lock:
            return self._describe(self._conn, name, _require(self._conn, name), now)

    def list(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        """Every queue (whose name starts with ``prefix``) with its attributes, by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, attributes, created_at FROM queues WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
            return [self._describe(self._conn, name, (json.loads(raw), created)) for name, raw, created in rows]

    def delete_queue(self, name: str) -> None:
        """Delete the queue and its messages. Raises ``QueueDoesNotExist``."""
        with self._durable_lock, immediate(self._durable):
            if self._durable.execute("DELETE FROM queues WHERE name = ?", (name,)).rowcount == 0:
                raise QueueDoesNotExist(f"queue {name!r} does not exist")
            self._durable.execute("DELETE FROM messages WHERE queue = ?", (name,))

    def purge(self, name: str) -> int:
        """Delete every message of the queue (in flight too); returns how many."""
        with self._lock, immediate(self._conn):
            _require(self._conn, name)
            return self._conn.execute("DELETE FROM messages WHERE queue = ?", (name,)).rowcount

    # --- sending ------------------------------------------------------------

    def send(
        self,
        queue: str,
        body: str,
        attributes: dict[str, Any] | None = None,
        *,
        delay_s: float | None = None,
        create: bool = False,
        now: float | None = None,
    ) -> str:
        """Send ``body`` (text) with message ``attributes`` to ``queue``; returns the message id
        once it is on disk. ``delay_s`` overrides the queue's delay; ``create`` creates a
        missing queue with the default attributes."""
        return self.send_batch(queue, [OutgoingMessage(body, attributes, delay_s)], create=create, now=now)[0]

    def send_batch(
        self, queue: str, messages: Sequence[OutgoingMessage], *, create: bool = False, now: float | None = None
    ) -> builtins.list[str]:
        """Send up to 10 messages in one fsynced transaction; returns their ids in order.
        All or none: a bad message fails the whole batch, naming its index."""
        if not 1 <= len(messages) <= MAX_BATCH:
            raise InvalidRequest(f"a batch has 1 to {MAX_BATCH} messages, got {len(messages)}")
        check_queue_name(queue)
        prepared = []
        for index, message in enumerate(messages):
            where = f"message {index}" if len(messages) > 1 else "message"
            body = check_body(message.body, where)
            attributes = message_attributes(message.message_attributes, where)
            if message.delay_s is not None:
                check_number(f"{where}: delay_s", message.delay_s, 0, MAX_DELAY_S)
            prepared.append((body, attributes, message.delay_s, where))
        now = time.time() if now is None else now
        ids = []
        with self._durable_lock, immediate(self._durable):
            found = _load(self._durable, queue)
            if found is None:
                if not create:
                    raise QueueDoesNotExist(f"queue {queue!r} does not exist")
                settings = queue_settings(queue, {})
                self._durable.execute(
                    "INSERT INTO queues (name, attributes, created_at) VALUES (?, ?, ?)",
                    (queue, json.dumps(settings, sort_keys=True), now),
                )
                found = (settings, now)
            settings = found[0]
            for body, attributes, delay_s, where in prepared:
                size = len(body.encode()) + attributes_size(attributes)
                if size > settings["max_message_bytes"]:
                    raise MessageTooLarge(
                        f"queue {queue}: {where} is {size} bytes (body and attributes); "
                        f"the queue's max_message_bytes is {settings['max_message_bytes']}",
                        size=size,
                        limit=settings["max_message_bytes"],
                    )
                message_id = str(uuid.uuid4())
                delay = settings["delay_s"] if delay_s is None else delay_s
                self._durable.execute(
                    """INSERT INTO messages (queue, message_id, body, message_attributes, sent_at, visible_at,
                         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    (
                        queue,
                        message_id,
                        body,
                        json.dumps(attributes) if attributes else None,
                        now,
                        now + delay,
                        now + settings["message_retention_s"],
                    ),
                )
                ids.append(message_id)
        self._wakeups.notify(queue)
        return ids

    # --- receiving ------------------------------------------------------------

    def receive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        wait_time_s: float = 0,
        visibility_timeout_s: float | None = None,
        now: float | None = None,
    ) -> builtins.list[ReceivedMessage]:
        """Up to ``max_messages`` (1-10) visible messages, made invisible for
        ``visibility_timeout_s`` (the queue's by default), each with a new receipt handle.
        With ``wait_time_s`` (up to 20), waits that long for a first message (long polling;
        blocks this thread). Messages over their redrive policy's ``max_receive_count`` move
        to the dead-letter queue instead of being returned."""
        check_receive(max_messages, wait_time_s, visibility_timeout_s)
        deadline = time.monotonic() + wait_time_s
        while True:
            seen = self._wakeups.version
            messages, next_visible = self._receive(queue, max_messages, visibility_timeout_s, now)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            self._wakeups.wait(seen, _pause(remaining, self.poll_s, next_visible))

    async def areceive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        wait_time_s: float = 0,
        visibility_timeout_s: float | None = None,
    ) -> builtins.list[ReceivedMessage]:
        """``receive`` for an event loop: the database work runs on a thread, the waiting
        does not hold one. Cancelled while a receive runs, it makes the messages that
        receive took visible again (they count as received once)."""
        check_receive(max_messages, wait_time_s, visibility_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait_time_s
        look, version, next_visible = True, -1, None
        while True:
            woken = self._wakeups.register(queue, loop)
            try:
                if look:
                    version = self._data_version()
                    messages, next_visible = await self._receive_on_thread(queue, max_messages, visibility_timeout_s)
                    if messages:
                        return messages
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                await asyncio.wait({woken}, timeout=_pause(remaining, self.poll_s, next_visible))
                # Look again only if something may have changed: a send here, a commit by any
                # connection (another process), or a hidden message's time come.
                look = (
                    woken.done()
                    or (next_visible is not None and next_visible <= time.time())
                    or self._data_version() != version
                )
            finally:
                self._wakeups.unregister(queue, woken)

    def _data_version(self) -> int:
        """Changes whenever another connection (of any process) commits to the file. Cheap
        enough to ask on an event loop: it reads the WAL index, never waits for a lock."""
        with self._watch_lock:
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    async def _receive_on_thread(
        self, queue: str, max_messages: int, visibility_timeout_s: float | None
    ) -> tuple[builtins.list[ReceivedMessage], float | None]:
        handoff = threading.Lock()
        state = {"cancelled": False, "returned": False}

        def work() -> tuple[builtins.list[ReceivedMessage], float | None]:
            messages, next_visible = self._receive(queue, max_messages, visibility_timeout_s, None)
            with handoff:
                if state["cancelled"]:
                    self._give_back(queue, messages)
                    return [], next_visible
                state["returned"] = True
            return messages, next_visible

        future = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with handoff:
                state["cancelled"] = True
                taken = state["returned"]
            if taken:  # the receive finished but its caller is gone: give its messages back
                future.add_done_callback(lambda done: self._give_back_later(queue, done))
            raise

    def _give_back_later(self, queue: str, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            messages = done.result()[0]
            threading.Thread(target=self._give_back, args=(queue, messages), daemon=True).start()

    def _give_back(self, queue: str, messages: builtins.list[ReceivedMessage]) -> None:
        if messages:
            with suppress(Exception):
                self.change_visibility_batch(queue, [m.receipt_handle for m in messages], 0)

    def _receive(
        self, queue: str, max_messages: int, visibility_timeout_s: float | None, now: float | None
    ) -> tuple[builtins.list[ReceivedMessage], float | None]:
        """One receive: the messages, and (when there are none) when the next becomes visible."""
        now = time.time() if now is None else now
        with self._lock:
            # Read first, so that idle polls never take the write lock.
            next_visible = self._conn.execute(
                "SELECT MIN(visible_at) FROM messages WHERE queue = ?", (queue,)
            ).fetchone()[0]
            if next_visible is None or next_visible > now:
                _require(self._conn, queue)
                return [], next_visible
            with immediate(self._conn):
                received, moved_to = self._take(queue, max_messages, visibility_timeout_s, now)
        if moved_to is not None:
            self._wakeups.notify(moved_to)
        return received, None

    def _take(
        self, queue: str, max_messages: int, visibility_timeout_s: float | None, now: float
    ) -> tuple[builtins.list[ReceivedMessage], str | None]:
        conn = self._conn
        settings = _require(conn, queue)[0]
        conn.execute("DELETE FROM messages WHERE queue = ? AND expires_at <= ?", (queue, now))
        visibility = settings["visibility_timeout_s"] if visibility_timeout_s is None else visibility_timeout_s
        max_receives = settings.get("max_receive_count")
        dead_letter_queue = settings.get("dead_letter_queue")
        dead_found = _load(conn, dead_letter_queue)
        dead_settings = dead_found[0] if dead_found is not None else None
        if dead_letter_queue and dead_settings is None:
            log.warning("queue %s: its dead-letter queue %s does not exist; messages stay", queue, dead_letter_queue)
        received: list[ReceivedMessage] = []
        done: set[int] = set()
        moved = 0
        while len(received) < max_messages:
            rows = conn.execute(
                """SELECT seq, message_id, body, message_attributes, sent_at, receive_count, first_received_at,
                     dead_letter_source FROM messages WHERE queue = ? AND visible_at <= ?
                   ORDER BY visible_at, seq LIMIT ?""",
                (queue, now, max_messages - len(received) + len(done)),
            ).fetchall()
            fresh = [row for row in rows if row[0] not in done]
            if not fresh:
                break
            for seq, message_id, body, raw_attributes, sent_at, count, first_received_at, source in fresh:
                done.add(seq)
                if dead_settings is not None and max_receives is not None and count >= max_receives:
                    # Received max_receive_count times and never deleted: to the dead-letter queue (as SQS).
                    conn.execute(
                        """INSERT INTO messages (queue, message_id, body, message_attributes, sent_at, visible_at,
                             expires_at, dead_letter_source)
                           SELECT ?, message_id, body, message_attributes, sent_at, ?, sent_at + ?, ?
                           FROM messages WHERE seq = ?""",
                        (dead_letter_queue, now, dead_settings["message_retention_s"], queue, seq),
                    )
                    conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                    moved += 1
                    continue
                secret = secrets.token_hex(12)
                first = first_received_at if first_received_at is not None else now
                conn.execute(
                    """UPDATE messages SET receive_count = receive_count + 1, visible_at = ?, receipt = ?,
                         first_received_at = ? WHERE seq = ?""",
                    (now + visibility, secret, first, seq),
                )
                received.append(
                    ReceivedMessage(
                        message_id=message_id,
                        receipt_handle=f"{seq}.{secret}",
                        body=body,
                        receive_count=count + 1,
                        sent_at=sent_at,
                        first_received_at=first,
                        message_attributes=json.loads(raw_attributes) if raw_attributes else {},
                        dead_letter_source=source,
                    )
                )
                if len(received) == max_messages:
                    break
        if moved:
            log.info("queue %s: %d message(s) moved to dead-letter queue %s", queue, moved, dead_letter_queue)
        return received, dead_letter_queue if moved else None

    # --- after receiving --------------------------------------------------------

    def delete_message(self, queue: str, receipt_handle: str) -> None:
        """Delete the message received with ``receipt_handle``. A message already gone is
        not an error (as SQS); a handle that is malformed or stale (the message was received
        again since) is ``ReceiptHandleIsInvalid``."""
        stale = self.delete_messages(queue, [receipt_handle])
        if stale:
            raise ReceiptHandleIsInvalid(stale[receipt_handle])

    def delete_messages(self, queue: str, receipt_handles: Sequence[str]) -> dict[str, str]:
        """Delete several messages in one transaction; returns ``{handle: why}`` for the
        handles that were refused (the others' messages are deleted or already gone)."""
        parsed, refused = _parse_handles(receipt_handles)
        with self._lock, immediate(self._conn):
            _require(self._conn, queue)
            for handle, (seq, secret) in parsed.items():
                if self._conn.execute(
                    "DELETE FROM messages WHERE seq = ? AND queue = ? AND receipt = ?", (seq, queue, secret)
                ).rowcount:
                    continue
                current = self._conn.execute(
                    "SELECT receipt FROM messages WHERE seq = ? AND queue = ?", (seq, queue)
                ).fetchone()
                if current is not None:
                    refused[handle] = _stale(handle, current[0])
        return refused

    def change_visibility(self, queue: str, receipt_handle: str, visibility_timeout_s: float) -> None:
        """Make the message received with ``receipt_handle`` visible again in
        ``visibility_timeout_s`` (0-43200) from now. ``ReceiptHandleIsInvalid`` if the
        handle is malformed or stale, or its message is gone."""
        refused = self.change_visibility_batch(queue, [receipt_handle], visibility_timeout_s)
        if refused:
            raise ReceiptHandleIsInvalid(refused[receipt_handle])

    def change_visibility_batch(
        self, queue: str, receipt_handles: Sequence[str], visibility_timeout_s: float, *, now: float | None = None
    ) -> dict[str, str]:
        """``change_visibility`` for several handles in one transaction; returns ``{handle: why}``
        for the refused ones."""
        check_number("visibility_timeout_s", visibility_timeout_s, 0, MAX_VISIBILITY_S)
        parsed, refused = _parse_handles(receipt_handles)
        now = time.time() if now is None else now
        with self._lock, immediate(self._conn):
            _require(self._conn, queue)
            for handle, (seq, secret) in parsed.items():
                if self._conn.execute(
                    "UPDATE messages SET visible_at = ? WHERE seq = ? AND queue = ? AND receipt = ?",
                    (now + visibility_timeout_s, seq, queue, secret),
                ).rowcount:
                    continue
                current = self._conn.execute(
                    "SELECT receipt FROM messages WHERE seq = ? AND queue = ?", (seq, queue)
                ).fetchone()
                refused[handle] = (
                    _stale(handle, current[0])
                    if current is not None
                    else f"receipt handle {handle!r}: the message was deleted or has expired"
                )
        if visibility_timeout_s == 0 and len(refused) < len(receipt_handles):
            self._wakeups.notify(queue)
        return refused

    # --- helpers ------------------------------------------------------------------

    def _describe(
        self,
        conn: sqlite3.Connection,
        name: str,
        found: tuple[dict[str, Any], float],
        now: float | None = None,
    ) -> dict[str, Any]:
        settings, created_at = found
        now = time.time() if now is None else now
        visible, not_visible, delayed = conn.execute(
            """SELECT COALESCE(SUM(visible_at <= ?), 0),
                      COALESCE(SUM(visible_at > ? AND receive_count > 0), 0),
                      COALESCE(SUM(visible_at > ? AND receive_count = 0), 0)
               FROM messages WHERE queue = ? AND expires_at > ?""",
            (now, now, now, name, now),
        ).fetchone()
        return {
            "name": name,
            "arn": arn(name),
            "created_at": created_at,
            **{key: settings[key] for key in SETTING_NAMES if key in settings},
            "approximate_number_of_messages": visible,
            "approximate_number_of_messages_not_visible": not_visible,
            "approximate_number_of_messages_delayed": delayed,
        }


class _Wakeups:
    """Wakes the receivers waiting in this process when a message is sent here."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def notify(self, queue: str) -> None:
        with self._condition:
            self.version += 1
            self._condition.notify_all()
            waiters = self._waiters.pop(queue, set())
        for loop, future in waiters:
            with suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future)

    def wait(self, seen: int, timeout_s: float) -> None:
        """Block until a send after ``seen`` (a ``version``), or ``timeout_s``."""
        with self._condition:
            self._condition.wait_for(lambda: self.version != seen, timeout_s)

    def register(self, queue: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            self._waiters.setdefault(queue, set()).add((loop, future))
        return future

    def unregister(self, queue: str, future: asyncio.Future[None]) -> None:
        with self._condition:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.discard((future.get_loop(), future))
                if not waiters:
                    del self._waiters[queue]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _pause(remaining_s: float, poll_s: float, next_visible: float | None) -> float:
    """How long a long poll sleeps before looking again."""
    pause = min(remaining_s, poll_s)
    if next_visible is not None:
        pause = min(pause, max(0.0, next_visible - time.time()))
    return max(pause, 0.001)


def _parse_handles(handles: Sequence[str]) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    parsed, refused = {}, {}
    for handle in handles:
        match = RECEIPT.match(handle) if isinstance(handle, str) else None
        if match is None:
            refused[handle] = f"receipt handle {handle!r} is not one this queue store gave out"
        else:
            parsed[handle] = (int(match.group(1)), match.group(2))
    return parsed, refused


def _stale(handle: str, current: str | None) -> str:
    if current is None:
        return f"receipt handle {handle!r} is not valid: the message is not received now"
    return f"receipt handle {handle!r} has expired: the message was received again since (use the newest handle)"


def _load(conn: sqlite3.Connection, name: str | None) -> tuple[dict[str, Any], float] | None:
    if name is None:
        return None
    row = conn.execute("SELECT attributes, created_at FROM queues WHERE name = ?", (name,)).fetchone()
    return None if row is None else (json.loads(row[0]), row[1])


def _require(conn: sqlite3.Connection, name: str) -> tuple[dict[str, Any], float]:
    found = _load(conn, name)
    if found is None:
        raise QueueDoesNotExist(f"queue {name!r} does not exist")
    return found


__all__ = [
    "MAX_RECEIVE",
    "MAX_VISIBILITY_S",
    "MAX_WAIT_S",
    "OutgoingMessage",
    "QueueStore",
    "ReceivedMessage",
    "arn",
    "check_queue_name",
]
