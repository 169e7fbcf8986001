"""Event source mapping of the embedded queue (``type: "queue"``), as Lambda's for SQS.

The runner long-polls the queue (``QueueStore.areceive``), hands the function
``Records`` batches with ``eventSource`` ``aws:sqs``, deletes the messages that
succeeded and makes the failed ones visible again after ``retry_delay_ms``. The
queue keeps the receive count, so its redrive policy (``max_receive_count``, then
the dead-letter queue) applies exactly as it does for SQS and Lambda.

Visibility timeout: each receive hides its messages for the function's timeout
plus ``maximum_batching_window_ms`` plus ``VISIBILITY_MARGIN_S``, rounded up to
whole seconds: long enough for a message to wait for its batch and be run. While
an invocation outlasts that (a cold start compiling the module), the runner
extends it by as much again every half of it. A host killed mid-batch leaves its
messages hidden for at most that long; then any host receives them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from ..config import FunctionConfig
from ..errors import InvalidConfig, InvalidName, WasmhostError
from ..queues import MAX_RECEIVE, MAX_VISIBILITY_S, MAX_WAIT_S, QueueStore, ReceivedMessage, arn, check_queue_name
from .base import TriggerContext, log
from .mapping import MappingRunner, MappingType, Message
from .store import Trigger

#: Seconds added to the function's timeout (and batching window) in the visibility timeout.
VISIBILITY_MARGIN_S = 5
#: How often a mapping whose queue does not exist (yet) looks again (seconds).
MISSING_QUEUE_POLL_S = 1.0


class QueueMappingType(MappingType):
    """``{"type": "queue", "queue": NAME, batch_size, maximum_batching_window_ms, ...}``"""

    name = "queue"
    source_fields = ("queue",)

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        queue = self.string(fields, "queue", required=True)
        try:
            check_queue_name(queue)
        except InvalidName as error:
            raise InvalidConfig(f"queue trigger: queue: {error.message}") from None
        values["queue"] = queue
        return values

    def describe(self, config: dict[str, Any]) -> str:
        return f"queue {config.get('queue')} (batch {config.get('batch_size', 10)})"

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> QueueRunner:
        return QueueRunner(trigger, ctx)


TYPE = QueueMappingType()


class QueueRunner(MappingRunner):
    """Receives from one embedded queue for one function."""

    event_source = "aws:sqs"

    def __init__(self, trigger: Trigger, ctx: Any) -> None:
        super().__init__(trigger, ctx)
        self.queue: str = trigger.config["queue"]
        self.store: QueueStore = ctx.host.queues
        #: Received and neither deleted nor released yet (receipt handle -> message): released on close.
        self.in_hand: dict[str, Message] = {}
        self._heartbeat: tuple[asyncio.Task[None], asyncio.Event] | None = None

    def source_arn(self) -> str:
        return arn(self.queue)

    async def connect(self) -> None:
        """Wait for the queue to exist (a mapping may be declared before its queue)."""
        reported = False
        while not await asyncio.to_thread(self.store.exists, self.queue):
            if not reported:
                reported = True
                status = {"state": "waiting", "last_error": f"queue {self.queue!r} does not exist (yet)"}
                await asyncio.to_thread(self.ctx.report, self.trigger, **status)
            await asyncio.sleep(MISSING_QUEUE_POLL_S)

    def visibility_timeout_s(self) -> int:
        """How long a receive hides its messages (see the module doc)."""
        try:
            timeout_ms = self.ctx.host.get(self.trigger.function).config.timeout_ms
        except WasmhostError:
            timeout_ms = FunctionConfig().timeout_ms
        seconds = math.ceil((timeout_ms / 1000) + self.window_s) + VISIBILITY_MARGIN_S
        return min(seconds, MAX_VISIBILITY_S)

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to ``max_messages``: one long poll for the first, then receives of 10 without
        waiting for as long as the queue has more and the batch needs them."""
        visibility = self.visibility_timeout_s()
        wait = min(max(wait_s, 0.0), MAX_WAIT_S)
        messages: list[Message] = []
        while len(messages) < max_messages:
            want = min(max_messages - len(messages), MAX_RECEIVE)
            got = await self.store.areceive(
                self.queue, want, wait_time_s=0 if messages else wait, visibility_timeout_s=visibility
            )
            for received in got:
                message = _message(received)
                self.in_hand[message.handle] = message
                messages.append(message)
            if len(got) < want:
                break
        return messages

    async def deliver(self, batch: list[Message]) -> None:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._keep_hidden(batch, stop))
        self._heartbeat = (task, stop)
        try:
            await super().deliver(batch)
        finally:
            await self._stop_heartbeat()

    async def ack(self, messages: list[Message]) -> None:
        await self._stop_heartbeat()
        handles = [m.handle for m in messages]
        refused = await asyncio.to_thread(self.store.delete_messages, self.queue, handles)
        for handle in handles:
            self.in_hand.pop(handle, None)
        if refused:  # received again elsewhere after its visibility timeout: it will run again there
            log.warning("trigger %s: %d message(s) not deleted: %s", self.trigger.id, len(refused), _first(refused))

    async def release(self, messages: list[Message], delay_s: float) -> None:
        """Visible again after ``delay_s``; the next receive counts towards ``max_receive_count``."""
        await self._stop_heartbeat()
        handles = [m.handle for m in messages]
        delay = min(max(delay_s, 0.0), MAX_VISIBILITY_S)
        refused = await asyncio.to_thread(self.store.change_visibility_batch, self.queue, handles, delay)
        for handle in handles:
            self.in_hand.pop(handle, None)
        if refused:
            log.info("trigger %s: %d message(s) not released: %s", self.trigger.id, len(refused), _first(refused))

    def record(self, message: Message) -> dict[str, Any]:
        record = super().record(message)
        record["receiptHandle"] = message.handle
        return record

    async def close(self) -> None:
        """Give back what was received and not finished (stopped mid-batch): visible at once."""
        await self._stop_heartbeat()
        if self.in_hand:
            handles, self.in_hand = list(self.in_hand), {}
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.change_visibility_batch, self.queue, handles, 0)

    async def _keep_hidden(self, batch: list[Message], stop: asyncio.Event) -> None:
        """Extend the batch's visibility timeout while its invocation runs."""
        visibility = self.visibility_timeout_s()
        handles = [m.handle for m in batch]
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), visibility / 2)
                return
            try:
                await asyncio.to_thread(self.store.change_visibility_batch, self.queue, handles, visibility)
            except Exception as error:  # the next beat tries again; at worst the batch runs twice
                log.warning("trigger %s: extending the visibility timeout failed: %s", self.trigger.id, error)

    async def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            task, stop = self._heartbeat
            self._heartbeat = None
            stop.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


def _message(received: ReceivedMessage) -> Message:
    return Message(
        id=received.message_id,
        body=received.body,
        handle=received.receipt_handle,
        receive_count=received.receive_count,
        sent_at=received.sent_at,
        attributes=received.attributes(),
        message_attributes=dict(received.message_attributes),
    )


def _first(refused: dict[str, str]) -> str:
    return next(iter(refused.values()))
