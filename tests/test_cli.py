"""The ``wasmhost`` command as users run it: a real process, on a data directory or a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ServerThread


def run(*args: str, data_dir: Path | None = None, check: bool = True, env: dict | None = None):
    command = [sys.executable, "-m", "wasmhost"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    result = subprocess.run(
        command + list(args), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def test_deploy_invoke_list_get_config_delete(tmp_path, guests):
    data = tmp_path / "data"
    deployed = json.loads(
        run(
            "deploy", "echo", str(guests / "echo.wasm"), "--memory-mb", "16", "--timeout-ms", "1000", data_dir=data
        ).stdout
    )
    assert deployed["config"]["memory_mb"] == 16 and deployed["config"]["timeout_ms"] == 1000

    invoked = run("invoke", "echo", "--data", '{"a":1}', "--verbose", data_dir=data)
    assert json.loads(invoked.stdout) == {"a": 1}
    assert "START RequestId:" in invoked.stderr
    assert "END RequestId:" in invoked.stderr
    report = [line for line in invoked.stderr.splitlines() if line.startswith("REPORT")]
    assert len(report) == 1
    assert "Billed Duration: 1 ms\tMemory Size: 16 MB\tMax Memory Used: " in report[0]

    listing = run("list", data_dir=data).stdout
    assert "echo" in listing and "16MB" in listing and "1000ms" in listing

    run("config", "echo", "--timeout-ms", "2500", "--env", "A=b", data_dir=data)
    got = json.loads(run("get", "echo", data_dir=data).stdout)
    assert got["config"]["timeout_ms"] == 2500 and got["config"]["env"] == {"A": "b"}

    run("delete", "echo", data_dir=data)
    missing = run("get", "echo", data_dir=data, check=False)
    assert missing.returncode == 1
    assert "FunctionNotFound" in missing.stderr


def test_data_dir_from_environment(tmp_path, guests):
    env = {"WASMHOST_DATA_DIR": str(tmp_path / "from-env")}
    run("deploy", "hello", str(guests / "hello.wasm"), env=env)
    assert (tmp_path / "from-env" / "wasmhost.db").exists()
    out = run("invoke", "hello", env=env)
    assert json.loads(out.stdout)["body"] == "Hello from Serverless!"


def test_wat_file_deploys(tmp_path):
    wat = tmp_path / "hi.wat"
    wat.write_text(
        '(module (memory (export "memory") 1) (data (i32.const 16) "\\81\\a2ok\\a2hi")'
        ' (func (export "wasmhost_alloc") (param i32) (result i32) i32.const 1024)'
        ' (func (export "wasmhost_handle") (param i32 i32) (result i64) i64.const 68719476743))'
    )
    run("deploy", "hi", str(wat), data_dir=tmp_path / "d")
    assert json.loads(run("invoke", "hi", data_dir=tmp_path / "d").stdout) == "hi"


def test_errors_exit_non_zero_and_say_why(tmp_path, guests):
    data = tmp_path / "data"
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not a module")
    result = run("deploy", "bad", str(bad), data_dir=data, check=False)
    assert result.returncode == 1 and "InvalidModule" in result.stderr

    result = run("deploy", "bad name", str(guests / "echo.wasm"), data_dir=data, check=False)
    assert result.returncode == 1 and "InvalidName" in result.stderr

    run("deploy", "trap", str(guests / "trap.wasm"), data_dir=data)
    result = run("invoke", "trap", data_dir=data, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["type"] == "Trap"

    result = run("invoke", "trap", "--data", "{oops", data_dir=data, check=False)
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_commands_act_on_a_server_with_url(host, guests):
    with ServerThread(host, admin_token="tok") as server:
        env = {"WASMHOST_URL": server.url, "WASMHOST_ADMIN_TOKEN": "tok"}
        run("deploy", "echo", str(guests / "echo.wasm"), "--memory-mb", "16", env=env)
        assert host.get("echo").config.memory_mb == 16
        out = run("invoke", "echo", "--data", '{"via":"http"}', "--verbose", env=env)
        assert json.loads(out.stdout) == {"via": "http"}
        assert "REPORT RequestId:" in out.stderr and "Billed Duration:" in out.stderr
        assert "echo" in run("list", env=env).stdout
        run("config", "echo", "--timeout-ms", "700", env=env)
        assert host.get("echo").config.timeout_ms == 700
        run("delete", "echo", env=env)
        denied = run("list", env={"WASMHOST_URL": server.url, "WASMHOST_ADMIN_TOKEN": "wrong"}, check=False)
        assert denied.returncode == 1 and "Unauthorized" in denied.stderr


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.10"])
def test_serve_refuses_a_public_address_without_a_token(tmp_path, address):
    result = run("serve", "--host", address, data_dir=tmp_path, check=False, env={"WASMHOST_ADMIN_TOKEN": ""})
    assert result.returncode == 1
    assert "without an admin token" in result.stderr


@pytest.mark.slow
def test_operations_commands_act_on_a_server_with_url(tmp_path, guests):
    from wasmhost import Host, HostConfig

    config = HostConfig(data_dir=str(tmp_path / "served"), async_retry_delay_s=0.05)
    with Host(config=config) as host, ServerThread(host, admin_token="tok") as server:
        env = {"WASMHOST_URL": server.url, "WASMHOST_ADMIN_TOKEN": "tok"}
        run("deploy", "echo", str(guests / "echo.wasm"), "--secret", "KEY=hidden", env=env)
        assert "hidden" not in run("get", "echo", env=env).stdout
        assert json.loads(run("publish", "echo", "--description", "v1", env=env).stdout)["version"] == "1"
        assert "v1" in run("versions", "echo", env=env).stdout
        run("alias", "set", "echo", "live", "1", env=env)
        assert json.loads(run("alias", "get", "echo", "live", env=env).stdout)["version"] == "1"
        assert "live" in run("alias", "list", "echo", env=env).stdout
        tailed = run("invoke", "echo:live", "--data", "[7]", "--log-tail", env=env)
        assert json.loads(tailed.stdout) == [7] and "Version: 1" in tailed.stderr

        # logs --follow over server-sent events: the lines of an invocation made while it follows
        follower = subprocess.Popen(
            [sys.executable, "-m", "wasmhost", "logs", "echo", "--follow", "--since", "1h"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        try:
            assert "START RequestId:" in follower.stdout.readline()  # the earlier invocation
            request_id = host.invoke("echo", {"later": 1}).request_id
            seen = ""
            while request_id not in seen or "REPORT" not in seen.splitlines()[-1]:
                seen += follower.stdout.readline()
        finally:
            follower.kill()
            follower.wait()
        assert f"START RequestId: {request_id}" in seen

        logs = run("logs", "echo", "--limit", "3", env=env).stdout.splitlines()
        assert len(logs) == 3 and "REPORT RequestId:" in logs[-1]
        assert json.loads(run("usage", "echo", env=env).stdout)["invocations"] == 2

        run(
            "deploy", "bad", str(guests / "error.wasm"), "--max-retry-attempts", "0", "--on-failure", "queue:q", env=env
        )
        assert json.loads(run("invoke", "bad", "--async", env=env).stdout)["status"] == "queued"
        deadline = time.monotonic() + 20
        while "q " not in run("dead-letters", "list", env=env).stdout:
            assert time.monotonic() < deadline, "no dead letter"
            time.sleep(0.1)
        assert json.loads(run("dead-letters", "list", "q", env=env).stdout)[0]["function"] == "bad"
        assert "redriven 1" in run("dead-letters", "redrive", "q", env=env).stderr
        refused = run("delete-version", "echo", "1", env=env, check=False)
        assert refused.returncode == 1 and "ResourceConflict" in refused.stderr
