"""Triggers on disk: ``<data_dir>/triggers.db`` (SQLite, WAL), shared by every process.

Three tables: the triggers themselves, a small key/value ``state`` per trigger
(a schedule's last tick, a change stream's position, a runner's status), and a
change counter that runners poll to notice triggers added or removed by another
process. Thread-safe.
"""

from __future__ import annotations

import builtins
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..secretbox import PREFIX as SEALED
from ..secretbox import SecretBox
from ..sqlitedb import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS triggers (
    id         TEXT PRIMARY KEY,
    function   TEXT NOT NULL,
    type       TEXT NOT NULL,
    config     TEXT NOT NULL,            -- JSON: the type's fields, validated and completed
    origin     TEXT NOT NULL DEFAULT 'api',  -- 'api' or 'toml' (managed by deploys of a project)
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS triggers_function ON triggers (function);
CREATE TABLE IF NOT EXISTS state (
    trigger_id TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,            -- JSON
    updated_at REAL NOT NULL,
    PRIMARY KEY (trigger_id, key)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
"""


@dataclass(frozen=True)
class Trigger:
    """One trigger: an event source attached to ``function`` (optionally a qualifier in ``config``)."""

    id: str
    function: str
    type: str
    config: dict[str, Any]
    created_at: float
    origin: str = "api"
    #: Runtime status (``running_pid``, ``last_error``, counters...), filled by ``TriggerStore`` reads.
    status: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def qualifier(self) -> str | None:
        value = self.config.get("qualifier")
        return value if isinstance(value, str) and value else None

    def to_dict(self) -> dict[str, Any]:
        """The API shape: the type's fields flat beside ``id``, ``function``, ``type``.
        A password in a URL field (``amqp://user:secret@host``) is shown as ``****``."""
        return {
            "id": self.id,
            "function": self.function,
            "type": self.type,
            **{key: mask_password(value) for key, value in self.config.items()},
            "origin": self.origin,
            "created_at": self.created_at,
            "status": self.status,
        }


_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:?#]*:)([^/@?#]+)(@)", re.IGNORECASE)
_URL_TOKEN = re.compile(r"^(nats://)([^/@:?#]+)(@)", re.IGNORECASE)  # NATS: a lone user-info is a token
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_password(value: Any) -> Any:
    """``value`` with the password of a URL (``scheme://user:password@host``) or of a
    key/value connection string (``password=...``) replaced by ``****``."""
    if isinstance(value, str):
        value = _URL_TOKEN.sub(r"\1****\3", _URL_PASSWORD.sub(r"\1****\3", value))
        return _KV_PASSWORD.sub(r"\1****", value)
    return value


def new_trigger_id() -> str:
    return "trg-" + secrets.token_hex(6)


class TriggerStore:
    """The trigger table and per-trigger state. Thread-safe; ``close`` is idempotent."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0, secrets: SecretBox | None = None) -> None:
        self.path = path
        #: Encrypts field values that carry a password (a broker URL, a DSN) at rest; None: stored as given.
        self.secrets = secrets
        self._conn = connect(path, busy_timeout_s, "FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")

    # --- triggers ------------------------------------------------------------

    def add(self, function: str, type_: str, config: dict[str, Any], origin: str = "api") -> Trigger:
        trigger = Trigger(new_trigger_id(), function, type_, config, time.time(), origin)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO triggers (id, function, type, config, origin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (trigger.id, function, type_, orjson.dumps(self._sealed(config)).decode(), origin, trigger.created_at),
            )
            self._bump(conn)
        return trigger

    def list(self, function: str | None = None, type_: str | None = None) -> list[Trigger]:
        sql = "SELECT id, function, type, config, created_at, origin FROM triggers"
        where, params = [], []
        if function is not None:
            where.append("function = ?")
            params.append(function)
        if type_ is not None:
            where.append("type = ?")
            params.append(type_)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created_at, id", params).fetchall()
            states = self._states([row[0] for row in rows])
        return [self._trigger(row, states.get(row[0], {})) for row in rows]

    def get(self, trigger_id: str) -> Trigger | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, function, type, config, created_at, origin FROM triggers WHERE id = ?", (trigger_id,)
            ).fetchone()
            states = self._states([trigger_id]) if row else {}
        return self._trigger(row, states.get(trigger_id, {})) if row else None

    def delete(self, trigger_id: str) -> bool:
        with self._write() as conn:
            gone = conn.execute("DELETE FROM triggers WHERE id = ?", (trigger_id,)).rowcount
            conn.execute("DELETE FROM state WHERE trigger_id = ?", (trigger_id,))
            if gone:
                self._bump(conn)
        return bool(gone)

    def delete_function(self, function: str) -> int:
        """Remove every trigger of ``function`` (it was deleted)."""
        with self._write() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM triggers WHERE function = ?", (function,))]
            for trigger_id in ids:
                conn.execute("DELETE FROM state WHERE trigger_id = ?", (trigger_id,))
            conn.execute("DELETE FROM triggers WHERE function = ?", (function,))
            if ids:
                self._bump(conn)
        return len(ids)

    def generation(self) -> int:
        """A counter bumped by every add or delete, in any process."""
        with self._lock:
            return int(self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    # --- state -----------------------------------------------------------------

    def get_state(self, trigger_id: str, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM state WHERE trigger_id = ? AND key = ?", (trigger_id, key)
            ).fetchone()
        return orjson.loads(row[0]) if row else default

    def set_state(self, trigger_id: str, key: str, value: Any) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO state (trigger_id, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (trigger_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (trigger_id, key, orjson.dumps(value).decode(), time.time()),
            )

    def compare_and_set_state(self, trigger_id: str, key: str, expected: Any, value: Any) -> bool:
        """Set ``key`` to ``value`` only if it is ``expected`` now (None: absent). True if set.

        The building block of exactly-once work across processes: of several
        processes racing to move a schedule from tick T to T+1, one wins.
        """
        with self._write() as conn:
            row = conn.execute("SELECT value FROM state WHERE trigger_id = ? AND key = ?", (trigger_id, key)).fetchone()
            current = orjson.loads(row[0]) if row else None
            if current != expected:
                return False
            conn.execute(
                "INSERT INTO state (trigger_id, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (trigger_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (trigger_id, key, orjson.dumps(value).decode(), time.time()),
            )
        return True

    def _sealed(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` as stored: a string that holds a password is encrypted (``enc:…``)."""
        if self.secrets is None:
            return config
        box = self.secrets
        return {k: box.encrypt(v) if isinstance(v, str) and mask_password(v) != v else v for k, v in config.items()}

    def _trigger(self, row: tuple[Any, ...], status: dict[str, Any]) -> Trigger:
        trigger_id, function, type_, stored, created_at, origin = row
        config = orjson.loads(stored)
        if self.secrets is not None:
            box = self.secrets
            for key, value in config.items():
                if isinstance(value, str) and value.startswith(SEALED):
                    config[key] = box.decrypt(value, f"field {key} of trigger {trigger_id}")
        return Trigger(trigger_id, function, type_, config, created_at, origin, status)

    def _states(self, ids: builtins.list[str]) -> dict[str, dict[str, Any]]:
        """``status`` entries (key ``status``) of these triggers; caller holds the lock."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            f"SELECT trigger_id, value FROM state WHERE key = 'status' AND trigger_id IN ({marks})", ids
        ).fetchall()
        return {trigger_id: orjson.loads(value) for trigger_id, value in rows}
