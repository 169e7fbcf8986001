"""``QueueStore``: the queues of one data directory (``queues.db``), its connections and
locks; creating, listing and deleting queues; sending; and what follows a receive
(deleting a message, changing its visibility). The receive transaction is in
``receiving.py``, the waiting of long polls in ``polling.py``; the model and the
durability of each operation are described in the package (``wasmhost.queues``)."""

from __future__ import annotations

import builtins
import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidConfig,
    InvalidRequest,
    MessageTooLarge,
    QueueAlreadyExists,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
)
from ..sqlitedb import connect, immediate
from .messages import OutgoingMessage, ReceivedMessage
from .polling import POLL_S, LongPollingMixin, Wakeups
from .receiving import parse_handles, stale, take
from .schema import SCHEMA, describe, load, require
from .validation import (
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_VISIBILITY_S,
    attributes_size,
    check_body,
    check_number,
    check_queue_name,
    describe_difference,
    message_attributes,
    queue_settings,
)


class QueueStore(LongPollingMixin):
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
        self._wakeups = Wakeups()
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
            if dead_letter_queue is not None and load(self._durable, dead_letter_queue) is None:
                raise InvalidConfig(f"queue {name}: dead_letter_queue {dead_letter_queue!r} does not exist")
            existing = load(self._durable, name)
            if existing is not None:
                if existing[0] != settings:
                    difference = describe_difference(existing[0], settings)
                    raise QueueAlreadyExists(f"queue {name!r} already exists with other attributes: {difference}")
                return describe(self._durable, name, existing), False
            now = time.time()
            self._durable.execute(
                "INSERT INTO queues (name, attributes, created_at) VALUES (?, ?, ?)",
                (name, json.dumps(settings, sort_keys=True), now),
            )
            return describe(self._durable, name, (settings, now)), True

    def exists(self, name: str) -> bool:
        with self._lock:
            return load(self._conn, name) is not None

    def attributes(self, name: str, *, now: float | None = None) -> dict[str, Any]:
        """The queue's settings, ``arn``, ``created_at`` and approximate counts of messages
        visible (``approximate_number_of_messages``), in flight (``..._not_visible``) and
        delayed (``..._delayed``). Raises ``QueueDoesNotExist``."""
        with self._lock:
            return describe(self._conn, name, require(self._conn, name), now)

    def list(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        """Every queue (whose name starts with ``prefix``) with its attributes, by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, attributes, created_at FROM queues WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
            return [describe(self._conn, name, (json.loads(raw), created)) for name, raw, created in rows]

    def delete_queue(self, name: str) -> None:
        """Delete the queue and its messages. Raises ``QueueDoesNotExist``."""
        with self._durable_lock, immediate(self._durable):
            if self._durable.execute("DELETE FROM queues WHERE name = ?", (name,)).rowcount == 0:
                raise QueueDoesNotExist(f"queue {name!r} does not exist")
            self._durable.execute("DELETE FROM messages WHERE queue = ?", (name,))

    def purge(self, name: str) -> int:
        """Delete every message of the queue (in flight too); returns how many."""
        with self._lock, immediate(self._conn):
            require(self._conn, name)
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
            found = load(self._durable, queue)
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

    # --- receiving (the waiting around it: polling.py) ---------------------------

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
                require(self._conn, queue)
                return [], next_visible
            with immediate(self._conn):
                received, moved_to = take(self._conn, queue, max_messages, visibility_timeout_s, now)
        if moved_to is not None:
            self._wakeups.notify(moved_to)
        return received, None

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
        parsed, refused = parse_handles(receipt_handles)
        with self._lock, immediate(self._conn):
            require(self._conn, queue)
            for handle, (seq, secret) in parsed.items():
                if self._conn.execute(
                    "DELETE FROM messages WHERE seq = ? AND queue = ? AND receipt = ?", (seq, queue, secret)
                ).rowcount:
                    continue
                current = self._conn.execute(
                    "SELECT receipt FROM messages WHERE seq = ? AND queue = ?", (seq, queue)
                ).fetchone()
                if current is not None:
                    refused[handle] = stale(handle, current[0])
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
        parsed, refused = parse_handles(receipt_handles)
        now = time.time() if now is None else now
        with self._lock, immediate(self._conn):
            require(self._conn, queue)
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
                    stale(handle, current[0])
                    if current is not None
                    else f"receipt handle {handle!r}: the message was deleted or has expired"
                )
        if visibility_timeout_s == 0 and len(refused) < len(receipt_handles):
            self._wakeups.notify(queue)
        return refused
