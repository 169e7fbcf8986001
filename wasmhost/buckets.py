"""The embedded bucket store: S3-like buckets of objects in the data directory.

Layout of ``<data_dir>/buckets``:

- ``index.db``: SQLite (WAL, ``synchronous=FULL``) with the buckets, one row per
  object (size, MD5 ETag, content type, last modified, user metadata, the file
  holding its bytes) and the notification **outbox**;
- ``objects/<ab>/<32 hex>``: the bytes of one write of one object (a "blob"),
  never modified once written;
- ``tmp/``: uploads being written.

A write streams the body into ``tmp/`` (the MD5 computed on the way), fsyncs it,
renames it under ``objects/`` and fsyncs the directory, then commits, in one
transaction, the object's row **and one outbox row per bucket trigger that
matches** (bucket, event, prefix, suffix). So a notification exists exactly when
the write does, whatever crashes when: the trigger's runner drains the outbox
(``wasmhost.triggers.bucket``) and deletes a row only once it is handled.

A blob is deleted when nothing refers to it any more: neither its object (it was
overwritten or deleted) nor an outbox row that will hand its bytes to a function
(``include_body``). Every process on the data directory shares the index; a
process wakes its own runners at once after a write (``subscribe``), other
processes' runners notice within their poll. Thread-safe; ``close`` is idempotent.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from .errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    InvalidBucketName,
    InvalidObjectKey,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
)
from .sqlitedb import connect, immediate

if TYPE_CHECKING:
    from .triggers.store import TriggerStore

#: Largest object key, in bytes of UTF-8 (S3's).
MAX_KEY_BYTES = 1024
#: Largest user metadata of an object (names and values together), in bytes (S3's 2 KB).
MAX_METADATA_BYTES = 2048
#: Most keys one listing answers (S3's).
MAX_LIST_KEYS = 1000
DEFAULT_CONTENT_TYPE = "application/octet-stream"
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

_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_METADATA_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_METADATA_VALUE = re.compile(r"[\x20-\x7e\t]*")
_CHUNK = 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    size          INTEGER NOT NULL,
    etag          TEXT NOT NULL,            -- MD5 of the bytes, hex (S3's ETag of a single PUT)
    content_type  TEXT NOT NULL,
    last_modified REAL NOT NULL,
    metadata      TEXT NOT NULL,            -- JSON: user metadata (x-amz-meta-*)
    blob          TEXT NOT NULL,            -- file under objects/
    depth         INTEGER NOT NULL,         -- writes by functions in a row that led here (loop guard)
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_id TEXT NOT NULL,
    event_name TEXT NOT NULL,               -- ObjectCreated:Put | ObjectRemoved:Delete
    bucket     TEXT NOT NULL,
    key        TEXT NOT NULL,
    size       INTEGER,
    etag       TEXT,
    sequencer  TEXT NOT NULL,
    depth      INTEGER NOT NULL,
    blob       TEXT,                        -- the bytes, kept for include_body
    event_time REAL NOT NULL,
    principal  TEXT NOT NULL,
    source_ip  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,  -- failed runs so far
    due_at     REAL NOT NULL,
    last_error TEXT                         -- JSON
);
CREATE INDEX IF NOT EXISTS outbox_trigger ON outbox (trigger_id, seq);
CREATE INDEX IF NOT EXISTS outbox_blob ON outbox (blob) WHERE blob IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('sequence', 0);
"""


# --- names ---------------------------------------------------------------------


def check_bucket_name(name: Any) -> str:
    """``name`` if it follows S3's bucket naming rules, else ``InvalidBucketName`` saying which."""
    if not isinstance(name, str):
        raise InvalidBucketName(f"a bucket name is a string, got {name!r}")
    problem = None
    if not 3 <= len(name) <= 63:
        problem = f"is {len(name)} characters long; bucket names have 3 to 63"
    elif not _BUCKET_CHARS.fullmatch(name):
        problem = "may hold only lower-case letters, digits, dots and hyphens"
    elif not (name[0].isalnum() and name[-1].isalnum()):
        problem = "must begin and end with a letter or a digit"
    elif ".." in name:
        problem = "must not hold two dots in a row"
    elif _is_ip_address(name):
        problem = "must not look like an IP address"
    elif name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        problem = "must not begin with xn-- or sthree-, nor end with -s3alias or --ol-s3"
    if problem:
        raise InvalidBucketName(f"bucket name {name!r} {problem}")
    return name


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_key(key: Any) -> str:
    """``key`` if it is a valid object key (1 to 1024 bytes of UTF-8, no NUL), else ``InvalidObjectKey``."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey(f"an object key is a non-empty string, got {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidObjectKey(f"object key {key[:80]!r} is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"object key is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise InvalidObjectKey(f"object key {key[:80]!r} holds a NUL character")
    return key


def check_metadata(metadata: Any) -> dict[str, str]:
    """User metadata as stored: names lower-cased (HTTP header tokens), values printable US-ASCII."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"object metadata is an object of names to strings, got {metadata!r}")
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise InvalidRequest(f"metadata name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or not _METADATA_VALUE.fullmatch(value):
            raise InvalidRequest(f"metadata {name!r} must be a string of printable US-ASCII (as S3's), got {value!r}")
        checked[name.lower()] = value
    size = sum(len(k.encode()) + len(v.encode()) for k, v in checked.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(f"object metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}")
    return checked


def check_content_type(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_CONTENT_TYPE
    if not isinstance(value, str) or len(value) > 256 or not _METADATA_VALUE.fullmatch(value):
        raise InvalidRequest(f"content type must be printable US-ASCII, at most 256 characters, got {value!r}")
    return value


def event_matches(patterns: Iterable[str], event_name: str) -> bool:
    """Whether an S3 event type list (``s3:ObjectCreated:*``...) covers ``event_name`` (``ObjectCreated:Put``)."""
    for pattern in patterns:
        name = pattern.removeprefix("s3:")
        if name == event_name or (name.endswith(":*") and event_name.startswith(name[:-1])):
            return True
    return False


def iso_time(epoch_s: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds), as S3 writes times."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what the store returns -------------------------------------------------------


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": iso_time(self.created_at)}


@dataclass(frozen=True)
class ObjectInfo:
    """One object as indexed. ``etag`` is the MD5 of its bytes (hex, unquoted); times are epoch seconds."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)
    depth: int = 0

    def to_dict(self, with_metadata: bool = True) -> dict[str, Any]:
        value: dict[str, Any] = {
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "content_type": self.content_type,
            "last_modified": iso_time(self.last_modified),
        }
        if with_metadata:
            value["metadata"] = self.metadata
        return value


@dataclass(frozen=True)
class ObjectPage:
    """One page of a listing; ``next_start_after`` continues it when ``is_truncated``."""

    objects: list[ObjectInfo]
    is_truncated: bool
    next_start_after: str | None


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


class Upload:
    """An object's bytes being written to a temporary file, with their MD5 and size.

    ``write`` raises ``EntityTooLarge`` past ``limit`` bytes. Use as a context
    manager: the temporary file is removed unless ``BucketStore.commit`` took it.
    """

    def __init__(self, directory: Path, limit: int) -> None:
        self.path = directory / f"{uuid.uuid4().hex}.part"
        self.limit = limit
        self.size = 0
        self._md5 = hashlib.md5()
        self._file: IO[bytes] | None = open(self.path, "xb")  # noqa: SIM115 - closed by finish/abort

    @property
    def etag(self) -> str:
        return self._md5.hexdigest()

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "the upload is finished"
        self.size += len(chunk)
        if self.size > self.limit:
            raise EntityTooLarge(f"the object is over the limit of {self.limit} bytes (max_object_bytes)")
        self._md5.update(chunk)
        self._file.write(chunk)

    def finish(self, destination: Path) -> None:
        """fsync the bytes and move them to ``destination`` (fsynced directory too)."""
        assert self._file is not None, "the upload is finished"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        destination.parent.mkdir(exist_ok=True)
        os.replace(self.path, destination)
        _fsync_directory(destination.parent)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class BucketStore:
    """Buckets, objects and the notification outbox in ``root``. See the module doc.

    ``triggers`` is where bucket triggers are read from (matched on each write);
    ``max_object_bytes`` is the largest object accepted.
    """

    def __init__(
        self, root: Path, triggers: TriggerStore, *, max_object_bytes: int = 5 << 30, busy_timeout_s: float = 30.0
    ) -> None:
        self.root = root
        self.triggers = triggers
        self.max_object_bytes = max_object_bytes
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        for directory in (root, self.objects_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._conn = connect(root / "index.db", busy_timeout_s, "FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._closed = False
        self._subscriptions: list[_Subscription] = []
        self._generation: int | None = None
        self._listeners: list[Callable[[], None]] = []
        self.sweep()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> BucketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate(self._conn) as conn:
            yield conn

    # --- buckets ---------------------------------------------------------------------

    def create_bucket(self, name: str) -> BucketInfo:
        """Raises ``InvalidBucketName`` or ``BucketAlreadyExists``."""
        check_bucket_name(name)
        info = BucketInfo(name, time.time())
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO buckets (name, created_at) VALUES (?, ?)", (name, info.created_at)
            ).rowcount
        if not inserted:
            raise BucketAlreadyExists(f"bucket {name!r} exists already")
        return info

    def list_buckets(self) -> list[BucketInfo]:
        with self._lock:
            rows = self._conn.execute("SELECT name, created_at FROM buckets ORDER BY name").fetchall()
        return [BucketInfo(*row) for row in rows]

    def head_bucket(self, name: str) -> BucketInfo:
        """Raises ``InvalidBucketName`` or ``NoSuchBucket``."""
        check_bucket_name(name)
        with self._lock:
            row = self._conn.execute("SELECT name, created_at FROM buckets WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NoSuchBucket(f"no bucket {name!r}")
        return BucketInfo(*row)

    def delete_bucket(self, name: str) -> None:
        """Raises ``NoSuchBucket``, or ``BucketNotEmpty`` while it holds objects."""
        check_bucket_name(name)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is None:
                raise NoSuchBucket(f"no bucket {name!r}")
            if conn.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone() is not None:
                raise BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")
            conn.execute("DELETE FROM buckets WHERE name = ?", (name,))

    # --- objects ---------------------------------------------------------------------

    def upload(self) -> Upload:
        """A temporary file for an object's bytes; give it to ``commit`` once written."""
        return Upload(self.tmp_dir, self.max_object_bytes)

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes | IO[bytes] | Iterable[bytes],
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        principal: str = "wasmhost",
        source_ip: str = "127.0.0.1",
        depth: int = 0,
    ) -> ObjectInfo:
        """Write an object (bytes, a binary file, or chunks), replacing one under ``key``.

        Raises ``InvalidBucketName``, ``InvalidObjectKey``, ``InvalidRequest`` (metadata,
        content type), ``NoSuchBucket`` or ``EntityTooLarge``. ``principal`` and
        ``source_ip`` are what notifications report as ``userIdentity`` and
        ``requestParameters``; ``depth`` counts writes by functions in a row.
        """
        check_key(key)
        self.head_bucket(bucket)
        with self.upload() as upload:
            for chunk in _chunks(body):
                upload.write(chunk)
            return self.commit(
                upload,
                bucket,
                key,
                content_type=content_type,
                metadata=metadata,
                principal=principal,
                source_ip=source_ip,
                depth=depth,
            )

    def commit(
        self,
        upload: Upload,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        principal: str = "wasmhost",
        source_ip: str = "127.0.0.1",
        depth: int = 0,
        request_id: str | None = None,
    ) -> ObjectInfo:
        """Make ``upload`` the object ``bucket``/``key``, with its notifications (see the module doc)."""
        check_bucket_name(bucket)
        check_key(key)
        info = ObjectInfo(
            bucket,
            key,
            upload.size,
            upload.etag,
            check_content_type(content_type),
            time.time(),
            check_metadata(metadata),
            depth,
        )
        subscriptions = self._matching(bucket, key, CREATED)
        request_id = request_id or new_request_id()
        blob = uuid.uuid4().hex
        path = self._blob_path(blob)
        upload.finish(path)
        try:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
                    raise NoSuchBucket(f"no bucket {bucket!r}")
                old = conn.execute("SELECT blob FROM objects WHERE bucket = ? AND key = ?", (bucket, key)).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO objects (bucket, key, size, etag, content_type, last_modified, metadata, "
                    "blob, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        bucket,
                        key,
                        info.size,
                        info.etag,
                        info.content_type,
                        info.last_modified,
                        orjson.dumps(info.metadata).decode(),
                        blob,
                        depth,
                    ),
                )
                for sub in subscriptions:
                    pin = blob if sub.include_body and info.size <= sub.max_body_bytes else None
                    self._add_notification(
                        conn, sub, CREATED, info, pin, principal, source_ip, request_id, info.last_modified
                    )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if old is not None:
            self._release(old[0], bucket, key)
        if subscriptions:
            self._tell_listeners()
        return info

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        """Raises ``NoSuchBucket`` or ``NoSuchKey``."""
        return self._row(bucket, key)[0]

    def open_object(self, bucket: str, key: str) -> tuple[ObjectInfo, IO[bytes]]:
        """The object and its bytes, open for reading (the caller closes the file). An
        overwrite after this call does not change what the file holds."""
        for _ in range(5):
            info, blob = self._row(bucket, key)
            try:
                return info, open(self._blob_path(blob), "rb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                continue  # overwritten between the two reads: read the new row
        raise NoSuchKey(f"no object {key!r} in bucket {bucket!r} (it changed too often while being read)")

    def get_object(self, bucket: str, key: str) -> tuple[ObjectInfo, bytes]:
        info, handle = self.open_object(bucket, key)
        with handle:
            return info, handle.read()

    def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        principal: str = "wasmhost",
        source_ip: str = "127.0.0.1",
        depth: int = 0,
        request_id: str | None = None,
    ) -> bool:
        """Delete an object; False if there was none (as S3, not an error). Raises ``NoSuchBucket``."""
        check_bucket_name(bucket)
        check_key(key)
        subscriptions = self._matching(bucket, key, REMOVED)
        now = time.time()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
                raise NoSuchBucket(f"no bucket {bucket!r}")
            old = conn.execute("SELECT blob FROM objects WHERE bucket = ? AND key = ?", (bucket, key)).fetchone()
            if old is None:
                return False
            conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
            info = ObjectInfo(bucket, key, 0, "", "", now, {}, depth)
            request_id = request_id or new_request_id()
            for sub in subscriptions:
                self._add_notification(conn, sub, REMOVED, info, None, principal, source_ip, request_id, now)
        self._release(old[0], bucket, key)
        if subscriptions:
            self._tell_listeners()
        return True

    def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", max_keys: int = MAX_LIST_KEYS
    ) -> ObjectPage:
        """Objects of ``bucket`` whose key starts with ``prefix``, after ``start_after``, in
        key order (UTF-8 bytes, as S3), at most ``max_keys`` (1-1000)."""
        self.head_bucket(bucket)
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or not 1 <= max_keys <= MAX_LIST_KEYS:
            raise InvalidRequest(f"max_keys must be an integer from 1 to {MAX_LIST_KEYS}, got {max_keys!r}")
        for name, value in (("prefix", prefix), ("start_after", start_after)):
            if not isinstance(value, str):
                raise InvalidRequest(f"{name} must be a string, got {value!r}")
        sql = (
            "SELECT bucket, key, size, etag, content_type, last_modified, metadata, depth FROM objects "
            "WHERE bucket = ? AND key > ? AND key >= ?"
        )
        params: list[Any] = [bucket, start_after, prefix]
        upper = _prefix_end(prefix)
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY key LIMIT ?", [*params, max_keys + 1]).fetchall()
        objects = [_object(row) for row in rows[:max_keys]]
        truncated = len(rows) > max_keys
        return ObjectPage(objects, truncated, objects[-1].key if truncated else None)

    def _row(self, bucket: str, key: str) -> tuple[ObjectInfo, str]:
        check_bucket_name(bucket)
        check_key(key)
        with self._lock:
            row = self._conn.execute(
                "SELECT bucket, key, size, etag, content_type, last_modified, metadata, depth, blob FROM objects "
                "WHERE bucket = ? AND key = ?",
                (bucket, key),
            ).fetchone()
        if row is None:
            self.head_bucket(bucket)
            raise NoSuchKey(f"no object {key!r} in bucket {bucket!r}")
        return _object(row[:8]), row[8]

    # --- notifications ----------------------------------------------------------------

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

    # --- blobs -------------------------------------------------------------------------

    def _blob_path(self, blob: str) -> Path:
        return self.objects_dir / blob[:2] / blob

    def _release(self, blob: str, bucket: str, key: str) -> None:
        """Delete ``blob`` unless its object or a notification still refers to it. Nothing can
        refer to it anew once its object moved on, so the check and the unlink need no lock."""
        with self._lock:
            used = self._conn.execute(
                "SELECT 1 FROM objects WHERE bucket = ? AND key = ? AND blob = ? "
                "UNION ALL SELECT 1 FROM outbox WHERE blob = ? LIMIT 1",
                (bucket, key, blob, blob),
            ).fetchone()
        if used is None:
            self._blob_path(blob).unlink(missing_ok=True)

    def sweep(self, min_age_s: float = 3600.0, *, blobs: bool = False) -> int:
        """Remove what a crash can leave behind, older than ``min_age_s``: uploads in ``tmp/``
        and, with ``blobs=True`` (a walk of every file), object files that no row refers to
        (renamed into place but never committed). Returns how many files were removed."""
        cutoff = time.time() - min_age_s
        candidates = list(self.tmp_dir.glob("*.part"))
        if blobs:
            with self._lock:
                used = {row[0] for row in self._conn.execute("SELECT blob FROM objects")}
                used.update(row[0] for row in self._conn.execute("SELECT blob FROM outbox WHERE blob IS NOT NULL"))
            candidates += [path for path in self.objects_dir.glob("*/*") if path.name not in used]
        removed = 0
        for path in candidates:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _chunks(body: bytes | IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        yield bytes(body)
    elif hasattr(body, "read"):
        while chunk := body.read(_CHUNK):
            yield chunk
    else:
        yield from body


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (None: no bound).
    Code point order is UTF-8 byte order, the order SQLite compares text in."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1 if last + 1 != 0xD800 else 0xE000
            return "".join(chars) + chr(following)
    return None


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def new_request_id() -> str:
    """An S3-like request id (16 upper-case hex digits), reported as ``x-amz-request-id``."""
    return secrets.token_hex(8).upper()


def _object(row: tuple[Any, ...]) -> ObjectInfo:
    bucket, key, size, etag, content_type, last_modified, metadata, depth = row
    return ObjectInfo(bucket, key, size, etag, content_type, last_modified, orjson.loads(metadata), depth)


def _notification(row: tuple[Any, ...]) -> Notification:
    values = list(row)
    values[-1] = orjson.loads(values[-1]) if values[-1] else None
    return Notification(*values)


__all__ = [
    "check_content_type",
    "check_metadata",
    "CREATED",
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "REMOVED",
    "BucketInfo",
    "BucketStore",
    "Notification",
    "ObjectInfo",
    "ObjectPage",
    "Upload",
    "check_bucket_name",
    "check_key",
    "event_matches",
    "iso_time",
    "new_request_id",
]
