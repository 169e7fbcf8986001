"""The asynchronous-invocation worker: runs queued events, retries them, routes their records.

Each host process runs one :class:`AsyncWorker` on its event loop. It claims due
events from the shared :class:`~wasmhost.asyncq.EventQueue` in batches (up to
``max_in_flight`` at once), renews their leases while they run, and settles each
one as Lambda does:

* success: the record goes to ``on_success`` if set; the event is deleted;
* a failed run (``result.error``: function error, timeout, trap…): retried after
  ``retry_delay_s``, then twice that, up to ``max_retry_attempts`` retries;
* ``Throttled``: due again after the error's ``retry_after_s`` (or
  ``throttle_delay_s``), not counted as an attempt;
* final failure — retries exhausted, older than ``max_event_age_s`` (checked
  before each run), or ``FunctionNotFound`` — the record goes to ``on_failure``;
  without one, to the dead-letter queue ``<function>-failures`` (see
  ``failure_queue``).

A destination ``function:NAME`` is a new event for NAME (the record is its
event), enqueued in the transaction that deletes the finished one;
``queue:NAME`` moves the event and its record to the dead-letter queue NAME.
This module does not know the Host: it is handed callables (imports run one way).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgpack

from .asyncq import EventQueue, NewEvent, QueuedEvent
from .config import FunctionConfig
from .errors import FunctionError, FunctionNotFound, Throttled, WasmhostError
from .result import InvocationResult

log = logging.getLogger("wasmhost.async")

T = TypeVar("T")

#: Destination deliveries in a row before a chain is cut (a function whose destination
#: leads back to itself); like Lambda's recursive-loop detection, which stops at 16.
MAX_HOPS = 16
#: Longest wait between two polls of an idle queue, in seconds.
IDLE_POLL_S = 1.0
#: The ARN prefix of ``requestContext.functionArn`` in destination records.
ARN_PREFIX = "arn:aws:lambda:local:000000000000:function:"

RunEvent = Callable[[QueuedEvent], Awaitable[InvocationResult]]
ConfigLookup = Callable[[str, str | None], FunctionConfig | None]


def default_failure_queue(function: str) -> str:
    """Where final failures of a function without ``on_failure`` go."""
    return f"{function}-failures"


def msgpack_decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def msgpack_encode(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class AsyncWorker:
    """Runs the events of an :class:`EventQueue` on the running event loop.

    ``run(item)`` invokes the event (through the host); it may raise ``Throttled``
    or ``FunctionNotFound``; any other exception counts as a failed run.
    ``config(function, qualifier)`` gives the settings that apply, or None when
    the function is gone. ``decode``/``encode`` turn event bytes into values and
    back (msgpack); ``new_request_id`` names the events made for ``function:``
    destinations. ``failure_queue(function)`` names the dead-letter queue of
    final failures without ``on_failure``; return None to drop them with a log
    line, as Lambda does. ``on_outcome(item, outcome)`` is told each outcome
    (``Success``, ``Retry``, ``Throttled``, ``RetriesExhausted``,
    ``EventAgeExceeded``, ``FunctionNotFound``), for metrics.

    Times are seconds. ``lease_s`` is how long a claim lasts without renewal (it is
    renewed every third of it while the event runs): after ``kill -9``, the events
    the process held are run again by another worker once it ends — or at once by
    a worker on the same machine that sees the owner's process is gone.
    """

    def __init__(
        self,
        queue: EventQueue,
        run: RunEvent,
        config: ConfigLookup,
        *,
        decode: Callable[[bytes], Any] = msgpack_decode,
        encode: Callable[[Any], bytes] = msgpack_encode,
        new_request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        failure_queue: Callable[[str], str | None] = default_failure_queue,
        on_outcome: Callable[[QueuedEvent, str], None] | None = None,
        max_in_flight: int = 64,
        lease_s: float = 30.0,
        retry_delay_s: float = 1.0,
        throttle_delay_s: float = 1.0,
        poll_interval_s: float = 0.1,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        for name, value in (
            ("lease_s", lease_s),
            ("retry_delay_s", retry_delay_s),
            ("throttle_delay_s", throttle_delay_s),
            ("poll_interval_s", poll_interval_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.queue = queue
        self._run = run
        self._config = config
        self._decode = decode
        self._encode = encode
        self._new_request_id = new_request_id
        self._failure_queue = failure_queue
        self._on_outcome = on_outcome
        self.max_in_flight = max_in_flight
        self.lease_s = lease_s
        self.retry_delay_s = retry_delay_s
        self.throttle_delay_s = throttle_delay_s
        self.poll_interval_s = poll_interval_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._claimer: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Events claimed by this worker and not settled yet."""
        return len(self._tasks)

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Start claiming, on the running event loop. Call once."""
        if self._claimer is not None:
            raise RuntimeError("the worker is already started")
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        # One thread for the queue's SQLite calls: a busy lock never blocks the loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wasmhost-async")
        self._claimer = self._loop.create_task(self._claim_loop(), name="wasmhost-async-claim")
        self._renewer = self._loop.create_task(self._renew_loop(), name="wasmhost-async-renew")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming and wait up to ``grace_s`` for running events to settle.

        Events still running then are cancelled and keep their lease: they are
        run again after it ends (or at once by the next process on this machine).
        Idempotent.
        """
        if self._claimer is None or self._stopping:
            return
        self._stopping = True
        self.wake()
        await self._claimer
        running = list(self._tasks.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("%d async event(s) still running at shutdown will run again later", len(pending))
        assert self._renewer is not None and self._executor is not None
        self._renewer.cancel()
        await asyncio.gather(self._renewer, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _wake_after(self, delay_s: float) -> None:
        """Poll again when an event this worker rescheduled is due."""
        loop = self._loop
        if loop is not None and not self._stopping:
            loop.call_later(delay_s, self.wake)

    def wake(self) -> None:
        """Claim at once instead of at the next poll (after a ``put``). Thread-safe."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            wakeup.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wakeup.set)

    # --- claiming --------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._wakeup is not None
        try:
            await self._release_dead_owners()
        except Exception:
            log.exception("could not look for leases of dead processes; they will end on their own")
        idle_polls = 0
        while not self._stopping:
            free = self.max_in_flight - len(self._tasks)
            claimed: list[QueuedEvent] = []
            if free > 0:
                try:
                    claimed = await self._db(self.queue.claim, self.owner, self.lease_s, free)
                except Exception:
                    log.exception("claiming async events failed; trying again in 1 s")
                    await asyncio.sleep(1.0)
                    continue
            for item in claimed:
                if item.id in self._tasks:  # our own lease ran out while it ran; it is ours again
                    continue
                task = asyncio.create_task(self._process(item))
                self._tasks[item.id] = task
                task.add_done_callback(functools.partial(self._forget, item.id))
            if claimed and len(claimed) == free:
                continue  # there may be more waiting; no sleep
            # Idle, the poll backs off to IDLE_POLL_S: events put by this process
            # and retries it schedules wake it at once; only other processes'
            # events wait for a poll. (Polling every 100 ms cost ~1 µs per request
            # of a busy server, in SQLite reads and thread hand-offs.)
            idle_polls = 0 if claimed else idle_polls + 1
            interval = min(self.poll_interval_s * 2 ** min(idle_polls, 8), max(self.poll_interval_s, IDLE_POLL_S))
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), interval)
                idle_polls = 0
            except TimeoutError:
                pass

    def _forget(self, event_id: int, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(event_id, None)
        if self._wakeup is not None and len(self._tasks) == self.max_in_flight - 1:
            self._wakeup.set()  # was full: claim more at once

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if self._tasks:
                try:
                    await self._db(self.queue.renew, list(self._tasks), self.owner, self.lease_s)
                except Exception:
                    log.exception("renewing async event leases failed")

    async def _release_dead_owners(self) -> None:
        for owner in await self._db(self.queue.lease_owners):
            if owner != self.owner and _owner_is_dead(owner):
                released = await self._db(self.queue.release, owner)
                log.info("released %d async event(s) held by dead process %s", released, owner)

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    # --- one event -------------------------------------------------------

    async def _process(self, item: QueuedEvent) -> None:
        try:
            await self._attempt(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database failed (or a bug): the lease runs out and the event runs again.
            log.exception(
                "async event %s of %s could not be settled; it will run again", item.request_id, item.function
            )

    async def _attempt(self, item: QueuedEvent) -> None:
        config = self._config(item.function, item.qualifier)
        if config is None:
            error = {"errorType": FunctionNotFound.type, "errorMessage": f"function {item.function!r} is not deployed"}
            await self._finish(item, None, "FunctionNotFound", item.attempts, _failure(error, 404, None))
            return
        age_s = time.time() - item.enqueued_at
        if age_s > config.max_event_age_s:
            response = _failure(item.last_error, None, None) if item.last_error else _never_ran(age_s, config)
            await self._finish(item, config, "EventAgeExceeded", item.attempts, response)
            return
        try:
            result = await self._run(item)
        except Throttled as exc:
            delay_s = float(exc.details.get("retry_after_s") or self.throttle_delay_s)
            delay_s *= 1 + random.random() / 4  # spread out a burst that was throttled together
            await self._db(self.queue.retry, item.id, delay_s=delay_s, count_attempt=False, owner=self.owner)
            self._wake_after(delay_s)
            self._tell(item, "Throttled")
            return
        except FunctionNotFound as exc:
            response = _failure(_error(exc), exc.status, None)
            await self._finish(item, config, "FunctionNotFound", item.attempts, response)
            return
        except Exception as exc:
            if not isinstance(exc, WasmhostError):
                log.exception("async event %s of %s: run failed", item.request_id, item.function)
            error, status, version = _error(exc), getattr(exc, "status", 500), None
        else:
            if result.error is None:
                success = {"statusCode": 200, "executedVersion": result.function_version}
                await self._finish(item, config, "Success", item.attempts + 1, (success, result.payload))
                return
            error, status, version = _error(result.error), 200, result.function_version
        attempts = item.attempts + 1
        if attempts > config.max_retry_attempts:
            await self._finish(item, config, "RetriesExhausted", attempts, _failure(error, status, version))
            return
        stored = {**error, "statusCode": status, "executedVersion": version}
        delay_s = self.retry_delay_s * 2 ** (attempts - 1)
        await self._db(self.queue.retry, item.id, delay_s=delay_s, count_attempt=True, error=stored, owner=self.owner)
        self._wake_after(delay_s)
        self._tell(item, "Retry")

    async def _finish(
        self,
        item: QueuedEvent,
        config: FunctionConfig | None,
        condition: str,
        invoke_count: int,
        response: tuple[dict[str, Any], Any],
    ) -> None:
        """Route the record of a finished event to its destination and settle the event."""
        success = condition == "Success"
        record = self._record(item, condition, invoke_count, *response)
        destination = None if config is None else config.on_success if success else config.on_failure
        if destination is not None and destination.startswith("function:") and item.hops >= MAX_HOPS:
            log.warning(
                "async event %s of %s: %d destination hops; not delivered to %s",
                item.request_id,
                item.function,
                item.hops,
                destination,
            )
            destination, success = None, False
        if destination is None and not success:
            queue_name = self._failure_queue(item.function)
            destination = None if queue_name is None else f"queue:{queue_name}"
        if not success:
            log.warning(
                "async event %s of %s: %s after %d run(s); record to %s",
                item.request_id, item.function, condition, invoke_count, destination or "nowhere (dropped)",
            )  # fmt: skip
        if destination is None:
            await self._db(self.queue.complete, item.id, owner=self.owner)
        elif destination.startswith("queue:"):
            await self._db(
                self.queue.dead_letter, item.id, destination[6:], record, attempts=invoke_count, owner=self.owner
            )
        else:
            target = destination.removeprefix("function:")
            forward = NewEvent(target, None, self._encode(record), self._new_request_id(), hops=item.hops + 1)
            await self._db(self.queue.complete, item.id, owner=self.owner, forward=[forward])
            self.wake()
        self._tell(item, condition)

    def _record(
        self, item: QueuedEvent, condition: str, invoke_count: int, context: dict[str, Any], payload: Any
    ) -> dict[str, Any]:
        """Lambda's destination record."""
        try:
            request = self._decode(item.event_bytes)
        except Exception:
            log.exception("async event %s of %s: cannot decode the event", item.request_id, item.function)
            request = None
        return {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": item.request_id,
                "functionArn": f"{ARN_PREFIX}{item.function}:{item.qualifier or '$LATEST'}",
                "condition": condition,
                "approximateInvokeCount": invoke_count,
            },
            "requestPayload": request,
            "responseContext": context,
            "responsePayload": payload,
        }

    def _tell(self, item: QueuedEvent, outcome: str) -> None:
        if self._on_outcome is not None:
            try:
                self._on_outcome(item, outcome)
            except Exception:
                log.exception("on_outcome hook failed")


def _error(error: BaseException) -> dict[str, Any]:
    """``{"errorType", "errorMessage"}``; a guest's own error keeps its own type name."""
    if isinstance(error, FunctionError):
        return {"errorType": error.error_type, "errorMessage": error.message}
    if isinstance(error, WasmhostError):
        return {"errorType": error.type, "errorMessage": error.message}
    return {"errorType": "InternalError", "errorMessage": f"{type(error).__name__}: {error}"}


def _failure(error: dict[str, Any], status: int | None, version: str | None) -> tuple[dict[str, Any], Any]:
    """The (responseContext, responsePayload) of a failure. ``error`` may be a stored
    ``last_error``, which carries its own status and version."""
    context = {
        "statusCode": error.get("statusCode", status),
        "executedVersion": error.get("executedVersion", version),
        "functionError": "Unhandled",
    }
    return context, {"errorType": error["errorType"], "errorMessage": error["errorMessage"]}


def _never_ran(age_s: float, config: FunctionConfig) -> tuple[dict[str, Any], Any]:
    """An event that aged out before any run (throttled or queued all along): no status."""
    message = f"the event is {age_s:.0f} s old; max_event_age_s is {config.max_event_age_s}"
    return _failure({"errorType": "EventAgeExceeded", "errorMessage": message}, None, None)


def _owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` (``host:pid:token``) was a process on this machine that
    is gone. Another machine's, or our own pid (another worker in this process), is
    never declared dead: its leases end on their own."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False
