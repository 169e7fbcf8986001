"""The wasmtime Engine of this process, its epoch ticker and the compile cache.

One :class:`WasmEngine` per :class:`~wasmhost.Host`: a wasmtime ``Engine`` with
fuel and epoch interruption on and the pooling instance allocator (copy-on-write
memory images, pre-reserved slots), a native timer that advances the epoch every
``epoch_tick_ms``, and a :class:`CompileCache` that turns a module's bytes into
native code once and maps it from disk afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import importlib.metadata
import math
import os
import platform
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from . import _native
from .config import MAX_MEMORY_MB, HostConfig, MiB
from .errors import InvalidModule

Compiled = wasmtime.Module | wc.Component

#: Table elements a store may grow to (large enough for big components).
TABLE_ELEMENTS = 100_000
#: Version of the engine settings below; bump when they change so old cache
#: entries are ignored rather than rejected by wasmtime.
ENGINE_SETTINGS = "epoch=1,pooling=1,v1"


TABLE_KEEP_RESIDENT = 4096
"""Bytes of each table slot reset in place (512 entries); beyond them, returned to the kernel."""


def _none_overdue() -> int:
    """Tickers that never burst (a POSIX timer, the Python thread) owe no ticks."""
    return 0


class EpochTicker:
    """Advances the engine's epoch every ``period_ms`` from a native thread.

    Ticking never takes the GIL: a ticker written in Python would need the GIL
    every tick, and each hand-off between it and a thread running guests costs
    a context switch (it cut HTTP throughput by a third here), while a busy
    event loop would delay it. In order of preference:

    1. the C extension's ticker thread (``_fastpath.ticker_start``): one
       pthread sleeping to absolute deadlines;
    2. a POSIX timer (``timer_create`` with ``SIGEV_THREAD``) calling
       ``wasmtime_engine_increment_epoch(engine)`` directly — glibc starts a
       thread for every expiry, which cost about 6 % of HTTP throughput at a
       2 ms period (bench/README.md);
    3. a Python thread, where neither is available.
    """

    def __init__(self, engine: wasmtime.Engine, period_ms: float) -> None:
        self.period_ms = period_ms
        self._engine = engine
        self._finalizer: weakref.finalize | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._overdue: Callable[[], int] = _none_overdue
        # WASMHOST_TICKER names one kind, for measuring them against each other (bench/README.md).
        wanted = os.environ.get("WASMHOST_TICKER", "")
        self.kind = "python-thread"
        if wanted in ("", "native-thread") and self._start_native_thread(engine, period_ms):
            self.kind = "native-thread"
        elif wanted in ("", "posix-timer") and self._start_native_timer(engine, period_ms):
            self.kind = "posix-timer"
        else:
            self._thread = threading.Thread(target=self._run_python, name="wasmhost-epoch", daemon=True)
            self._thread.start()

    def _start_native_thread(self, engine: wasmtime.Engine, period_ms: float) -> bool:
        fastpath = _native.fastpath
        if fastpath is None or os.environ.get("WASMHOST_FASTPATH", "1") == "0":
            return False
        engine_ptr = ctypes.cast(engine.ptr(), ctypes.c_void_p).value or 0
        handle = fastpath.ticker_start(engine_ptr, int(period_ms * 1_000_000))
        self._overdue = functools.partial(fastpath.ticker_overdue, handle)
        # The thread is joined before the engine can be freed (the finalizer
        # holds the engine), whether the owner calls close() or not.
        self._finalizer = weakref.finalize(self, _stop_thread, fastpath, handle, engine)
        return True

    def _start_native_timer(self, engine: wasmtime.Engine, period_ms: float) -> bool:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            create, settime = libc.timer_create, libc.timer_settime
        except (OSError, AttributeError):
            return False
        event = _Sigevent()
        event.sigev_notify = _SIGEV_THREAD
        event.sigev_notify_function = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p).value
        event.sigev_value = ctypes.cast(engine.ptr(), ctypes.c_void_p).value
        timer = ctypes.c_void_p()
        if create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            return False
        nanoseconds = int(period_ms * 1_000_000)
        period = _Timespec(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000)
        if settime(timer, 0, ctypes.byref(_Itimerspec(period, period)), None) != 0:
            libc.timer_delete(timer)
            return False
        # Deleting the timer must happen before the engine is freed, whether the
        # owner calls close(), forgets to, or the interpreter exits: the
        # finalizer holds the engine until the timer is gone.
        self._finalizer = weakref.finalize(self, _stop_timer, libc, timer, engine, period_ms)
        return True

    def _run_python(self) -> None:
        increment = _native.engine_increment_epoch
        engine_ptr = self._engine.ptr()
        while not self._stop.wait(self.period_ms / 1000.0):
            increment(engine_ptr)

    def ticks_until(self, timeout_ms: float) -> int:
        """Epoch deadline (ticks beyond the current epoch) for a stop ``timeout_ms`` from now.

        Never early: the next tick may come at once, and the current one may
        not have landed yet (timer threads start with some jitter), so two
        ticks are added; and ticks a stalled ticker thread still owes (it makes
        them in a burst, to keep its grid) are added too. Guests stop 1–2 ticks
        after their deadline.
        """
        return math.ceil(timeout_ms / self.period_ms) + 2 + self._overdue()

    def close(self) -> None:
        """Stop ticking. Idempotent. Waits out a tick already in flight."""
        self._overdue = _none_overdue  # the native handle is freed below
        if self._finalizer is not None:
            self._finalizer()
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)


def _stop_thread(fastpath: Any, handle: int, engine: wasmtime.Engine) -> None:
    fastpath.ticker_stop(handle)  # joins: no tick after this returns
    del engine


def _stop_timer(libc: ctypes.CDLL, timer: ctypes.c_void_p, engine: wasmtime.Engine, period_ms: float) -> None:
    libc.timer_delete(timer)
    # A notification thread started just before the delete may still be about
    # to tick: keep the engine alive (it is our argument) until it has.
    time.sleep(max(0.005, 2 * period_ms / 1000.0))


_SIGEV_THREAD = 2
_CLOCK_MONOTONIC = 1


class _Sigevent(ctypes.Structure):
    """glibc's ``struct sigevent`` (64 bytes) with the SIGEV_THREAD members."""

    _fields_ = [
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_notify_function", ctypes.c_void_p),
        ("sigev_notify_attributes", ctypes.c_void_p),
        ("_pad", ctypes.c_int * 8),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def engine_fingerprint(metered: bool = True) -> str:
    """Names compiled code this engine can load: wasmtime version, settings, CPU."""
    version = importlib.metadata.version("wasmtime")
    text = f"wasmtime={version};fuel={int(metered)},{ENGINE_SETTINGS};{platform.machine()}"
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

    def compile(self, digest: str, wasm: bytes, kind: str = "module") -> Compiled:
        """Validate and compile ``wasm`` (a core module or a component), store its native code.

        Raises ``InvalidModule`` when wasmtime rejects the bytes.
        """
        try:
            module: Compiled = (wc.Component if kind == "component" else wasmtime.Module)(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"{kind} failed validation: {one_line(exc)}") from None
        self.compiles += 1
        path = self.path(digest)
        if not path.exists():
            # Write then rename, so a concurrent reader never maps half a file.
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(module.serialize())
            os.replace(tmp, path)
        return module

    def load(self, digest: str, wasm_loader: Callable[[], bytes], kind: str = "module") -> tuple[Compiled, bool]:
        """The module for ``digest``, mapped from the cache, compiling only if absent.

        Returns ``(module, compiled)``; ``compiled`` is True when the cache missed
        (a new engine version, or a cache directory wiped by hand).
        """
        path = self.path(digest)
        loader = wc.Component if kind == "component" else wasmtime.Module
        try:
            return loader.deserialize_file(self.engine, str(path)), False
        except (FileNotFoundError, wasmtime.WasmtimeError):
            return self.compile(digest, wasm_loader(), kind), True


class WasmEngine:
    """A wasmtime engine with its epoch ticker and compile cache.

    ``metered`` engines count fuel (every instruction pays for it: 1.4× slower
    compute, bench/README.md); a Host uses one only for functions with a fuel
    budget. Both kinds interrupt by epoch (timeouts).
    """

    def __init__(self, config: HostConfig, metered: bool = False) -> None:
        self.config = config
        self.metered = metered
        wasm_config = wasmtime.Config()
        wasm_config.consume_fuel = metered
        wasm_config.epoch_interruption = True
        _enable_pooling(wasm_config, config.max_instances, config.keep_resident_bytes)
        self.engine = wasmtime.Engine(wasm_config)
        self.engine_ptr: int = ctypes.cast(self.engine.ptr(), ctypes.c_void_p).value or 0
        self.fingerprint = engine_fingerprint(metered)
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


def _enable_pooling(wasm_config: wasmtime.Config, slots: int, keep_resident: int) -> None:
    """Turn on the pooling allocator (not exposed by wasmtime-py's ``Config``).

    Each slot reserves virtual address space for a 4 GiB memory plus guards;
    physical memory is only used by what guests touch. Copy-on-write memory
    images (wasmtime's default) make instantiation a few page-table updates.
    ``keep_resident`` bytes at the start of each memory (and the first
    ``TABLE_KEEP_RESIDENT`` bytes of each table) are reset in place when a
    sandbox ends instead of being returned to the kernel, which saves the page
    faults (and TLB flushes) of re-touching them next time. Larger table
    figures cost more than they save: the reset memsets the whole region.
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
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, keep_resident)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, TABLE_KEEP_RESIDENT)
        ffi.wasmtime_pooling_allocation_strategy_set(wasm_config.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


def one_line(exc: BaseException) -> str:
    """A wasmtime error's message on one line ("…: Caused by: …" joined, capped)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return ": ".join(line for line in lines if line and line != "Caused by:")[:500]
