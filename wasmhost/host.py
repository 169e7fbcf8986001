"""The Host: deploy, invoke, list and delete functions. Everything else calls this.

``Host.invoke`` runs a guest on the calling thread with its full timeout.
``Host.ainvoke`` first runs it inline for a short slice (most functions finish
in microseconds, and a thread hop costs more than the guest); a guest still
running after the slice, or one that sleeps, is stopped and started again on a
worker thread with the rest of its time (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import logging
import math
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from .abi.component import inspect_component
from .abi.core import decode_response, encode_request, inspect_module
from .abi.sections import accepts_json, file_accepts_json
from .async_worker import AsyncWorker
from .asyncq import EventQueue
from .component_sandbox import ComponentSandbox, PreparedComponent
from .concurrency import SharedConcurrency
from .config import FunctionConfig, HostConfig, MiB
from .engine import WasmEngine, one_line
from .errors import (
    FunctionError,
    InvalidModule,
    InvalidName,
    InvalidRequest,
    InvocationError,
    OutOfMemory,
    Throttled,
    Timeout,
)
from .host_operations import OperationsMixin
from .host_triggers import TriggersMixin
from .host_versions import VersionsMixin
from .registry import LATEST, BlobStore, FunctionRecord, SqliteRegistry
from .result import InvocationResult
from .sandbox import Limits, Prepared, Sandbox, SliceExpired
from .secretbox import SecretBox
from .telemetry import log_invocation
from .telemetry.store import PACK_EVERY, TelemetryStore

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How long a function that outgrew its inline slice goes straight to a thread.
SLOW_MEMORY_S = 10.0


_log = logging.getLogger("wasmhost.host")


@dataclass
class _Runtime:
    """An engine and the sandboxes running guests on it."""

    engine: WasmEngine
    sandbox: Sandbox
    components: ComponentSandbox

    @classmethod
    def create(cls, config: HostConfig, metered: bool) -> _Runtime:
        engine = WasmEngine(config, metered=metered)
        return cls(engine, Sandbox(engine, config.log_limit_bytes), ComponentSandbox(engine, config.log_limit_bytes))


@dataclass
class _Ready:
    """A function version ready to run: its record, prepared code, limits and runtime."""

    record: FunctionRecord
    prepared: Prepared | PreparedComponent
    limits: Limits
    context: dict[str, Any]
    runtime: _Runtime
    #: ``name`` for $LATEST, ``name:N`` for a version.
    key: str
    #: The $LATEST record, whose ``reserved_concurrency`` applies to every version.
    reserved_from: FunctionRecord
    reserved_concurrency: int | None
    is_component: bool = False
    #: Requests may go as JSON (a component that declared it reads JSON).
    accepts_json: bool = False


class Host(VersionsMixin, OperationsMixin, TriggersMixin):
    """A function host on one data directory. Thread-safe; use as a context manager.

    >>> host = Host(data_dir="./.wasmhost")
    >>> host.deploy("echo", wasm_bytes, FunctionConfig(memory_mb=16))
    >>> host.invoke("echo", {"a": 1}).payload
    {'a': 1}
    """

    def __init__(self, data_dir: str | Path | None = None, config: HostConfig | None = None) -> None:
        config = config or HostConfig.from_env()
        if data_dir is not None:
            config.data_dir = str(data_dir)
        self.config = config
        root = Path(config.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.registry = SqliteRegistry(root / "wasmhost.db", SecretBox(root))
        self.telemetry = TelemetryStore(root / "telemetry.db", retention_s=config.log_retention_s)
        self.events = EventQueue(root / "events.db")
        #: Runs queued events while a server (or ``run_async_worker``) drives it; see ``start_async_worker``.
        self.async_worker: AsyncWorker | None = None
        self.blobs = BlobStore(root / "blobs")
        # Two engines: fuel costs every instruction (1.4x on compute), so only
        # functions with a fuel budget run on the metered one, made when first needed.
        plain = _Runtime.create(config, metered=False)
        self._runtimes: dict[bool, _Runtime] = {False: plain}
        self.engine = plain.engine
        self.sandbox = plain.sandbox
        self.components = plain.components
        # In-flight counts shared by every process on the data directory (--workers N).
        self.gate = SharedConcurrency(root / "concurrency.shm", config.max_concurrency)
        self._prepared: OrderedDict[tuple[str, bool], Prepared | PreparedComponent] = OrderedDict()
        # name -> ready-to-run version; bounded like the LRU below (evicted oldest
        # first, so that many functions cannot pin every compiled module).
        self._ready: OrderedDict[str, _Ready] = OrderedDict()
        self._slow_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._request_ids = request_id_factory()
        self._closed = False

    # --- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Stop worker threads and the epoch ticker, close the registry. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for runtime in self._runtimes.values():
            runtime.engine.close()
        self.telemetry.close()
        self.close_trigger_stores()
        self.events.close()
        self.gate.close()
        self.registry.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def runtime(self, config: FunctionConfig) -> _Runtime:
        """The engine and sandboxes for a function with ``config`` (metered if it has a fuel budget)."""
        metered = config.fuel is not None
        runtime = self._runtimes.get(metered)
        if runtime is None:
            with self._lock:
                runtime = self._runtimes.get(metered)
                if runtime is None:
                    runtime = self._runtimes[metered] = _Runtime.create(self.config, metered)
        return runtime

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.config.worker_threads, thread_name_prefix="wasmhost-invoke")
            return self._executor

    def warm_up(self) -> int:
        """Get ready before serving: map deployed functions' code, start worker threads.

        The most recently deployed functions (up to ``instance_cache_size``)
        are mapped from the compile cache and prepared, so that their first
        invocation after a start is a plain fresh instance. Worker threads cost
        tens of ms on first use; a few are started, and each instantiates every
        prepared component once without calling it: that maps the component's
        memory images into pool slots later instances reuse, and pays the first
        use of wasmtime on that thread (the Python echo's first invocation after
        a start: ~2.5 ms instead of 5–20 ms). A function that fails to load is
        logged and left for its invocation to report. Returns how many
        functions were prepared.
        """
        records = sorted(self.registry.list(), key=lambda r: r.updated_at, reverse=True)
        components: builtins.list[_Ready] = []
        prepared = 0
        for record in records[: self.config.instance_cache_size]:
            try:
                ready, _ = self._resolve(record.name)
            except Exception as exc:  # noqa: BLE001 - one bad function must not stop the host
                _log.warning("could not prepare %s at start: %s", record.name, exc)
                continue
            prepared += 1
            if ready.is_component:
                components.append(ready)
        threads = min(8, self.config.worker_threads)
        together = threading.Barrier(threads)

        def warm_thread() -> None:
            try:
                together.wait(timeout=5)  # one call per thread: every thread starts
            except threading.BrokenBarrierError:
                pass
            for ready in components:
                try:
                    ready.runtime.components.check_links(ready.prepared)  # type: ignore[arg-type]
                except wasmtime.WasmtimeError as exc:
                    _log.warning("could not instantiate %s at start: %s", ready.record.name, one_line(exc))

        for future in [self.executor.submit(warm_thread) for _ in range(threads)]:
            future.result()
        return prepared

    # --- management ------------------------------------------------------

    def deploy(self, name: str, code: bytes | str, config: FunctionConfig | None = None) -> FunctionRecord:
        """Deploy (or replace) ``name`` with ``code``: WebAssembly bytes or WAT text.

        The module is validated, checked against the guest ABI, compiled once
        and its native code cached. Raises ``InvalidName``, ``InvalidConfig``
        or ``InvalidModule`` naming the problem.
        """
        validate_name(name)
        config = (config or FunctionConfig()).validate()
        wasm = to_wasm(code)
        kind = wasm_kind(wasm)
        digest = self.blobs.digest(wasm)
        runtime = self.runtime(config)
        # Code deployed before (under any name) is mapped from the compile cache:
        # it was validated and compiled then.
        compiled, _ = runtime.engine.cache.load(digest, lambda: wasm, kind)
        prepared = self._prepare(runtime, digest, kind, compiled, lambda: accepts_json(wasm))
        if kind == "component":
            try:
                runtime.components.check_links(prepared)  # type: ignore[arg-type]
            except wasmtime.WasmtimeError as exc:
                raise InvalidModule(f"component cannot be instantiated: {one_line(exc)}") from None
        self.blobs.put(wasm)
        record = self.registry.put(name, digest, kind, config, len(wasm))
        self._remember(runtime, prepared)
        return record

    def _prepare(
        self, runtime: _Runtime, digest: str, kind: str, compiled: Any, json_capable: Callable[[], bool]
    ) -> Prepared | PreparedComponent:
        """Check ``compiled`` against the guest ABI and get it ready to instantiate.

        ``json_capable`` reads the binary's ``wasmhost:abi`` section (components only).
        """
        if kind == "component":
            layout = inspect_component(compiled, runtime.engine.engine, json_capable())
            return runtime.components.prepare(digest, compiled, layout)
        try:
            return runtime.sandbox.prepare(digest, compiled, inspect_module(compiled))
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"module cannot be linked: {one_line(exc)}") from None

    def get(self, name: str) -> FunctionRecord:
        """The record of ``name``. Raises ``FunctionNotFound``."""
        return self.registry.get(name)

    def list(self) -> builtins.list[FunctionRecord]:
        return self.registry.list()

    def update_config(self, name: str, **changes: Any) -> FunctionRecord:
        """Change some of ``name``'s settings (``memory_mb=…``, ``env=…``)."""
        current = self.registry.get(name)
        record = self.registry.update_config(name, current.config.updated(changes))
        if (record.config.fuel is None) != (current.config.fuel is None):
            self._resolve(name)  # now on the other engine: compile for it here, not at the next invoke
        return record

    def delete(self, name: str) -> None:
        """Remove ``name`` with its versions, aliases and triggers. Raises ``FunctionNotFound``."""
        self.registry.delete(name)
        self.delete_function_triggers(name)
        for key in [k for k in self._ready if k == name or k.startswith(name + ":")]:
            self._ready.pop(key, None)

    # --- invocation ------------------------------------------------------

    def invoke(
        self,
        name: str,
        event: Any = None,
        *,
        qualifier: str | None = None,
        request_id: str | None = None,
        invocation_type: str = "RequestResponse",
    ) -> InvocationResult:
        """Run ``name`` on ``event`` on this thread; blocks for up to its timeout.

        ``qualifier`` (or ``name:qualifier``) picks ``$LATEST`` (the default), a
        published version or an alias. Raises ``FunctionNotFound`` (or
        ``VersionNotFound``/``AliasNotFound``), ``InvalidRequest`` (an event
        msgpack cannot encode) or ``Throttled``; a failed guest is reported in
        ``result.error``. ``invocation_type="Event"`` queues the event instead
        (``invoke_event``) and returns at once a result with ``status_code`` 202,
        its ``request_id`` and nothing else.
        """
        if invocation_type != "RequestResponse":
            return self._accepted(name, event, qualifier, request_id, invocation_type)
        ready, cold = self._resolve(name, qualifier)
        function = ready.record.name
        try:
            self.gate.acquire(function, ready.reserved_concurrency)
        except Throttled:
            self._count_throttle(ready)
            raise
        try:
            call = self._start(ready, event, request_id, cold)
            return self._finish(ready, call, call.timeout_ms, None)
        finally:
            self.gate.release(function)

    async def ainvoke(
        self, name: str, event: Any = None, *, qualifier: str | None = None, request_id: str | None = None
    ) -> InvocationResult:
        """Like ``invoke``, without blocking the event loop for more than a short slice."""
        ready, cold = self._resolve(name, qualifier)
        function = ready.record.name
        try:
            self.gate.acquire(function, ready.reserved_concurrency)
        except Throttled:
            self._count_throttle(ready)
            raise
        try:
            call = self._start(ready, event, request_id, cold)
            loop = asyncio.get_running_loop()
            if ready.is_component:
                return await self._ainvoke_component(loop, ready, call)
            slice_ms = self.config.inline_slice_ms
            key = ready.key
            if slice_ms > 0 and self._slow_until.get(key, 0.0) < time.monotonic():
                try:
                    return self._finish(ready, call, call.timeout_ms, slice_ms)
                except SliceExpired:
                    # Start over with the whole timeout and a fresh deadline; the
                    # aborted slice is neither billed nor counted in the duration.
                    self._slow_until[key] = time.monotonic() + SLOW_MEMORY_S
                    call = self._start(ready, event, call.request_id, cold)
            return await loop.run_in_executor(self.executor, self._finish, ready, call, call.timeout_ms, None)
        finally:
            self.gate.release(function)

    def _count_throttle(self, ready: _Ready) -> None:
        """A throttle counts in usage and metrics (the caller re-raises ``Throttled``)."""
        self.telemetry.record_throttle(ready.record.name, ready.record.version, time.time())

    async def _ainvoke_component(self, loop: asyncio.AbstractEventLoop, ready: _Ready, call: _Call) -> InvocationResult:
        """Components run on a worker thread; the caller is answered by the deadline.

        A guest blocked in a WASI preview 2 host call (a sleep) cannot be
        interrupted by epochs; its caller still gets ``Timeout`` on time and the
        thread finishes the guest in the background.
        """
        future = loop.run_in_executor(self.executor, self._finish, ready, call, call.timeout_ms, None)
        grace_s = 0.5 + ready.runtime.engine.ticker.period_ms / 1000.0
        try:
            return await asyncio.wait_for(asyncio.shield(future), call.timeout_ms / 1000.0 + grace_s)
        except TimeoutError:
            return self._result(
                ready, call, None, Timeout(f"function timed out after {call.timeout_ms} ms"), call.timeout_ms, 0, 0, ""
            )

    def _resolve(self, name: str, qualifier: str | None = None) -> tuple[_Ready, bool]:
        """The ready-to-run version (cached per revision); ``cold`` if code had to be loaded.

        ``name`` may carry its qualifier (``name:prod``). An alias with routing
        picks one of its two versions at random, by weight, on every call.
        """
        if qualifier is None:
            if ":" in name:
                name, _, qualifier = name.partition(":")
        if qualifier is None or qualifier == LATEST:
            key, record = name, self.registry.get(name)
            reserved_from = record
        else:
            if qualifier.isdigit():
                version = qualifier
            else:
                alias = self.registry.get_alias(name, qualifier)
                version = alias.version
                for extra, weight in alias.routing.items():
                    if random.random() < weight:
                        version = extra
            key, record = f"{name}:{version}", self.registry.get_version(name, version)
            # Reserved concurrency is the function's, whichever version runs (as Lambda's).
            reserved_from = self.registry.get(name) if version != LATEST else record
        ready = self._ready.get(key)
        if ready is not None and ready.record is record and ready.reserved_from is reserved_from:
            return ready, False
        cold = False
        runtime = self.runtime(record.config)
        prepared_key = (record.digest, runtime.engine.metered)
        prepared: Prepared | PreparedComponent | None
        with self._lock:
            prepared = self._prepared.get(prepared_key)
            if prepared is not None:
                self._prepared.move_to_end(prepared_key)
        if prepared is None:
            compiled, _ = runtime.engine.cache.load(record.digest, lambda: self.blobs.get(record.digest), record.kind)
            prepared = self._prepare(
                runtime, record.digest, record.kind, compiled, lambda: file_accepts_json(self.blobs.path(record.digest))
            )
            self._remember(runtime, prepared)
            cold = True
        config = record.config
        env = config.environment()
        limits = Limits(
            memory_bytes=config.memory_mb * MiB,
            fuel=config.fuel,
            env=(tuple(k.encode() for k in env), tuple(v.encode() for v in env.values())),
        )
        context = {
            "function_name": record.name,
            "function_version": record.version,
            "memory_limit_mb": config.memory_mb,
        }
        is_component = isinstance(prepared, PreparedComponent)
        json_ok = is_component and prepared.layout.accepts_json  # type: ignore[union-attr]
        reserved = reserved_from.config.reserved_concurrency
        ready = _Ready(record, prepared, limits, context, runtime, key, reserved_from, reserved, is_component, json_ok)
        self._ready[key] = ready
        while len(self._ready) > self.config.instance_cache_size:
            self._ready.popitem(last=False)
        return ready, cold

    def _remember(self, runtime: _Runtime, prepared: Prepared | PreparedComponent) -> None:
        key = (prepared.digest, runtime.engine.metered)
        with self._lock:
            self._prepared[key] = prepared
            self._prepared.move_to_end(key)
            while len(self._prepared) > self.config.instance_cache_size:
                self._prepared.popitem(last=False)

    def _start(self, ready: _Ready, event: Any, request_id: str | None, cold: bool) -> _Call:
        timeout_ms = ready.record.config.timeout_ms
        request_id = request_id or self._request_ids()
        context = dict(ready.context)
        context["request_id"] = request_id
        context["deadline_ms"] = int(time.time() * 1000) + timeout_ms
        try:
            request = encode_request(event, context, ready.accepts_json)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRequest(f"event cannot be encoded: {exc}") from None
        return _Call(request_id, request, timeout_ms, time.monotonic(), cold, time.time())

    def _finish(self, ready: _Ready, call: _Call, timeout_ms: float, inline_slice_ms: float | None) -> InvocationResult:
        """Run the guest once and build the result (raises ``SliceExpired`` from an inline slice)."""
        if ready.is_component:
            attempt = ready.runtime.components.run(ready.prepared, call.request, ready.limits, timeout_ms)  # type: ignore[arg-type]
        else:
            attempt = ready.runtime.sandbox.run(
                ready.prepared,  # type: ignore[arg-type]
                call.request,
                ready.limits,
                timeout_ms,
                inline_slice_ms=inline_slice_ms,
                configured_timeout_ms=call.timeout_ms,
            )
        payload = None
        error: InvocationError | None = attempt.error
        if error is None:
            try:
                payload = decode_response(attempt.response or b"")
            except FunctionError as exc:
                # SDKs report a failed allocation as the guest error "OutOfMemory"
                # (C: malloc, Python: MemoryError): that is the memory limit.
                if exc.error_type == "OutOfMemory":
                    memory_mb = ready.record.config.memory_mb
                    error = OutOfMemory(exc.message or f"function ran out of memory (limit {memory_mb} MB)")
                else:
                    error = exc
            except InvocationError as exc:
                error = exc
        logs = attempt.logs.decode("utf-8", "replace")
        if attempt.logs_truncated:
            logs += f"\n[wasmhost: log output truncated at {self.config.log_limit_bytes} bytes]\n"
        return self._result(
            ready, call, payload, error, attempt.duration_ms, attempt.fuel_used, attempt.memory_bytes, logs
        )

    def _result(
        self,
        ready: _Ready,
        call: _Call,
        payload: Any,
        error: InvocationError | None,
        duration_ms: float,
        fuel_used: int,
        memory_bytes: int,
        logs: str,
    ) -> InvocationResult:
        record = ready.record
        billed_ms = max(1, math.ceil(duration_ms))
        memory_mb = record.config.memory_mb
        result = InvocationResult(
            payload=payload,
            error=error,
            request_id=call.request_id,
            function_name=record.name,
            function_version=record.version,
            duration_ms=duration_ms,
            billed_ms=billed_ms,
            memory_mb=memory_mb,
            fuel_used=fuel_used,
            max_memory_bytes=memory_bytes,
            cold=call.cold,
            logs=logs,
        )
        log_invocation(result)
        # TelemetryStore.record's row, built here from what is at hand (the hot path).
        telemetry = self.telemetry
        telemetry.append(
            (
                error, call.request_id, record.name, duration_ms, billed_ms, memory_mb, fuel_used, memory_bytes,
                call.cold, logs, record.version, call.started_at,
            )
        )  # fmt: skip
        if len(telemetry.pending) >= PACK_EVERY:
            telemetry.pack()
        return result


@dataclass
class _Call:
    request_id: str
    request: bytes
    timeout_ms: int
    started: float
    cold: bool
    #: Wall clock at the start (epoch seconds), for logs and metering.
    started_at: float


def request_id_factory() -> Callable[[], str]:
    """Request ids shaped like UUIDs: a random prefix per Host, then a counter.

    Unique across processes (the prefix is random) at a fraction of
    ``uuid4()``'s cost, which reads the OS's random source on every call.
    """
    prefix = str(uuid.uuid4())[:24]
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):012x}"


def validate_name(name: str) -> str:
    """Raise ``InvalidName`` unless ``name`` matches ``[A-Za-z0-9_-]{1,64}``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidName(f"function name {name!r} is invalid: use 1-64 of A-Z a-z 0-9 _ -")
    return name


WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"


COMPONENT_VERSION = b"\x0d\x00\x01\x00"


def wasm_kind(wasm: bytes) -> str:
    """``"component"`` or ``"module"``, from the binary's version field."""
    return "component" if wasm[4:8] == COMPONENT_VERSION else "module"


def to_wasm(code: bytes | str) -> bytes:
    """WebAssembly bytes (a core module or a component) from binary or WAT text.

    Raises ``InvalidModule``.
    """
    if isinstance(code, str):
        code = code.encode()
    if not isinstance(code, (bytes, bytearray, memoryview)):
        raise InvalidModule("code must be bytes (a .wasm module or component) or WAT text")
    code = bytes(code)
    if not code:
        raise InvalidModule("code is empty")
    if code[:4] == WASM_MAGIC:
        if code[4:8] not in (CORE_VERSION, COMPONENT_VERSION):
            raise InvalidModule(f"unknown WebAssembly version {code[4:8].hex()}: expected a core module or a component")
        return code
    try:
        text = code.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidModule("code is not WebAssembly: missing the \\0asm header, and not WAT text") from None
    if "(module" not in text:
        raise InvalidModule("code is not WebAssembly: missing the \\0asm header, and not WAT text")
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"WAT text does not parse: {one_line(exc)}") from None
