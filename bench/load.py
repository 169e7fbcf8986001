"""HTTP load with wrk (Debian's ``wrk``; ``make bench`` installs it): requests/s and latency percentiles."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from .context import BENCH

POST_SCRIPT = BENCH / "post.lua"
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def require_wrk() -> None:
    """Raise ``RuntimeError`` with the fix if wrk is missing."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (`make bench` does it)")


def wrk(url: str, connections: int, seconds: int) -> dict[str, Any]:
    """POST the echo event (bench/post.lua) to ``url`` for ``seconds`` (whole, ≥ 1) over ``connections`` connections.

    Returns ``rps``, ``p50_ms``, ``p99_ms``, ``requests``, ``non_2xx``, ``socket_errors``.
    Raises ``subprocess.CalledProcessError`` if wrk fails.
    """
    threads = max(1, min(connections, 2))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, int(seconds))}s", "--latency"]
    command += ["-s", str(POST_SCRIPT), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of one ``wrk --latency`` report."""
    latency = {
        percent: float(value) * _UNITS_MS[unit]
        for percent, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if rps is None:
        raise ValueError(f"not a wrk report: {output[:300]!r}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "requests": int(requests.group(1)) if requests else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    }
