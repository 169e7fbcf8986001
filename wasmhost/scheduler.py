"""Concurrency control: how many invocations may be in flight, per function and per host."""

from __future__ import annotations

import threading
from collections import defaultdict

from .errors import Throttled


class ConcurrencyGate:
    """Counts in-flight invocations in this process and refuses the ones over a limit.

    ``host_limit`` caps the whole process; a function's ``reserved_concurrency``
    caps that function. Thread-safe; ``acquire``/``release`` cost a lock each.
    """

    def __init__(self, host_limit: int) -> None:
        self.host_limit = host_limit
        self.in_flight = 0
        self.per_function: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def acquire(self, name: str, reserved: int | None) -> None:
        """Take a slot for ``name`` or raise ``Throttled`` saying which limit was hit."""
        with self._lock:
            if reserved is not None and self.per_function[name] >= reserved:
                raise Throttled(f"function {name!r} is at its reserved concurrency of {reserved}", retry_after_s=1)
            if self.in_flight >= self.host_limit:
                raise Throttled(f"host is at its concurrency limit of {self.host_limit}", retry_after_s=1)
            self.per_function[name] += 1
            self.in_flight += 1

    def release(self, name: str) -> None:
        with self._lock:
            self.per_function[name] -= 1
            self.in_flight -= 1
