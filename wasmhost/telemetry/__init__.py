"""What the host records about invocations: log lines, metering (usage) and Prometheus metrics."""

from .logs import invocation_lines, log_invocation
from .metrics import HostCollector, render
from .store import DURATION_BUCKETS_S, FunctionTotals, TelemetryStore

__all__ = [
    "DURATION_BUCKETS_S",
    "FunctionTotals",
    "HostCollector",
    "TelemetryStore",
    "invocation_lines",
    "log_invocation",
    "render",
]
