"""Invocation records, log lines and metric totals in SQLite (WAL), shared by every host process.

The invoke path only appends a tuple to an in-memory deque (:meth:`TelemetryStore.record`,
no lock); a background thread writes what has piled up every ``flush_interval_s``,
in one transaction, as CloudWatch's agents do. So up to ``flush_interval_s`` of
records (and whatever a failing disk kept in the buffer) are lost when the
process is killed with ``kill -9``; a normal shutdown (:meth:`TelemetryStore.close`)
flushes. Asynchronous events are not kept here: they have their own durable queue.

Invocations are stored in batches (see :mod:`.batches`); their log lines (START,
the guest's output, the error, END, REPORT) are rendered by
:func:`~.logs.invocation_lines` when read.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from .._native import fastpath as _fast
from ..errors import InvalidConfig, InvalidRequest
from ..result import InvocationResult
from .batches import (
    ADD_TO_TOTAL,
    BATCH_SHIFT,
    BUCKET_BOUNDS_MS,
    BUCKET_LABELS,
    DURATION_BUCKETS_S,
    INSERT_BATCH,
    ROW_SHIFT,
    ROWS_PER_BATCH,
    SCHEMA,
    STARTED,
    FunctionTotals,
    PendingRow,
    chunks,
    from_sums,
    render_lines,
    summarize,
    unpack_rows,
)

logger = logging.getLogger("wasmhost.telemetry")

__all__ = ["DURATION_BUCKETS_S", "FunctionTotals", "TelemetryStore"]

_STARTED = operator.itemgetter(11)
_FUNCTION = operator.itemgetter(2)
_VERSION = operator.itemgetter(10)
#: Columns of earlier layouts, dropped when a database is opened (their data is elsewhere).
OBSOLETE_COLUMNS = (("batches", "request_ids"),)
PACK_EVERY = 256
"""Buffered invocations the invoke path packs into a batch at once (see ``pack``)."""
PRUNE_EVERY_S = 60.0
BATCH_SPAN_S = 60.0
"""Invocations that started in different minutes go in different batches."""
PRUNE_BATCH_ROWS = 500
"""Batches deleted per transaction when pruning, so that other processes' writers wait little."""


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
        self._lock = threading.Lock()  # guards close(); record() takes no lock (deque appends are atomic)
        self._db_lock = threading.Lock()  # one user of the connection at a time
        self._invocations: deque[PendingRow] = deque()
        #: The invoke path's door: append a ``PendingRow`` (what :meth:`record` builds from a
        #: result) with no checks, then call :meth:`pack` once ``len(pending)`` reaches
        #: ``PACK_EVERY``. Rows appended after :meth:`close` are never written.
        self.append = self._invocations.append
        self.pending = self._invocations
        self._packed: list[tuple[list[tuple[Any, ...]], dict[tuple[str, str, str, str], float]]] = []
        self._drain_lock = threading.Lock()  # one thread at a time empties the deque
        self._throttles: deque[tuple[str, str, float]] = deque()
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
        except sqlite3.Error:  # a host shutting down must not fail on its logs
            logger.exception("could not write the last telemetry to %s; %d records lost", self.path, self.dropped)
        finally:
            with self._db_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    # --- the invoke path: append only ----------------------------------------

    def record(self, result: InvocationResult, *, version: str, started_at: float) -> None:
        """Buffer one finished invocation; ``version`` is what ran, ``started_at`` its start (epoch s)."""
        invocations = self._invocations
        if self._closed or len(invocations) >= self._buffer_limit:
            self.dropped += 1
            return
        invocations.append(
            (
                result.error, result.request_id, result.function_name, result.duration_ms, result.billed_ms,
                result.memory_mb, result.fuel_used, result.max_memory_bytes, result.cold, result.logs,
                version, started_at,
            )
        )  # fmt: skip
        if len(invocations) >= PACK_EVERY:
            self.pack()
        if len(invocations) + len(self._throttles) >= self.max_buffer:
            self._wake.set()

    def record_throttle(self, function: str, version: str, at: float) -> None:
        """Buffer one synchronous invocation refused with 429 at ``at`` (epoch s). Not an invocation."""
        if self._closed or len(self._throttles) >= self._buffer_limit:
            self.dropped += 1
            return
        self._throttles.append((function, version, at))
        if len(self._invocations) + len(self._throttles) >= self.max_buffer:
            self._wake.set()

    # --- writing ---------------------------------------------------------------

    def pack(self) -> None:
        """Summarize the buffered invocations into batches now, on the calling thread.

        The invoke path calls it every ``PACK_EVERY`` invocations: the rows are still
        in this thread's cache, where the flush thread would pull them across cores
        (measured: that cost as much again as the packing itself). The flush thread
        then only writes the batches.
        """
        with self._drain_lock:
            pending = self._invocations
            rows = [pending.popleft() for _ in range(len(pending))]
            if rows:
                self._packed.append(_build(rows))
                if len(self._packed) * PACK_EVERY >= self.max_buffer:
                    self._wake.set()

    def flush(self) -> None:
        """Write every buffered record now, in one transaction.

        Raises ``sqlite3.Error`` when the database cannot be written (after waiting up
        to 30 s for other processes' locks); the records then stay buffered.
        """
        with self._db_lock:
            with self._drain_lock:
                pending, done = self._invocations, self._throttles
                invocations = [pending.popleft() for _ in range(len(pending))]
                throttles = [done.popleft() for _ in range(len(done))]
                packed, self._packed = self._packed, []
            if invocations:
                packed.append(_build(invocations))
            if not packed and not throttles:
                return
            if self._conn is None:  # closed: close() already wrote everything it could
                self.dropped += sum(batch[4] for batches, _ in packed for batch in batches) + len(throttles)
                return
            batches = [batch for built, _ in packed for batch in built]
            added: dict[tuple[str, str, str, str], float] = {}
            for _, deltas in packed:
                for key, value in deltas.items():
                    added[key] = added.get(key, 0) + value
            try:
                _write(self._conn, batches, added, throttles)
            except BaseException:
                with self._drain_lock:
                    self._packed[:0] = packed
                    done.extendleft(reversed(throttles))
                    while len(self._packed) > 1 and len(self._packed) * PACK_EVERY > self._buffer_limit:
                        self.dropped += sum(batch[4] for batch in self._packed.pop(0)[0])
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
        """Delete batches of invocations (with their log lines) and throttles older than ``retention_s``.

        ``now`` is epoch seconds (default: the clock); a batch goes when its last
        invocation ended before the cutoff. Deletes in small batches, each its own
        transaction; returns the invocations and throttles deleted. Metric totals are kept.
        """
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._db_lock:
            functions = [row[0] for row in self._connection().execute("SELECT DISTINCT function FROM metric_totals")]
        deleted = 0
        for function in functions:
            for table, column, counted in (("batches", "last_ended", "invocations"), ("throttles", "at", "1")):
                while True:
                    with self._db_lock:
                        removed = (
                            self._connection()
                            .execute(
                                f"DELETE FROM {table} WHERE id IN "
                                f"(SELECT id FROM {table} WHERE function = ? AND {column} < ? LIMIT ?) "
                                f"RETURNING {counted}",
                                (function, cutoff, PRUNE_BATCH_ROWS),
                            )
                            .fetchall()
                        )
                    deleted += sum(count for (count,) in removed)
                    if len(removed) < PRUNE_BATCH_ROWS:
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
            clauses.append("last_ended >= ?")
            params.append(since)
        if request_id is not None:
            clauses.append("instr(rows, ?) > 0")  # the id's bytes in the JSON; rows are then checked exactly
            params.append(orjson.dumps(request_id)[1:-1])  # as the JSON spells it
        if after_id is not None:
            clauses.append("id >= ?")
            params.append(after_id >> BATCH_SHIFT)
        tail = since is None and after_id is None
        query = f"SELECT id, rows FROM batches WHERE {' AND '.join(clauses)} ORDER BY id {'DESC' if tail else 'ASC'}"
        self.flush()
        found: list[list[dict[str, Any]]] = []
        count = 0
        with self._db_lock:
            cursor = self._connection().execute(query, params)
            for batch_id, blob in cursor:
                lines = []
                for index, row in enumerate(unpack_rows(blob)):
                    if request_id is not None and row[1] != request_id:
                        continue
                    if (
                        after_id is not None
                        and (batch_id << BATCH_SHIFT | index << ROW_SHIFT | (1 << ROW_SHIFT) - 1) <= after_id
                    ):
                        continue
                    lines += [
                        line
                        for line in render_lines(batch_id, index, row)
                        if (since is None or line["timestamp"] >= since) and (after_id is None or line["id"] > after_id)
                    ]
                found.append(lines)
                count += len(lines)
                if count >= limit:
                    break
            cursor.close()
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
        default (USD). Only rows within ``retention_s`` remain to be counted. Batches
        inside the window count by their sums; only those across an edge are decoded.
        Buffered records of this process are flushed first.
        """
        low = -float("inf") if since is None else since
        high = float("inf") if until is None else until
        self.flush()
        totals: defaultdict[str, float] = defaultdict(float)
        errors_by_type: dict[str, int] = defaultdict(int)
        max_memory = 0
        with self._db_lock:
            conn = self._connection()
            rows = conn.execute(
                "SELECT first_started, last_started, invocations, errors, error_types, cold_starts, duration_ms, "
                "billed_ms, mb_ms, fuel_used, max_memory, rows FROM batches "
                "WHERE function = ? AND last_started >= ? AND first_started < ?",
                (function, low, high),
            ).fetchall()
            (throttles,) = conn.execute(
                "SELECT count(*) FROM throttles WHERE function = ? AND at >= ? AND at < ?", (function, low, high)
            ).fetchone()
        for first, last, count, errors, error_types, cold, duration, billed, mb_ms, fuel, memory, blob in rows:
            if first >= low and last < high:
                for key, value in zip(
                    ("invocations", "errors", "cold", "duration", "billed", "mb_ms", "fuel"),
                    (count, errors, cold, duration, billed, mb_ms, fuel),
                    strict=True,
                ):
                    totals[key] += value
                for error_type, n in orjson.loads(error_types).items():
                    errors_by_type[error_type] += n
                max_memory = max(max_memory, memory)
                continue
            for row in unpack_rows(blob):
                if not low <= row[STARTED] < high:
                    continue
                totals["invocations"] += 1
                if row[0] is not None:
                    totals["errors"] += 1
                    errors_by_type[row[0][0]] += 1
                totals["cold"] += row[8]
                totals["duration"] += row[3]
                totals["billed"] += row[4]
                totals["mb_ms"] += row[4] * row[5]
                totals["fuel"] += row[6]
                max_memory = max(max_memory, row[7])
        invocations = int(totals["invocations"])
        gb_seconds = totals["mb_ms"] / 1000 / 1024
        compute = gb_seconds * price_per_gb_second
        requests = invocations * price_per_million_requests / 1_000_000
        return {
            "function": function,
            "since": since,
            "until": until,
            "invocations": invocations,
            "errors": int(totals["errors"]),
            "errors_by_type": dict(sorted(errors_by_type.items())),
            "throttles": throttles,
            "cold_starts": int(totals["cold"]),
            "duration_ms": totals["duration"],
            "billed_ms": int(totals["billed"]),
            "gb_seconds": gb_seconds,
            "fuel_used": int(totals["fuel"]),
            "max_memory_bytes": max_memory,
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
    for table, column in OBSOLETE_COLUMNS:  # an earlier layout: drop what is no longer written
        if column in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            try:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
            except sqlite3.OperationalError:  # another process dropped it first
                pass
    return conn


def _build(invocations: list[PendingRow]) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str, str, str], float]]:
    """Batch rows (a row per function, version and minute; per ``ROWS_PER_BATCH``) and
    what the invocations add to the metric totals."""
    # One pass groups by function, version and minute of start: a batch per group (so
    # pruning and the edges of usage windows decode little, even when a flush holds a
    # long invocation next to new ones), and the metric totals add up per group.
    first = invocations[0]
    if _fast is not None and len(invocations) <= ROWS_PER_BATCH:
        sums = _fast.tsum(invocations, BUCKET_BOUNDS_MS)
        if sums[11]:  # the usual case: one function, one version, one minute
            added: dict[tuple[str, str, str, str], float] = {}
            return [from_sums(first[2], first[10], invocations, sums, added)], added
    groups: dict[tuple[str, str, float], list[PendingRow]] = {}
    key = (first[2], first[10], first[11] // BATCH_SPAN_S)
    started = list(map(_STARTED, invocations))
    if (
        min(started) // BATCH_SPAN_S == max(started) // BATCH_SPAN_S
        and len(set(map(_FUNCTION, invocations))) == 1
        and len(set(map(_VERSION, invocations))) == 1
    ):
        groups[key] = invocations
    else:
        for row in invocations:
            key = (row[2], row[10], row[11] // BATCH_SPAN_S)
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
            else:
                group.append(row)
    batches = []
    added = {}
    for (function, version, _), rows in groups.items():
        batches += [summarize(function, version, chunk, added) for chunk in chunks(rows)]
    return batches, added


def _write(
    conn: sqlite3.Connection,
    batches: list[tuple[Any, ...]],
    added: dict[tuple[str, str, str, str], float],
    throttles: list[tuple[str, str, float]],
) -> None:
    """Insert batches, throttles and the metric totals they add, in one transaction."""
    for function, version, _at in throttles:
        throttled = (function, version, "throttles", "")
        added[throttled] = added.get(throttled, 0) + 1
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT_BATCH, batches)
        conn.executemany("INSERT INTO throttles (function, version, at) VALUES (?, ?, ?)", throttles)
        conn.executemany(ADD_TO_TOTAL, [(*key, value) for key, value in added.items()])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
