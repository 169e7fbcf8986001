"""The durable queue of asynchronous invocations and its dead-letter queues, in SQLite (WAL).

One file (the host uses ``<data_dir>/events.db``) shared by every process on a
data directory. An event is a row of ``events`` from ``put`` until the worker
finishes it: ``complete`` deletes it, ``retry`` reschedules it, ``dead_letter``
moves it to ``dead_letters`` under a queue name, all in one transaction each.

Leases make a queue shared by several processes safe: ``claim`` (under
``BEGIN IMMEDIATE``) gives each due event to one owner until ``lease_until``;
an owner that dies (``kill -9``) stops renewing, its leases expire and another
worker — or the restarted one — claims the events again. So every accepted
event is run at least once or dead-lettered; a crash between a run and its
``complete`` runs it again.

Durability: ``put``, ``put_many``, ``aput`` and ``redrive`` commit with
``synchronous=FULL`` (the WAL is fsynced before they return), so an accepted
event survives power loss. The worker's own writes (claim, renew, complete,
retry, dead_letter) use ``synchronous=NORMAL``: losing one of them to power
loss only brings back the state before it (the event runs again), and the WAL
is append-only, so the next FULL commit makes them durable too.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import msgpack

from .sqlitedb import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a stale worker cannot touch a new event
    request_id  TEXT NOT NULL,
    function    TEXT NOT NULL,
    qualifier   TEXT,
    event       BLOB NOT NULL,             -- as the caller encoded it (msgpack)
    enqueued_at REAL NOT NULL,             -- Unix time; the event's age counts from here
    attempts    INTEGER NOT NULL DEFAULT 0,  -- failed runs so far
    hops        INTEGER NOT NULL DEFAULT 0,  -- destination deliveries that led to this event
    not_before  REAL NOT NULL,             -- Unix time before which it is not run (retry delay)
    owner       TEXT,                      -- the worker holding the lease
    lease_until REAL NOT NULL DEFAULT 0,   -- Unix time the lease ends (0: not leased)
    last_error  TEXT                       -- JSON of the last failed attempt
);
CREATE INDEX IF NOT EXISTS events_due ON events (not_before, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: users address entries by id
    queue       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    function    TEXT NOT NULL,
    qualifier   TEXT,
    event       BLOB NOT NULL,             -- kept for redrive
    record      BLOB NOT NULL,             -- the destination record, msgpack (events may hold bytes)
    attempts    INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    failed_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS once_keys (         -- put_once: keys of events enqueued exactly once
    key TEXT PRIMARY KEY,
    at  REAL NOT NULL
);
"""


@dataclass(frozen=True)
class NewEvent:
    """An event to enqueue. ``hops`` counts destination deliveries (loop guard)."""

    function: str
    qualifier: str | None
    event_bytes: bytes
    request_id: str
    hops: int = 0


@dataclass(frozen=True)
class QueuedEvent:
    """An event as claimed. Times are Unix seconds; ``attempts`` counts failed runs so far."""

    id: int
    request_id: str
    function: str
    qualifier: str | None
    event_bytes: bytes
    enqueued_at: float
    attempts: int
    hops: int
    not_before: float
    owner: str | None
    lease_until: float
    last_error: dict[str, Any] | None


_EVENT_FIELDS = tuple(field.name for field in fields(QueuedEvent))
_EVENT_COLUMNS = ", ".join(_EVENT_FIELDS).replace("event_bytes", "event")
_DEAD_FIELDS = ("id", "queue", "request_id", "function", "qualifier", "record", "attempts", "enqueued_at", "failed_at")
_DEAD_COLUMNS = ", ".join(_DEAD_FIELDS)


class EventQueue:
    """Queued events and dead letters in one SQLite file. Thread-safe; closes idempotently.

    Every method may raise ``sqlite3.OperationalError`` when the file stays
    locked for longer than ``busy_timeout_s`` or the disk is full.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        # Two connections: puts fsync (FULL), the worker's bookkeeping does not (NORMAL).
        self._durable = connect(path, busy_timeout_s, "FULL")
        self._durable.executescript(SCHEMA)
        self._conn = connect(path, busy_timeout_s, "NORMAL")
        self._durable_lock = threading.Lock()
        self._lock = threading.Lock()
        # aput's group commit: callers waiting for the writer thread's next transaction.
        self._pending: list[tuple[NewEvent, asyncio.AbstractEventLoop, asyncio.Future[int]]] = []
        self._pending_lock = threading.Lock()
        self._flushing = False
        self._writer: ThreadPoolExecutor | None = None
        self._closed = False

    def close(self) -> None:
        with self._pending_lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        with self._durable_lock, self._lock:
            self._durable.close()
            self._conn.close()

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- accepting events ------------------------------------------------

    def put(
        self, function: str, qualifier: str | None, event_bytes: bytes, request_id: str, *, now: float | None = None
    ) -> int:
        """Enqueue one event, due at once; returns its id once it is on disk (fsynced)."""
        return self.put_many([NewEvent(function, qualifier, event_bytes, request_id)], now=now)[0]

    def put_many(self, events: Iterable[NewEvent], *, now: float | None = None) -> list[int]:
        """Enqueue events in one fsynced transaction; returns their ids in order."""
        now = time.time() if now is None else now
        with self._durable_lock, immediate(self._durable):
            return [_insert(self._durable, event, now) for event in events]

    async def aput(self, function: str, qualifier: str | None, event_bytes: bytes, request_id: str) -> int:
        """``put`` without blocking the event loop. Concurrent callers share one
        transaction (group commit): one fsync for all events waiting at that moment."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._pending_lock:
            if self._closed:
                raise RuntimeError("event queue is closed")
            self._pending.append((NewEvent(function, qualifier, event_bytes, request_id), loop, future))
            start = not self._flushing
            self._flushing = True
            if start and self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="wasmhost-events")
        if start:
            assert self._writer is not None
            self._writer.submit(self._flush_pending)
        return await future

    def _flush_pending(self) -> None:
        while True:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._flushing = False
                    return
            try:
                ids = self.put_many(event for event, _, _ in batch)
            except Exception as exc:
                for _, loop, future in batch:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                for (_, loop, future), event_id in zip(batch, ids, strict=True):
                    loop.call_soon_threadsafe(_settle, future, event_id, None)

    # --- the worker's side -----------------------------------------------

    def claim(self, owner: str, lease_s: float, limit: int, *, now: float | None = None) -> list[QueuedEvent]:
        """Lease up to ``limit`` due events to ``owner`` for ``lease_s`` seconds, oldest first.

        Due: ``not_before <= now`` and not leased, or leased with the lease expired
        (its owner died). No two owners hold the same event at once.
        """
        now = time.time() if now is None else now
        with self._lock:
            # Read first, so that idle polls never take the write lock.
            due = "not_before <= ? AND lease_until <= ?"
            if self._conn.execute(f"SELECT 1 FROM events WHERE {due} LIMIT 1", (now, now)).fetchone() is None:
                return []
            with immediate(self._conn):
                rows = self._conn.execute(
                    f"""UPDATE events SET owner = ?, lease_until = ?
                        WHERE id IN (SELECT id FROM events WHERE {due} ORDER BY not_before, id LIMIT ?)
                        RETURNING {_EVENT_COLUMNS}""",
                    (owner, now + lease_s, now, now, limit),
                ).fetchall()
        return sorted((_event(row) for row in rows), key=lambda event: (event.not_before, event.id))

    def renew(self, ids: Sequence[int], owner: str, lease_s: float, *, now: float | None = None) -> int:
        """Extend ``owner``'s leases on ``ids``; returns how many it still held."""
        now = time.time() if now is None else now
        return self._write(
            "UPDATE events SET lease_until = ? WHERE owner = ? AND id IN (SELECT value FROM json_each(?))",
            (now + lease_s, owner, json.dumps(list(ids))),
        )

    def complete(self, event_id: int, *, owner: str | None = None, forward: Sequence[NewEvent] = ()) -> bool:
        """Delete a finished event and, in the same transaction, enqueue ``forward``
        (destination deliveries). With ``owner``, only if it still holds the lease;
        returns False when the event was not there (or not ``owner``'s)."""
        with self._lock, immediate(self._conn):
            cursor = self._conn.execute(
                "DELETE FROM events WHERE id = ? AND (? IS NULL OR owner = ?)", (event_id, owner, owner)
            )
            if cursor.rowcount == 0:
                return False
            now = time.time()
            for event in forward:
                _insert(self._conn, event, now)
            return True

    def retry(
        self,
        event_id: int,
        *,
        delay_s: float,
        count_attempt: bool,
        error: dict[str, Any] | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Release the lease and make the event due again in ``delay_s`` seconds.

        ``count_attempt`` adds one to ``attempts`` (a failed run; not a throttle);
        ``error`` replaces ``last_error`` (None keeps it).
        """
        now = time.time() if now is None else now
        return (
            self._write(
                """UPDATE events SET owner = NULL, lease_until = 0, not_before = ?, attempts = attempts + ?,
                     last_error = COALESCE(?, last_error)
                   WHERE id = ? AND (? IS NULL OR owner = ?)""",
                (now + delay_s, int(count_attempt), _json_or_none(error), event_id, owner, owner),
            )
            > 0
        )

    def dead_letter(
        self,
        event_id: int,
        queue: str,
        record: dict[str, Any],
        *,
        attempts: int | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Move an event to the dead-letter queue ``queue`` with its destination record.

        ``attempts`` is the number of runs to record (None: the event's failed runs so far).
        """
        now = time.time() if now is None else now
        with self._lock, immediate(self._conn):
            cursor = self._conn.execute(
                """INSERT INTO dead_letters
                     (queue, request_id, function, qualifier, event, record, attempts, enqueued_at, failed_at)
                   SELECT ?, request_id, function, qualifier, event, ?, COALESCE(?, attempts), enqueued_at, ?
                   FROM events WHERE id = ? AND (? IS NULL OR owner = ?)""",
                (queue, _pack(record), attempts, now, event_id, owner, owner),
            )
            if cursor.rowcount == 0:
                return False
            self._conn.execute("DELETE FROM events WHERE id = ?", (event_id,))
            return True

    def add_dead_letter(
        self,
        queue: str,
        *,
        request_id: str,
        function: str,
        qualifier: str | None,
        event_bytes: bytes,
        record: dict[str, Any],
        attempts: int,
        now: float | None = None,
    ) -> int:
        """Put a dead letter that never was a queued event (an event source mapping's
        message out of retries). A redrive queues ``event_bytes`` for ``function``."""
        now = time.time() if now is None else now
        with self._durable_lock, immediate(self._durable):
            cursor = self._durable.execute(
                """INSERT INTO dead_letters
                     (queue, request_id, function, qualifier, event, record, attempts, enqueued_at, failed_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (queue, request_id, function, qualifier, event_bytes, _pack(record), attempts, now, now),
            )
            return int(cursor.lastrowid or 0)

    def put_once(self, key: str, event: NewEvent, *, now: float | None = None) -> bool:
        """Enqueue ``event`` unless an event was already enqueued under ``key``; in one
        fsynced transaction, so that of several processes (or a retry after a crash)
        exactly one enqueues. True if this call enqueued it. Keys are kept."""
        now = time.time() if now is None else now
        with self._durable_lock, immediate(self._durable):
            cursor = self._durable.execute("INSERT OR IGNORE INTO once_keys (key, at) VALUES (?, ?)", (key, now))
            if cursor.rowcount == 0:
                return False
            _insert(self._durable, event, now)
            return True

    def forget_once_keys(self, prefix: str, before: float) -> int:
        """Drop ``put_once`` keys starting with ``prefix`` recorded before ``before``."""
        return self._write(
            "DELETE FROM once_keys WHERE key >= ? AND key < ? AND at < ?", (prefix, prefix + "\uffff", before)
        )

    def lease_owners(self) -> set[str]:
        """Owners holding a lease now (to find the ones that died)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT owner FROM events WHERE owner IS NOT NULL AND lease_until > ?", (time.time(),)
            ).fetchall()
        return {row[0] for row in rows}

    def release(self, owner: str) -> int:
        """End every lease of ``owner`` (known dead) at once; returns how many."""
        return self._write("UPDATE events SET owner = NULL, lease_until = 0 WHERE owner = ?", (owner,))

    def depth(self, *, now: float | None = None) -> dict[str, tuple[int, float]]:
        """Per function: events waiting or running (not dead-lettered), and the age of
        the oldest in seconds."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._conn.execute("SELECT function, COUNT(*), MIN(enqueued_at) FROM events GROUP BY function")
            return {function: (count, max(0.0, now - oldest)) for function, count, oldest in rows}

    # --- dead letters ----------------------------------------------------

    def dead_letters(self, queue: str, *, limit: int = 100, after_id: int | None = None) -> list[dict[str, Any]]:
        """Entries of ``queue`` by id, ``limit`` at a time after ``after_id`` (paging).

        Each is ``{"id", "queue", "request_id", "function", "qualifier", "record",
        "attempts", "enqueued_at", "failed_at"}``; the event itself is in
        ``record["requestPayload"]`` (decoded; the raw bytes stay for ``redrive``);
        ``attempts`` is the number of runs made.
        """
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE queue = ? AND id > ? ORDER BY id LIMIT ?",
                (queue, after_id or 0, limit),
            ).fetchall()
        return [_dead_letter(row) for row in rows]

    def get_dead_letter(self, queue: str, entry_id: int) -> dict[str, Any] | None:
        """One entry of ``queue`` (shaped as in ``dead_letters``), or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE queue = ? AND id = ?", (queue, entry_id)
            ).fetchone()
        return None if row is None else _dead_letter(row)

    def dead_letter_counts(self) -> dict[str, int]:
        """Entries per dead-letter queue."""
        with self._lock:
            return dict(self._conn.execute("SELECT queue, COUNT(*) FROM dead_letters GROUP BY queue").fetchall())

    def redrive(self, queue: str, ids: Sequence[int] | None = None, *, now: float | None = None) -> int:
        """Enqueue entries of ``queue`` (all, or ``ids``) again as new events — same
        request id, attempts and age reset — and delete them, in one fsynced transaction.
        Returns how many were re-driven."""
        now = time.time() if now is None else now
        where, params = _selection(queue, ids)
        with self._durable_lock, immediate(self._durable):
            self._durable.execute(
                f"""INSERT INTO events (request_id, function, qualifier, event, enqueued_at, not_before)
                    SELECT request_id, function, qualifier, event, ?, ? FROM dead_letters WHERE {where} ORDER BY id""",
                (now, now, *params),
            )
            return self._durable.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount

    def delete_dead_letters(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """Delete entries of ``queue`` (all, or ``ids``); returns how many."""
        where, params = _selection(queue, ids)
        return self._write(f"DELETE FROM dead_letters WHERE {where}", params)

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock, immediate(self._conn):
            return self._conn.execute(sql, params).rowcount


def _insert(conn: sqlite3.Connection, event: NewEvent, now: float) -> int:
    cursor = conn.execute(
        """INSERT INTO events (request_id, function, qualifier, event, enqueued_at, hops, not_before)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (event.request_id, event.function, event.qualifier, event.event_bytes, now, event.hops, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _selection(queue: str, ids: Sequence[int] | None) -> tuple[str, tuple[Any, ...]]:
    if ids is None:
        return "queue = ?", (queue,)
    return "queue = ? AND id IN (SELECT value FROM json_each(?))", (queue, json.dumps([int(i) for i in ids]))


def _event(row: tuple[Any, ...]) -> QueuedEvent:
    values = dict(zip(_EVENT_FIELDS, row, strict=True))
    if values["last_error"] is not None:
        values["last_error"] = json.loads(values["last_error"])
    return QueuedEvent(**values)


def _dead_letter(row: tuple[Any, ...]) -> dict[str, Any]:
    entry = dict(zip(_DEAD_FIELDS, row, strict=True))
    entry["record"] = msgpack.unpackb(entry["record"], raw=False, strict_map_key=False)
    return entry


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=repr)


def _settle(future: asyncio.Future[int], value: int | None, error: BaseException | None) -> None:
    if future.done():  # the caller went away (cancelled); the event is stored all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert value is not None
        future.set_result(value)
