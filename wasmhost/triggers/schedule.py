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

AWS cron is translated to croniter's syntax (day-of-week 1-7 = SUN-SAT becomes
0-6, ``6L`` becomes ``l5``, ``2#1`` becomes ``1#1``, ``15W`` stays ``15w``) and
evaluated on the wall clock of the time zone; a wall time that does not exist
(clocks spring forward) is skipped and a repeated one (clocks fall back) fires
once, its first time, as EventBridge Scheduler does.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

from ..asyncq import NewEvent
from ..errors import InvalidConfig
from .base import Runner, TriggerContext, TriggerType, log
from .store import Trigger

REGION = "local"
ACCOUNT = "000000000000"
#: A tick later than this (seconds) counts as missed, unless the trigger sets ``max_lateness_s``.
DEFAULT_MAX_LATENESS_S = 10
#: At most this many ticks are fired at once (the most recent) when catching up.
CATCH_UP_MAX = 100
#: Missed ticks are counted (status ``missed``) up to this many per gap.
COUNT_MAX = 10_000
#: The runner looks at the clock at least this often (seconds), so a wall-clock jump is noticed.
MAX_SLEEP_S = 30.0
#: ``put_once`` keys of ticks older than this (seconds) are dropped; the state has moved past them.
ONCE_KEYS_KEEP_S = 3600.0
#: The runner's state key: ``{"handled", "last_fired", "fired", "missed"}``.
TICKS_KEY = "ticks"
#: croniter computes years up to this one.
LAST_YEAR = 2099

MONTHS = {name: n for n, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
DAYS = {name: n for n, name in enumerate("SUN MON TUE WED THU FRI SAT".split(), 1)}  # AWS: SUN = 1
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MAX_RATE_S = 3650 * 86400


class BadExpression(ValueError):
    """What is wrong with a schedule expression (prefixed with the expression by the caller)."""


# --- schedules ----------------------------------------------------------------------
# Ticks are whole Unix seconds.


class Schedule:
    def next_after(self, t: float) -> int | None:
        """The first tick strictly after ``t``; None when there is none."""
        raise NotImplementedError

    def latest(self, t: float) -> int | None:
        """The last tick at or before ``t``; None when there is none."""
        raise NotImplementedError


@dataclass(frozen=True)
class Rate(Schedule):
    """Every ``period_s`` seconds from ``anchor`` (absolute time: a day is 86 400 s, DST or not)."""

    period_s: int
    anchor: int

    def next_after(self, t: float) -> int:
        return self.anchor + (math.floor((t - self.anchor) / self.period_s) + 1) * self.period_s

    def latest(self, t: float) -> int:
        return self.anchor + math.floor((t - self.anchor) / self.period_s) * self.period_s


@dataclass(frozen=True)
class At(Schedule):
    """Once, at ``when``."""

    when: int

    def next_after(self, t: float) -> int | None:
        return self.when if self.when > t else None

    def latest(self, t: float) -> int | None:
        return self.when if self.when <= t else None


@dataclass(frozen=True)
class Cron(Schedule):
    """A croniter expression on the wall clock of ``zone``."""

    expression: str
    zone: ZoneInfo

    def next_after(self, t: float) -> int | None:
        return self._step(t, forward=True)

    def latest(self, t: float) -> int | None:
        return self._step(t, forward=False)

    def _step(self, t: float, forward: bool) -> int | None:
        wall = datetime.fromtimestamp(t, self.zone).replace(tzinfo=None)
        # croniter's get_prev is strictly before its start: start a microsecond later to include t.
        times = croniter(self.expression, wall if forward else wall + timedelta(microseconds=1))
        for _ in range(COUNT_MAX):
            try:
                candidate = times.get_next(datetime) if forward else times.get_prev(datetime)
            except CroniterBadDateError:
                return None
            tick = _instant(candidate, self.zone)
            # None: the wall time does not exist. A repeated wall time maps to its first
            # instant, which is before t while t is in the repeated hour: skip it then.
            if tick is not None and (tick > t if forward else tick <= t):
                return tick
        raise RuntimeError(f"no tick found near {t} for {self.expression!r}")


@dataclass(frozen=True)
class Plan:
    """A schedule limited to ``[start, end]``."""

    schedule: Schedule
    start: int | None = None
    end: int | None = None

    def next_after(self, t: float) -> int | None:
        if self.start is not None:
            t = max(t, self.start - 1)
        tick = self.schedule.next_after(t)
        return None if tick is None or (self.end is not None and tick > self.end) else tick

    def latest(self, t: float) -> int | None:
        if self.end is not None:
            t = min(t, self.end)
        tick = self.schedule.latest(t)
        return None if tick is None or (self.start is not None and tick < self.start) else tick

    def due(self, after: float, now: float, limit: int) -> tuple[list[int], int]:
        """The last ``limit`` ticks in ``(after, now]``, oldest first, and how many there are
        (counted up to ``COUNT_MAX``)."""
        ticks: list[int] = []
        count = 0
        tick = self.latest(now)
        while tick is not None and tick > after and count < COUNT_MAX:
            if len(ticks) < limit:
                ticks.append(tick)
            count += 1
            tick = self.latest(tick - 1)
        return ticks[::-1], count


def _instant(wall: datetime, zone: ZoneInfo) -> int | None:
    """The Unix time of wall-clock ``wall`` in ``zone``: the first one if it occurs twice,
    None if it does not occur (skipped by a DST change)."""
    aware = wall.replace(tzinfo=zone, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return int(utc.timestamp())


# --- expressions -----------------------------------------------------------------------


def parse_expression(expression: str, zone: ZoneInfo, anchor: int) -> Schedule:
    """``rate(...)``, ``cron(...)``, ``at(...)`` or five-field cron -> its schedule.
    ``anchor`` is when a rate starts counting. Raises ``BadExpression``."""
    text = expression.strip()
    if text.startswith("rate("):
        return Rate(_rate_seconds(text), anchor)
    if text.startswith("at("):
        match = re.fullmatch(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)", text)
        if not match:
            raise BadExpression(
                "write at(yyyy-mm-ddThh:mm:ss), e.g. at(2026-12-01T10:00:00), in the trigger's timezone"
            )
        try:
            wall = datetime.fromisoformat(match.group(1))
        except ValueError as error:
            raise BadExpression(str(error)) from None
        when = _instant(wall, zone)
        if when is None:
            raise BadExpression(f"{match.group(1)} does not exist in {zone.key} (the clocks skip it)")
        return At(when)
    if text.startswith("cron("):
        if not text.endswith(")"):
            raise BadExpression("cron(...) is missing its closing parenthesis")
        cron = Cron(translate_aws_cron(text[5:-1]), zone)
    else:
        fields = text.split()
        if len(fields) != 5:
            raise BadExpression(
                "use rate(value unit), cron(minutes hours day-of-month month day-of-week year), "
                f"at(yyyy-mm-ddThh:mm:ss) or five cron fields (minute hour day month weekday); got {len(fields)} fields"
            )
        try:
            croniter(text)
        except (CroniterError, ValueError) as error:
            raise BadExpression(str(error)) from None
        cron = Cron(text, zone)
    _check_matches(cron)
    return cron


def _rate_seconds(text: str) -> int:
    match = re.fullmatch(r"rate\(\s*(\S+)\s+(\S+)\s*\)", text)
    if not match:
        raise BadExpression("write rate(value unit), e.g. rate(5 minutes)")
    value, unit = match.groups()
    if not value.isdigit() or int(value) < 1:
        raise BadExpression(f"the value must be a positive whole number, got {value!r}")
    count = int(value)
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in RATE_UNITS:
        raise BadExpression(f"the unit must be minute(s), hour(s), day(s) or second(s), got {unit!r}")
    if (count == 1) != (unit == singular):  # AWS: rate(1 hour), rate(5 hours); not rate(1 hours), rate(5 hour)
        raise BadExpression(f"write {singular} for a value of 1 and {singular}s for more, got {count} {unit}")
    seconds = count * RATE_UNITS[singular]
    if seconds > MAX_RATE_S:
        raise BadExpression("the period is at most 3650 days")
    return seconds


def _check_matches(cron: Cron) -> None:
    """Refuse an expression that matches no date at all (``cron(0 0 31 2 ? *)``)."""
    fields = cron.expression.split()
    first_year = min(int(y) for y in fields[6].split(",")) if len(fields) == 7 else datetime.now().year
    try:
        croniter(cron.expression, datetime(first_year, 1, 1) - timedelta(seconds=1)).get_next(datetime)
    except CroniterBadDateError:
        raise BadExpression("it matches no date") from None


def translate_aws_cron(body: str) -> str:
    """AWS's ``minutes hours day-of-month month day-of-week year`` -> croniter's expression.

    Five fields when the year is ``*``, else seven (``... 0 years``: croniter's seconds
    come before its year). Raises ``BadExpression`` naming the field that is wrong.
    """
    parts = body.split()
    if len(parts) != 6:
        raise BadExpression(
            f"cron(...) takes 6 fields (minutes hours day-of-month month day-of-week year), got {len(parts)}"
        )
    minutes, hours, day_of_month, month, day_of_week, year = (part.upper() for part in parts)
    for name, text in (("minutes", minutes), ("hours", hours), ("month", month), ("year", year)):
        if "?" in text:
            raise BadExpression(f"? is allowed only in day-of-month or day-of-week, not in {name}")
    if day_of_month != "?" and day_of_week != "?":
        raise BadExpression("day-of-month and day-of-week cannot both be set; one must be ?")
    if day_of_month == "?" and day_of_week == "?":
        raise BadExpression("day-of-month and day-of-week cannot both be ?; set one of them")
    fields = [
        _emit(_values(minutes, "minutes", 0, 59), 0, 59),
        _emit(_values(hours, "hours", 0, 23), 0, 23),
        "*" if day_of_month == "?" else _day_of_month(day_of_month),
        _emit(_values(month, "month", 1, 12, MONTHS), 1, 12),
        "*" if day_of_week == "?" else _day_of_week(day_of_week),
    ]
    if year == "*":
        return " ".join(fields)
    years = sorted(y for y in _values(year, "year", 1970, 2199, cyclic=False) if y <= LAST_YEAR)
    if not years:
        raise BadExpression(f"year: only years up to {LAST_YEAR} can be scheduled")
    return " ".join([*fields, "0", ",".join(map(str, years))])


def _day_of_month(text: str) -> str:
    match = re.fullmatch(r"(\d+)W", text)
    if match:
        day = int(match.group(1))
        if not 1 <= day <= 31:
            raise BadExpression(f"day-of-month: {day}W is out of range (1-31)")
        return f"{day}w"
    if "W" in text:
        raise BadExpression(f"day-of-month: W goes after one day number, alone (15W), got {text}")
    items = text.split(",")
    if "L" not in items:
        return _emit(_values(text, "day-of-month", 1, 31), 1, 31)
    others = [item for item in items if item != "L"]  # L (the last day) may stand in a list: 1,15,L
    values = _values(",".join(others), "day-of-month", 1, 31) if others else set()
    return ",".join([*map(str, sorted(values)), "l"])


def _day_of_week(text: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, ``L``, ``6L``, ``2#1``) -> croniter's (0-6 = SUN-SAT)."""
    if text == "L":
        return "6"  # the last day of the week: Saturday
    special = re.fullmatch(r"(\w+?)(L|#(\d+))", text)
    if special and ("," in text or "-" in text or "/" in text):
        special = None
    if "#" in text or (text.endswith("L") and len(text) > 1):
        if special is None:
            raise BadExpression(f"day-of-week: L and # take one day alone (6L, 2#1), not in a list or range: {text}")
        day = _value(special.group(1), "day-of-week", 1, 7, DAYS)
        if special.group(2) == "L":
            return f"l{day - 1}"
        nth = int(special.group(3))
        if not 1 <= nth <= 5:
            raise BadExpression(f"day-of-week: the week number after # must be 1-5, got {text}")
        return f"{day - 1}#{nth}"
    return _emit({day - 1 for day in _values(text, "day-of-week", 1, 7, DAYS)}, 0, 6)


def _values(
    text: str, name: str, low: int, high: int, names: dict[str, int] | None = None, cyclic: bool = True
) -> set[int]:
    """The numbers a field's ``,``-list of ``*``, ``n``, ``a-b``, ``x/step`` (a range wraps
    around in cyclic fields: ``FRI-MON``)."""
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise BadExpression(f"{name}: the step after / must be a positive number, got {item!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, second = base.partition("-")
            start, end = _value(first, name, low, high, names), _value(second, name, low, high, names)
        else:
            start = _value(base, name, low, high, names)
            end = high if slash else start
        if start <= end:
            span = list(range(start, end + 1))
        elif cyclic:
            span = list(range(start, high + 1)) + list(range(low, end + 1))
        else:
            raise BadExpression(f"{name}: the range {base} goes backwards")
        values.update(span[::step])
    return values


def _value(text: str, name: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    if text.isdigit():
        value = int(text)
        if not low <= value <= high:
            raise BadExpression(f"{name}: {value} is out of range ({low}-{high})")
        return value
    if names and text in names:
        return names[text]
    if not text:
        raise BadExpression(f"{name}: an item of the list or range is empty")
    allowed = f"{low}-{high}" + (
        f" or {min(names, key=names.__getitem__)}-{max(names, key=names.__getitem__)}" if names else ""
    )
    raise BadExpression(f"{name}: {text!r} is not a value ({allowed})")


def _emit(values: set[int], low: int, high: int) -> str:
    return "*" if values == set(range(low, high + 1)) else ",".join(map(str, sorted(values)))


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
