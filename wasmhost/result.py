"""What an invocation returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import MiB
from .errors import InvocationError


@dataclass
class InvocationResult:
    """The outcome of one invocation and what it used.

    ``payload`` is the guest's answer (None on error); ``error`` is None or an
    :class:`~wasmhost.errors.InvocationError` with ``.type`` and ``.message``.
    """

    payload: Any
    error: InvocationError | None
    request_id: str
    function_name: str
    function_version: str
    duration_ms: float
    """Wall time of the sandbox (create, run, tear down), in milliseconds."""
    billed_ms: int
    """``duration_ms`` rounded up to the next millisecond (at least 1)."""
    memory_mb: int
    """The function's configured memory size, in MiB."""
    fuel_used: int
    """wasmtime fuel consumed (≈ wasm instructions executed)."""
    max_memory_bytes: int
    """Linear memory of the instance at its end (memory only grows), in bytes."""
    cold: bool
    """True when this process had to load the function's code for this invocation."""
    logs: str
    """The guest's stdout and stderr, bounded (see ``HostConfig.log_limit_bytes``)."""
    status_code: int = 200
    """200 for a run; 202 for an event accepted for asynchronous invocation (nothing ran yet)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def max_memory_used_mb(self) -> int:
        return math.ceil(self.max_memory_bytes / MiB)

    def report_line(self) -> str:
        """Lambda's REPORT line for this invocation."""
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB"
        )
        if self.cold:
            line += "\tCold: true"
        if self.error is not None:
            line += f"\tStatus: error\tErrorType: {self.error.type}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "error": self.error.to_dict() if self.error else None,
            "request_id": self.request_id,
            "function_name": self.function_name,
            "function_version": self.function_version,
            "duration_ms": self.duration_ms,
            "billed_ms": self.billed_ms,
            "memory_mb": self.memory_mb,
            "fuel_used": self.fuel_used,
            "max_memory_bytes": self.max_memory_bytes,
            "cold": self.cold,
            "logs": self.logs,
            "status_code": self.status_code,
        }
