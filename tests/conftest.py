"""Shared fixtures: real guests built from guests/, real Hosts, a real uvicorn server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from wasmhost import FunctionConfig, Host, HostConfig
from wasmhost.server import create_app

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "guests" / "dist"


@pytest.fixture(scope="session")
def guests() -> Path:
    """guests/dist, built by guests/build.py (a no-op when up to date)."""
    subprocess.run([sys.executable, str(ROOT / "guests" / "build.py")], check=True, capture_output=True)
    return DIST


@pytest.fixture(scope="session")
def guest(guests: Path):
    """``guest("echo")`` -> the bytes of guests/dist/echo.wasm."""

    def read(name: str) -> bytes:
        return (guests / f"{name}.wasm").read_bytes()

    return read


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    with Host(data_dir=tmp_path / "data") as h:
        yield h


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving a Host's app on a free port, in a background thread."""

    def __init__(self, host: Host, admin_token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(host, admin_token), host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(host: Host, guest) -> Iterator[ServerThread]:
    """A server with the example guests deployed (spin with a 200 ms timeout)."""
    for name in ("hello", "echo", "counter", "trap", "error", "fib", "sleep_ms"):
        host.deploy(name, guest(name), FunctionConfig(memory_mb=16, timeout_ms=1000))
    host.deploy("spin", guest("spin"), FunctionConfig(memory_mb=16, timeout_ms=200))
    host.deploy("hog", guest("hog"), FunctionConfig(memory_mb=16, timeout_ms=2000))
    with ServerThread(host) as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


__all__ = ["HostConfig", "ServerThread", "free_port"]
