"""A change counter shared by every process on a data directory, read for free.

Each write to the registry bumps an 8-byte counter in a memory-mapped file;
readers compare it with the value they last saw and drop their cache when it
moved. Reading costs a memory load, where asking SQLite (``PRAGMA
data_version``) costs a query and a file lock on every invocation.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("<Q")


class Generation:
    """``<data_dir>/registry.gen``: bumped after each committed change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < _COUNTER.size:
            os.ftruncate(self._fd, _COUNTER.size)
        self._map = mmap.mmap(self._fd, _COUNTER.size)

    def value(self) -> int:
        return int(_COUNTER.unpack_from(self._map, 0)[0])

    def bump(self) -> None:
        """Increment under an exclusive lock, so concurrent writers never lose a bump."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, 0, self.value() + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1
