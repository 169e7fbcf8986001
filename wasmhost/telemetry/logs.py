"""Lambda-style invocation logs: START, the guest's output, END, REPORT.

Written to the ``wasmhost.invocations`` logger at INFO. Embedded hosts are
quiet unless the application configures logging; ``wasmhost serve`` prints them.
"""

from __future__ import annotations

import logging

from ..result import InvocationResult

logger = logging.getLogger("wasmhost.invocations")


def invocation_lines(result: InvocationResult) -> list[str]:
    """The log lines of one invocation, in order."""
    lines = [f"START RequestId: {result.request_id} Version: {result.function_version}"]
    lines.extend(line for line in result.logs.splitlines() if line)
    if result.error is not None:
        lines.append(f"{result.request_id}\t{result.error.type}: {result.error.message}")
    lines.append(f"END RequestId: {result.request_id}")
    lines.append(result.report_line())
    return lines


def log_invocation(result: InvocationResult) -> None:
    if logger.isEnabledFor(logging.INFO):
        prefix = f"[{result.function_name}] "
        for line in invocation_lines(result):
            logger.info(prefix + line)
