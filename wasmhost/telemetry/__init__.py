"""What the host records about invocations: logs (and, later, metrics and usage)."""

from .logs import log_invocation

__all__ = ["log_invocation"]
