"""Invocation records, log lines and metric totals in SQLite (WAL), shared by every host process.

The invoke path only appends a tuple to an in-memory list (:meth:`TelemetryStore.record`);
a background thread writes what has piled up every ``flush_interval_s``, in one
transaction, as CloudWatch's agents do. So up to ``flush_interval_s`` of records
(and whatever a failing disk kept in the buffer) are lost when the process is
killed with ``kill -9``; a normal shutdown (:meth:`TelemetryStore.close`) flushes.
Asynchronous events are not kept here: they have their own durable queue.

An invocation is one row. Its log lines (START, the guest's output, the error,
END, REPORT) are not stored one by one: they are rendered by
:func:`~.logs.invocation_lines` when read, from the row's columns and the
guest's output. A line's id is ``invocation id × 2**20 + its index``, so ids
grow in the order rows were written and followers can page with ``after_id``.
One row instead of five cut the flush from about 25 µs to about 4 µs of CPU per
invocation (measured: a row per line, with its indexes, was most of the work).
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ..config import MAX_TIMEOUT_MS
from ..errors import InvalidConfig, InvalidRequest, InvocationError
from ..result import InvocationResult
from .logs import invocation_lines

logger = logging.getLogger("wasmhost.telemetry")

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10, 30, 60, 300, 900, math.inf,
)  # fmt: skip
"""Upper bounds (seconds) of ``wasmhost_invocation_duration_seconds``; the last is +Inf."""

LINE_ID_SLOTS = 2**20
"""Line ids per invocation: a line's id is ``invocation id * LINE_ID_SLOTS + index``."""
LONGEST_INVOCATION_S = MAX_TIMEOUT_MS / 1000 + 60
"""No invocation lasts longer (the longest timeout and a margin): bounds the scan of ``logs(since=)``."""
PRUNE_EVERY_S = 60.0
PRUNE_BATCH_ROWS = 5000
"""Rows deleted per transaction when pruning, so that other processes' writers wait little."""
MAX_ROWS_PER_INSERT = 256
"""Rows per multi-row INSERT: one statement step (one GIL release) inserts them all."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: log line ids derive from it
    request_id       TEXT NOT NULL,
    function         TEXT NOT NULL,
    version          TEXT NOT NULL,     -- what ran: '$LATEST', '3'
    started_at       REAL NOT NULL,     -- epoch seconds
    duration_ms      REAL NOT NULL,
    billed_ms        INTEGER NOT NULL,
    memory_mb        INTEGER NOT NULL,  -- configured memory size
    max_memory_bytes INTEGER NOT NULL,
    fuel_used        INTEGER NOT NULL,
    cold             INTEGER NOT NULL,  -- 0 or 1
    outcome          TEXT NOT NULL,     -- 'ok' or 'error'
    error_type       TEXT,              -- NULL when ok
    error_message    TEXT,              -- NULL when ok
    logs             TEXT NOT NULL      -- the guest's stdout and stderr, as bounded by the host
);
CREATE INDEX IF NOT EXISTS invocations_by_id ON invocations (function);  -- (function, id): tail and follow
CREATE INDEX IF NOT EXISTS invocations_by_start ON invocations (function, started_at);
CREATE INDEX IF NOT EXISTS invocations_by_request ON invocations (request_id);

CREATE TABLE IF NOT EXISTS throttles (
    id       INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    version  TEXT NOT NULL,
    at       REAL NOT NULL              -- epoch seconds
);
CREATE INDEX IF NOT EXISTS throttles_by_function ON throttles (function, at);

-- Totals since the store was created, for Prometheus; never pruned (counters never go down).
CREATE TABLE IF NOT EXISTS metric_totals (
    function TEXT NOT NULL,
    version  TEXT NOT NULL,
    metric   TEXT NOT NULL,  -- invocations, errors, throttles, cold_starts, duration_bucket, duration_sum
    label    TEXT NOT NULL,  -- outcome, error type, bucket upper bound ('0.005', '+Inf'), or ''
    value    REAL NOT NULL,  -- per-bucket (not cumulative) counts; duration_sum in seconds
    PRIMARY KEY (function, version, metric, label)
) WITHOUT ROWID;
"""

INVOCATION_COLUMNS = (
    "request_id", "function", "version", "started_at", "duration_ms", "billed_ms", "memory_mb",
    "max_memory_bytes", "fuel_used", "cold", "outcome", "error_type", "error_message", "logs",
)  # fmt: skip
THROTTLE_COLUMNS = ("function", "version", "at")
ADD_TO_TOTAL = """
INSERT INTO metric_totals (function, version, metric, label, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (function, version, metric, label) DO UPDATE SET value = value + excluded.value
"""
SELECT_FOR_LINES = (
    "SELECT id, request_id, version, started_at, duration_ms, billed_ms, memory_mb, max_memory_bytes, fuel_used, "
    "cold, error_type, error_message, logs FROM invocations"
)


def _bucket_label(bound: float) -> str:
    """Prometheus' spelling of a bucket bound (as ``prometheus_client.utils.floatToGoString`` for these)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


BUCKET_LABELS = tuple(_bucket_label(bound) for bound in DURATION_BUCKETS_S)


@dataclass
class FunctionTotals:
    """Everything counted for one (function, version) since the store was created."""

    function: str
    version: str
    invocations: dict[str, int] = field(default_factory=dict)
    """Outcome (``"ok"``, ``"error"``) -> invocations."""
    errors: dict[str, int] = field(default_factory=dict)
    """Error type (``"Timeout"``, ``"Trap"``…) -> invocations that ended with it."""
    throttles: int = 0
    cold_starts: int = 0
    duration_buckets: list[tuple[float, int]] = field(default_factory=list)
    """Cumulative ``(upper bound in seconds, invocations at most that long)``, as Prometheus wants; ends with +Inf."""
    duration_sum_s: float = 0.0


# One buffered invocation: the InvocationResult fields minus the payload (which may be
# megabytes and is not needed), then the version that ran and the start time.
_Pending = tuple[
    InvocationError | None, str, str, float, int, int, int, int, bool, str,  # error, request_id .. logs
    str, float,  # version, started_at
]  # fmt: skip


class TelemetryStore:
    """Invocation records, log lines and metric totals in a SQLite file shared by several processes.

    ``retention_s``: invocation rows (and so their log lines) and throttles older
    than this are pruned by the flush thread, at most once a minute; metric totals
    are kept. ``flush_interval_s``: how often buffered records are written, which is
    also how much is lost on ``kill -9``. ``max_buffer``: a flush starts at once
    when this many records wait. When the database cannot be written, up to ten
    times ``max_buffer`` records are kept for the next attempt; beyond that new
    records are dropped and counted in :attr:`dropped`.

    Thread-safe; a context manager; :meth:`close` flushes and is idempotent.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_s: float = 7 * 86400,
        flush_interval_s: float = 0.2,
        max_buffer: int = 5000,
    ) -> None:
        if not retention_s > 0:
            raise InvalidConfig(f"retention_s must be positive, got {retention_s!r}")
        if not flush_interval_s > 0:
            raise InvalidConfig(f"flush_interval_s must be positive, got {flush_interval_s!r}")
        if max_buffer < 1:
            raise InvalidConfig(f"max_buffer must be at least 1, got {max_buffer!r}")
        self.path = path
        self.retention_s = retention_s
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.dropped = 0
        """Records dropped because the buffer was full (the database could not be written) or the store was closed."""
        self._buffer_limit = 10 * max_buffer
        self._conn: sqlite3.Connection | None = _connect(path)
        self._lock = threading.Lock()  # guards the buffers only: record() never waits for the database
        self._db_lock = threading.Lock()  # one user of the connection at a time
        self._invocations: list[_Pending] = []
        self._throttles: list[tuple[str, str, float]] = []
        self._closed = False
        self._failing = False
        self._wake = threading.Event()
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self._thread = threading.Thread(target=self._run, name="wasmhost-telemetry", daemon=True)
        self._thread.start()

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the flush thread, write what is buffered, close the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join()
        try:
            self.flush()
        finally:
            with self._db_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    # --- the invoke path: append only ----------------------------------------

    def record(self, result: InvocationResult, *, version: str, started_at: float) -> None:
        """Buffer one finished invocation; ``version`` is what ran, ``started_at`` its start (epoch s)."""
        pending = (
            result.error, result.request_id, result.function_name, result.duration_ms, result.billed_ms,
            result.memory_mb, result.fuel_used, result.max_memory_bytes, result.cold, result.logs,
            version, started_at,
        )  # fmt: skip
        with self._lock:
            buffered = len(self._invocations) + len(self._throttles)
            if self._closed or buffered >= self._buffer_limit:
                self.dropped += 1
                return
            self._invocations.append(pending)
            if buffered + 1 >= self.max_buffer:
                self._wake.set()

    def record_throttle(self, function: str, version: str, at: float) -> None:
        """Buffer one synchronous invocation refused with 429 at ``at`` (epoch s). Not an invocation."""
        with self._lock:
            buffered = len(self._invocations) + len(self._throttles)
            if self._closed or buffered >= self._buffer_limit:
                self.dropped += 1
                return
            self._throttles.append((function, version, at))
            if buffered + 1 >= self.max_buffer:
                self._wake.set()

    # --- writing ---------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered record now, in one transaction.

        Raises ``sqlite3.Error`` when the database cannot be written (after waiting up
        to 30 s for other processes' locks); the records then stay buffered.
        """
        with self._db_lock:
            with self._lock:
                invocations, self._invocations = self._invocations, []
                throttles, self._throttles = self._throttles, []
            if not invocations and not throttles:
                return
            if self._conn is None:  # closed: close() already wrote everything it could
                self.dropped += len(invocations) + len(throttles)
                return
            try:
                _write(self._conn, invocations, throttles)
            except BaseException:
                with self._lock:
                    self._invocations[:0] = invocations
                    self._throttles[:0] = throttles
                    excess = len(self._invocations) + len(self._throttles) - self._buffer_limit
                    if excess > 0:
                        keep = max(0, len(self._invocations) - excess)
                        self.dropped += len(self._invocations) - keep
                        del self._invocations[keep:]
                raise

    def _run(self) -> None:
        """The flush thread: flush every interval (or when woken), prune once a minute."""
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._closed:
                return  # close() flushes on its own thread
            try:
                self.flush()
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_EVERY_S
                    self.prune()
            except Exception:
                if not self._failing:
                    logger.exception("cannot write telemetry to %s; records stay buffered", self.path)
                self._failing = True
            else:
                if self._failing:
                    logger.warning("telemetry written to %s again", self.path)
                self._failing = False

    def prune(self, now: float | None = None) -> int:
        """Delete invocation rows (with their log lines) and throttles older than ``retention_s``.

        ``now`` is epoch seconds (default: the clock); rows are aged by start time.
        Deletes in batches of ``PRUNE_BATCH_ROWS``, each its own transaction; returns
        the rows deleted. Metric totals are kept.
        """
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._db_lock:
            functions = [row[0] for row in self._connection().execute("SELECT DISTINCT function FROM metric_totals")]
        deleted = 0
        for function in functions:
            for table, column in (("invocations", "started_at"), ("throttles", "at")):
                while True:
                    with self._db_lock:
                        cursor = self._connection().execute(
                            f"DELETE FROM {table} WHERE id IN "
                            f"(SELECT id FROM {table} WHERE function = ? AND {column} < ? LIMIT ?)",
                            (function, cutoff, PRUNE_BATCH_ROWS),
                        )
                    deleted += cursor.rowcount
                    if cursor.rowcount < PRUNE_BATCH_ROWS:
                        break
        return deleted

    # --- reading ---------------------------------------------------------------

    def logs(
        self,
        function: str,
        *,
        since: float | None = None,
        request_id: str | None = None,
        limit: int = 1000,
        after_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Log lines of ``function``, oldest first, as ``{"id", "timestamp", "request_id", "version", "message"}``.

        START is stamped with the invocation's start, the other lines with its end
        (epoch s). ``since`` keeps lines stamped at or after it; ``request_id`` one
        invocation's lines; ``after_id`` lines after the one with that id (to follow:
        poll with the last id seen). With ``since`` or ``after_id`` the first
        ``limit`` matching lines are returned (page on with ``after_id``); with
        neither, the last ``limit`` (a tail). Lines are in id order: invocations in
        the order they were written, each one's lines together, START … REPORT.
        Buffered records of this process are flushed first. Raises ``InvalidRequest``
        when ``limit`` is below 1.
        """
        if limit < 1:
            raise InvalidRequest(f"limit must be at least 1, got {limit!r}")
        clauses = ["function = ?"]
        params: list[Any] = [function]
        if since is not None:
            clauses.append("started_at >= ? AND started_at + duration_ms / 1000.0 >= ?")
            params += [since - LONGEST_INVOCATION_S, since]
        if request_id is not None:
            clauses.append("request_id = ?")
            params.append(request_id)
        if after_id is not None:
            clauses.append("id >= ?")
            params.append(after_id // LINE_ID_SLOTS)
        tail = since is None and after_id is None
        # Every invocation has at least three lines, so ``limit`` rows are always enough.
        query = f"{SELECT_FOR_LINES} WHERE {' AND '.join(clauses)} ORDER BY id {'DESC' if tail else 'ASC'} LIMIT ?"
        params.append(limit)
        self.flush()
        found: list[list[dict[str, Any]]] = []
        count = 0
        with self._db_lock:
            for row in self._connection().execute(query, params):
                lines = [
                    line
                    for line in _render_lines(function, row)
                    if (since is None or line["timestamp"] >= since) and (after_id is None or line["id"] > after_id)
                ]
                found.append(lines)
                count += len(lines)
                if count >= limit:
                    break
        if tail:
            return [line for lines in reversed(found) for line in lines][-limit:]
        return [line for lines in found for line in lines][:limit]

    def usage(
        self,
        function: str,
        *,
        since: float | None = None,
        until: float | None = None,
        price_per_gb_second: float = 0.0000166667,
        price_per_million_requests: float = 0.20,
    ) -> dict[str, Any]:
        """What ``function`` used between ``since`` (inclusive) and ``until`` (exclusive), epoch seconds.

        Invocations are counted by start time and include errors; throttles are
        separate and cost nothing. ``gb_seconds`` is the sum of billed seconds × memory
        GiB (``memory_mb / 1024``); the estimated cost uses Lambda's x86 prices by
        default (USD). Only rows within ``retention_s`` remain to be counted.
        Buffered records of this process are flushed first.
        """
        where = "function = ?"
        params: list[Any] = [function]
        if since is not None:
            where += " AND {time} >= ?"
            params.append(since)
        if until is not None:
            where += " AND {time} < ?"
            params.append(until)
        self.flush()
        with self._db_lock:
            conn = self._connection()
            invocations, errors, cold_starts, duration_ms, billed_ms, mb_ms, fuel_used, max_memory_bytes = conn.execute(
                "SELECT count(*), coalesce(sum(outcome = 'error'), 0), coalesce(sum(cold), 0), total(duration_ms), "
                "coalesce(sum(billed_ms), 0), coalesce(sum(billed_ms * memory_mb), 0), coalesce(sum(fuel_used), 0), "
                "coalesce(max(max_memory_bytes), 0) FROM invocations WHERE " + where.format(time="started_at"),
                params,
            ).fetchone()
            errors_by_type = conn.execute(
                "SELECT error_type, count(*) FROM invocations WHERE "
                + where.format(time="started_at")
                + " AND outcome = 'error' GROUP BY error_type ORDER BY error_type",
                params,
            ).fetchall()
            (throttles,) = conn.execute(
                "SELECT count(*) FROM throttles WHERE " + where.format(time="at"), params
            ).fetchone()
        gb_seconds = mb_ms / 1000 / 1024
        compute = gb_seconds * price_per_gb_second
        requests = invocations * price_per_million_requests / 1_000_000
        return {
            "function": function,
            "since": since,
            "until": until,
            "invocations": invocations,
            "errors": errors,
            "errors_by_type": dict(errors_by_type),
            "throttles": throttles,
            "cold_starts": cold_starts,
            "duration_ms": duration_ms,
            "billed_ms": billed_ms,
            "gb_seconds": gb_seconds,
            "fuel_used": fuel_used,
            "max_memory_bytes": max_memory_bytes,
            "estimated_cost": {
                "compute": compute,
                "requests": requests,
                "total": compute + requests,
                "currency": "USD",
            },
        }

    def aggregates(self) -> list[FunctionTotals]:
        """Metric totals of every (function, version) ever recorded, sorted; a few rows each.

        Buffered records of this process are flushed first.
        """
        self.flush()
        with self._db_lock:
            rows = (
                self._connection()
                .execute("SELECT function, version, metric, label, value FROM metric_totals ORDER BY function, version")
                .fetchall()
            )
        totals: dict[tuple[str, str], FunctionTotals] = {}
        buckets: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for function, version, metric, label, value in rows:
            key = (function, version)
            entry = totals.get(key)
            if entry is None:
                entry = totals[key] = FunctionTotals(function, version)
            if metric == "invocations":
                entry.invocations[label] = int(value)
            elif metric == "errors":
                entry.errors[label] = int(value)
            elif metric == "duration_bucket":
                buckets[key][label] = int(value)
            elif metric == "duration_sum":
                entry.duration_sum_s = value
            elif metric == "throttles":
                entry.throttles = int(value)
            elif metric == "cold_starts":
                entry.cold_starts = int(value)
        for key, entry in totals.items():
            cumulative = 0
            for bound, label in zip(DURATION_BUCKETS_S, BUCKET_LABELS, strict=True):
                cumulative += buckets[key].get(label, 0)
                entry.duration_buckets.append((bound, cumulative))
        return list(totals.values())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"telemetry store {self.path} is closed")
        return self._conn


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database; tolerate other processes creating it at the same moment."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            # Switching to WAL takes an exclusive lock that can fail at once while another
            # process is doing the same, without waiting on the busy timeout.
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _write(conn: sqlite3.Connection, invocations: list[_Pending], throttles: list[tuple[str, str, float]]) -> None:
    """Insert one batch and add it to the metric totals, in one transaction."""
    rows: list[tuple[Any, ...]] = []
    added: dict[tuple[str, str, str, str], float] = defaultdict(float)
    for (
        error, request_id, function, duration_ms, billed_ms, memory_mb, fuel_used, max_memory_bytes, cold, logs,
        version, started_at,
    ) in invocations:  # fmt: skip
        if error is None:
            outcome, error_type, error_message = "ok", None, None
        else:
            outcome, error_type, error_message = "error", error.type, error.message
            added[(function, version, "errors", error_type)] += 1
        rows.append(
            (request_id, function, version, started_at, duration_ms, billed_ms, memory_mb, max_memory_bytes,
             fuel_used, cold, outcome, error_type, error_message, logs)
        )  # fmt: skip
        added[(function, version, "invocations", outcome)] += 1
        if cold:
            added[(function, version, "cold_starts", "")] += 1
        duration_s = duration_ms / 1000
        added[
            (function, version, "duration_bucket", BUCKET_LABELS[bisect.bisect_left(DURATION_BUCKETS_S, duration_s)])
        ] += 1
        added[(function, version, "duration_sum", "")] += duration_s
    for function, version, _at in throttles:
        added[(function, version, "throttles", "")] += 1

    conn.execute("BEGIN IMMEDIATE")
    try:
        _insert_many(conn, "invocations", INVOCATION_COLUMNS, rows)
        _insert_many(conn, "throttles", THROTTLE_COLUMNS, throttles)
        conn.executemany(ADD_TO_TOTAL, [(*key, value) for key, value in added.items()])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _insert_many(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[Any]) -> None:
    """INSERT ``rows`` in statements of up to ``MAX_ROWS_PER_INSERT`` rows each.

    ``executemany`` steps each row separately and gives up the GIL around every
    step; taking it back waits for the event loop's thread on a busy server. Chunk
    sizes are powers of two, so a handful of statements are prepared and cached.
    """
    start = 0
    while start < len(rows):
        size = min(MAX_ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
        values = [value for row in rows[start : start + size] for value in row]
        try:
            conn.execute(_insert_statement(table, columns, size), values)
        except UnicodeEncodeError:
            # A lone surrogate in a message cannot be encoded: replace it, as the host's log decoding does.
            values = [_encodable(value) for value in values]
            conn.execute(_insert_statement(table, columns, size), values)
        start += size


@functools.cache
def _insert_statement(table: str, columns: tuple[str, ...], rows: int) -> str:
    values = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([values] * rows)


def _encodable(value: Any) -> Any:
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value


def _render_lines(function: str, row: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The log lines of one stored invocation, as :func:`invocation_lines` wrote them for the live result."""
    (
        invocation_id, request_id, version, started_at, duration_ms, billed_ms, memory_mb, max_memory_bytes,
        fuel_used, cold, error_type, error_message, logs,
    ) = row  # fmt: skip
    error = None
    if error_type is not None:
        error = InvocationError(error_message or "")
        error.type = error_type  # the stored name, whichever class it came from
    result = InvocationResult(
        payload=None,
        error=error,
        request_id=request_id,
        function_name=function,
        function_version=version,
        duration_ms=duration_ms,
        billed_ms=billed_ms,
        memory_mb=memory_mb,
        fuel_used=fuel_used,
        max_memory_bytes=max_memory_bytes,
        cold=bool(cold),
        logs=logs,
    )
    messages = invocation_lines(result)
    if len(messages) > LINE_ID_SLOTS:  # only when the host keeps more than ~2 MiB of output per invocation
        hidden = len(messages) - LINE_ID_SLOTS + 1
        messages = [*messages[: LINE_ID_SLOTS - 3], f"[wasmhost: {hidden} lines not shown]", *messages[-2:]]
    ended_at = started_at + duration_ms / 1000
    first_id = invocation_id * LINE_ID_SLOTS
    return [
        {
            "id": first_id + index,
            "timestamp": started_at if index == 0 else ended_at,
            "request_id": request_id,
            "version": version,
            "message": message,
        }
        for index, message in enumerate(messages)
    ]
