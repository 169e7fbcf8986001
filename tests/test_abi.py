"""Deploy-time checks and the response contract of guest ABI v1."""

from __future__ import annotations

import datetime
import json
from enum import IntFlag as _IntFlag

import msgpack
import pytest

from wasmhost import FunctionConfig, Host, InvalidModule, InvalidName
from wasmhost.abi.core import encode_request
from wasmhost.abi.sections import (
    ABI_SECTION,
    accepts_json,
    custom_section,
    file_accepts_json,
    find_custom_section,
    with_custom_section,
)
from wasmhost.host import to_wasm

from .wat import OK_HI, responder


class IntFlag(_IntFlag):
    A = 1


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
        (b'{"ok": ', "not valid JSON"),
        (b'{"ok": 1, "extra": 2}', "exactly one key"),
        (b'{"result": 1}', 'must have key "ok" or "error"'),
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


def test_a_json_response_is_read_like_msgpack(host):
    # A response whose first byte is "{" is JSON (a msgpack map never starts so).
    host.deploy("f", responder(b'{"ok":{"a":[1,2.5,null,"\xc3\xa9"]}}'))
    assert host.invoke("f", {}).payload == {"a": [1, 2.5, None, "é"]}
    host.deploy("g", responder(b'{"error":{"type":"ValidationError","message":"bad","field":"x"}}'))
    error = host.invoke("g", {}).error
    assert (error.type, error.error_type, error.message, error.to_dict()["field"]) == (
        "FunctionError",
        "ValidationError",
        "bad",
        "x",
    )


def test_json_requests_fall_back_to_msgpack_for_what_json_cannot_carry():
    context = {"request_id": "r"}
    as_json = encode_request({"a": [1, "é", None]}, context, as_json=True)
    assert as_json.startswith(b"{") and json.loads(as_json) == {"event": {"a": [1, "é", None]}, "context": context}
    assert encode_request({"a": 1}, context) == msgpack.packb({"event": {"a": 1}, "context": context})
    for event in (b"\x00bin", {1: "int key"}, 2**53, -(2**60)):
        request = encode_request(event, context, as_json=True)
        assert msgpack.unpackb(request, strict_map_key=False)["event"] == event, event
    assert json.loads(encode_request(IntFlag.A, context, as_json=True))["event"] == 1  # as msgpack gives it
    for unencodable in (object(), datetime.datetime(2026, 1, 1)):  # refused either way, as for core modules
        with pytest.raises(TypeError):
            encode_request(unencodable, context, as_json=True)


def test_the_abi_section_is_found_at_the_top_level_only():
    base = to_wasm("(module)")
    assert not accepts_json(base)
    assert accepts_json(with_custom_section(base, ABI_SECTION, b"json"))
    assert accepts_json(with_custom_section(base, ABI_SECTION, b"other,json"))
    assert not accepts_json(with_custom_section(base, ABI_SECTION, b"jsonx"))
    assert not accepts_json(with_custom_section(base, "wasmhost:other", b"json"))
    assert find_custom_section(with_custom_section(base, "a", b"1") + custom_section("b", b"2"), "b") == b"2"
    assert find_custom_section(base + b"\x00\xff", "b") is None  # truncated: no answer, no exception
    assert find_custom_section(b"\x7fELF", "b") is None


def test_javascript_components_declare_json_and_get_it(host, guests):
    path = guests / "js-echo.wasm"
    if not path.exists():
        pytest.skip("guests/dist/js-echo.wasm is not built (make guests)")
    assert file_accepts_json(path)
    host.deploy("js", path.read_bytes())
    event = {"a": [1, "é", None, {"b": True}], "big": 2**60, "bin": b"\x00\xff"}
    assert host.invoke("js", event).payload == event  # big int and bytes: msgpack, exact
    assert host.invoke("js", {"a": 1.5}).payload == {"a": 1.5}  # JSON both ways
    assert host._ready["js"].accepts_json
    restarted = Host(host.config.data_dir)  # a restart reads the section from the stored blob
    try:
        assert restarted.invoke("js", {"a": 1}).payload == {"a": 1}
        assert restarted._ready["js"].accepts_json
    finally:
        restarted.close()
