"""Schedule expressions: ``rate(5 minutes)``, ``cron(0 12 * * ? *)`` (AWS's six fields),
standard five-field cron and ``at(2026-12-01T10:00:00)``, and the ticks they give in
a time zone; the ``schedule`` trigger (``schedule.py``) fires them.

AWS cron is translated to croniter's syntax (day-of-week 1-7 = SUN-SAT becomes
0-6, ``6L`` becomes ``l5``, ``2#1`` becomes ``1#1``, ``15W`` stays ``15w``) and
evaluated on the wall clock of the time zone; a wall time that does not exist
(clocks spring forward) is skipped and a repeated one (clocks fall back) fires
once, its first time, as EventBridge Scheduler does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

#: Missed ticks are counted (status ``missed``) up to this many per gap.
COUNT_MAX = 10_000
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
