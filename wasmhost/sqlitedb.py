"""What every SQLite file of the data directory shares: how a connection is opened
(WAL, shared by every process, autocommit unless a transaction is begun) and the
write transaction that takes the lock at its start."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, busy_timeout_s: float, synchronous: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode; ``synchronous`` is ``FULL`` where an answer
    promises durability (accepted events, sent messages), else ``NORMAL``."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at its start (waiting up to the
    busy timeout), so it never fails half-way on a lock another process took."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
