"""Python functions: Lambda's handler(event, context) built from source into a component.

Builds take about ten seconds each (cached by their inputs afterwards), so these
tests share one host per session and are marked slow.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasmhost import FunctionConfig, Host
from wasmhost.build import BuildError, build

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "guests" / "python" / "examples"


@pytest.fixture(scope="session")
def py_host(tmp_path_factory):
    with Host(data_dir=tmp_path_factory.mktemp("py-host")) as host:
        hello = build(EXAMPLES / "hello")
        host.deploy("hello", hello.path.read_bytes(), hello.project.config())
        kitchen = build(EXAMPLES / "kitchen")
        host.deploy("kitchen", kitchen.path.read_bytes(), kitchen.project.config())
        yield host


def test_lambda_hello_world_verbatim(py_host):
    result = py_host.invoke("hello", {"key1": "value1"})
    assert result.error is None
    assert result.payload == {"statusCode": 200, "body": json.dumps({"message": "Hello from Serverless!"})}
    lines = result.logs.splitlines()
    assert lines[0] == 'Received event: {"key1": "value1"}'
    assert lines[1].startswith("Time remaining (ms): ") and 2000 < int(lines[1].split(": ")[1]) <= 3000


def test_context_has_lambdas_names(py_host):
    context = py_host.invoke("kitchen", {"action": "context"}, request_id="req-42").payload
    assert context["function_name"] == "kitchen"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == 64
    assert context["aws_request_id"] == "req-42"
    assert context["invoked_function_arn"].endswith(":function:kitchen")
    assert context["log_group_name"] == "/aws/lambda/kitchen"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 0 < context["remaining_ms"] <= 1000


def test_exception_is_a_function_error_shaped_like_lambdas(py_host):
    result = py_host.invoke("kitchen", {"action": "raise", "value": 7})
    error = result.error
    assert error.type == "FunctionError" and error.error_type == "ValueError"
    assert error.message == "bad value: 7"
    assert error.details["errorType"] == "ValueError"
    assert error.details["errorMessage"] == "bad value: 7"
    assert any("handler.py" in frame and "in handler" in frame for frame in error.details["stackTrace"])


def test_module_state_does_not_carry_over(py_host):
    assert [py_host.invoke("kitchen", {"action": "counter"}).payload for _ in range(3)] == [1, 1, 1]


def test_infinite_loop_is_stopped_within_30_ms_of_the_timeout(py_host):
    started = time.monotonic()
    result = py_host.invoke("kitchen", {"action": "spin"})
    elapsed_ms = (time.monotonic() - started) * 1000
    assert result.error.type == "Timeout"
    assert 1000 <= elapsed_ms < 1000 + 30 + 50  # 30 ms target, plus instantiation and a noisy machine


def test_sleep_is_stopped_at_the_timeout(py_host):
    started = time.monotonic()
    result = py_host.invoke("kitchen", {"action": "sleep", "seconds": 5})
    assert result.error.type == "Timeout"
    assert (time.monotonic() - started) < 1.5


def test_memory_bomb_is_out_of_memory(py_host):
    result = py_host.invoke("kitchen", {"action": "bomb"})
    assert result.error.type == "OutOfMemory"
    assert "64 MB" in result.error.message
    assert py_host.invoke("kitchen", {"action": "echo", "after": "bomb"}).payload == {"action": "echo", "after": "bomb"}


def test_environment_and_files(py_host):
    assert py_host.invoke("kitchen", {"action": "env"}).payload == {"GREETING": "hello"}
    result = py_host.invoke("kitchen", {"action": "read", "path": "/etc/passwd"})
    assert result.error.error_type == "FileNotFoundError"


def test_environment_is_exactly_env_and_secrets(py_host):
    """env + secrets reach os.environ (through wasi:cli/environment), nothing else; secrets are never shown."""
    kitchen = build(EXAMPLES / "kitchen")  # cached: the py_host fixture built it
    env = {"STAGE": "test", "GREETING": "héllo"}
    config = kitchen.project.config({"env": env, "secrets": {"API_KEY": "s3cr3t"}})
    py_host.deploy("kitchen-env", kitchen.path.read_bytes(), config)
    result = py_host.invoke("kitchen-env", {"action": "env"})
    assert result.error is None, result.error
    assert result.payload == {"STAGE": "test", "GREETING": "héllo", "API_KEY": "s3cr3t"}
    py_host.update_config("kitchen-env", env={"STAGE": "prod"})
    assert py_host.invoke("kitchen-env", {"action": "env"}).payload == {"STAGE": "prod", "API_KEY": "s3cr3t"}
    assert "s3cr3t" not in json.dumps(py_host.get("kitchen-env").to_dict())
    assert "s3cr3t" not in json.dumps([record.to_dict() for record in py_host.list()])


def test_bundled_package_from_the_functions_folder(py_host):
    assert py_host.invoke("kitchen", {"action": "shout", "text": "hi"}).payload == "HI!"


def test_ainvoke_runs_components_off_the_event_loop(py_host):
    async def main():
        return await asyncio.gather(
            py_host.ainvoke("kitchen", {"action": "echo", "n": 1}), py_host.ainvoke("kitchen", {"action": "spin"})
        )

    echo, spin = asyncio.run(main())
    assert echo.payload == {"action": "echo", "n": 1}
    assert spin.error.type == "Timeout"


def test_restarted_host_loads_the_component_from_the_cache(py_host):
    with Host(data_dir=py_host.config.data_dir) as again:
        result = again.invoke("hello", {})
        assert result.error is None and result.cold is True
        assert again.engine.cache.compiles == 0


def test_cli_deploys_python_source(tmp_path):
    data = tmp_path / "data"
    command = [sys.executable, "-m", "wasmhost", "--data-dir", str(data)]
    subprocess.run([*command, "deploy", "hello", str(EXAMPLES / "hello")], check=True, capture_output=True)
    out = subprocess.run(
        [*command, "invoke", "hello", "--data", '{"a": 1}'], check=True, capture_output=True, text=True
    )
    assert json.loads(out.stdout)["statusCode"] == 200


# --- build errors (no componentize-py run: these fail before it) -------------


def test_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return {\n")
    with pytest.raises(BuildError) as info:
        build(tmp_path)
    assert f"{tmp_path / 'handler.py'}:2" in info.value.message or f"{tmp_path / 'handler.py'}:3" in info.value.message
    assert "syntax error" in info.value.message


def test_missing_handler_function_is_named(tmp_path):
    (tmp_path / "handler.py").write_text("def main(event, context):\n    return 1\n")
    (tmp_path / "wasmhost.toml").write_text('handler = "handler.handle"\n')
    with pytest.raises(BuildError) as info:
        build(tmp_path)
    assert "no function 'handle'" in info.value.message and "handler.py" in info.value.message
    assert "main" in info.value.message


def test_missing_handler_file_is_named(tmp_path):
    (tmp_path / "wasmhost.toml").write_text('lang = "python"\nhandler = "app.run"\n')
    with pytest.raises(BuildError) as info:
        build(tmp_path)
    assert "app.py" in info.value.message


def test_bad_wasmhost_toml_is_named(tmp_path):
    from wasmhost import InvalidConfig

    (tmp_path / "handler.py").write_text("def handler(e, c): return 1\n")
    (tmp_path / "wasmhost.toml").write_text("memory_mb = 0\n")
    with pytest.raises(InvalidConfig) as info:
        build(tmp_path)
    assert "memory_mb" in info.value.message


def test_init_creates_a_project_that_builds(tmp_path, monkeypatch):
    from wasmhost.build.templates import init

    root = init("fn", "python", tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "handler.py", "wasmhost.toml"]
    assert len((root / "README.md").read_text().strip().splitlines()) == 3
    with Host(data_dir=tmp_path / "data") as host:
        built = build(root)
        host.deploy("fn", built.path.read_bytes(), built.project.config(FunctionConfig().to_dict() | {"memory_mb": 64}))
        assert host.invoke("fn", {"x": 1}).payload["statusCode"] == 200


def test_requirements_are_bundled(tmp_path):
    """Pure-Python wheels from requirements.txt (fetched from the package index at build time)."""
    (tmp_path / "handler.py").write_text(
        "import six\n\ndef handler(event, context):\n    return {'six': six.__version__, 'py3': six.PY3}\n"
    )
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    built = build(tmp_path)
    with Host(data_dir=tmp_path / "data") as host:
        host.deploy("deps", built.path.read_bytes(), FunctionConfig(memory_mb=64))
        assert host.invoke("deps", {}).payload == {"six": "1.16.0", "py3": True}


def test_requirement_without_a_pure_wheel_is_a_clear_build_error(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.0\n")
    with pytest.raises(BuildError) as info:
        build(tmp_path)
    assert "requirements.txt" in info.value.message and "pure-Python" in info.value.message
