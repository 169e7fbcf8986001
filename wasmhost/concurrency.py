"""Concurrency limits counted across every process on a data directory.

``wasmhost serve --workers N`` runs N processes; a function's reserved
concurrency and the host-wide limit hold for their sum, not for each one. The
counts live in a memory-mapped file, ``<data_dir>/concurrency.shm``:

* a table of function slots (the name, then one counter per process row),
  found by hashing the name with linear probing, so that two functions never
  share a counter;
* up to 64 process rows, each claimed by one live process (pid and start time),
  with a host total per row. A process only ever changes its own counters, so
  one killed with ``kill -9`` leaks nothing: whoever notices that it is dead
  zeroes its row.

``acquire`` checks and increments under an exclusive ``flock`` held for a few
memory operations. ``release`` only lowers this process's own counters and
takes no file lock: a reader elsewhere sees the old value or the new one, and
either keeps the limits.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from ._native import fastpath as _fast
from .errors import InvalidName, Throttled, WasmhostError

PROCESS_ROWS = 64
FUNCTION_SLOTS = 8192  # a power of two: probes wrap with a mask
NAME_BYTES = 64
# New names fill the table up to three quarters (probes stay short); then a
# sweep forgets the functions with nothing in flight. When most slots are still
# in flight after a sweep, the next one waits for SWEEP_EVERY more names (or a
# completely full table), so that sweeps stay rare.
MAX_FILLED = FUNCTION_SLOTS * 3 // 4
SWEEP_EVERY = FUNCTION_SLOTS // 8
RECLAIM_INTERVAL_S = 1.0

# Header: the magic and the layout (checked on open), then int32 fields.
_LAYOUT = struct.pack("=8s3i", b"WHCONC01", PROCESS_ROWS, FUNCTION_SLOTS, NAME_BYTES)
_HIGH_WATER = 5  # 1 + the highest claimed process row: sums stop there
_FILLED = 6  # slots holding a name or a tombstone
_GENERATION = 7  # bumped when slots are freed: slot indexes cached before may be stale
_SWEPT_FILLED = 8  # _FILLED right after the last sweep
_HEADER_BYTES = 64
_PROCESSES_AT = _HEADER_BYTES  # PROCESS_ROWS x (int64 pid, int64 start time)
_TOTALS_AT = _PROCESSES_AT + PROCESS_ROWS * 16  # PROCESS_ROWS x int32: in flight per row
_NAMES_AT = 4096  # FUNCTION_SLOTS x NAME_BYTES: NUL-padded UTF-8
_COUNTS_AT = _NAMES_AT + FUNCTION_SLOTS * NAME_BYTES  # FUNCTION_SLOTS x PROCESS_ROWS int32
FILE_BYTES = _COUNTS_AT + FUNCTION_SLOTS * PROCESS_ROWS * 4  # 2.5 MiB, sparse until used

_EMPTY = 0x00
_TOMBSTONE = 0xFF  # never a byte of UTF-8 text; probes walk past it
_EMPTY_NAME = bytes(NAME_BYTES)
_TOMBSTONE_NAME = bytes([_TOMBSTONE]) + bytes(NAME_BYTES - 1)
_MASK = FUNCTION_SLOTS - 1


class SharedConcurrency:
    """Invocations in flight per function and per host, shared through the file at ``path``.

    ``host_limit`` caps the total over all processes (each should pass the
    same value); ``acquire``'s ``reserved`` caps one function. Thread-safe.
    Raises ``WasmhostError`` when 64 live processes already share the file. A
    context manager; ``close()`` (idempotent; also run when garbage-collected)
    gives back this process's row and any slots it still holds. Do not carry
    one across ``fork()``.
    """

    def __init__(self, path: Path, host_limit: int, *, reclaim_interval_s: float = RECLAIM_INTERVAL_S) -> None:
        if host_limit < 0:
            raise ValueError(f"host_limit must be >= 0, not {host_limit}")
        self.path = path
        self.host_limit = host_limit
        self.reclaim_interval_s = reclaim_interval_s
        self._lock = threading.Lock()
        self._slots: dict[str, int] = {}  # name -> index of its slot's first counter
        self._file = file = _SharedFile(path)
        self._closer = weakref.finalize(self, file.close)
        self._fd, self._map, self._header = file.fd, file.map, file.header
        self._totals, self._counts = file.totals, file.counts
        self._row = file.row
        self._generation = file.header[_GENERATION]
        self._last_reclaim = time.monotonic()

    # --- the hot path ------------------------------------------------------

    def acquire(self, name: str, reserved: int | None) -> None:
        """Take a slot for ``name`` or raise ``Throttled`` saying which limit was hit.

        ``reserved`` caps ``name`` across all processes (0 refuses every call);
        ``host_limit`` caps the total. Also raises ``Throttled`` when all 8,192
        slots of the table hold functions with invocations in flight,
        ``InvalidName`` for a name that is not 1-64 bytes of UTF-8 without NUL,
        and ``ValueError`` after ``close()``.
        """
        if reserved == 0:
            raise Throttled(f"function {name!r} is at its reserved concurrency of 0", retry_after_s=1)
        with self._lock:
            fd = self._fd
            if fd < 0:
                raise ValueError("SharedConcurrency is closed")
            # Far from both limits, no lock is needed: each live process has at most
            # one acquire between its check and its increment (``self._lock``), so
            # ``rows`` processes racing past the same reading add at most ``rows``.
            first = self._slots.get(name)
            if first is not None:
                if _fast is not None:  # the same check in C (wasmhost/_fastpath.c): ~0.2 µs
                    if _fast.conc_acquire(
                        self._map,
                        _TOTALS_AT,
                        _COUNTS_AT,
                        first,
                        self._row,
                        self.host_limit,
                        -1 if reserved is None else reserved,
                        self._generation,
                    ):
                        return
                elif self._header[_GENERATION] == self._generation:
                    rows = self._header[_HIGH_WATER]
                    if sum(self._totals[:rows]) + rows <= self.host_limit and (
                        reserved is None or sum(self._counts[first : first + rows]) + rows <= reserved
                    ):
                        self._counts[first + self._row] += 1
                        self._totals[self._row] += 1
                        return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if self._header[_GENERATION] != self._generation:
                    self._forget_unheld_slots()
                first = self._slots.get(name)
                if first is None:
                    first = self._claim_slot(name)
                rows = self._header[_HIGH_WATER]
                counts = self._counts
                host_full = sum(self._totals[:rows]) >= self.host_limit
                if host_full or (reserved is not None and sum(counts[first : first + rows]) >= reserved):
                    self._refuse_unless_reclaimed(name, first, reserved)
                counts[first + self._row] += 1
                self._totals[self._row] += 1
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def release(self, name: str) -> None:
        """Give back a slot taken by ``acquire``; a no-op after ``close()``.

        Raises ``ValueError`` when this object holds no slot of ``name``.
        """
        with self._lock:
            if self._fd < 0:
                return  # close() gave back everything this row held
            first = self._slots.get(name)
            if first is not None and _fast is not None:
                if _fast.conc_release(self._map, _TOTALS_AT, _COUNTS_AT, first, self._row):
                    return
                first = None
            if first is None or self._counts[first + self._row] <= 0:
                raise ValueError(f"release({name!r}) without a matching acquire")
            self._counts[first + self._row] -= 1
            self._totals[self._row] -= 1

    # --- reading -----------------------------------------------------------

    def in_flight(self, name: str | None = None) -> int:
        """Invocations in flight in all live processes: of function ``name``, or in total."""
        with self._locked():
            rows = self._header[_HIGH_WATER]
            if name is None:
                return sum(self._totals[:rows])
            first = self._slots.get(name)
            if first is None:
                slot, _ = self._probe(_encode(name))
                if slot < 0:
                    return 0
                first = slot * PROCESS_ROWS
            return sum(self._counts[first : first + rows])

    def snapshot(self) -> dict[str, int]:
        """Function name -> invocations in flight, for every function in the table.

        A function stays in the table (at 0) after its last invocation until a
        sweep forgets it. Scans the whole table: a few milliseconds.
        """
        with self._locked():
            rows = self._header[_HIGH_WATER]
            found: dict[str, int] = {}
            for slot in range(FUNCTION_SLOTS):
                at = _NAMES_AT + slot * NAME_BYTES
                if self._map[at] not in (_EMPTY, _TOMBSTONE):
                    name = self._map[at : at + NAME_BYTES].rstrip(b"\0").decode("utf-8", "replace")
                    first = slot * PROCESS_ROWS
                    found[name] = sum(self._counts[first : first + rows])
            return found

    # --- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Give back this process's row (and the slots it holds); unmap and close the file."""
        with self._lock:
            self._fd = -1
            self._closer()

    def __enter__(self) -> SharedConcurrency:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- under the file lock -----------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Both locks, for readers; dead processes' rows are reclaimed at most once per interval."""
        with self._lock:
            if self._fd < 0:
                raise ValueError("SharedConcurrency is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if self._header[_GENERATION] != self._generation:
                    self._forget_unheld_slots()
                if time.monotonic() - self._last_reclaim >= self.reclaim_interval_s:
                    self._reclaim()
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _refuse_unless_reclaimed(self, name: str, first: int, reserved: int | None) -> None:
        """Over a limit: check again after reclaiming dead processes' rows, else raise ``Throttled``."""
        if time.monotonic() - self._last_reclaim >= self.reclaim_interval_s:
            self._reclaim()
        rows = self._header[_HIGH_WATER]
        if reserved is not None and sum(self._counts[first : first + rows]) >= reserved:
            raise Throttled(f"function {name!r} is at its reserved concurrency of {reserved}", retry_after_s=1)
        if sum(self._totals[:rows]) >= self.host_limit:
            raise Throttled(f"host is at its concurrency limit of {self.host_limit}", retry_after_s=1)

    def _reclaim(self) -> None:
        self._file.reclaim_dead_rows()
        self._last_reclaim = time.monotonic()

    def _forget_unheld_slots(self) -> None:
        """Slots were freed: drop cached ones this row holds nothing in (another name may have them now)."""
        counts, row = self._counts, self._row
        self._slots = {name: first for name, first in self._slots.items() if counts[first + row] > 0}
        self._generation = self._header[_GENERATION]

    def _claim_slot(self, name: str) -> int:
        """The slot of ``name``, given one if it has none; returns the index of its first counter."""
        key = _encode(name)
        slot, free = self._probe(key)
        if slot < 0:
            header = self._header
            if free < 0 or header[_FILLED] >= max(MAX_FILLED, header[_SWEPT_FILLED] + SWEEP_EVERY):
                self._sweep()
                slot, free = self._probe(key)
                if free < 0:
                    raise Throttled(
                        f"host is at its limit of {FUNCTION_SLOTS} functions with invocations in flight",
                        retry_after_s=1,
                    )
            at = _NAMES_AT + free * NAME_BYTES
            if self._map[at] == _EMPTY:
                self._header[_FILLED] += 1
            self._map[at : at + NAME_BYTES] = key
            slot = free
        first = slot * PROCESS_ROWS
        self._slots[name] = first
        return first

    def _probe(self, key: bytes) -> tuple[int, int]:
        """(the slot holding ``key`` or -1, the first slot a new name may take or -1)."""
        names = self._map
        slot = _home(key)
        free = -1
        for _ in range(FUNCTION_SLOTS):
            at = _NAMES_AT + slot * NAME_BYTES
            first_byte = names[at]
            if first_byte == _EMPTY:
                return -1, (slot if free < 0 else free)
            if first_byte == _TOMBSTONE:
                if free < 0:
                    free = slot
            elif names[at : at + NAME_BYTES] == key:
                return slot, free
            slot = (slot + 1) & _MASK
        return -1, free

    def _sweep(self) -> None:
        """Forget every function with nothing in flight; the others stay where they are.

        Each kept name must stay reachable from its hash, so an emptied slot
        between the two becomes a tombstone. Holds the file lock for some ms.
        """
        self._reclaim()
        names, counts = self._map, self._counts
        rows = self._header[_HIGH_WATER]
        kept: list[int] = []
        for slot in range(FUNCTION_SLOTS):
            at = _NAMES_AT + slot * NAME_BYTES
            if names[at] == _EMPTY:
                continue
            first = slot * PROCESS_ROWS
            if names[at] != _TOMBSTONE and any(counts[first : first + rows]):
                kept.append(slot)
            else:
                names[at : at + NAME_BYTES] = _EMPTY_NAME
        filled = len(kept)
        for slot in kept:
            at = _NAMES_AT + slot * NAME_BYTES
            between = _home(names[at : at + NAME_BYTES])
            while between != slot:
                gap = _NAMES_AT + between * NAME_BYTES
                if names[gap] == _EMPTY:
                    names[gap : gap + NAME_BYTES] = _TOMBSTONE_NAME
                    filled += 1
                between = (between + 1) & _MASK
        self._header[_FILLED] = self._header[_SWEPT_FILLED] = filled
        self._header[_GENERATION] += 1
        self._forget_unheld_slots()


class _SharedFile:
    """The open file, its mapping, typed views over it and this process's row; closed once.

    Apart from ``SharedConcurrency`` so that a finalizer can close it (and give
    back the row) when its owner is garbage-collected unclosed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.row = -1
        self.owner_pid = os.getpid()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if os.pread(self.fd, len(_LAYOUT), 0) != _LAYOUT or os.fstat(self.fd).st_size != FILE_BYTES:
                # New, or of another layout: start from zeros. The file stays sparse
                # (pages never written take no space).
                os.ftruncate(self.fd, 0)
                os.ftruncate(self.fd, FILE_BYTES)
                os.pwrite(self.fd, _LAYOUT, 0)
            self.map = mmap.mmap(self.fd, FILE_BYTES)
        except BaseException:
            os.close(self.fd)
            raise
        whole = memoryview(self.map)
        self.header = whole[:_HEADER_BYTES].cast("i")
        self.processes = whole[_PROCESSES_AT:_TOTALS_AT].cast("q")
        self.totals = whole[_TOTALS_AT : _TOTALS_AT + PROCESS_ROWS * 4].cast("i")
        self.counts = whole[_COUNTS_AT:FILE_BYTES].cast("i")
        self._views = [self.header, self.processes, self.totals, self.counts, whole]
        try:
            self.reclaim_dead_rows()
            if self.header[_HIGH_WATER] == 0 and self.header[_FILLED] > 0:
                self._forget_functions()  # nobody is running: start from an empty table
            self.row = self._claim_row()
        except BaseException:
            self.close()
            raise
        finally:
            if self.fd >= 0:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _forget_functions(self) -> None:
        # The counters are zero already: every row was freed, and freeing zeroes a row.
        for slot in range(FUNCTION_SLOTS):
            at = _NAMES_AT + slot * NAME_BYTES
            if self.map[at] != _EMPTY:  # writing only these leaves unused pages unallocated
                self.map[at : at + NAME_BYTES] = _EMPTY_NAME
        self.header[_FILLED] = self.header[_SWEPT_FILLED] = 0
        self.header[_GENERATION] += 1

    def _claim_row(self) -> int:
        processes = self.processes
        for row in range(PROCESS_ROWS):
            if processes[2 * row] == 0:
                self._free_row(row)  # anything left behind by a process killed mid-update
                processes[2 * row], processes[2 * row + 1] = os.getpid(), _process_start(os.getpid())
                self._update_high_water()
                return row
        raise WasmhostError(
            f"{self.path}: all {PROCESS_ROWS} process rows are taken by live processes;"
            f" at most {PROCESS_ROWS} processes can share a data directory"
        )

    def reclaim_dead_rows(self) -> None:
        """Zero and free the rows of processes that have exited; the caller holds the file lock."""
        processes = self.processes
        for row in range(self.header[_HIGH_WATER]):
            pid = processes[2 * row]
            if pid != 0 and row != self.row and not _process_alive(pid, processes[2 * row + 1]):
                self._free_row(row)
        self._update_high_water()

    def _free_row(self, row: int) -> None:
        column = self.counts[row::PROCESS_ROWS]
        for slot, count in enumerate(column):
            if count:  # writing only these leaves the pages never used unallocated
                column[slot] = 0
        self.totals[row] = 0
        self.processes[2 * row] = self.processes[2 * row + 1] = 0

    def _update_high_water(self) -> None:
        high = PROCESS_ROWS
        while high > 0 and self.processes[2 * (high - 1)] == 0:
            high -= 1
        self.header[_HIGH_WATER] = high

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.row >= 0 and os.getpid() == self.owner_pid:  # a forked child must not free its parent's row
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                self._free_row(self.row)
                self._update_high_water()
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.row = -1
        for view in self._views:
            view.release()
        self.map.close()
        os.close(self.fd)
        self.fd = -1


def _encode(name: str) -> bytes:
    """``name`` as stored: NUL-padded UTF-8. Raises ``InvalidName`` when it does not fit."""
    raw = name.encode("utf-8", "surrogatepass")
    if not 0 < len(raw) <= NAME_BYTES or b"\0" in raw:
        raise InvalidName(f"function name {name!r} is invalid: use 1-{NAME_BYTES} bytes of UTF-8 without NUL")
    return raw.ljust(NAME_BYTES, b"\0")


def _home(key: bytes) -> int:
    """The slot where a stored name's probe starts (CRC-32: the same in every process)."""
    return zlib.crc32(key) & _MASK


def _process_start(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (Linux /proc); 0 when unknown, -1 for a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return 0
    if fields[0] in (b"Z", b"X"):  # exited but not yet reaped: it holds nothing
        return -1
    return int(fields[19])


def _process_alive(pid: int, start: int) -> bool:
    """Is the process that claimed a row (``pid``, started at ``start``) still running?

    ``start`` defeats pid reuse: another process given the same pid later has
    another start time. Without /proc, a pid that exists counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    now = _process_start(pid)
    return now != -1 and (start == 0 or now in (0, start))
