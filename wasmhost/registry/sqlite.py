"""The function registry in SQLite (WAL), shared by every process on a data directory.

Reads are served from an in-process cache that is dropped whenever any process
has committed a change (see :mod:`.generation`), so a function deployed through
one ``--workers`` process is visible to the others on their next call.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FunctionConfig
from ..errors import FunctionNotFound
from .generation import Generation

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name        TEXT PRIMARY KEY,
    digest      TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'module',  -- 'module' or 'component'

    config      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""


@dataclass(frozen=True)
class FunctionRecord:
    """A deployed function: its code (by digest) and how it runs."""

    name: str
    digest: str
    kind: str
    config: FunctionConfig
    size_bytes: int
    revision: int
    created_at: float
    updated_at: float
    version: str = field(default="$LATEST")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "revision": self.revision,
            "config": self.config.to_dict(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class SqliteRegistry:
    """Function records in ``<data_dir>/wasmhost.db``. Thread-safe; closes idempotently."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.generation = Generation(path.with_suffix(".gen"))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, FunctionRecord] = {}
        self._seen_generation = -1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
                self.generation.close()

    def get(self, name: str) -> FunctionRecord:
        """The record of ``name``. Raises ``FunctionNotFound``."""
        generation = self.generation.value()
        if generation == self._seen_generation:
            record = self._cache.get(name)
            if record is not None:
                return record
        with self._lock:
            if generation != self._seen_generation:
                self._cache.clear()
                self._seen_generation = generation
            record = self._cache.get(name)
            if record is None:
                row = self._conn.execute("SELECT * FROM functions WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise FunctionNotFound(f"function {name!r} is not deployed")
                record = self._cache[name] = _record(row)
            return record

    def _changed(self) -> None:
        """After a commit (lock held): tell every process, ourselves included."""
        self.generation.bump()

    def list(self) -> list[FunctionRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM functions ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    def put(self, name: str, digest: str, kind: str, config: FunctionConfig, size_bytes: int) -> FunctionRecord:
        """Create or replace ``name`` (a deploy): bumps its revision."""
        now = time.time()
        with self._lock:
            self._conn.execute(
                """INSERT INTO functions (name, digest, kind, config, size_bytes, revision, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, 1, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET digest = excluded.digest, kind = excluded.kind,
                     config = excluded.config,
                     size_bytes = excluded.size_bytes, revision = revision + 1, updated_at = excluded.updated_at""",
                (name, digest, kind, json.dumps(config.to_dict()), size_bytes, now, now),
            )
            self._changed()
        return self.get(name)

    def update_config(self, name: str, config: FunctionConfig) -> FunctionRecord:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE functions SET config = ?, revision = revision + 1, updated_at = ? WHERE name = ?",
                (json.dumps(config.to_dict()), time.time(), name),
            )
            self._changed()
        if cursor.rowcount == 0:
            raise FunctionNotFound(f"function {name!r} is not deployed")
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove ``name``. Raises ``FunctionNotFound``. Blobs stay (other functions may share them)."""
        with self._lock:
            cursor = self._conn.execute("DELETE FROM functions WHERE name = ?", (name,))
            self._changed()
        if cursor.rowcount == 0:
            raise FunctionNotFound(f"function {name!r} is not deployed")


def _record(row: tuple[Any, ...]) -> FunctionRecord:
    name, digest, kind, config, size_bytes, revision, created_at, updated_at = row
    return FunctionRecord(
        name=name,
        digest=digest,
        kind=kind,
        config=FunctionConfig(**json.loads(config)),
        size_bytes=size_bytes,
        revision=revision,
        created_at=created_at,
        updated_at=updated_at,
    )
