"""Operations of the Host: stored logs, usage and cost, Prometheus metrics, and
asynchronous invocation (the durable event queue, its worker, dead letters).

A mixin of :class:`~wasmhost.host.Host`, which owns the stores it reads.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import msgpack

from .async_worker import AsyncWorker, msgpack_decode
from .asyncq import EventQueue
from .concurrency import SharedConcurrency
from .config import FunctionConfig, HostConfig
from .errors import FunctionNotFound, InvalidRequest, PayloadTooLarge
from .registry import LATEST, SqliteRegistry
from .result import InvocationResult
from .telemetry.store import TelemetryStore


class OperationsMixin:
    """Logs, usage, metrics and asynchronous invocation for ``Host``."""

    config: HostConfig
    registry: SqliteRegistry
    telemetry: TelemetryStore
    events: EventQueue
    gate: SharedConcurrency
    async_worker: AsyncWorker | None
    _request_ids: Callable[[], str]

    async def ainvoke(
        self, name: str, event: Any = None, *, qualifier: str | None = None, request_id: str | None = None
    ) -> InvocationResult:
        raise NotImplementedError  # Host.ainvoke

    # --- logs and usage -------------------------------------------------------

    def logs(
        self,
        name: str,
        *,
        since: float | None = None,
        request_id: str | None = None,
        limit: int = 1000,
        after_id: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Stored log lines of ``name`` (START, guest output, END, REPORT), oldest first.

        Each is ``{"id", "timestamp" (epoch s), "request_id", "version", "message"}``;
        ``after_id`` is the last id already seen (for following). Lines are kept for
        ``HostConfig.log_retention_s``. A deleted function's logs stay readable.
        """
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise InvalidRequest(f"limit must be between 1 and 10000, got {limit!r}")
        return self.telemetry.logs(name, since=since, request_id=request_id, limit=limit, after_id=after_id)

    def usage(self, name: str, *, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """Invocations, errors, throttles, GB-seconds, fuel and estimated cost of ``name``
        between ``since`` and ``until`` (epoch seconds), at ``HostConfig``'s prices.
        """
        return self.telemetry.usage(
            name,
            since=since,
            until=until,
            price_per_gb_second=self.config.price_per_gb_second,
            price_per_million_requests=self.config.price_per_million_requests,
        )

    def metrics(self) -> tuple[bytes, str]:
        """Prometheus exposition of every process's invocations (from the telemetry store) and
        of this moment: executions in flight, async queue depth and age, dead letters.
        Returns the body and its content type.
        """
        from .telemetry.metrics import HostCollector, render

        collector = HostCollector(
            self.telemetry,
            concurrency=self.gate.snapshot,
            queue=self.events.depth,
            dead_letters=self.events.dead_letter_counts,
        )
        return render(collector)

    # --- asynchronous invocation --------------------------------------------

    def invoke_event(
        self, name: str, event: Any = None, *, qualifier: str | None = None, request_id: str | None = None
    ) -> str:
        """Queue ``event`` for ``name`` (invocation type ``Event``); return its request id at once.

        The event is on disk (fsynced) before this returns; a worker runs it
        with retries and destinations (see ``start_async_worker``). Raises
        ``FunctionNotFound`` (or ``VersionNotFound``/``AliasNotFound``) now,
        ``InvalidRequest`` for an event msgpack cannot encode, ``PayloadTooLarge``
        over ``max_async_payload_bytes``.
        """
        name, qualifier, body = self._event(name, event, qualifier)
        request_id = request_id or self._request_ids()
        self.events.put(name, qualifier, body, request_id)
        if self.async_worker is not None:
            self.async_worker.wake()
        return request_id

    def _accepted(
        self, name: str, event: Any, qualifier: str | None, request_id: str | None, invocation_type: str
    ) -> InvocationResult:
        if invocation_type != "Event":
            raise InvalidRequest(f"invocation_type must be RequestResponse or Event, got {invocation_type!r}")
        request_id = self.invoke_event(name, event, qualifier=qualifier, request_id=request_id)
        function, _, named = name.partition(":")
        config = self._config_for(function, qualifier or named or None) or FunctionConfig()
        return InvocationResult(
            payload=None,
            error=None,
            request_id=request_id,
            function_name=function,
            function_version=qualifier or named or LATEST,
            duration_ms=0.0,
            billed_ms=0,
            memory_mb=config.memory_mb,
            fuel_used=0,
            max_memory_bytes=0,
            cold=False,
            logs="",
            status_code=202,
        )

    async def ainvoke_event(
        self, name: str, event: Any = None, *, qualifier: str | None = None, request_id: str | None = None
    ) -> str:
        """``invoke_event`` without blocking the loop; concurrent callers share one fsync."""
        name, qualifier, body = self._event(name, event, qualifier)
        request_id = request_id or self._request_ids()
        await self.events.aput(name, qualifier, body, request_id)
        if self.async_worker is not None:
            self.async_worker.wake()
        return request_id

    def _event(self, name: str, event: Any, qualifier: str | None) -> tuple[str, str | None, bytes]:
        if qualifier is None and ":" in name:
            name, _, qualifier = name.partition(":")
        self._config_for(name, qualifier, strict=True)
        try:
            body = msgpack.packb(event, use_bin_type=True, datetime=False)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRequest(f"event cannot be encoded: {exc}") from None
        limit = self.config.max_async_payload_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"an asynchronous event is at most {limit} bytes; this one is {len(body)}")
        return name, qualifier, body

    def _config_for(self, name: str, qualifier: str | None, strict: bool = False) -> FunctionConfig | None:
        """The settings that apply to ``name:qualifier`` (an alias's primary version); None if gone."""
        try:
            if qualifier is None or qualifier == LATEST:
                return self.registry.get(name).config
            if not qualifier.isdigit():
                qualifier = self.registry.get_alias(name, qualifier).version
            return self.registry.get_version(name, qualifier).config
        except FunctionNotFound:
            if strict:
                raise
            return None

    def start_async_worker(self) -> AsyncWorker:
        """Start running queued events on the running event loop (the server does it at startup).

        Every process on a data directory may run one: leases keep an event in
        one of them at a time, and a killed process's events are run again.
        """
        if self.async_worker is None:
            self.async_worker = AsyncWorker(
                self.events,
                run=lambda item: self.ainvoke(
                    item.function,
                    msgpack_decode(item.event_bytes),
                    qualifier=item.qualifier,
                    request_id=item.request_id,
                ),
                config=self._config_for,
                new_request_id=self._request_ids,
                max_in_flight=self.config.async_max_in_flight,
                retry_delay_s=self.config.async_retry_delay_s,
            )
            self.async_worker.start()
        return self.async_worker

    async def stop_async_worker(self, grace_s: float = 10.0) -> None:
        """Stop claiming events; wait up to ``grace_s`` for the running ones."""
        if self.async_worker is not None:
            worker, self.async_worker = self.async_worker, None
            await worker.stop(grace_s)

    def dead_letter_queues(self) -> dict[str, int]:
        """Every dead-letter queue and how many messages it holds."""
        return self.events.dead_letter_counts()

    def dead_letters(
        self, queue: str, *, limit: int = 100, after_id: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Messages of ``queue``, oldest first: the Lambda-shaped record, attempts, times."""
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise InvalidRequest(f"limit must be between 1 and 10000, got {limit!r}")
        return self.events.dead_letters(queue, limit=limit, after_id=after_id)

    def redrive(self, queue: str, ids: builtins.list[int] | None = None) -> int:
        """Queue the events of ``queue``'s messages (all, or ``ids``) again; returns how many."""
        count = self.events.redrive(queue, ids)
        if count and self.async_worker is not None:
            self.async_worker.wake()
        return count
