"""One sandbox per invocation: a fresh Store and instance, limits, WASI, the ABI calls.

The hot path goes under wasmtime-py's public API (see ``_native``): a cached
``InstancePre`` per function version, export handles fetched by index, and
``wasmtime_func_call_unchecked``. Everything the guest can do wrong is turned
into an :class:`~wasmhost.errors.InvocationError` here, at the sandbox edge.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import time
from ctypes import byref, c_char, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any

import wasmtime

from . import _native
from .abi.core import CoreLayout
from .config import MiB
from .engine import TABLE_ELEMENTS, WasmEngine
from .errors import (
    FuelExhausted,
    InvalidResponse,
    InvocationError,
    OutOfMemory,
    Throttled,
    Timeout,
    Trap,
    WasmhostError,
)
from .invocation_thread import SliceExpired, _current, define_poll_oneoff

WASM_PAGE = 65536
UNLIMITED_FUEL = 2**63 - 1


def fuel_for(engine: WasmEngine, limits: Limits) -> int:
    """The fuel to give a Store of ``engine``: 0 where the engine counts none."""
    if not engine.metered:
        return 0
    return limits.fuel if limits.fuel is not None else UNLIMITED_FUEL


TRUNCATION_MARKER = "\n[wasmhost: log output truncated at {limit} bytes]\n"


@dataclass
class Prepared:
    """A function version ready to instantiate: linked once, reused by every invocation."""

    digest: str
    module: wasmtime.Module
    instance_pre: wasmtime.InstancePre
    layout: CoreLayout
    pre_ptr: int = 0

    def __post_init__(self) -> None:
        self.pre_ptr = ctypes.cast(self.instance_pre.ptr(), c_void_p).value or 0


@dataclass
class Limits:
    """Per-invocation limits, derived from the function config once per version."""

    memory_bytes: int
    fuel: int | None
    env: tuple[tuple[bytes, ...], tuple[bytes, ...]] = ((), ())
    env_arrays: Any = None

    env_addresses: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        keys, values = self.env
        count = len(keys)
        self.env_arrays = (count, (ctypes.c_char_p * count)(*keys), (ctypes.c_char_p * count)(*values))
        self.env_addresses = (count, ctypes.addressof(self.env_arrays[1]), ctypes.addressof(self.env_arrays[2]))


class Attempt:
    """What happened in one run of a guest: its answer or error, and what it used."""

    __slots__ = ("response", "error", "fuel_used", "memory_bytes", "logs", "logs_truncated", "duration_ms")

    def __init__(self) -> None:
        self.response: bytes | None = None
        self.error: InvocationError | None = None
        self.fuel_used = 0
        self.memory_bytes = 0
        self.logs = bytearray()
        self.logs_truncated = False
        self.duration_ms = 0.0


class _Scratch:
    """ctypes buffers for one thread's invocations, allocated once (and their pointers).

    Allocating them per invocation showed in profiles; a Store and everything
    in it is used by one thread at a time, so one set per thread suffices.
    """

    def __init__(self) -> None:
        self.instance = _native.Instance()
        self.instance_ref = byref(self.instance)
        self.trap = c_void_p()
        self.trap_ref = byref(self.trap)
        self.name = ctypes.POINTER(c_char)()
        self.name_ref = byref(self.name)
        self.name_len = c_size_t()
        self.name_len_ref = byref(self.name_len)
        # Exports: 0 memory, 1 alloc, 2 handle, 3 _initialize. ``payload_refs``
        # point at the union inside each wasmtime_extern_t (the func or memory).
        self.externs = [_native.Extern() for _ in range(4)]
        self.extern_refs = [byref(e) for e in self.externs]
        offset = _native.Extern.of.offset
        self.payload_refs = [byref(e, offset) for e in self.externs]
        self.args = (_native.ValRaw * 2)()
        self.fuel = c_uint64()
        self.fuel_ref = byref(self.fuel)


# Outcome codes and phases shared with the C fast path (wasmhost/_fastpath.c).
_OK, _FAILED, _ALLOC_NULL, _ALLOC_OUT_OF_BOUNDS, _RESPONSE_OUT_OF_BOUNDS = 0, 1, 2, 3, 4
_PHASE_SETUP, _PHASE_INSTANTIATE, _PHASE_CALL = 0, 1, 2

# wasmtime writes WASI stdout/stderr from a thread of its own, so the sink finds
# its invocation through the callback's data pointer, not a thread-local.
_log_sinks: dict[int, tuple[Attempt, int]] = {}
_log_keys = itertools.count(1)


@_native.OUTPUT_CALLBACK
def _capture_output(key: int | None, buf: Any, size: int) -> int:
    """WASI stdout/stderr sink: append to the invocation's bounded log."""
    attempt, limit = _log_sinks.get(key or 0, (None, 0))
    if attempt is not None and not attempt.logs_truncated:
        room = limit - len(attempt.logs)
        if size > room:
            attempt.logs += ctypes.string_at(buf, max(room, 0))
            attempt.logs_truncated = True
        else:
            attempt.logs += ctypes.string_at(buf, size)
    return size


_CAPTURE_OUTPUT_ADDRESS = ctypes.cast(_capture_output, c_void_p).value or 0

_fastpath = _native.fastpath


class Sandbox:
    """Runs guests of one :class:`WasmEngine`. Thread-safe: each run owns its Store."""

    def __init__(self, engine: WasmEngine, log_limit_bytes: int) -> None:
        self.engine = engine
        self.log_limit = log_limit_bytes
        self.ticks_until = engine.ticker.ticks_until
        self.fast = _fastpath is not None and os.environ.get("WASMHOST_FASTPATH", "1") != "0"
        self.linker = wasmtime.Linker(engine.engine)
        self.linker.define_wasi()
        self.linker.allow_shadowing = True
        define_poll_oneoff(self.linker)

    def prepare(self, digest: str, module: wasmtime.Module, layout: CoreLayout) -> Prepared:
        """Link ``module`` once. Raises ``InvalidModule``-worthy ``WasmtimeError`` on unknown imports."""
        return Prepared(digest, module, self.linker.instantiate_pre(module), layout)

    def run(
        self,
        prepared: Prepared,
        request: bytes,
        limits: Limits,
        timeout_ms: float,
        *,
        inline_slice_ms: float | None = None,
        configured_timeout_ms: float | None = None,
    ) -> Attempt:
        """Instantiate ``prepared`` in a fresh Store and run one request through it.

        With ``inline_slice_ms``, the guest is stopped after that long and
        ``SliceExpired`` is raised (unless its whole timeout was shorter): the
        caller runs it again with the full timeout on a thread that may block.
        Every line here is on the hot path of every invocation.
        """
        attempt = Attempt()
        inline = inline_slice_ms is not None and inline_slice_ms < timeout_ms
        budget_ms: float = inline_slice_ms if inline else timeout_ms  # type: ignore[assignment]
        current = _current
        current.inline = inline
        current.aborted = False
        log_key = 0
        if prepared.layout.uses_wasi:
            log_key = next(_log_keys)
            _log_sinks[log_key] = (attempt, self.log_limit)
        fuel = fuel_for(self.engine, limits)
        ticks = self.ticks_until(budget_ms)
        started = time.perf_counter()
        current.deadline = time.monotonic() + budget_ms / 1000.0
        try:
            if self.fast:
                layout = prepared.layout
                outcome = _fastpath.run(
                    self.engine.engine_ptr,
                    prepared.pre_ptr,
                    layout.memory,
                    layout.alloc,
                    layout.handle,
                    -1 if layout.initialize is None else layout.initialize,
                    limits.memory_bytes,
                    TABLE_ELEMENTS,
                    ticks,
                    fuel,
                    _CAPTURE_OUTPUT_ADDRESS if log_key else 0,
                    log_key,
                    *limits.env_addresses,
                    request,
                )
            else:
                outcome = self._run_ctypes(prepared, request, limits, ticks, fuel, log_key)
        finally:
            if log_key:
                del _log_sinks[log_key]
            attempt.duration_ms = (time.perf_counter() - started) * 1000.0
        code, attempt.response, attempt.fuel_used, attempt.memory_bytes, error, trap, phase, detail = outcome
        if code:
            attempt.error = self._failure(code, attempt.memory_bytes, len(request), limits, error, trap, phase, detail)
            if attempt.error.type == "Trap" and reports_out_of_memory(attempt.logs):
                attempt.error = OutOfMemory(
                    f"function ran out of memory (limit {limits.memory_bytes // MiB} MB): {attempt.error.message}"
                )
            if attempt.error.type == "Timeout":
                if inline:
                    raise SliceExpired()
                shown = configured_timeout_ms if configured_timeout_ms is not None else timeout_ms
                attempt.error = Timeout(f"function timed out after {shown:g} ms")
        return attempt

    def _run_ctypes(
        self, prepared: Prepared, request: bytes, limits: Limits, ticks: int, fuel: int, log_key: int
    ) -> tuple[Any, ...]:
        """The steps of ``_fastpath.run`` through ctypes (used where the C extension is absent).

        Returns ``_fastpath.run``'s tuple: (code, response, fuel_used,
        memory_bytes, error_ptr, trap_ptr, phase, detail).
        """
        native = _native
        scratch = _current.scratch
        if scratch is None:
            scratch = _current.scratch = _Scratch()
        layout = prepared.layout
        store = native.store_new(self.engine.engine_ptr, None, native.NO_FINALIZER)
        ctx = native.store_context(store)
        trap = scratch.trap
        trap.value = None
        try:
            native.store_limiter(store, limits.memory_bytes, TABLE_ELEMENTS, -1, -1, -1)
            native.set_epoch_deadline(ctx, ticks)
            error = native.set_fuel(ctx, fuel) if fuel else None
            if not error and log_key:
                error = self._set_wasi(ctx, limits, log_key)
            if error:
                return (_FAILED, None, 0, 0, error, None, _PHASE_SETUP, 0)

            error = native.instance_pre_instantiate(prepared.pre_ptr, ctx, scratch.instance_ref, scratch.trap_ref)
            if error or trap.value:
                return (_FAILED, None, 0, 0, error, trap.value, _PHASE_INSTANTIATE, 0)

            export = native.instance_export_nth
            instance, name, name_len = scratch.instance_ref, scratch.name_ref, scratch.name_len_ref
            export(ctx, instance, layout.memory, name, name_len, scratch.extern_refs[0])
            memory = scratch.payload_refs[0]
            export(ctx, instance, layout.alloc, name, name_len, scratch.extern_refs[1])
            export(ctx, instance, layout.handle, name, name_len, scratch.extern_refs[2])
            args = scratch.args
            call = native.func_call_unchecked
            calls = [scratch.payload_refs[1], scratch.payload_refs[2]]
            if layout.initialize is not None:
                export(ctx, instance, layout.initialize, name, name_len, scratch.extern_refs[3])
                calls.insert(0, scratch.payload_refs[3])
            size = len(request)
            code, response, detail = _OK, None, 0
            for func in calls:
                if func is scratch.payload_refs[1]:
                    args[0].i32 = size
                elif func is scratch.payload_refs[2]:
                    pointer = args[0].i32 & 0xFFFFFFFF
                    memory_size = native.memory_data_size(ctx, memory)
                    if pointer == 0 and size:
                        code = _ALLOC_NULL
                        break
                    if pointer + size > memory_size:
                        code, detail = _ALLOC_OUT_OF_BOUNDS, pointer
                        break
                    ctypes.memmove(native.memory_data(ctx, memory) + pointer, request, size)
                    args[0].i32, args[1].i32 = pointer, size
                error = call(ctx, func, args, 2, scratch.trap_ref)
                if error or trap.value:
                    used, memory_size = self._usage(ctx, memory, fuel, scratch)
                    return (_FAILED, None, used, memory_size, error, trap.value, _PHASE_CALL, 0)
            else:
                packed = args[0].i64 & 0xFFFFFFFFFFFFFFFF
                out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
                if out_ptr + out_len > native.memory_data_size(ctx, memory):
                    code, detail = _RESPONSE_OUT_OF_BOUNDS, packed
                else:
                    response = ctypes.string_at(native.memory_data(ctx, memory) + out_ptr, out_len)
            used, memory_size = self._usage(ctx, memory, fuel, scratch)
            return (code, response, used, memory_size, None, None, _PHASE_CALL, detail)
        finally:
            native.store_delete(store)

    @staticmethod
    def _usage(ctx: int, memory: Any, fuel: int, scratch: _Scratch) -> tuple[int, int]:
        """(fuel used, memory bytes) of a Store."""
        used = 0 if not fuel or _native.get_fuel(ctx, scratch.fuel_ref) else fuel - scratch.fuel.value
        return used, _native.memory_data_size(ctx, memory)

    @staticmethod
    def _set_wasi(ctx: int, limits: Limits, log_key: int) -> int | None:
        """WASI for this Store: the function's env, stdout/stderr into its log, nothing else."""
        native = _native
        wasi = native.wasi_config_new()
        count, keys, values = limits.env_arrays
        if count:
            native.wasi_config_set_env(wasi, count, keys, values)
        native.wasi_config_set_stdout_custom(wasi, _capture_output, log_key, native.NO_FINALIZER)
        native.wasi_config_set_stderr_custom(wasi, _capture_output, log_key, native.NO_FINALIZER)
        return native.set_wasi(ctx, wasi)  # type: ignore[no-any-return]

    def _failure(
        self,
        code: int,
        memory_size: int,
        request_size: int,
        limits: Limits,
        error: int | None,
        trap: int | None,
        phase: int,
        detail: int,
    ) -> InvocationError:
        """Translate what went wrong into our error tree (the sandbox edge).

        Raises ``Throttled`` when no sandbox slot is free and ``WasmhostError``
        when a Store cannot be set up: those are the host's problems, not the guest's.
        """
        if code == _ALLOC_NULL:
            return OutOfMemory(f"guest could not allocate {request_size} bytes for the request")
        if code == _ALLOC_OUT_OF_BOUNDS:
            return Trap(f"wasmhost_alloc returned {detail}, outside the guest's {memory_size}-byte memory")
        if code == _RESPONSE_OUT_OF_BOUNDS:
            out_ptr, out_len = detail >> 32, detail & 0xFFFFFFFF
            return InvalidResponse(
                f"wasmhost_handle returned bytes {out_ptr}..{out_ptr + out_len}, "
                f"outside the guest's {memory_size}-byte memory"
            )
        aborted, _current.aborted = _current.aborted, False
        wasmtime._func.LAST_EXCEPTION = None  # set by a host function that raised; never read
        where = "instantiation" if phase == _PHASE_INSTANTIATE else "call"
        if error:
            exc = _native.take_error(error)
            message = _flatten(str(exc))
            if phase == _PHASE_SETUP:
                raise WasmhostError(f"could not set up a sandbox: {message}")
            if aborted:
                return Timeout("timed out")
            if isinstance(exc, wasmtime.ExitTrap):
                return Trap(f"guest exited with status {exc.code}")
            if "memory" in message and ("exceeds" in message or "limit" in message):
                return OutOfMemory(f"{where} failed: {message}")
            if "concurrent" in message or "pooling" in message:
                raise Throttled(f"no sandbox slot free in this process: {message}")
            return Trap(f"{where} failed: {message}")
        wasm_trap = _native.take_trap(trap or 0)
        trap_code = wasm_trap.trap_code
        if trap_code == wasmtime.TrapCode.INTERRUPT or aborted:
            return Timeout("timed out")
        if trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
            return FuelExhausted(f"function used its fuel budget of {limits.fuel}")
        message = _flatten(wasm_trap.message)
        if phase == _PHASE_CALL and memory_size and near_memory_limit(memory_size, limits.memory_bytes):
            return OutOfMemory(
                f"function ran out of memory: {memory_size // MiB} MB in use, limit "
                f"{limits.memory_bytes // MiB} MB ({message})"
            )
        return Trap(message)


#: What language runtimes print before they abort on a failed allocation
#: (Rust's default handler; Go's runtime).
OUT_OF_MEMORY_MESSAGES = (b"memory allocation of ", b"fatal error: out of memory", b"runtime: out of memory")


def near_memory_limit(memory_bytes: int, limit_bytes: int) -> bool:
    """Whether a trap at this memory size is most likely a failed ``memory.grow``.

    wasmtime's C API reports no failed grow, so a trap with the memory within
    one growth step of its cap (allocators grow by up to a few MiB at a time:
    the larger of 2 MiB and an eighth of the limit) counts as out of memory.
    """
    return memory_bytes + max(2 * MiB, limit_bytes // 8) > limit_bytes


def reports_out_of_memory(logs: bytearray) -> bool:
    tail = bytes(logs[-4096:])
    return any(message in tail for message in OUT_OF_MEMORY_MESSAGES)


def _flatten(message: str) -> str:
    """wasmtime's multi-line messages as one line: the cause, without the backtrace.

    ``"error while executing at wasm backtrace:\n 0: …\n\nCaused by:\n    wasm trap: …"``
    becomes ``"wasm trap: …"``.
    """
    head, sep, cause = message.partition("Caused by:")
    if sep:
        lines = [line.strip() for line in cause.strip().splitlines() if line.strip()]
        if head.strip() and "backtrace" not in head.splitlines()[0]:
            lines.insert(0, head.strip().splitlines()[0])
        return ": ".join(lines)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else message
