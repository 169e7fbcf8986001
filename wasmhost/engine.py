"""The wasmtime Engine of this process, its epoch ticker and the compile cache.

One :class:`WasmEngine` per :class:`~wasmhost.Host`: a wasmtime ``Engine`` with
fuel and epoch interruption on and the pooling instance allocator (copy-on-write
memory images, pre-reserved slots), a ticker thread that advances the epoch once
per millisecond of wall time, and a :class:`CompileCache` that turns a module's
bytes into native code once and maps it from disk afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi

from . import _native
from .config import MAX_MEMORY_MB, HostConfig, MiB
from .errors import InvalidModule

#: Table elements a store may grow to (large enough for big components).
TABLE_ELEMENTS = 100_000
#: Version of the engine settings below; bump when they change so old cache
#: entries are ignored rather than rejected by wasmtime.
ENGINE_SETTINGS = "fuel=1,epoch=1,pooling=1,v1"


class EpochTicker:
    """Keeps the engine's epoch equal to the milliseconds since the ticker started.

    It wakes every ``period_ms`` and catches up, so a late wake-up (a busy GIL)
    costs precision for one tick but never drifts.
    """

    def __init__(self, engine: wasmtime.Engine, period_ms: float) -> None:
        self._engine_ptr = engine.ptr()
        self._period_s = period_ms / 1000.0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self.epoch = 0
        self._thread = threading.Thread(target=self._run, name="wasmhost-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        increment = _native.engine_increment_epoch
        engine_ptr = self._engine_ptr
        while not self._stop.wait(self._period_s):
            target = int((time.monotonic() - self._started) * 1000)
            epoch = self.epoch
            while epoch < target:
                increment(engine_ptr)
                epoch += 1
            self.epoch = epoch

    def ticks_until(self, timeout_ms: float) -> int:
        """Epoch deadline (ticks beyond the current epoch) for a stop ``timeout_ms`` from now.

        Never early: the guest is stopped at the first tick at or after the deadline.
        """
        deadline = (time.monotonic() - self._started) * 1000 + timeout_ms
        return max(1, math.ceil(deadline) + 1 - self.epoch)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)


def engine_fingerprint() -> str:
    """Names compiled code this engine can load: wasmtime version, settings, CPU."""
    version = importlib.metadata.version("wasmtime")
    text = f"wasmtime={version};{ENGINE_SETTINGS};{platform.machine()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CompileCache:
    """``<dir>/<sha256>-<fingerprint>.cwasm``: native code, written once, mapped on load."""

    def __init__(self, directory: Path, engine: wasmtime.Engine, fingerprint: str) -> None:
        self.directory = directory
        self.engine = engine
        self.fingerprint = fingerprint
        self.compiles = 0
        """Modules compiled by this process (deploys and cache misses)."""
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.directory / f"{digest}-{self.fingerprint}.cwasm"

    def compile(self, digest: str, wasm: bytes) -> wasmtime.Module:
        """Validate and compile ``wasm``, store its native code, return the module.

        Raises ``InvalidModule`` when wasmtime rejects the bytes.
        """
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"module failed validation: {one_line(exc)}") from None
        self.compiles += 1
        path = self.path(digest)
        if not path.exists():
            # Write then rename, so a concurrent reader never maps half a file.
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(module.serialize())
            os.replace(tmp, path)
        return module

    def load(self, digest: str, wasm_loader: Callable[[], bytes]) -> tuple[wasmtime.Module, bool]:
        """The module for ``digest``, mapped from the cache, compiling only if absent.

        Returns ``(module, compiled)``; ``compiled`` is True when the cache missed
        (a new engine version, or a cache directory wiped by hand).
        """
        path = self.path(digest)
        try:
            return wasmtime.Module.deserialize_file(self.engine, str(path)), False
        except (FileNotFoundError, wasmtime.WasmtimeError):
            return self.compile(digest, wasm_loader()), True


class WasmEngine:
    """The process's wasmtime engine, linker, epoch ticker and compile cache."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        wasm_config = wasmtime.Config()
        wasm_config.consume_fuel = True
        wasm_config.epoch_interruption = True
        _enable_pooling(wasm_config, config.max_instances)
        self.engine = wasmtime.Engine(wasm_config)
        self.engine_ptr = self.engine.ptr()
        self.fingerprint = engine_fingerprint()
        self.cache = CompileCache(Path(config.data_dir) / "cache", self.engine, self.fingerprint)
        self.ticker = EpochTicker(self.engine, config.epoch_tick_ms)
        self._closed = False

    def close(self) -> None:
        """Stop the ticker. Idempotent."""
        if not self._closed:
            self._closed = True
            self.ticker.close()

    def __enter__(self) -> WasmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _enable_pooling(wasm_config: wasmtime.Config, slots: int) -> None:
    """Turn on the pooling allocator (not exposed by wasmtime-py's ``Config``).

    Each slot reserves virtual address space for a 4 GiB memory plus guards;
    physical memory is only used by what guests touch. Copy-on-write memory
    images (wasmtime's default) make instantiation a few page-table updates.
    """
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, MAX_MEMORY_MB * MiB)
        ffi.wasmtime_pooling_allocation_config_table_elements_set(pool, TABLE_ELEMENTS)
        ffi.wasmtime_pooling_allocation_config_max_core_instance_size_set(pool, 8 * MiB)
        ffi.wasmtime_pooling_allocation_strategy_set(wasm_config.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


def one_line(exc: BaseException) -> str:
    """A wasmtime error's message on one line ("…: Caused by: …" joined, capped)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return ": ".join(line for line in lines if line and line != "Caused by:")[:500]
