"""One sandbox per invocation for components (Python and JavaScript guests).

The same limits as core modules — memory by store limits, wall time by epochs,
CPU by fuel — and WASI preview 2 with no ambient authority: no preopened
directories, no network, only the function's environment variables; stdout
and stderr go to the invocation's bounded log. Components cost milliseconds
to instantiate (wasmtime-py has no component InstancePre), so they always run
on a worker thread, never inline on the event loop.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from .abi.component import ComponentLayout, call_bytes
from .engine import TABLE_ELEMENTS, WasmEngine
from .errors import FuelExhausted, InvocationError, OutOfMemory, Throttled, Timeout, Trap
from .sandbox import (
    UNLIMITED_FUEL,
    Attempt,
    Limits,
    Sandbox,
    _flatten,
    _log_keys,
    _log_sinks,
    fuel_for,
    reports_out_of_memory,
)


@dataclass
class PreparedComponent:
    """A compiled component and where its export is; shared by all invocations."""

    digest: str
    component: wc.Component
    layout: ComponentLayout


class ComponentSandbox:
    """Runs components of one engine. Thread-safe: each run owns its Store."""

    def __init__(self, engine: WasmEngine, log_limit_bytes: int) -> None:
        self.engine = engine
        self.log_limit = log_limit_bytes
        self.linker = wc.Linker(engine.engine)
        self.linker.add_wasip2()

    def prepare(self, digest: str, component: wc.Component, layout: ComponentLayout) -> PreparedComponent:
        return PreparedComponent(digest, component, layout)

    def check_links(self, prepared: PreparedComponent) -> None:
        """Instantiate once (at deploy) so unknown imports fail now. Raises ``wasmtime.WasmtimeError``."""
        store = wasmtime.Store(self.engine.engine)
        if self.engine.metered:
            store.set_fuel(UNLIMITED_FUEL)
        store.set_epoch_deadline(self.engine.ticker.ticks_until(10_000))
        store.set_wasi(wasmtime.WasiConfig())
        self.linker.instantiate(store, prepared.component)

    def run(self, prepared: PreparedComponent, request: bytes, limits: Limits, timeout_ms: float) -> Attempt:
        """Instantiate ``prepared`` in a fresh Store and run one request through it."""
        attempt = Attempt()
        log_key = 0
        fuel = fuel_for(self.engine, limits)
        started = time.perf_counter()
        store = wasmtime.Store(self.engine.engine)
        try:
            store.set_limits(memory_size=limits.memory_bytes, table_elements=TABLE_ELEMENTS)
            if fuel:
                store.set_fuel(fuel)
            store.set_epoch_deadline(self.engine.ticker.ticks_until(timeout_ms))
            # WASI through the same raw calls as core modules: our C callback
            # and no Python finalizer (wasmtime-py's runs on wasmtime's output
            # thread when the Store is dropped and can abort at interpreter exit).
            log_key = next(_log_keys)
            _log_sinks[log_key] = (attempt, self.log_limit)
            context = ctypes.cast(store._context(), ctypes.c_void_p).value or 0
            error = Sandbox._set_wasi(context, limits, log_key)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
            try:
                instance = self.linker.instantiate(store, prepared.component)
                func = instance.get_func(store, prepared.layout.export_index)
                if func is None:
                    raise Trap("component has no 'handle' function")
                attempt.response = call_bytes(store, func, request)
            except wasmtime.WasmtimeError as exc:
                attempt.error = translate(exc, limits, timeout_ms)
                if attempt.error.type == "Trap" and reports_out_of_memory(attempt.logs):
                    attempt.error = OutOfMemory(f"function ran out of memory: {attempt.error.message}")
            except InvocationError as exc:
                attempt.error = exc
            if fuel:
                try:
                    attempt.fuel_used = fuel - store.get_fuel()
                except wasmtime.WasmtimeError:
                    pass
        finally:
            del store
            _log_sinks.pop(log_key, None)
            attempt.duration_ms = (time.perf_counter() - started) * 1000.0
        return attempt


def translate(exc: BaseException, limits: Limits, timeout_ms: float) -> InvocationError:
    """A component's wasmtime error as one of ours (the sandbox edge)."""
    message = _flatten(str(exc))
    if isinstance(exc, wasmtime.ExitTrap):
        return Trap(f"guest exited with status {exc.code}")
    lowered = message.lower()
    if "interrupt" in lowered:
        return Timeout(f"function timed out after {timeout_ms:g} ms")
    if "fuel" in lowered:
        return FuelExhausted(f"function used its fuel budget of {limits.fuel}")
    if "concurrent" in lowered or "pooling" in lowered:
        raise Throttled(f"no sandbox slot free in this process: {message}")
    if "memory" in lowered and ("exceed" in lowered or "limit" in lowered or "grow" in lowered):
        return OutOfMemory(f"function ran out of memory (limit {limits.memory_bytes >> 20} MB): {message}")
    return Trap(message)


__all__ = ["ComponentSandbox", "PreparedComponent", "translate", "Any"]
