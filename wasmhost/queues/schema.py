"""The tables of ``queues.db`` and the reads every queue operation starts with: a queue's
row (its settings, validated when it was created) and its approximate message counts."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..errors import QueueDoesNotExist
from .messages import arn
from .validation import SETTING_NAMES

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


def load(conn: sqlite3.Connection, name: str | None) -> tuple[dict[str, Any], float] | None:
    if name is None:
        return None
    row = conn.execute("SELECT attributes, created_at FROM queues WHERE name = ?", (name,)).fetchone()
    return None if row is None else (json.loads(row[0]), row[1])


def require(conn: sqlite3.Connection, name: str) -> tuple[dict[str, Any], float]:
    found = load(conn, name)
    if found is None:
        raise QueueDoesNotExist(f"queue {name!r} does not exist")
    return found


def describe(
    conn: sqlite3.Connection,
    name: str,
    found: tuple[dict[str, Any], float],
    now: float | None = None,
) -> dict[str, Any]:
    """The queue's settings, ``arn``, ``created_at`` and approximate counts, as ``QueueStore.attributes``."""
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
