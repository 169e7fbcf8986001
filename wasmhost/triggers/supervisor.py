"""Runs the background part of every trigger, each in exactly one process.

Every server process (``--workers N``, or several hosts on one data directory)
runs a supervisor. For each enabled trigger with a runner, the supervisors race
for an exclusive ``flock`` on ``<data_dir>/triggers/locks/<id>.lock``; the one
that holds it runs the trigger. The kernel drops the lock when its process dies
(even by ``kill -9``), and another supervisor takes the trigger over within
``poll_s``. Triggers added or removed by any process are noticed through the
trigger store's change counter.

A runner that raises is restarted after a back-off (1 s doubling to 30 s), its
error visible in the trigger's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from pathlib import Path
from typing import IO

from . import trigger_type
from .base import Runner, TriggerContext
from .store import Trigger

log = logging.getLogger("wasmhost.triggers")

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: The longest a runner may take to close its connections when stopped.
STOP_TIMEOUT_S = 5.0


class _Running:
    def __init__(self, trigger: Trigger, runner: Runner, lock: IO[bytes], task: asyncio.Task[None]) -> None:
        self.trigger = trigger
        self.runner = runner
        self.lock = lock
        self.task = task


class TriggerSupervisor:
    """Starts and stops trigger runners in this process. Use from one event loop."""

    def __init__(self, ctx: TriggerContext, poll_s: float = 1.0) -> None:
        self.ctx = ctx
        self.poll_s = poll_s
        self.locks = ctx.data_dir / "triggers" / "locks"
        self._running: dict[str, _Running] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self.locks.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="wasmhost-triggers")

    def wake(self) -> None:
        """Look at the trigger table now (a trigger was added or removed here)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for trigger_id in list(self._running):
            await self._stop_runner(trigger_id)

    @property
    def running(self) -> list[str]:
        """Ids of the triggers this process runs now."""
        return sorted(self._running)

    def runner(self, trigger_id: str) -> Runner | None:
        """The runner of ``trigger_id`` if this process runs it (for its live counters)."""
        running = self._running.get(trigger_id)
        return running.runner if running else None

    async def _loop(self) -> None:
        while True:
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is busy or gone for a moment: try again next round
                log.exception("trigger supervisor: reconcile failed")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _reconcile(self) -> None:
        triggers = {t.id: t for t in await asyncio.to_thread(self.ctx.store.list)}
        for trigger_id, running in list(self._running.items()):
            current = triggers.get(trigger_id)
            if current is None or current.config != running.trigger.config or not current.config.get("enabled", True):
                await self._stop_runner(trigger_id)
        for trigger in triggers.values():
            if trigger.id in self._running or not trigger.config.get("enabled", True):
                continue
            try:
                kind = trigger_type(trigger.type)
            except Exception:
                continue
            try:
                runner = kind.runner(trigger, self.ctx)
            except Exception as error:  # one broken trigger must not keep the others from starting
                log.warning("trigger %s (%s) cannot start: %s", trigger.id, trigger.type, error)
                continue
            if runner is None:
                continue
            lock = self._try_lock(trigger.id)
            if lock is None:
                continue  # another process runs it
            task = asyncio.get_running_loop().create_task(self._run(runner), name=f"trigger-{trigger.id}")
            self._running[trigger.id] = _Running(trigger, runner, lock, task)

    def _try_lock(self, trigger_id: str) -> IO[bytes] | None:
        path = self.locks / f"{trigger_id}.lock"
        handle = open(path, "ab")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

    async def _stop_runner(self, trigger_id: str) -> None:
        running = self._running.pop(trigger_id)
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # A runner's close() that hangs (a broker that never answers) must not hang shutdown.
            await asyncio.wait_for(running.task, STOP_TIMEOUT_S)
        running.lock.close()  # releases the flock
        with contextlib.suppress(OSError):
            if self.ctx.store.get(trigger_id) is None:
                Path(running.lock.name).unlink()

    async def _run(self, runner: Runner) -> None:
        trigger = runner.trigger
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await runner.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                with contextlib.suppress(Exception):
                    if await asyncio.to_thread(self.ctx.store.get, trigger.id) is None:
                        return  # deleted meanwhile (its cleanup may have cut the connection): no error
                if time.monotonic() - started > 60:
                    failures = 0
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning("trigger %s (%s) failed, restarting in %.0f s: %s", trigger.id, trigger.type, delay, error)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(
                        self.ctx.report,
                        trigger,
                        state="error",
                        last_error=f"{type(error).__name__}: {error}",
                        retry_in_s=delay,
                    )
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner.close(), STOP_TIMEOUT_S)
            await asyncio.sleep(delay)
