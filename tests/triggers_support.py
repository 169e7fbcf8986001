"""Shared by the trigger tests: waiting, reading what the ``recorder`` guest logged,
requiring a real service, and a real ``wasmhost serve`` process to kill."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from wasmhost import FunctionConfig, Host

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
RECORDER = ROOT / "guests" / "python" / "examples" / "recorder"


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition", every_s: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {value!r})")
        time.sleep(every_s)


def recorder_wasm() -> bytes:
    """The ``recorder`` guest (guests/python/examples/recorder), built (cached by its inputs)."""
    from wasmhost.build import build

    return build(RECORDER).path.read_bytes()


#: Native code of the guests deployed by these helpers, shared by every host of the test session:
#: compiling the 19 MB Python recorder takes 7-13 s, mapping its cached code a few ms.
_SHARED_CACHE = Path(tempfile.mkdtemp(prefix="wasmhost-test-cwasm-"))


def deploy_cached(host: Host, name: str, wasm: bytes, config: FunctionConfig | None = None) -> None:
    """``host.deploy``, with the compiled code taken from (and given to) a cache shared by the
    session, so that each test's fresh data directory does not compile the same guest again."""
    cache = host.engine.cache
    digest = host.blobs.digest(wasm)
    target = cache.path(digest)
    shared = _SHARED_CACHE / target.name
    if shared.exists() and not target.exists():
        shutil.copyfile(shared, target)
    host.deploy(name, wasm, config)
    if target.exists() and not shared.exists():
        tmp = shared.with_suffix(".tmp")
        shutil.copyfile(target, tmp)
        os.replace(tmp, shared)


def deploy_recorder(host: Host, name: str = "recorder", config: FunctionConfig | None = None) -> None:
    """Deploy the recorder guest as ``name`` (its wasmhost.toml settings, then ``config``)."""
    from wasmhost.build import build

    built = build(RECORDER)
    deploy_cached(host, name, built.path.read_bytes(), config or built.project.config())


def recorder_seed(base: Path) -> Path:
    """A data directory under ``base`` with the recorder deployed as ``rec`` (timeout 10 s),
    made once and shared by the test modules that copy it (``copy_seed``)."""
    data = base / "recorder-seed" / "data"
    if not data.exists():
        with Host(data) as host:
            deploy_cached(host, "rec", recorder_wasm(), FunctionConfig(timeout_ms=10_000))
    return data


def copy_seed(seed: Path, tmp_path: Path) -> Path:
    """A copy of ``seed`` for one test."""
    shutil.copytree(seed, tmp_path / "data")
    return tmp_path / "data"


def log_lines(host: Host, function: str, prefix: str = "") -> list[str]:
    """Guest output lines of ``function`` stored by the host, oldest first (after ``prefix``)."""
    lines = []
    for entry in host.logs(function, limit=10000):
        for line in entry["message"].splitlines():
            if line.startswith(prefix):
                lines.append(line[len(prefix) :])
    return lines


def processed(host: Host, function: str, source: str | None = None) -> list[str]:
    """Bodies the recorder reported as processed (in order, repeats kept)."""
    bodies = []
    for line in log_lines(host, function, "processed "):
        event_source, _, body = line.partition(" ")
        if source is None or event_source == source:
            bodies.append(body)
    return bodies


def batches(
    host: Host, function: str, *, outcomes: tuple[str, ...] = ("processed", "failed"), with_outcome: bool = True
) -> list[list[str]]:
    """Per invocation of the recorder, in order, its records: ``"processed BODY"`` /
    ``"failed BODY"`` (only ``BODY`` without ``with_outcome``), for the given outcomes."""
    by_request: dict[str, list[str]] = {}
    for entry in host.logs(function, limit=10000):
        for line in entry["message"].splitlines():
            outcome, _, rest = line.partition(" ")
            if outcome in outcomes:
                body = rest.partition(" ")[2]
                by_request.setdefault(entry["request_id"], []).append(f"{outcome} {body}" if with_outcome else body)
    return list(by_request.values())


def require_service(port: int, name: str) -> None:
    """Skip (fail under CI=true) unless something listens on localhost:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return
    except OSError as error:
        message = f"{name} is not running on localhost:{port} ({error})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI needs it")
    pytest.skip(message)


class ServeProcess:
    """``python -m wasmhost serve`` on ``data_dir`` in a child process (to ``kill -9`` it)."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("WASMHOST_")}
        child_env.update(env or {})
        command = [sys.executable, "-m", "wasmhost", "--data-dir", str(data_dir), "serve", "--port", str(self.port)]
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, env=child_env)
        wait_for(self._healthy, timeout_s=60, what=f"the server on {self.url}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup runs."""
        self.process.kill()
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
