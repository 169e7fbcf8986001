"""Deploy-time checks and the response contract of guest ABI v1."""

from __future__ import annotations

import msgpack
import pytest

from wasmhost import FunctionConfig, InvalidModule, InvalidName
from wasmhost.host import to_wasm

from .wat import OK_HI, responder


def deploy_error(host, code) -> str:
    with pytest.raises(InvalidModule) as info:
        host.deploy("f", code)
    assert info.value.status == 400
    return info.value.message


def test_wat_text_is_accepted_like_wasm(host):
    host.deploy("f", responder(OK_HI))
    assert host.invoke("f", {}).payload == "hi"
    host.deploy("g", to_wasm(responder(OK_HI)))
    assert host.invoke("g", None).payload == "hi"


def test_bytes_that_are_not_webassembly_are_refused(host):
    assert "missing the \\0asm header" in deploy_error(host, b"\x7fELF\x02\x01\x01\x00" + bytes(100))
    assert "code is empty" in deploy_error(host, b"")
    assert "WAT text does not parse" in deploy_error(host, "(module (func $f (bogus)))")


def test_module_that_fails_validation_is_refused(host):
    message = deploy_error(host, b"\0asm\x01\x00\x00\x00\x01\xff\xff")
    assert "failed validation" in message


def test_component_is_refused_with_a_clear_message(host):
    assert "component" in deploy_error(host, b"\0asm\x0d\x00\x01\x00")


@pytest.mark.parametrize(
    ("imports", "named"),
    [
        ('(import "env" "foo" (func))', "env.foo"),
        ('(import "wasmhost" "launch_missiles" (func))', "wasmhost.launch_missiles"),
        ('(import "wasi_snapshot_preview1" "no_such_call" (func))', "no_such_call"),
        ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))', "fd_write"),
    ],
)
def test_imports_outside_wasi_and_wasmhost_are_refused_by_name(host, imports, named):
    assert named in deploy_error(host, responder(OK_HI, extra=imports))


def test_missing_abi_exports_are_named(host):
    message = deploy_error(host, '(module (memory (export "memory") 1))')
    assert "'wasmhost_alloc'" in message and "'wasmhost_handle'" in message
    message = deploy_error(host, '(module (func (export "wasmhost_alloc") (param i32) (result i32) i32.const 0))')
    assert "'memory'" in message


def test_wrong_export_signature_is_named(host):
    code = """(module (memory (export "memory") 1)
      (func (export "wasmhost_alloc") (param i32) (result i32) i32.const 0)
      (func (export "wasmhost_handle") (param i32 i32) (result i32) i32.const 0))"""
    assert "wasmhost_handle' must be a function (i32, i32) -> i64" in deploy_error(host, code)


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "slash/name", "dot.name", "ünï"])
def test_function_names_are_validated(host, name):
    with pytest.raises(InvalidName):
        host.deploy(name, responder(OK_HI))


def test_error_response_is_a_function_error(host):
    body = msgpack.packb({"error": {"type": "ValidationError", "message": "bad input", "field": "name"}})
    host.deploy("f", responder(body))
    result = host.invoke("f", {})
    assert result.payload is None
    assert result.error.type == "FunctionError"
    assert result.error.error_type == "ValidationError"
    assert result.error.message == "bad input"
    assert result.error.to_dict()["field"] == "name"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "exactly one key"),
        (msgpack.packb({"ok": 1, "extra": 2}), "exactly one key"),
        (msgpack.packb({"result": 1}), 'must have key "ok" or "error"'),
        (msgpack.packb({"error": "just a string"}), '"error" must be a map'),
    ],
)
def test_malformed_responses_are_invalid_response(host, response, expected):
    host.deploy("f", responder(response))
    result = host.invoke("f", {})
    assert result.error.type == "InvalidResponse"
    assert expected in result.error.message


def test_response_outside_memory_is_invalid_response(host):
    host.deploy("f", responder(OK_HI, out_len=70000))
    result = host.invoke("f", {})
    assert result.error.type == "InvalidResponse"
    assert "outside the guest's 65536-byte memory" in result.error.message


def test_alloc_returning_null_is_out_of_memory(host):
    host.deploy("f", responder(OK_HI, alloc_result="i32.const 0"))
    result = host.invoke("f", {"big": "x" * 100})
    assert result.error.type == "OutOfMemory"
    assert "could not allocate" in result.error.message


def test_module_initial_memory_over_the_limit_is_out_of_memory(host):
    code = responder(OK_HI).replace('(memory (export "memory") 1)', '(memory (export "memory") 400)')
    host.deploy("f", code, FunctionConfig(memory_mb=16))
    result = host.invoke("f", {})
    assert result.error.type == "OutOfMemory"


def test_request_carries_event_and_context(host):
    # The guest answers with the request bytes it received: {"ok": <request>}.
    code = """(module
      (memory (export "memory") 1)
      (func (export "wasmhost_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "wasmhost_handle") (param $p i32) (param $n i32) (result i64)
        ;; write {"ok": then copy the request right after it
        (i32.store8 (i32.const 1020) (i32.const 0x81))
        (i32.store8 (i32.const 1021) (i32.const 0xa2))
        (i32.store8 (i32.const 1022) (i32.const 0x6f))
        (i32.store8 (i32.const 1023) (i32.const 0x6b))
        (i64.or (i64.shl (i64.const 1020) (i64.const 32)) (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4))))))"""
    host.deploy("f", code, FunctionConfig(memory_mb=8, timeout_ms=1500))
    result = host.invoke("f", {"x": [1, 2.5, None, True, b"\x00bin"]}, request_id="req-1")
    request = result.payload
    assert request["event"] == {"x": [1, 2.5, None, True, b"\x00bin"]}
    context = request["context"]
    assert context["request_id"] == "req-1" == result.request_id
    assert context["function_name"] == "f"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_mb"] == 8
    import time

    assert abs(context["deadline_ms"] - (time.time() * 1000 + 1500)) < 1000
