"""Schedules (type ``schedule``), like EventBridge Scheduler: ``rate(5 minutes)``,
``cron(0 12 * * ? *)`` (AWS's six fields), standard five-field cron and
``at(2026-12-01T10:00:00)``, evaluated in a time zone.

Each tick is queued for the function as an asynchronous invocation (EventBridge
invokes Lambda asynchronously) carrying EventBridge's ``Scheduled Event`` (or the
trigger's ``input``). Exactly once: the runner runs in one process (the
supervisor's flock); a tick is queued with ``EventQueue.put_once`` under the key
``schedule:<trigger id>:<tick time>`` and then recorded in the trigger's state
with a compare-and-set, so a crash between the two, or a handover, queues no tick
twice. Ticks missed by more than ``max_lateness_s`` (the host was down) are
skipped unless ``catch_up`` is set; see docs/triggers/schedule.md.

Expressions and their ticks are in ``schedule_expressions.py``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from ..asyncq import NewEvent
from ..errors import InvalidConfig
from .base import Runner, TriggerContext, TriggerType, log
from .schedule_expressions import At, BadExpression, Plan, parse_expression
from .schedule_expressions import translate_aws_cron as translate_aws_cron  # re-exported
from .store import Trigger

REGION = "local"
ACCOUNT = "000000000000"
#: A tick later than this (seconds) counts as missed, unless the trigger sets ``max_lateness_s``.
DEFAULT_MAX_LATENESS_S = 10
#: At most this many ticks are fired at once (the most recent) when catching up.
CATCH_UP_MAX = 100
#: The runner looks at the clock at least this often (seconds), so a wall-clock jump is noticed.
MAX_SLEEP_S = 30.0
#: ``put_once`` keys of ticks older than this (seconds) are dropped; the state has moved past them.
ONCE_KEYS_KEEP_S = 3600.0
#: The runner's state key: ``{"handled", "last_fired", "fired", "missed"}``.
TICKS_KEY = "ticks"


# --- the trigger type -----------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys
        raise InvalidConfig(
            f"schedule trigger: timezone must be an IANA time zone name such as Europe/Paris, got {name!r}"
        ) from None


def _date(config: dict[str, Any], key: str, zone: ZoneInfo) -> int | None:
    """``start_date``/``end_date``: ISO 8601; without an offset, in the trigger's timezone."""
    value = config.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidConfig(
            f"schedule trigger: {key} must be an ISO 8601 date-time such as 2026-12-01T10:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return math.floor(moment.timestamp())


def plan_for(config: dict[str, Any], created_at: float) -> Plan:
    """The schedule of a trigger's (validated) ``config``; a rate counts from ``start_date``
    or, without one, from the trigger's creation. Raises ``InvalidConfig``."""
    zone = _zone(config.get("timezone", "UTC"))
    start, end = _date(config, "start_date", zone), _date(config, "end_date", zone)
    expression = config["expression"]
    try:
        schedule = parse_expression(expression, zone, start if start is not None else math.floor(created_at))
    except BadExpression as error:
        raise InvalidConfig(f"schedule trigger: expression {expression}: {error}") from None
    return Plan(schedule, start, end)


def scheduled_event(trigger_id: str, tick: int) -> dict[str, Any]:
    """EventBridge's ``Scheduled Event`` for ``tick`` (the id is the same for the same tick)."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wasmhost:schedule:{trigger_id}:{tick}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": iso(tick),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{trigger_id}"],
        "detail": {},
    }


def iso(tick: int) -> str:
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def once_key_prefix(trigger_id: str) -> str:
    return f"schedule:{trigger_id}:"


class ScheduleType(TriggerType):
    name = "schedule"
    fields = ("expression", "timezone", "catch_up", "input", "start_date", "end_date", "max_lateness_s")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        config = self.check_fields(fields)
        config["expression"] = self.string(fields, "expression", required=True, pattern_hint="e.g. rate(5 minutes)")
        config["timezone"] = self.string(fields, "timezone", "UTC")
        config["catch_up"] = self.boolean(fields, "catch_up", False)
        config["max_lateness_s"] = self.integer(fields, "max_lateness_s", DEFAULT_MAX_LATENESS_S, 1, 86400)
        for key in ("start_date", "end_date"):
            if fields.get(key) is not None:
                config[key] = self.string(fields, key)
        if fields.get("input") is not None:
            try:
                msgpack.packb(fields["input"], use_bin_type=True, datetime=False)
            except (TypeError, ValueError, OverflowError) as error:
                raise InvalidConfig(f"schedule trigger: input cannot be encoded: {error}") from None
            config["input"] = fields["input"]
        plan = plan_for(config, time.time())  # checks the expression, timezone and dates
        if plan.start is not None and plan.end is not None and plan.end < plan.start:
            raise InvalidConfig("schedule trigger: end_date is before start_date")
        return config

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> Runner:
        return ScheduleRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        try:
            host.events.forget_once_keys(once_key_prefix(trigger.id), time.time() + 1)
        except Exception as error:
            log.warning("schedule %s: could not drop its queued-tick keys: %s", trigger.id, error)

    def describe(self, config: dict[str, Any]) -> str:
        return f"{config.get('expression')} {config.get('timezone', 'UTC')}"


TYPE = ScheduleType()


class ScheduleRunner(Runner):
    """Sleeps until the next tick, queues it exactly once, records it, repeats."""

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        super().__init__(trigger, ctx)
        self.plan = Plan(At(0))  # replaced in run(), where a failure is reported and retried
        self.catch_up = bool(trigger.config.get("catch_up", False))
        self.max_lateness_s = trigger.config.get("max_lateness_s", DEFAULT_MAX_LATENESS_S)
        self._reported_next: int | None = None
        self._forgot_at = 0.0

    async def run(self) -> None:
        self.plan = plan_for(self.trigger.config, self.trigger.created_at)
        store = self.ctx.store
        while True:
            state = await asyncio.to_thread(store.get_state, self.trigger.id, TICKS_KEY)
            after = state["handled"] if state else self.trigger.created_at  # the first tick is after creation
            now = time.time()
            due, count = await asyncio.to_thread(self.plan.due, after, now, CATCH_UP_MAX)
            if count:
                if not await self._handle(state, due, count, now):
                    return
                continue
            upcoming = self.plan.next_after(max(after, now))
            if upcoming is None:
                await asyncio.to_thread(self.ctx.report, self.trigger, state="done", next_tick=None)
                return
            if upcoming != self._reported_next:
                await asyncio.to_thread(self.ctx.report, self.trigger, state="scheduled", next_tick=iso(upcoming))
                self._reported_next = upcoming
            await asyncio.sleep(min(upcoming - time.time() + 0.001, MAX_SLEEP_S))

    async def _handle(self, state: dict[str, Any] | None, due: list[int], count: int, now: float) -> bool:
        """Queue the ticks that are due (all with ``catch_up``, else the ones at most
        ``max_lateness_s`` late), then record the latest due tick as handled. False if
        the trigger was deleted."""
        fire = due if self.catch_up else [tick for tick in due if now - tick <= self.max_lateness_s]
        store = self.ctx.store
        if await asyncio.to_thread(store.get, self.trigger.id) is None:
            return False  # deleted, its state with it: stop before the supervisor notices
        for tick in fire:
            await asyncio.to_thread(self._queue, tick)
        worker = getattr(self.ctx.host, "async_worker", None)
        if fire and worker is not None:
            worker.wake()
        previous = state or {}
        new_state = {
            "handled": due[-1],
            "last_fired": fire[-1] if fire else previous.get("last_fired"),
            "fired": previous.get("fired", 0) + len(fire),
            "missed": previous.get("missed", 0) + count - len(fire),
        }
        if not await asyncio.to_thread(store.compare_and_set_state, self.trigger.id, TICKS_KEY, state, new_state):
            log.warning("schedule %s: its state changed under it; reading it again", self.trigger.id)
            return True
        if count > len(fire):
            log.info(
                "schedule %s: skipped %d missed tick(s) up to %s", self.trigger.id, count - len(fire), iso(due[-1])
            )
        upcoming = self.plan.next_after(max(due[-1], now))
        last_fired = new_state["last_fired"]
        await asyncio.to_thread(
            self.ctx.report,
            self.trigger,
            state="scheduled" if upcoming is not None else "done",
            next_tick=iso(upcoming) if upcoming is not None else None,
            last_tick=iso(last_fired) if last_fired is not None else None,
            fired=new_state["fired"],
            missed=new_state["missed"],
        )
        self._reported_next = upcoming
        if time.time() - self._forgot_at > ONCE_KEYS_KEEP_S:
            self._forgot_at = time.time()
            await asyncio.to_thread(
                self.ctx.host.events.forget_once_keys,
                once_key_prefix(self.trigger.id),
                self._forgot_at - ONCE_KEYS_KEEP_S,
            )
        return True

    async def close(self) -> None:
        # A tick queued while the trigger was being deleted may have left its key: drop them all.
        if await asyncio.to_thread(self.ctx.store.get, self.trigger.id) is None:
            TYPE.removed(self.trigger, self.ctx.host)

    def _queue(self, tick: int) -> bool:
        """Queue ``tick``'s event unless it was queued already (by this or another process)."""
        config = self.trigger.config
        event = config["input"] if config.get("input") is not None else scheduled_event(self.trigger.id, tick)
        host = self.ctx.host
        # Host._event: the function exists, the event is encoded as ainvoke_event encodes it, within size.
        name, qualifier, body = host._event(self.trigger.function, event, self.trigger.qualifier)
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"wasmhost:schedule:{self.trigger.id}:{tick}"))
        return bool(
            host.events.put_once(
                once_key_prefix(self.trigger.id) + iso(tick), NewEvent(name, qualifier, body, request_id)
            )
        )
