"""Long polling: ``receive``/``areceive`` with ``wait_time_s`` return as soon as a message
is visible. A send through the same ``QueueStore`` wakes them at once (``Wakeups``, across
threads and event loops); a send by another process is seen within ``poll_s``. Between
looks, an asynchronous receiver only asks SQLite whether the file changed
(``PRAGMA data_version``), so an idle one costs nearly nothing.

A mixin of :class:`~wasmhost.queues.store.QueueStore`, which does each receive (``_receive``).
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from .messages import ReceivedMessage
from .validation import check_receive

#: How often a long poll looks for messages sent by other processes (seconds).
POLL_S = 0.05


class LongPollingMixin:
    """``receive`` and ``areceive`` of ``QueueStore``: the waiting around each receive."""

    poll_s: float
    _wakeups: Wakeups
    _watch: sqlite3.Connection
    _watch_lock: threading.Lock

    def _receive(
        self, queue: str, max_messages: int, visibility_timeout_s: float | None, now: float | None
    ) -> tuple[builtins.list[ReceivedMessage], float | None]:
        raise NotImplementedError  # QueueStore._receive

    def change_visibility_batch(
        self, queue: str, receipt_handles: Sequence[str], visibility_timeout_s: float, *, now: float | None = None
    ) -> dict[str, str]:
        raise NotImplementedError  # QueueStore.change_visibility_batch

    # --- receiving ------------------------------------------------------------

    def receive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        wait_time_s: float = 0,
        visibility_timeout_s: float | None = None,
        now: float | None = None,
    ) -> builtins.list[ReceivedMessage]:
        """Up to ``max_messages`` (1-10) visible messages, made invisible for
        ``visibility_timeout_s`` (the queue's by default), each with a new receipt handle.
        With ``wait_time_s`` (up to 20), waits that long for a first message (long polling;
        blocks this thread). Messages over their redrive policy's ``max_receive_count`` move
        to the dead-letter queue instead of being returned."""
        check_receive(max_messages, wait_time_s, visibility_timeout_s)
        deadline = time.monotonic() + wait_time_s
        while True:
            seen = self._wakeups.version
            messages, next_visible = self._receive(queue, max_messages, visibility_timeout_s, now)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            self._wakeups.wait(seen, _pause(remaining, self.poll_s, next_visible))

    async def areceive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        wait_time_s: float = 0,
        visibility_timeout_s: float | None = None,
    ) -> builtins.list[ReceivedMessage]:
        """``receive`` for an event loop: the database work runs on a thread, the waiting
        does not hold one. Cancelled while a receive runs, it makes the messages that
        receive took visible again (they count as received once)."""
        check_receive(max_messages, wait_time_s, visibility_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait_time_s
        look, version, next_visible = True, -1, None
        while True:
            woken = self._wakeups.register(queue, loop)
            try:
                if look:
                    version = self._data_version()
                    messages, next_visible = await self._receive_on_thread(queue, max_messages, visibility_timeout_s)
                    if messages:
                        return messages
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                await asyncio.wait({woken}, timeout=_pause(remaining, self.poll_s, next_visible))
                # Look again only if something may have changed: a send here, a commit by any
                # connection (another process), or a hidden message's time come.
                look = (
                    woken.done()
                    or (next_visible is not None and next_visible <= time.time())
                    or self._data_version() != version
                )
            finally:
                self._wakeups.unregister(queue, woken)

    def _data_version(self) -> int:
        """Changes whenever another connection (of any process) commits to the file. Cheap
        enough to ask on an event loop: it reads the WAL index, never waits for a lock."""
        with self._watch_lock:
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    async def _receive_on_thread(
        self, queue: str, max_messages: int, visibility_timeout_s: float | None
    ) -> tuple[builtins.list[ReceivedMessage], float | None]:
        handoff = threading.Lock()
        state = {"cancelled": False, "returned": False}

        def work() -> tuple[builtins.list[ReceivedMessage], float | None]:
            messages, next_visible = self._receive(queue, max_messages, visibility_timeout_s, None)
            with handoff:
                if state["cancelled"]:
                    self._give_back(queue, messages)
                    return [], next_visible
                state["returned"] = True
            return messages, next_visible

        future = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with handoff:
                state["cancelled"] = True
                taken = state["returned"]
            if taken:  # the receive finished but its caller is gone: give its messages back
                future.add_done_callback(lambda done: self._give_back_later(queue, done))
            raise

    def _give_back_later(self, queue: str, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            messages = done.result()[0]
            threading.Thread(target=self._give_back, args=(queue, messages), daemon=True).start()

    def _give_back(self, queue: str, messages: builtins.list[ReceivedMessage]) -> None:
        if messages:
            with suppress(Exception):
                self.change_visibility_batch(queue, [m.receipt_handle for m in messages], 0)


class Wakeups:
    """Wakes the receivers waiting in this process when a message is sent here."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def notify(self, queue: str) -> None:
        with self._condition:
            self.version += 1
            self._condition.notify_all()
            waiters = self._waiters.pop(queue, set())
        for loop, future in waiters:
            with suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future)

    def wait(self, seen: int, timeout_s: float) -> None:
        """Block until a send after ``seen`` (a ``version``), or ``timeout_s``."""
        with self._condition:
            self._condition.wait_for(lambda: self.version != seen, timeout_s)

    def register(self, queue: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            self._waiters.setdefault(queue, set()).add((loop, future))
        return future

    def unregister(self, queue: str, future: asyncio.Future[None]) -> None:
        with self._condition:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.discard((future.get_loop(), future))
                if not waiters:
                    del self._waiters[queue]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _pause(remaining_s: float, poll_s: float, next_visible: float | None) -> float:
    """How long a long poll sleeps before looking again."""
    pause = min(remaining_s, poll_s)
    if next_visible is not None:
        pause = min(pause, max(0.0, next_visible - time.time()))
    return max(pause, 0.001)
