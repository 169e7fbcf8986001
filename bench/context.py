"""What every scenario is handed: the run's size, where to work, how to report progress.

Three sizes: ``full`` (``make bench``, under ten minutes on 2 cores),
``quick`` (``make bench-quick``, about a minute) and ``tiny`` (the test suite:
seconds, C guests only). Each scenario keeps its own table of sizes per level.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "guests" / "dist"
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORKSPACE = BENCH / ".workspace"
LEVELS = ("tiny", "quick", "full")

T = TypeVar("T")


@dataclass
class BenchContext:
    """One run of the instrument."""

    level: str = "full"
    """``full``, ``quick`` or ``tiny``: how many repetitions every scenario does."""
    workspace: Path = WORKSPACE
    """Data directory kept between runs (echo of every language deployed, compile cache filled)."""
    started: float = field(default_factory=time.monotonic)
    scenario: str = "-"
    """Name of the scenario running now (shown in progress lines)."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")

    def pick(self, sizes: dict[str, T]) -> T:
        """The entry of ``sizes`` (keyed by level) for this run."""
        return sizes[self.level]

    def progress(self, message: str) -> None:
        """A progress line on stderr: elapsed time of the whole run, scenario, message."""
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {self.scenario}: {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU, versions, commit, load."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_bytes": _meminfo_total(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wasmtime": _version("wasmtime"),
        "uvicorn": _version("uvicorn"),
        "starlette": _version("starlette"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average": list(os.getloadavg()),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
