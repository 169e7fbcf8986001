"""Schedules (``wasmhost/triggers/schedule.py``): expressions and their translation to
croniter, time zones and DST, and ticks delivered through real servers — exactly once
across two processes, across a ``kill -9``, and after downtime with and without catch-up."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import msgpack
import pytest

from wasmhost import FunctionConfig, Host
from wasmhost.asyncq import NewEvent
from wasmhost.errors import InvalidConfig
from wasmhost.triggers.schedule import TYPE, Plan, iso, parse_expression, plan_for, scheduled_event, translate_aws_cron

from .conftest import ServerThread
from .triggers_support import ServeProcess, deploy_cached, log_lines, recorder_wasm, wait_for

UTC_ZONE = ZoneInfo("UTC")


def at(text: str) -> int:
    """``2026-01-01T12:00:00Z`` -> Unix seconds."""
    return int(datetime.fromisoformat(text).timestamp())


def ticks(expression: str, start: str, count: int = 3, zone: str = "UTC") -> list[str]:
    """The first ``count`` ticks strictly after ``start``, as UTC ISO strings."""
    schedule = parse_expression(expression, ZoneInfo(zone), at(start))
    found, t = [], at(start)
    for _ in range(count):
        t = schedule.next_after(t)
        if t is None:
            break
        found.append(iso(t))
    return found


# --- expressions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aws", "translated"),
    [
        ("0 12 * * ? *", "0 12 * * *"),
        ("0/15 * ? * MON-FRI *", "0,15,30,45 * * * 1,2,3,4,5"),
        ("1/10 */6 * * ? *", "1,11,21,31,41,51 0,6,12,18 * * *"),
        ("0 8 ? * 1 *", "0 8 * * 0"),  # AWS 1 = SUN = croniter 0
        ("0 8 ? * 7 *", "0 8 * * 6"),  # AWS 7 = SAT
        ("0 8 ? * 2-6 *", "0 8 * * 1,2,3,4,5"),
        ("0 8 ? * sat-sun *", "0 8 * * 0,6"),  # a range wraps around the week; names in any case
        ("0 8 ? * */2 *", "0 8 * * 0,2,4,6"),  # 1,3,5,7 = SUN,TUE,THU,SAT
        ("0 8 ? * 1-7 *", "0 8 * * *"),
        ("0 10 ? * L *", "0 10 * * 6"),  # L alone: the last day of the week, Saturday
        ("0 10 ? * 6L *", "0 10 * * l5"),  # the last Friday of the month
        ("0 10 ? * FRIL *", "0 10 * * l5"),
        ("0 9 ? * 2#1 *", "0 9 * * 1#1"),  # the first Monday
        ("0 9 ? * TUE#3 *", "0 9 * * 2#3"),
        ("0 0 L * ? *", "0 0 l * *"),
        ("0 0 1,15,L * ? *", "0 0 1,15,l * *"),
        ("0 0 15W * ? *", "0 0 15w * *"),
        ("0 0 1-31 * ? *", "0 0 * * *"),
        ("0 0 1 JAN,jul ? *", "0 0 1 1,7 *"),
        ("0 0 1 NOV-FEB ? *", "0 0 1 1,2,11,12 *"),
        ("0 22-2 * * ? *", "0 0,1,2,22,23 * * *"),
        ("5-5 0 * * ? *", "5 0 * * *"),  # croniter would read an equal range as the whole cycle
        ("0 0 1 * ? 2027", "0 0 1 * * 0 2027"),  # a year: croniter's seven fields, seconds before year
        ("0 0 1 * ? 2027-2029/2,2035", "0 0 1 * * 0 2027,2029,2035"),
        ("0 0 1 * ? 2098-2199", "0 0 1 * * 0 2098,2099"),  # croniter stops at 2099
    ],
)
def test_aws_cron_is_translated_to_croniter(aws, translated):
    assert translate_aws_cron(aws) == translated


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("cron(0 12 * * ? *)", "2026-01-01T12:00:00Z", ["2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z"]),
        ("cron(0 10 ? * 6L *)", "2026-01-01T00:00:00Z", ["2026-01-30T10:00:00Z", "2026-02-27T10:00:00Z"]),
        ("cron(0 9 ? * 2#1 *)", "2026-01-01T00:00:00Z", ["2026-01-05T09:00:00Z", "2026-02-02T09:00:00Z"]),
        # 15 Feb and 15 Mar 2026 are Sundays: the nearest weekday is Monday the 16th
        ("cron(0 0 15W * ? *)", "2026-01-01T00:00:00Z", ["2026-01-15T00:00:00Z", "2026-02-16T00:00:00Z"]),
        # 1 Aug 2026 is a Saturday: Monday the 3rd (W stays in its month); 1 Sep is a Tuesday
        ("cron(0 0 1W * ? *)", "2026-07-15T00:00:00Z", ["2026-08-03T00:00:00Z", "2026-09-01T00:00:00Z"]),
        ("cron(0 0 L 2 ? 2027,2028)", "2026-01-01T00:00:00Z", ["2027-02-28T00:00:00Z", "2028-02-29T00:00:00Z"]),
        ("cron(0 0 ? * 1 *)", "2026-01-01T00:00:00Z", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),  # Sundays
        ("cron(0 0 ? * L *)", "2026-01-01T00:00:00Z", ["2026-01-03T00:00:00Z", "2026-01-10T00:00:00Z"]),  # Saturdays
        ("cron(30 6 ? * MON-FRI *)", "2026-01-02T00:00:00Z", ["2026-01-02T06:30:00Z", "2026-01-05T06:30:00Z"]),
        ("cron(0 0 1 * ? 2020)", "2026-01-01T00:00:00Z", []),  # only in the past: no more ticks
        ("*/20 * * * *", "2026-01-01T00:00:00Z", ["2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z"]),
        ("0 0 * * 0", "2026-01-01T00:00:00Z", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),  # 5 fields: 0 = SUN
        ("rate(5 minutes)", "2026-01-01T00:00:00Z", ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"]),
        ("rate(1 day)", "2026-01-01T08:00:00Z", ["2026-01-02T08:00:00Z", "2026-01-03T08:00:00Z"]),
        ("rate(1 second)", "2026-01-01T00:00:00Z", ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]),
        ("at(2026-12-01T10:00:00)", "2026-01-01T00:00:00Z", ["2026-12-01T10:00:00Z"]),
        ("at(2026-12-01T10:00:00)", "2026-12-01T10:00:00Z", []),
    ],
)
def test_ticks_of_expressions(expression, start, expected):
    found = ticks(expression, start, count=len(expected) + 1)
    assert found[: len(expected)] == expected
    if len(expected) < 2:  # a one-time schedule, or one that is over: nothing more
        assert found == expected


def test_time_zones_and_daylight_saving_time():
    # 09:00 in Berlin is 08:00Z in winter and 07:00Z from the night of 29 March 2026 on
    assert ticks("cron(0 9 * * ? *)", "2026-03-27T12:00:00Z", 3, "Europe/Berlin") == [
        "2026-03-28T08:00:00Z",
        "2026-03-29T07:00:00Z",
        "2026-03-30T07:00:00Z",
    ]
    # New York springs forward on 8 March 2026 (02:00 -> 03:00): 02:30 does not exist that day and is skipped
    assert ticks("cron(30 2 * * ? *)", "2026-03-07T00:00:00Z", 3, "America/New_York") == [
        "2026-03-07T07:30:00Z",
        "2026-03-09T06:30:00Z",
        "2026-03-10T06:30:00Z",
    ]
    # ... and falls back on 1 November 2026 (02:00 -> 01:00): 01:30 happens twice, fires once, the first time
    assert ticks("cron(30 1 * * ? *)", "2026-10-31T00:00:00Z", 3, "America/New_York") == [
        "2026-10-31T05:30:00Z",
        "2026-11-01T05:30:00Z",
        "2026-11-02T06:30:00Z",
    ]
    # every 30 minutes across the fall-back hour: each wall time once, so the repeated hour is not run again
    assert ticks("cron(0/30 * * * ? *)", "2026-11-01T04:40:00Z", 5, "America/New_York") == [
        "2026-11-01T05:00:00Z",  # 01:00 EDT
        "2026-11-01T05:30:00Z",  # 01:30 EDT
        "2026-11-01T07:00:00Z",  # 02:00 EST
        "2026-11-01T07:30:00Z",
        "2026-11-01T08:00:00Z",
    ]
    # from inside the repeated hour (01:10 EST), the next tick is 02:00 EST, not the 01:30 that has passed
    assert ticks("cron(0/30 * * * ? *)", "2026-11-01T06:10:00Z", 1, "America/New_York") == ["2026-11-01T07:00:00Z"]
    # a rate is absolute time: a day is 24 hours whatever the clocks do
    assert ticks("rate(1 day)", "2026-03-07T12:00:00Z", 2, "America/New_York") == [
        "2026-03-08T12:00:00Z",
        "2026-03-09T12:00:00Z",
    ]
    # at() and five-field cron are read in the time zone too
    assert ticks("at(2026-12-01T10:00:00)", "2026-01-01T00:00:00Z", 1, "Europe/Paris") == ["2026-12-01T09:00:00Z"]
    assert ticks("0 9 * * *", "2026-07-01T00:00:00Z", 1, "Asia/Kolkata") == ["2026-07-01T03:30:00Z"]


def test_the_latest_tick_and_due_ticks():
    plan = Plan(parse_expression("cron(0/10 * * * ? *)", UTC_ZONE, 0))
    assert plan.schedule.latest(at("2026-01-01T00:10:00Z")) == at("2026-01-01T00:10:00Z")  # at or before
    assert plan.schedule.latest(at("2026-01-01T00:09:59Z")) == at("2026-01-01T00:00:00Z")
    due, count = plan.due(at("2026-01-01T00:00:00Z"), at("2026-01-01T01:05:00Z"), limit=3)
    assert count == 6 and [iso(t) for t in due] == [
        "2026-01-01T00:40:00Z",
        "2026-01-01T00:50:00Z",
        "2026-01-01T01:00:00Z",
    ]
    bounded = plan_for(
        {"expression": "rate(1 hour)", "start_date": "2026-01-01T10:30:00Z", "end_date": "2026-01-01T12:30:00Z"}, 0
    )
    assert [iso(t) for t in bounded.due(0, at("2027-01-01T00:00:00Z"), 10)[0]] == [
        "2026-01-01T10:30:00Z",  # a rate counts from start_date
        "2026-01-01T11:30:00Z",
        "2026-01-01T12:30:00Z",
    ]
    assert bounded.next_after(at("2026-01-01T12:30:00Z")) is None  # nothing after end_date
    naive = plan_for(
        {"expression": "cron(0 * * * ? *)", "timezone": "Europe/Paris", "start_date": "2026-06-01T12:00:00"}, 0
    )
    assert iso(naive.next_after(0)) == "2026-06-01T10:00:00Z"  # a date without offset is in the timezone


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "expression is required"),
        ({"expression": ""}, "expression must be a non-empty string"),
        ({"expression": "cron(0 12 * * * *)"}, "day-of-month and day-of-week cannot both be set; one must be ?"),
        ({"expression": "cron(0 12 ? * ? *)"}, "cannot both be ?"),
        ({"expression": "cron(0 12 * * ?)"}, "takes 6 fields"),
        ({"expression": "cron(0 12 * * ? * *)"}, "takes 6 fields"),
        ({"expression": "cron(0 12 * * ? *"}, "closing parenthesis"),
        ({"expression": "cron(60 12 * * ? *)"}, "minutes: 60 is out of range (0-59)"),
        ({"expression": "cron(0 24 * * ? *)"}, "hours: 24 is out of range (0-23)"),
        ({"expression": "cron(0 0 32 * ? *)"}, "day-of-month: 32 is out of range"),
        ({"expression": "cron(0 0 ? * 0 *)"}, "day-of-week: 0 is out of range (1-7)"),
        ({"expression": "cron(0 0 ? * FUN *)"}, "day-of-week: 'FUN' is not a value (1-7 or SUN-SAT)"),
        ({"expression": "cron(0 0 1 JANUARY ? *)"}, "month: 'JANUARY' is not a value (1-12 or JAN-DEC)"),
        ({"expression": "cron(0 0 1 * ? 1969)"}, "year: 1969 is out of range (1970-2199)"),
        ({"expression": "cron(0 0 1 * ? 2150)"}, "only years up to 2099"),
        ({"expression": "cron(0 0 1 * ? 2030-2027)"}, "year: the range 2030-2027 goes backwards"),
        ({"expression": "cron(*/0 * * * ? *)"}, "minutes: the step after / must be a positive number"),
        ({"expression": "cron(0 ? * * * *)"}, "? is allowed only in day-of-month or day-of-week, not in hours"),
        ({"expression": "cron(0 0 1,,2 * ? *)"}, "day-of-month: an item of the list or range is empty"),
        ({"expression": "cron(0 0 LW * ? *)"}, "W goes after one day number"),
        ({"expression": "cron(0 0 1,15W * ? *)"}, "W goes after one day number"),
        ({"expression": "cron(0 0 ? * 2#6 *)"}, "the week number after # must be 1-5"),
        ({"expression": "cron(0 0 ? * 2#1,3#1 *)"}, "L and # take one day alone"),
        ({"expression": "cron(0 0 ? * 2-6L *)"}, "L and # take one day alone"),
        ({"expression": "cron(0 0 31 2 ? *)"}, "it matches no date"),
        ({"expression": "rate(5 minute)"}, "write minute for a value of 1 and minutes for more"),
        ({"expression": "rate(1 hours)"}, "write hour for a value of 1 and hours for more"),
        ({"expression": "rate(0 minutes)"}, "positive whole number"),
        ({"expression": "rate(1.5 hours)"}, "positive whole number"),
        ({"expression": "rate(2 weeks)"}, "the unit must be minute(s), hour(s), day(s) or second(s)"),
        ({"expression": "rate(5minutes)"}, "write rate(value unit)"),
        ({"expression": "rate(4000 days)"}, "at most 3650 days"),
        ({"expression": "at(2026-12-01 10:00)"}, "write at(yyyy-mm-ddThh:mm:ss)"),
        ({"expression": "at(2026-02-30T10:00:00)"}, "day is out of range"),
        (
            {"expression": "at(2026-03-08T02:30:00)", "timezone": "America/New_York"},
            "does not exist in America/New_York",
        ),
        ({"expression": "*/5 * * *"}, "five cron fields"),
        ({"expression": "0 12 * * ? *"}, "five cron fields"),  # AWS's six fields need cron(...)
        ({"expression": "*/5 * * * mon-xyz"}, "expression */5 * * * mon-xyz:"),
        ({"expression": "every day"}, "five cron fields"),
        ({"expression": "rate(1 hour)", "timezone": "Mars/Olympus"}, "timezone must be an IANA time zone name"),
        ({"expression": "rate(1 hour)", "timezone": "../etc/passwd"}, "timezone must be an IANA time zone name"),
        ({"expression": "rate(1 hour)", "catch_up": "yes"}, "catch_up must be true or false"),
        ({"expression": "rate(1 hour)", "max_lateness_s": 0}, "max_lateness_s must be an integer from 1 to 86400"),
        ({"expression": "rate(1 hour)", "start_date": "tomorrow"}, "start_date must be an ISO 8601 date-time"),
        (
            {"expression": "rate(1 hour)", "start_date": "2027-01-02T00:00:00Z", "end_date": "2027-01-01T00:00:00Z"},
            "end_date is before start_date",
        ),
        ({"expression": "rate(1 hour)", "input": 2**70}, "input cannot be encoded"),
        ({"expression": "rate(1 hour)", "cron": "x"}, "unknown field(s) cron"),
    ],
)
def test_bad_configurations_are_refused_naming_the_problem(fields, message):
    with pytest.raises(InvalidConfig) as raised:
        TYPE.validate(fields)
    assert message in str(raised.value)
    assert str(raised.value).startswith("schedule trigger: ")


def test_valid_configuration_is_completed_with_defaults_and_described():
    config = TYPE.validate({"expression": "cron(0 3 * * ? *)", "timezone": "Europe/Paris", "input": {"job": "nightly"}})
    assert config == {
        "enabled": True,
        "expression": "cron(0 3 * * ? *)",
        "timezone": "Europe/Paris",
        "catch_up": False,
        "max_lateness_s": 10,
        "input": {"job": "nightly"},
    }
    assert TYPE.describe(config) == "cron(0 3 * * ? *) Europe/Paris"
    assert TYPE.validate(config) == config  # validating again changes nothing (a project's deploys compare them)
    # a one-time schedule in the past is accepted (a project file may keep it) and never fires
    past = TYPE.validate({"expression": "at(2020-01-01T00:00:00)"})
    assert plan_for(past, time.time()).next_after(time.time()) is None


def test_scheduled_event_shape():
    event = scheduled_event("trg-abc", at("2026-12-01T10:00:00Z"))
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2026-12-01T10:00:00Z",
        "region": "local",
        "resources": ["arn:aws:events:local:000000000000:rule/trg-abc"],
        "detail": {},
    }
    assert len(event["id"]) == 36 and event["id"] == scheduled_event("trg-abc", at("2026-12-01T10:00:00Z"))["id"]
    assert event["id"] != scheduled_event("trg-abc", at("2026-12-01T10:01:00Z"))["id"]


# --- through real servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the recorder deployed as ``rec``. Deploying compiles the
    Python guest (about 13 s); each test copies this directory, compile cache included."""
    data = tmp_path_factory.mktemp("schedule") / "data"
    with Host(data_dir=data) as host:
        deploy_cached(host, "rec", recorder_wasm(), FunctionConfig(timeout_ms=30000))
    return data


@pytest.fixture
def data_dir(tmp_path: Path, deployed: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(deployed, data)
    return data


@pytest.fixture
def rec_host(data_dir: Path) -> Iterator[Host]:
    with Host(data_dir=data_dir) as host:
        yield host


def events_of(host: Host, function: str, trigger_id: str | None = None) -> list[dict]:
    """The events the recorder printed (``event <json>``), oldest first."""
    events = [json.loads(line) for line in log_lines(host, function, "event ")]
    return [e for e in events if trigger_id is None or trigger_id in str(e.get("resources"))]


def queued_ticks(data_dir: Path, trigger_id: str) -> list[str]:
    """Tick times queued for the trigger (``put_once`` keys in events.db), sorted."""
    with sqlite3.connect(f"file:{Path(data_dir) / 'events.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT key FROM once_keys WHERE key LIKE ?", (f"schedule:{trigger_id}:%",)).fetchall()
    return sorted(key[len(f"schedule:{trigger_id}:") :] for (key,) in rows)


def gaps(times: list[str]) -> list[tuple[str, str]]:
    """Pairs of consecutive ticks of a rate(1 second) schedule more than one second apart."""
    seconds = [at(t) for t in times]
    return [(times[i], times[i + 1]) for i in range(len(seconds) - 1) if seconds[i + 1] - seconds[i] != 1]


def status(url: str, function: str, trigger_id: str) -> dict:
    listed = httpx.get(f"{url}/functions/{function}/triggers", timeout=10).json()["triggers"]
    return next(t for t in listed if t["id"] == trigger_id)["status"]


@pytest.mark.slow
def test_rate_schedule_delivers_scheduled_events_through_the_server(rec_host):
    host = rec_host
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        created = client.post("/functions/rec/triggers", json={"type": "schedule", "expression": "rate(1 second)"})
        assert created.status_code == 201, created.text
        trigger = created.json()
        assert trigger["timezone"] == "UTC" and trigger["catch_up"] is False
        with_input = client.post(
            "/functions/rec/triggers",
            json={"type": "schedule", "expression": "rate(1 second)", "input": {"job": "tidy", "n": [1, 2]}},
        ).json()

        events = wait_for(
            lambda: len(events_of(host, "rec", trigger["id"])) >= 3 and events_of(host, "rec", trigger["id"]),
            what="3 ticks",
        )
        times = [e["time"] for e in events]
        assert all(e["detail-type"] == "Scheduled Event" and e["source"] == "aws.events" for e in events)
        assert all(e["resources"] == [f"arn:aws:events:local:000000000000:rule/{trigger['id']}"] for e in events)
        assert all(e["detail"] == {} and e["version"] == "0" for e in events)
        assert len({e["id"] for e in events}) == len(events)
        assert not gaps(times) and len(set(times)) == len(times)
        assert at(times[0]) > trigger["created_at"]  # the first tick is the first after creation
        assert all(t.endswith("Z") for t in times)
        wait_for(lambda: {"job": "tidy", "n": [1, 2]} in events_of(host, "rec"), what="the input delivered")

        shown = status(server.url, "rec", trigger["id"])
        assert shown["state"] == "scheduled" and shown["fired"] >= 3 and shown["missed"] == 0
        assert at(shown["next_tick"]) > at(shown["last_tick"]) >= at(times[-1])
        assert shown["owner"] == f"pid {os.getpid()}"

        assert client.delete(f"/functions/rec/triggers/{trigger['id']}").status_code in (200, 204)
        assert client.delete(f"/functions/rec/triggers/{with_input['id']}").status_code in (200, 204)
        time.sleep(1.2)  # a tick being fired at the moment of the delete may still land
        settled = len(events_of(host, "rec", trigger["id"]))
        time.sleep(1.2)
        assert len(events_of(host, "rec", trigger["id"])) == settled  # deleted: no more ticks
        assert queued_ticks(host.config.data_dir, trigger["id"]) == []  # its put_once keys went with it


def test_cli_adds_a_schedule_and_reports_a_bad_expression(data_dir):
    data = data_dir

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "wasmhost", "--data-dir", str(data), "trigger", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    added = cli("add", "rec", "schedule", "expression=cron(0 3 * * ? *)", "timezone=Europe/Paris", "catch_up=true")
    assert added.returncode == 0, added.stderr
    record = json.loads(added.stdout)
    assert (record["type"], record["expression"], record["timezone"], record["catch_up"]) == (
        "schedule",
        "cron(0 3 * * ? *)",
        "Europe/Paris",
        True,
    )
    bad = cli("add", "rec", "schedule", "expression=cron(0 3 * * * *)")
    assert bad.returncode == 1
    assert "day-of-month and day-of-week cannot both be set; one must be ?" in bad.stderr
    listed = cli("list", "rec")
    assert "cron(0 3 * * ? *) Europe/Paris" in listed.stdout


def test_a_project_files_schedule_is_kept_across_deploys(rec_host):
    host = rec_host
    spec = {"type": "schedule", "expression": "rate(5 minutes)", "start_date": "2027-01-01T00:00:00Z"}
    first = host.sync_triggers("rec", [spec])
    again = host.sync_triggers("rec", [dict(spec)])
    assert [t.id for t in again] == [t.id for t in first]  # same config: the same trigger, its ticks continue


@pytest.mark.slow
def test_a_tick_queued_before_a_crash_is_not_queued_again(rec_host):
    host = rec_host
    trigger = host.add_trigger("rec", {"type": "schedule", "expression": "rate(1 second)"})
    first = math.floor(trigger.created_at) + 1
    # A process queued the first tick, then died before recording it in the trigger's state.
    crashed = NewEvent("rec", None, msgpack.packb({"queued": "before the crash"}), "crashed-request")
    assert host.events.put_once(f"schedule:{trigger.id}:{iso(first)}", crashed)

    async def run_triggers() -> None:
        host.start_triggers(poll_s=0.1)  # no async worker: queued events stay in the queue to be read
        await asyncio.sleep(first + 2.5 - time.time())
        await host.stop_triggers()

    asyncio.run(run_triggers())
    with sqlite3.connect(Path(host.config.data_dir) / "events.db") as conn:
        queued = [msgpack.unpackb(row[0]) for row in conn.execute("SELECT event FROM events WHERE function = 'rec'")]
    assert queued[0] == {"queued": "before the crash"}
    assert [event["time"] for event in queued[1:]] == [iso(first + 1), iso(first + 2)]  # the first tick not again
    state = host.trigger_store.get_state(trigger.id, "ticks")
    assert state["handled"] == first + 2 and state["fired"] == 3 and state["missed"] == 0


def add_schedule(url: str, **fields) -> dict:
    created = httpx.post(f"{url}/functions/rec/triggers", json={"type": "schedule", **fields}, timeout=10)
    assert created.status_code == 201, created.text
    return created.json()


def drain(tmp_path: Path, data: Path, *trigger_ids: str) -> dict[str, list[str]]:
    """Per trigger, the tick times the recorder received, once every queued event ran.

    Events still queued when the servers stopped are run by the next server: the
    triggers are deleted first (no new ticks), then one serves until the queue is empty."""
    with Host(data_dir=data) as host:
        for trigger_id in trigger_ids:
            host.trigger_store.delete(trigger_id)
        server = ServeProcess(data, tmp_path / "drain.log")
        try:
            wait_for(lambda: not host.events.depth().get("rec"), what="the queued ticks to run")
        finally:
            server.stop()
        return {trigger_id: [e["time"] for e in events_of(host, "rec", trigger_id)] for trigger_id in trigger_ids}


def owner_of(url: str, trigger_id: str) -> int | None:
    owner = status(url, "rec", trigger_id).get("owner")
    return int(owner.split()[1]) if owner else None


@pytest.mark.slow
def test_two_processes_fire_each_tick_once_and_a_kill_9_hands_over_without_duplicates(tmp_path, data_dir):
    servers = [ServeProcess(data_dir, tmp_path / "a.log"), ServeProcess(data_dir, tmp_path / "b.log")]
    try:
        trigger = add_schedule(servers[1].url, expression="rate(1 second)")
        # Two processes on one data directory: one runs the schedule (it reports after every tick).
        owners = set()
        for _ in range(6):
            time.sleep(0.5)
            owners.add(owner_of(servers[0].url, trigger["id"]))
        owners.discard(None)
        assert len(owners) == 1 and owners <= {s.process.pid for s in servers}
        owner = next(s for s in servers if s.process.pid in owners)
        survivor = next(s for s in servers if s is not owner)

        time.sleep(1.5 - time.time() % 1)  # half-way between two ticks: no invocation is running
        killed_at = time.time()
        owner.kill()
        wait_for(
            lambda: owner_of(survivor.url, trigger["id"]) == survivor.process.pid, what="the survivor to take over"
        )
        wait_for(
            lambda: at(status(survivor.url, "rec", trigger["id"])["last_tick"]) >= killed_at + 2, what="2 more ticks"
        )
    finally:
        for server in servers:
            server.stop()
    queued = queued_ticks(data_dir, trigger["id"])
    assert not gaps(queued), "no tick lost over the handover (it is within max_lateness_s)"
    assert at(queued[0]) < killed_at - 2 and at(queued[-1]) > killed_at + 1
    delivered = drain(tmp_path, data_dir, trigger["id"])[trigger["id"]]
    duplicates = [t for t, n in Counter(delivered).items() if n > 1]
    assert not duplicates, f"ticks delivered twice: {duplicates}"
    assert set(delivered) <= set(queued)
    # The killed process may have run a tick without flushing its log lines yet (they are
    # written every 0.2 s): such a tick can only be the last one before the kill.
    unlogged = [t for t in queued if t not in delivered]
    assert all(killed_at - 1.5 <= at(t) <= killed_at for t in unlogged), unlogged


@pytest.mark.slow
def test_missed_ticks_are_skipped_after_downtime_unless_catch_up(tmp_path, data_dir):
    server = ServeProcess(data_dir, tmp_path / "before.log")
    try:
        skip = add_schedule(server.url, expression="rate(1 second)", max_lateness_s=1)
        catch = add_schedule(server.url, expression="rate(1 second)", max_lateness_s=1, catch_up=True)
        late = add_schedule(server.url, expression="rate(1 second)")  # max_lateness_s 10: longer than the downtime
        for trigger in (skip, catch, late):
            wait_for(lambda t=trigger: status(server.url, "rec", t["id"]).get("fired", 0) >= 2, what="2 ticks")
    finally:
        server.stop()
    stopped_at = time.time()
    time.sleep(3.5)  # the host is down
    spawned_at = time.time()
    server = ServeProcess(data_dir, tmp_path / "after.log")
    restarted_at = time.time()
    try:
        for trigger in (skip, catch, late):
            wait_for(
                lambda t=trigger: (
                    at(status(server.url, "rec", t["id"]).get("last_tick", "1970-01-01T00:00:00Z")) >= restarted_at + 1
                ),
                what="ticks after the restart",
            )
        skip_status = status(server.url, "rec", skip["id"])
        catch_status = status(server.url, "rec", catch["id"])
    finally:
        server.stop()

    skipped = queued_ticks(data_dir, skip["id"])
    (hole,) = gaps(skipped)  # one hole: the downtime
    assert at(hole[0]) <= stopped_at and at(hole[1]) >= spawned_at - 1  # at most max_lateness_s late
    assert skip_status["missed"] >= 2 and skip_status["missed"] == at(hole[1]) - at(hole[0]) - 1

    caught = queued_ticks(data_dir, catch["id"])
    assert not gaps(caught), "catch_up fires every missed tick"
    assert any(stopped_at + 1 < at(t) < spawned_at - 1 for t in caught)
    assert catch_status["missed"] == 0

    fired_late = queued_ticks(data_dir, late["id"])
    assert not gaps(fired_late), "ticks missed by less than max_lateness_s fire late"

    delivered = drain(tmp_path, data_dir, skip["id"], catch["id"], late["id"])
    for trigger, queued in ((skip, skipped), (catch, caught), (late, fired_late)):
        assert Counter(delivered[trigger["id"]]) == Counter(queued), "each queued tick delivered once"
