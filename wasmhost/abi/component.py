"""Guest ABI v1 for components (WIT world ``wasmhost:function/handler``).

A component exports ``handle: func(request: list<u8>) -> list<u8>`` carrying
the same msgpack request and response as a core module (see abi/core.py) or,
for a component that declares it (abi/sections.py), the same maps as JSON:
the JavaScript SDK parses JSON natively, several times faster than msgpack.
This module checks a component at deploy and moves bytes across the call.

wasmtime-py converts a ``list<u8>`` one element at a time through ctypes
(about a microsecond per byte); here the value list is filled and read with
strided byte copies instead.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from ..errors import InvalidModule

EXPORT = "handle"
#: Interfaces a component may import: WASI preview 2 (the host grants no files,
#: sockets or inherited environment) and, later, wasmhost's own host interface.
ALLOWED_IMPORT_PREFIXES = ("wasi:", "wasmhost:function/")

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_PAYLOAD_OFFSET = ffi.wasmtime_component_val_t.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value
_LIST = ffi.WASMTIME_COMPONENT_LIST.value


@dataclass(frozen=True)
class ComponentLayout:
    """Where a component's ``handle`` export is (looked up once at deploy), and what it reads."""

    export_index: wc.ExportIndex
    #: The guest declared (``wasmhost:abi`` section) that it also reads JSON requests.
    accepts_json: bool = False


def inspect_component(component: wc.Component, engine: wasmtime.Engine, accepts_json: bool = False) -> ComponentLayout:
    """Check a compiled component against the ABI. Raises ``InvalidModule`` naming the problem.

    ``accepts_json`` comes from the component's binary (``sections.accepts_json``):
    the compiled form no longer has its custom sections.
    """
    ctype = component.type
    for name in ctype.imports(engine):
        if not name.startswith(ALLOWED_IMPORT_PREFIXES):
            raise InvalidModule(
                f"component imports {name}: only WASI preview 2 (wasi:*) and wasmhost:function imports are allowed"
            )
    if EXPORT not in ctype.exports(engine):
        raise InvalidModule(
            f"component does not export '{EXPORT}': build it against the WIT world in guests/wit "
            "(handle: func(request: list<u8>) -> list<u8>)"
        )
    index = component.get_export_index(EXPORT)
    if index is None:
        raise InvalidModule(f"component export '{EXPORT}' cannot be found")
    return ComponentLayout(index, accepts_json)


def call_bytes(store: wasmtime.Store, func: wc.Func, request: bytes) -> bytes:
    """Call ``func(list<u8>) -> list<u8>`` with ``request``; return the answer's bytes.

    Raises ``wasmtime.WasmtimeError`` when the guest traps or fails.
    """
    size = len(request)
    param = ffi.wasmtime_component_val_t()
    param.kind = _LIST
    ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(param.of.list), size)
    if size:
        cells = bytearray(size * _VAL_SIZE)
        cells[0::_VAL_SIZE] = bytes((_U8,)) * size
        cells[_PAYLOAD_OFFSET::_VAL_SIZE] = request
        ctypes.memmove(param.of.list.data, bytes(cells), len(cells))
    result = ffi.wasmtime_component_val_t()
    try:
        error = ffi.wasmtime_component_func_call(
            ctypes.byref(func._func), store._context(), ctypes.byref(param), 1, ctypes.byref(result), 1
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        try:
            if result.kind != _LIST:
                raise wasmtime.WasmtimeError("handle did not return a list<u8>")
            count = result.of.list.size
            raw = ctypes.string_at(result.of.list.data, count * _VAL_SIZE) if count else b""
            return raw[_PAYLOAD_OFFSET::_VAL_SIZE]
        finally:
            ffi.wasmtime_component_val_delete(ctypes.byref(result))
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(param))
        func.post_return(store)
