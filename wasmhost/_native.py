"""Our own ctypes prototypes for the few wasmtime C-API calls on the hot path.

wasmtime-py's public API looks up function types and converts every argument
over FFI on each call (tens of µs). The invoke path instead calls the C API
directly with prototypes declared once here. Two views of the same library:

* ``gil`` (``PyDLL``): keeps the GIL across the call. For calls that take
  nanoseconds, where dropping and re-taking the GIL would cost more.
* ``nogil`` (``CDLL``): releases the GIL. For anything that runs guest code
  (instantiation runs start functions, calls run the guest), so the epoch ticker
  and other threads keep running while a guest computes.

This pins us to wasmtime 50.0.x's C ABI (see pyproject.toml).
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_bool, c_char, c_int64, c_size_t, c_uint8, c_uint64, c_void_p
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

gil = ctypes.PyDLL(str(ffi.filename))
nogil = ctypes.CDLL(str(ffi.filename))

# Opaque handles are passed around as void pointers.
StorePtr = c_void_p
ContextPtr = c_void_p


# The C structs, as wasmtime-py declares them (layouts must match its library).
Func = ffi.wasmtime_func_t
Memory = ffi.wasmtime_memory_t
Instance = ffi.wasmtime_instance_t
Extern = ffi.wasmtime_extern_t
ValRaw = ffi.wasmtime_val_raw_t

EXTERN_FUNC = 0
EXTERN_MEMORY = 3

FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)
NO_FINALIZER = FINALIZER()  # a NULL function pointer
OUTPUT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_ssize_t, c_void_p, POINTER(c_uint8), c_size_t)


def _proto(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


store_new = _proto(gil, "wasmtime_store_new", StorePtr, c_void_p, c_void_p, FINALIZER)
store_context = _proto(gil, "wasmtime_store_context", ContextPtr, StorePtr)
store_limiter = _proto(gil, "wasmtime_store_limiter", None, StorePtr, c_int64, c_int64, c_int64, c_int64, c_int64)
set_epoch_deadline = _proto(gil, "wasmtime_context_set_epoch_deadline", None, ContextPtr, c_uint64)
set_fuel = _proto(gil, "wasmtime_context_set_fuel", c_void_p, ContextPtr, c_uint64)
get_fuel = _proto(gil, "wasmtime_context_get_fuel", c_void_p, ContextPtr, POINTER(c_uint64))
set_wasi = _proto(gil, "wasmtime_context_set_wasi", c_void_p, ContextPtr, c_void_p)
wasi_config_new = _proto(gil, "wasi_config_new", c_void_p)
wasi_config_set_env = _proto(
    gil, "wasi_config_set_env", c_bool, c_void_p, c_size_t, POINTER(ctypes.c_char_p), POINTER(ctypes.c_char_p)
)
wasi_config_set_stdout_custom = _proto(
    gil, "wasi_config_set_stdout_custom", None, c_void_p, OUTPUT_CALLBACK, c_void_p, FINALIZER
)
wasi_config_set_stderr_custom = _proto(
    gil, "wasi_config_set_stderr_custom", None, c_void_p, OUTPUT_CALLBACK, c_void_p, FINALIZER
)
instance_export_nth = _proto(
    gil,
    "wasmtime_instance_export_nth",
    c_bool,
    ContextPtr,
    c_void_p,  # wasmtime_instance_t*
    c_size_t,
    POINTER(POINTER(c_char)),
    POINTER(c_size_t),
    c_void_p,  # wasmtime_extern_t*
)
memory_data = _proto(gil, "wasmtime_memory_data", c_void_p, ContextPtr, c_void_p)
memory_data_size = _proto(gil, "wasmtime_memory_data_size", c_size_t, ContextPtr, c_void_p)
engine_increment_epoch = _proto(gil, "wasmtime_engine_increment_epoch", None, c_void_p)

# These run guest code (or may wait for wasmtime's output thread, which calls
# back into Python): release the GIL.
store_delete = _proto(nogil, "wasmtime_store_delete", None, StorePtr)
instance_pre_instantiate = _proto(
    nogil, "wasmtime_instance_pre_instantiate", c_void_p, c_void_p, ContextPtr, c_void_p, POINTER(c_void_p)
)
func_call_unchecked = _proto(
    nogil, "wasmtime_func_call_unchecked", c_void_p, ContextPtr, c_void_p, c_void_p, c_size_t, POINTER(c_void_p)
)


def take_trap(pointer: int) -> wasmtime.Trap:
    """Wrap a raw ``wasm_trap_t*`` in wasmtime-py's ``Trap`` (which then owns and frees it)."""
    return wasmtime.Trap._from_ptr(ctypes.cast(pointer, POINTER(ffi.wasm_trap_t)))


def take_error(pointer: int) -> Exception:
    """Wrap a raw ``wasmtime_error_t*`` in a ``WasmtimeError`` (or ``ExitTrap``), freeing it."""
    from wasmtime import WasmtimeError

    return WasmtimeError._from_ptr(ctypes.cast(pointer, POINTER(ffi.wasmtime_error_t)))


def _load_fastpath() -> Any:
    """The optional C extension (wasmhost/_fastpath.c), bound to wasmtime's library, or None."""
    try:
        from . import _fastpath  # type: ignore[attr-defined]

        _fastpath.bind(str(ffi.filename))
    except (ImportError, RuntimeError):  # not built (no C compiler) or wasmtime changed
        return None
    return _fastpath


fastpath: Any = _load_fastpath()
"""``wasmhost._fastpath`` when it was built, else None (the ctypes paths are used)."""
