"""The files holding objects' bytes: an upload being written to ``tmp/``, the blob it
becomes under ``objects/`` (never modified), and the release and sweep of blobs that
nothing refers to any more."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from ..errors import EntityTooLarge

_CHUNK = 1024 * 1024


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


class BlobFiles:
    """The blobs of ``BucketStore`` (a mixin): where they are, and deleting the unused ones."""

    objects_dir: Path
    tmp_dir: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

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


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
