"""Server processes for the HTTP scenarios: start, time the cold start, measure memory, stop.

Cold start, the same way as bench/peers.py measures the peers:

* ``first_request_ms``: once the port accepts a TCP connection (polled every
  5 ms, no request sent), the first ``POST`` of the echo event, connection
  included, until its whole response is read;
* ``spawn_to_ready_ms``: from ``Popen`` until that first answer.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .context import ROOT

ECHO_EVENT = b'{"name":"world","n":42,"tags":["a","b"]}'
"""The event every echo gets, over HTTP (also in bench/post.lua) and in-process."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def post(url: str, body: bytes = ECHO_EVENT, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url`` on a new connection; ``(status, body)``. Raises ``OSError``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    try:
        connection.request("POST", parts.path or "/", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Server:
    """A server process we started, with its cold start measured."""

    name: str
    url: str
    process: subprocess.Popen
    spawn_to_ready_ms: float
    first_request_ms: float
    first_status: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return tree_memory(self.pid)["rss_bytes"]


@contextmanager
def started(
    name: str, command: list[str], port: int, url: str, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> Iterator[Server]:
    """Run ``command`` (which must listen on ``port``), time its cold start, stop it (SIGINT) on exit.

    Raises ``RuntimeError`` if it exits or does not listen within ``timeout_s``.
    """
    errors = tempfile.TemporaryFile()  # a file, not a pipe: nothing has to keep reading it
    started_at = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not port_accepts(port):
            if process.poll() is not None:
                errors.seek(0)
                tail = errors.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with status {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s:.0f} s")
            time.sleep(0.005)
        accepting_at = time.perf_counter()
        status, body = post(url)
        answered_at = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"{name}: first request answered {status}: {body[:300]!r}")
        yield Server(name, url, process, (answered_at - started_at) * 1000, (answered_at - accepting_at) * 1000, status)
    finally:
        stop(process)
        errors.close()


def stop(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGINT the process group (uvicorn's graceful shutdown), then SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def process_memory(pid: int) -> dict[str, int]:
    """``rss_bytes`` (VmRSS) and ``pss_bytes`` (shared pages split between sharers) of one process."""
    memory = {"rss_bytes": 0, "pss_bytes": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                memory["rss_bytes"] = int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                memory["pss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return memory


def tree_memory(pid: int) -> dict[str, int]:
    """Memory of ``pid`` and its descendants: summed RSS (counts shared pages once per process) and PSS."""
    total = {"rss_bytes": 0, "pss_bytes": 0, "processes": 0}
    for member in descendants(pid):
        memory = process_memory(member)
        total["rss_bytes"] += memory["rss_bytes"]
        total["pss_bytes"] += memory["pss_bytes"]
        total["processes"] += 1
    return total


def self_rss_bytes() -> int:
    return process_memory(os.getpid())["rss_bytes"]
