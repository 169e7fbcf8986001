"""How telemetry is laid out in SQLite: invocations in batches, metric totals, throttles.

The invoke path pays for metering, so a stored invocation must cost as little as
possible. Rows are not inserted one by one: each flush writes, per function, one
**batch** row holding up to ``ROWS_PER_BATCH`` invocations as one JSON blob
(JSON, encoded by orjson in C, with no Python work per invocation), next to the batch's sums —
count, errors, cold starts, durations, billed ms, MB·ms, fuel, max memory, errors
by type — and its time span. ``usage`` adds the sums of the batches inside its
window and decodes only the one or two batches that straddle an edge; ``logs``
decodes the batches it shows. Measured on the C echo (a ~16 µs invocation): a
row per invocation with its indexes cost ~3.8 µs of CPU per invocation to
flush; a batch costs well under 1 µs.

A log line's id is ``batch id << 32 | invocation index << 20 | line index``, so
ids grow in the order batches were written and followers page with ``after_id``.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .._native import fastpath as _fast
from ..errors import InvocationError
from ..result import InvocationResult
from .logs import invocation_lines

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10, 30, 60, 300, 900, math.inf,
)  # fmt: skip
"""Upper bounds (seconds) of ``wasmhost_invocation_duration_seconds``; the last is +Inf."""
BUCKET_BOUNDS_MS = tuple(bound * 1000 for bound in DURATION_BUCKETS_S)

ROWS_PER_BATCH = 4096
"""Invocations per batch row at most (12 bits of a line id)."""
LINES_PER_INVOCATION = 2**20
"""Line ids per invocation (20 bits of a line id); more lines than that are elided."""
BATCH_SHIFT = 32
ROW_SHIFT = 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: log line ids derive from it
    function      TEXT NOT NULL,
    first_started REAL NOT NULL,     -- epoch seconds, earliest start in the batch
    last_started  REAL NOT NULL,
    last_ended    REAL NOT NULL,     -- an upper bound of the latest end
    invocations   INTEGER NOT NULL,
    errors        INTEGER NOT NULL,
    error_types   TEXT NOT NULL,     -- JSON {"Timeout": 2}
    cold_starts   INTEGER NOT NULL,
    duration_ms   REAL NOT NULL,
    billed_ms     INTEGER NOT NULL,
    mb_ms         INTEGER NOT NULL,  -- sum of billed_ms * memory_mb
    fuel_used     INTEGER NOT NULL,
    max_memory    INTEGER NOT NULL,
    rows          BLOB NOT NULL      -- JSON list of the invocations (see PendingRow); instr() finds a request id
);
CREATE INDEX IF NOT EXISTS batches_by_function ON batches (function);  -- (function, id): tail, follow
CREATE INDEX IF NOT EXISTS batches_by_end ON batches (function, last_ended);

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

BATCH_COLUMNS = (
    "function", "first_started", "last_started", "last_ended", "invocations", "errors", "error_types",
    "cold_starts", "duration_ms", "billed_ms", "mb_ms", "fuel_used", "max_memory", "rows",
)  # fmt: skip
INSERT_BATCH = f"INSERT INTO batches ({', '.join(BATCH_COLUMNS)}) VALUES ({', '.join('?' * len(BATCH_COLUMNS))})"
ADD_TO_TOTAL = """
INSERT INTO metric_totals (function, version, metric, label, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (function, version, metric, label) DO UPDATE SET value = value + excluded.value
"""

# One buffered invocation, as record() builds it: the InvocationResult's fields minus
# the payload (which may be megabytes), then the version that ran and the start time.
# It is packed as it is; the error (an InvocationError or None) packs as [type, message].
PendingRow = tuple[
    InvocationError | None, str, str, float, int, int, int, int, bool, str,  # error, request_id .. logs
    str, float,  # version, started_at
]  # fmt: skip
ERROR, REQUEST_ID, FUNCTION, DURATION_MS, BILLED_MS, MEMORY_MB, FUEL, MAX_MEMORY, COLD, LOGS, VERSION, STARTED = range(
    12
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


def _encode_error(value: Any) -> Any:
    if isinstance(value, InvocationError):
        return [value.type, value.message]
    raise TypeError(f"cannot store {type(value).__name__} in telemetry")


def encode_rows(rows: list[PendingRow]) -> bytes:
    """A batch's invocations as JSON (orjson: ~0.1 µs per invocation, msgpack-python took ~0.3);
    the error as ``[type, message]``. Text JSON cannot hold (lone surrogates) is replaced."""
    try:
        return orjson.dumps(rows, default=_encode_error)
    except orjson.JSONEncodeError:
        cleaned = [tuple(_clean(v) if isinstance(v, str) else v for v in row) for row in rows]
        return orjson.dumps(cleaned, default=_encode_error_cleaned)


def _encode_error_cleaned(value: Any) -> Any:
    if isinstance(value, InvocationError):
        return [_clean(value.type), _clean(value.message)]
    raise TypeError(f"cannot store {type(value).__name__} in telemetry")


def summarize(
    function: str, version: str, rows: list[PendingRow], added: dict[tuple[str, str, str, str], float]
) -> tuple[Any, ...]:
    """The column values of one batch (``BATCH_COLUMNS``) holding ``rows`` (all of ``function``
    at ``version``), and what they count in ``metric_totals``, added to ``added``.

    The sums come from one pass in C (``_fastpath.tsum``) when it is built, else from one
    C-level transpose (``zip(*rows)``); nothing loops over rows in Python either way.
    """
    if _fast is not None:
        return from_sums(function, version, rows, _fast.tsum(rows, BUCKET_BOUNDS_MS), added)
    columns = list(zip(*rows, strict=True))
    durations, started, billed = columns[DURATION_MS], columns[STARTED], columns[BILLED_MS]
    ordered = sorted(durations)
    buckets, below = [], 0
    for bound in BUCKET_BOUNDS_MS:
        upto = bisect.bisect_right(ordered, bound)
        buckets.append(upto - below)
        below = upto
    sums = (
        len(rows), len(rows) - columns[ERROR].count(None), sum(columns[COLD]), math.fsum(durations), sum(billed),
        sum(map(operator.mul, billed, columns[MEMORY_MB])), sum(columns[FUEL]), max(columns[MAX_MEMORY]),
        min(started), max(started), max(durations), True, tuple(buckets),
    )  # fmt: skip
    return from_sums(function, version, rows, sums, added)


def from_sums(
    function: str,
    version: str,
    rows: list[PendingRow],
    sums: tuple[Any, ...],
    added: dict[tuple[str, str, str, str], float],
) -> tuple[Any, ...]:
    """The batch's column values from its ``sums`` (``_fastpath.tsum``'s shape); its metrics into ``added``."""
    count, failed, cold, duration_ms, billed_ms, mb_ms, fuel, max_memory, first, last, longest, _, buckets = sums
    errors = Counter(row[0].type for row in rows if row[0] is not None) if failed else None  # type: ignore[union-attr]

    def add(metric: str, label: str, value: float) -> None:
        key = (function, version, metric, label)
        added[key] = added.get(key, 0) + value

    add("invocations", "ok", count - failed)
    if errors:
        add("invocations", "error", failed)
        for error_type, n in errors.items():
            add("errors", error_type, n)
    if cold:
        add("cold_starts", "", cold)
    for label, n in zip(BUCKET_LABELS, buckets, strict=True):
        if n:
            add("duration_bucket", label, n)
    add("duration_sum", "", duration_ms / 1000)
    return (
        function, first, last, last + longest / 1000, count, failed,
        orjson.dumps(errors).decode() if errors else "{}",
        cold, duration_ms, billed_ms, mb_ms, fuel, max_memory,
        encode_rows(rows),
    )  # fmt: skip


def unpack_rows(blob: bytes) -> list[list[Any]]:
    """A batch's invocations: lists in ``PendingRow`` order, the error as None or [type, message]."""
    rows: list[list[Any]] = orjson.loads(blob)
    return rows


def render_lines(batch_id: int, index: int, row: list[Any]) -> list[dict[str, Any]]:
    """The log lines of one stored invocation, as :func:`invocation_lines` wrote them for the live result."""
    error = None
    if row[ERROR] is not None:
        error = InvocationError(row[ERROR][1] or "")
        error.type = row[ERROR][0]  # the stored name, whichever class it came from
    logs = row[LOGS]
    result = InvocationResult(
        payload=None,
        error=error,
        request_id=row[REQUEST_ID],
        function_name=row[FUNCTION],
        function_version=row[VERSION],
        duration_ms=row[DURATION_MS],
        billed_ms=row[BILLED_MS],
        memory_mb=row[MEMORY_MB],
        fuel_used=row[FUEL],
        max_memory_bytes=row[MAX_MEMORY],
        cold=bool(row[COLD]),
        logs=logs,
    )
    messages = invocation_lines(result)
    if len(messages) > LINES_PER_INVOCATION:  # only when the host keeps more than ~2 MiB of output
        hidden = len(messages) - LINES_PER_INVOCATION + 1
        messages = [*messages[: LINES_PER_INVOCATION - 3], f"[wasmhost: {hidden} lines not shown]", *messages[-2:]]
    started_at = row[STARTED]
    ended_at = started_at + row[DURATION_MS] / 1000
    first_id = batch_id << BATCH_SHIFT | index << ROW_SHIFT
    return [
        {
            "id": first_id + number,
            "timestamp": started_at if number == 0 else ended_at,
            "request_id": row[REQUEST_ID],
            "version": row[VERSION],
            "message": message,
        }
        for number, message in enumerate(messages)
    ]


def _clean(text: str) -> str:
    """``text`` with lone surrogates (kept by the store) replaced, so it encodes as UTF-8 and JSON."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


def chunks(rows: list[PendingRow], size: int = ROWS_PER_BATCH) -> Iterable[list[PendingRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
