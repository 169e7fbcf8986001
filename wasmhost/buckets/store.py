"""``BucketStore``: buckets and objects in the SQLite index, written with their
notifications (``outbox.py``) and their bytes (``blobs.py``). See ``wasmhost.buckets``."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..errors import BucketAlreadyExists, BucketNotEmpty, InvalidRequest, NoSuchBucket, NoSuchKey
from ..sqlitedb import connect, immediate
from .blobs import Upload, _chunks
from .names import check_bucket_name, check_content_type, check_key, check_metadata
from .outbox import CREATED, REMOVED, NotificationOutbox, _Subscription
from .records import BucketInfo, ObjectInfo, ObjectPage, _object, new_request_id

if TYPE_CHECKING:
    from ..triggers.store import TriggerStore

#: Most keys one listing answers (S3's).
MAX_LIST_KEYS = 1000

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


class BucketStore(NotificationOutbox):
    """Buckets, objects and the notification outbox in ``root``. See the package doc.

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
        """Make ``upload`` the object ``bucket``/``key``, with its notifications (see the package doc)."""
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
