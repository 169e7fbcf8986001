"""What the host records about invocations: log lines, metering (usage) and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .logs import invocation_lines, log_invocation
from .store import DURATION_BUCKETS_S, FunctionTotals, TelemetryStore

if TYPE_CHECKING:
    from .metrics import HostCollector, render

__all__ = [
    "DURATION_BUCKETS_S",
    "FunctionTotals",
    "HostCollector",
    "TelemetryStore",
    "invocation_lines",
    "log_invocation",
    "render",
]


def __getattr__(name: str) -> Any:
    # prometheus_client takes ~15 ms to import; only a server answering /metrics needs it.
    if name in ("HostCollector", "render"):
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
