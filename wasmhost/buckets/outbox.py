"""The notification outbox: bucket triggers as writes match them, the rows a write adds
in its own transaction (one per matching trigger), and handing them out to the
trigger's runner (``wasmhost.triggers.bucket``) until it acknowledges each."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .blobs import BlobFiles
from .records import ObjectInfo

if TYPE_CHECKING:
    from ..triggers.store import TriggerStore

#: S3 event types a bucket trigger may name. Writes here produce ``ObjectCreated:Put``
#: and ``ObjectRemoved:Delete``; the other names are accepted so that S3 configurations carry over.
EVENT_TYPES = (
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
)
#: What a bucket trigger listens to unless it says otherwise.
DEFAULT_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
CREATED = "ObjectCreated:Put"
REMOVED = "ObjectRemoved:Delete"


def event_matches(patterns: Iterable[str], event_name: str) -> bool:
    """Whether an S3 event type list (``s3:ObjectCreated:*``...) covers ``event_name`` (``ObjectCreated:Put``)."""
    for pattern in patterns:
        name = pattern.removeprefix("s3:")
        if name == event_name or (name.endswith(":*") and event_name.startswith(name[:-1])):
            return True
    return False


@dataclass(frozen=True)
class Notification:
    """One outbox row: an event for one trigger, waiting to be handled."""

    seq: int
    trigger_id: str
    event_name: str
    bucket: str
    key: str
    size: int | None
    etag: str | None
    sequencer: str
    depth: int
    blob: str | None
    event_time: float
    principal: str
    source_ip: str
    request_id: str
    attempts: int
    due_at: float
    last_error: dict[str, Any] | None


@dataclass(frozen=True)
class _Subscription:
    """A bucket trigger, as writes match against it."""

    trigger_id: str
    bucket: str
    events: tuple[str, ...]
    prefix: str
    suffix: str
    include_body: bool
    max_body_bytes: int

    def matches(self, bucket: str, key: str, event_name: str) -> bool:
        return (
            bucket == self.bucket
            and key.startswith(self.prefix)
            and key.endswith(self.suffix)
            and event_matches(self.events, event_name)
        )


_NOTIFICATION_COLUMNS = (
    "seq, trigger_id, event_name, bucket, key, size, etag, sequencer, depth, blob, event_time, "
    "principal, source_ip, request_id, attempts, due_at, last_error"
)


class NotificationOutbox(BlobFiles):
    """The outbox of ``BucketStore`` (a mixin): matching writes to triggers, and the
    notifications a runner reads, reschedules and acknowledges."""

    triggers: TriggerStore
    _subscriptions: list[_Subscription]
    _generation: int | None
    _listeners: list[Callable[[], None]]

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # BucketStore._write

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (on the writing thread) after each write in this process that
        added notifications. Returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def pending(self, trigger_id: str, limit: int = 32, now: float | None = None) -> list[Notification]:
        """The trigger's notifications that are due, oldest write first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM outbox WHERE trigger_id = ? AND due_at <= ? ORDER BY seq LIMIT ?",
                (trigger_id, now, limit),
            ).fetchall()
        return [_notification(row) for row in rows]

    def outbox_size(self, trigger_id: str | None = None) -> int:
        """Notifications not handled yet (of one trigger, or all)."""
        with self._lock:
            if trigger_id is None:
                return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
            return int(
                self._conn.execute("SELECT count(*) FROM outbox WHERE trigger_id = ?", (trigger_id,)).fetchone()[0]
            )

    def read_blob(self, blob: str) -> bytes:
        """The bytes a notification kept (``Notification.blob``). Raises ``FileNotFoundError``."""
        return self._blob_path(blob).read_bytes()

    def reschedule(self, seq: int, due_at: float, attempts: int, last_error: dict[str, Any] | None) -> None:
        """Hand notification ``seq`` out again at ``due_at`` (epoch s)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET due_at = ?, attempts = ?, last_error = ? WHERE seq = ?",
                (due_at, attempts, orjson.dumps(last_error).decode() if last_error else None, seq),
            )

    def acknowledge(self, seq: int) -> None:
        """Notification ``seq`` is handled: forget it (and the bytes it kept)."""
        with self._write() as conn:
            row = conn.execute("SELECT blob, bucket, key FROM outbox WHERE seq = ?", (seq,)).fetchone()
            conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        if row is not None and row[0] is not None:
            self._release(*row)

    def drop_notifications(self, trigger_id: str) -> int:
        """Forget every notification of a trigger that was removed."""
        with self._write() as conn:
            rows = conn.execute(
                "SELECT blob, bucket, key FROM outbox WHERE trigger_id = ? AND blob IS NOT NULL", (trigger_id,)
            ).fetchall()
            dropped = conn.execute("DELETE FROM outbox WHERE trigger_id = ?", (trigger_id,)).rowcount
        for row in rows:
            self._release(*row)
        return int(dropped)

    def _matching(self, bucket: str, key: str, event_name: str) -> list[_Subscription]:
        """The enabled bucket triggers a write matches (the trigger list is re-read when it changed)."""
        generation = self.triggers.generation()
        if generation != self._generation:
            subscriptions = []
            for trigger in self.triggers.list(type_="bucket"):
                config = trigger.config
                if not config.get("enabled", True) or not isinstance(config.get("bucket"), str):
                    continue
                subscriptions.append(
                    _Subscription(
                        trigger.id,
                        config["bucket"],
                        tuple(config.get("events") or DEFAULT_EVENTS),
                        config.get("prefix") or "",
                        config.get("suffix") or "",
                        bool(config.get("include_body", False)),
                        int(config.get("max_body_bytes", 0)),
                    )
                )
            self._subscriptions, self._generation = subscriptions, generation
        return [sub for sub in self._subscriptions if sub.matches(bucket, key, event_name)]

    def _add_notification(
        self,
        conn: sqlite3.Connection,
        sub: _Subscription,
        event_name: str,
        info: ObjectInfo,
        blob: str | None,
        principal: str,
        source_ip: str,
        request_id: str,
        event_time: float,
    ) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'sequence'")
        sequence = conn.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
        created = event_name == CREATED
        conn.execute(
            "INSERT INTO outbox (trigger_id, event_name, bucket, key, size, etag, sequencer, depth, blob, event_time, "
            "principal, source_ip, request_id, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub.trigger_id,
                event_name,
                info.bucket,
                info.key,
                info.size if created else None,
                info.etag if created else None,
                f"{sequence[0]:016X}",
                info.depth,
                blob,
                event_time,
                principal,
                source_ip,
                request_id,
                event_time,
            ),
        )

    def _tell_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener whose loop is gone; its runner polls anyway
                pass


def _notification(row: tuple[Any, ...]) -> Notification:
    values = list(row)
    values[-1] = orjson.loads(values[-1]) if values[-1] else None
    return Notification(*values)
