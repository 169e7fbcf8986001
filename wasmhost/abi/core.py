"""Guest ABI v1 for core WebAssembly modules (see guests/ABI.md).

A guest exports ``memory``, ``wasmhost_alloc(len: i32) -> i32`` and
``wasmhost_handle(ptr: i32, len: i32) -> i64`` (``out_ptr << 32 | out_len``),
and optionally ``_initialize`` (a WASI reactor's constructor call). The request
is a msgpack map ``{"event", "context"}``; the response a msgpack map
``{"ok": value}`` or ``{"error": {"type", "message", ...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
import wasmtime

from ..errors import FunctionError, InvalidModule, InvalidResponse

WASI_MODULE = "wasi_snapshot_preview1"
HOST_MODULE = "wasmhost"

#: Host functions in the ``wasmhost`` import module, by name. None in ABI v1:
#: capabilities (logging, key-value, blobs, …) will register here.
HOST_FUNCTIONS: frozenset[str] = frozenset()

_I32 = wasmtime.ValType.i32()
_I64 = wasmtime.ValType.i64()
_EXPECTED_FUNCS = {
    "wasmhost_alloc": ([_I32], [_I32], "(i32) -> i32"),
    "wasmhost_handle": ([_I32, _I32], [_I64], "(i32, i32) -> i64"),
    "_initialize": ([], [], "() -> ()"),
}


@dataclass(frozen=True)
class CoreLayout:
    """Where a module's ABI exports sit (indices for ``wasmtime_instance_export_nth``)."""

    memory: int
    alloc: int
    handle: int
    initialize: int | None
    uses_wasi: bool


def inspect_module(module: wasmtime.Module) -> CoreLayout:
    """Check a compiled module against ABI v1 and find its exports.

    Raises ``InvalidModule`` naming the first problem: an import outside WASI
    preview 1 and the ``wasmhost`` module, a missing export, or a wrong signature.
    """
    uses_wasi = False
    for imp in module.imports:
        if imp.module == WASI_MODULE:
            uses_wasi = True
        elif imp.module == HOST_MODULE:
            if imp.name not in HOST_FUNCTIONS:
                raise InvalidModule(f"module imports {HOST_MODULE}.{imp.name}, which this host does not provide")
        else:
            raise InvalidModule(
                f"module imports {imp.module}.{imp.name}: only {WASI_MODULE} and {HOST_MODULE} imports are allowed"
            )

    found: dict[str, int] = {}
    for index, exp in enumerate(module.exports):
        ty = exp.type
        if exp.name == "memory":
            if not isinstance(ty, wasmtime.MemoryType):
                raise InvalidModule("export 'memory' must be a memory")
            if ty.is_64:
                raise InvalidModule("export 'memory' must be a 32-bit memory")
            found["memory"] = index
        elif exp.name in _EXPECTED_FUNCS:
            params, results, shown = _EXPECTED_FUNCS[exp.name]
            if not isinstance(ty, wasmtime.FuncType) or ty.params != params or ty.results != results:
                raise InvalidModule(f"export '{exp.name}' must be a function {shown}")
            found[exp.name] = index
    missing = [name for name in ("memory", "wasmhost_alloc", "wasmhost_handle") if name not in found]
    if missing:
        raise InvalidModule(
            "module is missing the guest ABI export(s) " + ", ".join(repr(m) for m in missing) + " (see guests/ABI.md)"
        )
    return CoreLayout(
        memory=found["memory"],
        alloc=found["wasmhost_alloc"],
        handle=found["wasmhost_handle"],
        initialize=found.get("_initialize"),
        uses_wasi=uses_wasi,
    )


_packer = msgpack.Packer(use_bin_type=True, datetime=False)


#: orjson options that make it refuse what JSON cannot carry exactly (integers
#: beyond ±2^53, and the types msgpack refuses: datetimes, dataclasses,
#: subclasses), so such an event goes as msgpack instead.
_JSON_EXACT = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def encode_request(event: Any, context: dict[str, Any], as_json: bool = False) -> bytes:
    """The request ``{"event", "context"}``: msgpack, or JSON when ``as_json`` and the event fits JSON.

    An event JSON cannot carry (binary data, non-string keys, big integers)
    falls back to msgpack, which every guest reads. Raises ``TypeError`` for
    events neither can encode.
    """
    request = {"event": event, "context": context}
    if as_json:
        try:
            return orjson.dumps(request, option=_JSON_EXACT)
        except TypeError:
            pass
    return _packer.pack(request)


def decode_response(data: bytes) -> Any:
    """The payload of a ``{"ok": value}`` response, msgpack or (first byte ``{``) JSON.

    Raises ``FunctionError`` for ``{"error": {...}}`` and ``InvalidResponse``
    for anything that is not one of the two shapes. (A msgpack map never starts
    with ``{``, 0x7b, which is the integer 123.)
    """
    if data and data[0] == 0x7B:  # "{"
        try:
            response = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidResponse(f"response is not valid JSON: {exc}") from None
    else:
        try:
            response = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise InvalidResponse(f"response is not valid msgpack: {exc}") from None
    if not isinstance(response, dict) or len(response) != 1:
        raise InvalidResponse(
            'response must be a map with exactly one key, "ok" or "error"; got ' + _describe(response)
        )
    if "ok" in response:
        return response["ok"]
    if "error" not in response:
        raise InvalidResponse(f'response map must have key "ok" or "error", got {next(iter(response))!r}')
    error = response["error"]
    if not isinstance(error, dict) or not isinstance(error.get("type"), str):
        raise InvalidResponse('"error" must be a map with a string "type" and "message"')
    extra = {k: v for k, v in error.items() if k not in ("type", "message") and isinstance(k, str)}
    message = error.get("message")
    raise FunctionError(str(message) if message is not None else "", error_type=error["type"], **extra)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"a map with keys {sorted(map(str, value))[:5]}"
    return f"a {type(value).__name__}"
