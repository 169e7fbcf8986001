"""The guest SDKs of every language, through the real host: hello, echo, a fresh
instance per invocation, and an infinite loop stopped by the timeout.

Artifacts are built by ``make guests`` (guests/<lang>/builder.py). Where a
toolchain is absent the language is skipped with the reason — except under
CI=true, where `make install` must have installed every toolchain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from wasmhost import FunctionConfig

GUESTS = Path(__file__).resolve().parent.parent / "guests"
PREFIXES = {"zig": "zig", "assemblyscript": "as", "go": "go", "rust": "rust", "js": "js"}
#: Languages whose SDK and build plugin are in the repository.
LANGS = {lang: prefix for lang, prefix in PREFIXES.items() if (GUESTS / lang / "builder.py").exists()}
EVENT = {
    "str": "héllo" * 20000,
    "ints": [0, -1, 127, 128, -33, 65535, 2**32, -(2**40), 2**63 - 1],
    "float": 3.25,
    "bin": b"\x00\xff" * 300,
    "nested": {"a": [{"b": None, "c": True}], "empty": {}},
}


@pytest.fixture(params=sorted(LANGS))
def lang(request, guests):
    prefix = LANGS[request.param]
    if not (guests / f"{prefix}-hello.wasm").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"guests/dist/{prefix}-hello.wasm was not built: make guests must build every language in CI")
        pytest.skip(f"{request.param} toolchain not installed here (guests/dist/{prefix}-hello.wasm missing)")
    return prefix


def deploy(host, guests, prefix, name, **config):
    host.deploy(f"{prefix}-{name}", (guests / f"{prefix}-{name}.wasm").read_bytes(), FunctionConfig(**config))
    return f"{prefix}-{name}"


def test_hello_answers_and_logs(host, guests, lang):
    name = deploy(host, guests, lang, "hello", memory_mb=64)
    result = host.invoke(name, {"name": "world"})
    assert result.error is None, result.error
    payload = result.payload
    assert payload["statusCode"] == 200
    assert "Hello from Serverless!" in payload["body"]
    assert "hello: invoked" in result.logs or "world" in result.logs


def test_echo_round_trips(host, guests, lang):
    name = deploy(host, guests, lang, "echo", memory_mb=64)
    expected = EVENT
    if lang == "js":  # JavaScript numbers: ints beyond 2**53 are not exact
        expected = {**EVENT, "ints": [i for i in EVENT["ints"] if abs(i) < 2**53]}
    assert host.invoke(name, expected).payload == expected


def test_infinite_loop_is_stopped(host, guests, lang):
    name = deploy(host, guests, lang, "spin", memory_mb=64, timeout_ms=200)
    started = time.monotonic()
    result = host.invoke(name, {})
    elapsed_ms = (time.monotonic() - started) * 1000
    assert result.error.type == "Timeout"
    assert 200 <= elapsed_ms < 200 + 30 + 100  # 30 ms target plus instantiation on a noisy machine
    assert host.invoke(deploy(host, guests, lang, "echo", memory_mb=64), 1).payload == 1


def test_handler_error_is_a_function_error(host, guests, lang):
    name = deploy(host, guests, lang, "error", memory_mb=64)
    result = host.invoke(name, {})
    assert result.error.type == "FunctionError"
    assert result.error.error_type == "ValidationError"
    assert "name is required" in result.error.message


def test_memory_bomb_is_out_of_memory(host, guests, lang):
    name = deploy(host, guests, lang, "hog", memory_mb=32, timeout_ms=5000)
    result = host.invoke(name, {})
    assert result.error.type == "OutOfMemory", (result.error, result.logs[-300:])
    assert host.invoke(deploy(host, guests, lang, "echo", memory_mb=32), 2).payload == 2


def test_fresh_instance_per_invocation(host, guests, lang):
    name = deploy(host, guests, lang, "counter", memory_mb=64)
    assert [host.invoke(name, {}).payload for _ in range(3)] == [1, 1, 1]


def test_environment_is_exactly_env_and_secrets(host, guests, lang):
    """env + secrets reach the guest through WASI, nothing of the host's own; secrets are never shown."""
    env = {"STAGE": "test", "GREETING": "héllo"}
    name = deploy(host, guests, lang, "env", memory_mb=64, env=env, secrets={"API_KEY": "s3cr3t"})
    result = host.invoke(name, {})
    assert result.error is None, (result.error, result.logs[-300:])
    assert result.payload == {"STAGE": "test", "GREETING": "héllo", "API_KEY": "s3cr3t"}
    host.update_config(name, env={"STAGE": "prod"})
    assert host.invoke(name, {}).payload == {"STAGE": "prod", "API_KEY": "s3cr3t"}
    assert "s3cr3t" not in json.dumps(host.get(name).to_dict())
    assert "s3cr3t" not in json.dumps([record.to_dict() for record in host.list()])


@pytest.mark.parametrize(
    "lang", ["c", "zig", "assemblyscript", "go", "rust", pytest.param("js", marks=pytest.mark.slow)]
)
def test_init_then_deploy_from_source(tmp_path, lang):
    """`wasmhost init NAME --lang L`, then `wasmhost deploy NAME DIR` builds and deploys it."""
    import json
    import subprocess
    import sys

    from wasmhost.build.templates import init

    if lang in ("assemblyscript", "js"):
        from wasmhost.build.base import guests_dir
        from wasmhost.build.plugins import plugin

        module = plugin("assemblyscript") if lang == "assemblyscript" else None
        reason = module.toolchain_missing() if module else None
        if lang == "js" and not (guests_dir() / "js" / "node_modules").is_dir():
            reason = "run npm ci --prefix guests/js"
        if reason and os.environ.get("CI") != "true":
            pytest.skip(reason)
    if lang in ("go", "rust"):
        from wasmhost.build.plugins import plugin

        reason = plugin(lang).toolchain_missing()
        if reason and os.environ.get("CI") != "true":
            pytest.skip(reason)
    root = init("fn", lang, tmp_path)
    command = [sys.executable, "-m", "wasmhost", "--data-dir", str(tmp_path / "data")]
    subprocess.run([*command, "deploy", "fn", str(root)], check=True, capture_output=True)
    out = subprocess.run([*command, "invoke", "fn", "--verbose"], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["statusCode"] == 200
    assert "ms left" in out.stderr or "Time remaining (ms)" in out.stderr


def test_js_sdk_unit_tests_pass_under_node():
    """guests/js/test/*.test.mjs: the SDK's msgpack, JSON and handler rules, without WebAssembly."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed: make install needs it for the JavaScript guests")
        pytest.skip("node is not installed here")
    proc = subprocess.run([node, "--test", "test/"], cwd=GUESTS / "js", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
