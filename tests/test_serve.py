"""``wasmhost serve`` as a real process: --deploy-dir, --workers 2 on one data directory, logs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

pytestmark = pytest.mark.slow


class ServeProcess:
    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "wasmhost", "--data-dir", str(data_dir), "serve", "--port", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASMHOST_")}
        self.process = subprocess.Popen(
            command + list(args), stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), env=env
        )

    def __enter__(self) -> ServeProcess:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def examples(tmp_path, guests):
    """A folder of a few C examples to deploy (all of guests/dist takes a minute to compile)."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for name in ("hello", "echo", "spin"):
        shutil.copyfile(guests / f"{name}.wasm", folder / f"{name}.wasm")
    return folder


def test_serve_with_examples_and_two_workers(tmp_path, examples):
    guests = examples
    with ServeProcess(tmp_path / "data", "--workers", "2", "--deploy-dir", str(examples)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            hello = client.post("/invoke/hello", json={"name": "world"})
            assert hello.status_code == 200
            assert hello.json() == {"statusCode": 200, "body": "Hello from Serverless!"}

            # A deploy through one worker is seen by both on their next request.
            assert client.put("/functions/late", content=(guests / "echo.wasm").read_bytes()).status_code == 201
            for i in range(30):
                assert client.post("/invoke/late", json=i).json() == i
            client.patch("/functions/late/config", json={"reserved_concurrency": 0})
            statuses = {client.post("/invoke/late", json=0).status_code for _ in range(20)}
            assert statuses == {429}

        assert server.process.poll() is None
    assert server.process.returncode == 0 or server.process.returncode == -signal.SIGINT
    output = server.output()
    assert "[hello] START RequestId: " in output
    assert "[hello] hello: invoked" in output
    assert "[hello] END RequestId: " in output
    assert "[hello] REPORT RequestId: " in output and "Billed Duration: 1 ms" in output
    assert "deployed echo from" in output


def test_restarted_server_serves_from_the_cache(tmp_path, examples):
    data = tmp_path / "data"
    with ServeProcess(data, "--deploy-dir", str(examples)) as server:
        assert httpx.post(f"{server.url}/invoke/echo", json=1).json() == 1
    cache_before = {p.name: p.stat().st_mtime_ns for p in (data / "cache").iterdir()}
    with ServeProcess(data, "--deploy-dir", str(examples)) as server:
        assert httpx.post(f"{server.url}/invoke/echo", json=2).json() == 2
        assert "deployed" not in server.output()  # nothing changed, nothing redeployed
    assert {p.name: p.stat().st_mtime_ns for p in (data / "cache").iterdir()} == cache_before
