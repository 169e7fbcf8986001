"""The ``redis`` trigger: a Redis Streams consumer group feeding SQS-shaped batches,
against the real Redis on localhost:6379 (skipped without it, failing under CI=true)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from wasmhost import FunctionConfig, Host
from wasmhost.errors import InvalidConfig
from wasmhost.triggers import TriggerContext, validate
from wasmhost.triggers.redis_streams import TYPE, RedisStreamsRunner
from wasmhost.triggers.store import Trigger

from .conftest import ServerThread, free_port
from .triggers_support import ServeProcess, deploy_cached, processed, recorder_wasm, require_service, wait_for

SOURCE = "wasmhost:redis"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis-trigger") / "data"


@pytest.fixture(scope="module")
def host(data_dir: Path) -> Iterator[Host]:
    """One host for the module: the Python recorder compiles once (seconds), then each test
    deploys it under its own name from the compile cache."""
    with Host(data_dir=data_dir) as h:
        yield h


@pytest.fixture
def recorder(host: Host) -> Iterator[str]:
    """A fresh function running the recorder guest; deleted (with its triggers) afterwards."""
    name = f"rec-{uuid.uuid4().hex[:8]}"
    deploy_cached(host, name, recorder_wasm(), FunctionConfig(timeout_ms=30000))
    yield name
    host.delete(name)


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    require_service(6379, "Redis")
    client = redis.Redis(socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def stream(r: redis.Redis) -> Iterator[str]:
    name = f"wasmhost-test-{uuid.uuid4().hex[:10]}"
    yield name
    r.delete(name)  # the stream, with its groups and consumers


def pending(r: redis.Redis, stream: str, group: str) -> int:
    return int(r.xpending(stream, group)["pending"])


def batches(host: Host, function: str) -> list[list[str]]:
    """Bodies the recorder processed, grouped by invocation (one list per batch), in order."""
    by_request: dict[str, list[str]] = {}
    for entry in host.logs(function, limit=10000):
        for line in entry["message"].splitlines():
            if line.startswith(f"processed {SOURCE} "):
                by_request.setdefault(entry["request_id"], []).append(line.split(" ", 2)[2])
    return list(by_request.values())


# --- configuration -------------------------------------------------------------------


def test_fields_are_validated_and_completed():
    _, config = validate({"type": "redis", "stream": "orders"})
    assert config["url"] == "redis://127.0.0.1:6379/0"
    assert config["start"] == "latest" and config["claim_idle_ms"] == 60000
    assert config["batch_size"] == 10 and "group" not in config  # the group is derived from the function
    bad = [
        ({}, "stream is required"),
        ({"stream": ""}, "stream must be a non-empty string"),
        ({"stream": "s", "start": "middle"}, "start must be one of latest, earliest"),
        ({"stream": "s", "url": "http://127.0.0.1:6379"}, "url"),
        ({"stream": "s", "claim_idle_ms": -1}, "claim_idle_ms must be an integer"),
        ({"stream": "s", "group": 7}, "group must be a non-empty string"),
        ({"stream": "s", "batch_size": 0}, "batch_size must be an integer from 1"),
        ({"stream": "s", "topic": "x"}, "unknown field(s) topic"),
    ]
    for fields, message in bad:
        with pytest.raises(InvalidConfig) as caught:
            validate({"type": "redis", **fields})
        assert "redis trigger" in caught.value.message and message in caught.value.message, caught.value.message


def test_source_arn_names_the_server_stream_and_group_but_no_password(host: Host):
    _, config = validate({"type": "redis", "stream": "orders", "url": "redis://app:s3cret@cache.local:6380/2"})
    trigger = Trigger("trg-arn", "billing", "redis", config, time.time())
    runner = RedisStreamsRunner(trigger, TriggerContext(host, host.trigger_store))
    assert runner.source_arn() == "arn:wasmhost:redis:local:cache.local:6380/2:stream/orders:group/wasmhost-billing"
    assert "s3cret" not in TYPE.describe(config) and "app" not in runner.source_arn()
    with pytest.raises(InvalidConfig) as caught:
        validate({"type": "redis", "stream": "s", "url": "redis://:s3cret@h:6379/x"})
    assert "s3cret" not in caught.value.message


# --- the runner on the real server -------------------------------------------------------


def test_records_retries_and_restart_at_the_source(host: Host, r: redis.Redis, stream: str, recorder: str):
    """Entries become SQS records; a failed entry comes back after the retry delay with Redis'
    delivery count; a new runner of the same trigger gets its pending entries at once."""
    host.update_config(recorder, env={"FAIL_BODIES": "hello"})
    _, config = validate({"type": "redis", "stream": stream, "start": "earliest", "retry_delay_ms": 300})
    trigger = Trigger(f"trg-{uuid.uuid4().hex[:12]}", recorder, "redis", config, time.time())
    ids = [
        r.xadd(stream, {"body": "hello"}).decode(),
        r.xadd(stream, {"order": "42", "item": "tea"}).decode(),
        r.xadd(stream, {"body": b"\xff\x00"}).decode(),
    ]

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        runner = RedisStreamsRunner(trigger, TriggerContext(host, host.trigger_store))
        await runner.connect()
        try:
            first = await runner.fetch(10, 1.0)
            seen["records"] = [runner.record(m) for m in first]
            await runner.deliver(first)  # the recorder fails "hello": acks the others, releases it
            started = time.monotonic()
            again = await runner.fetch(10, 2.0)
            seen["retry_after_s"] = time.monotonic() - started
            seen["retry"] = [runner.record(m) for m in again]
            await runner.release(again, 60.0)  # not due for a minute...
        finally:
            await runner.close()
        restarted = RedisStreamsRunner(trigger, TriggerContext(host, host.trigger_store))
        await restarted.connect()
        try:
            started = time.monotonic()
            recovered = await restarted.fetch(10, 2.0)  # ...but a restart delivers it at once
            seen["recovered_after_s"] = time.monotonic() - started
            seen["recovered"] = [restarted.record(m) for m in recovered]
            await restarted.ack(recovered)
        finally:
            await restarted.close()
        return seen

    seen = asyncio.run(scenario())
    plain, fields, binary = seen["records"]
    assert [rec["messageId"] for rec in seen["records"]] == ids
    assert plain["body"] == "hello" and plain["messageAttributes"] == {}
    assert plain["eventSource"] == SOURCE and stream in plain["eventSourceARN"]
    assert plain["attributes"]["ApproximateReceiveCount"] == "1"
    assert plain["attributes"]["SentTimestamp"] == ids[0].split("-")[0]  # the entry id's milliseconds
    assert json.loads(fields["body"]) == {"order": "42", "item": "tea"}
    assert fields["messageAttributes"]["order"] == {
        "stringValue": "42",
        "dataType": "String",
        "stringListValues": [],
        "binaryListValues": [],
    }
    assert binary["body"] == "/wA=" and binary["attributes"]["BodyEncoding"] == "base64"
    assert [rec["messageId"] for rec in seen["retry"]] == [ids[0]]
    assert seen["retry"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert 0.2 <= seen["retry_after_s"] < 1.5
    assert [rec["messageId"] for rec in seen["recovered"]] == [ids[0]]
    assert seen["recovered"][0]["attributes"]["ApproximateReceiveCount"] == "3"
    assert seen["recovered_after_s"] < 0.5
    assert pending(r, stream, f"wasmhost-{recorder}") == 0
    assert processed(host, recorder, SOURCE) == [fields["body"], "/wA="]


def test_entries_another_consumer_abandoned_are_claimed(host: Host, r: redis.Redis, stream: str):
    r.xgroup_create(stream, "shared", id="0", mkstream=True)
    r.xadd(stream, {"body": "orphan"})
    r.xreadgroup("shared", "gone-consumer", {stream: ">"}, count=10)  # read, never acknowledged
    _, config = validate({"type": "redis", "stream": stream, "group": "shared", "claim_idle_ms": 200})
    trigger = Trigger(f"trg-{uuid.uuid4().hex[:12]}", "fn", "redis", config, time.time())

    async def scenario() -> list[dict[str, Any]]:
        runner = RedisStreamsRunner(trigger, TriggerContext(host, host.trigger_store))
        await runner.connect()
        try:
            assert await runner.fetch(10, 0.05) == []  # not idle long enough yet
            started = time.monotonic()
            messages = await runner.fetch(10, 3.0)  # looked for again within a second
            assert 0.2 < time.monotonic() - started < 2.0
            await runner.ack(messages)
            return [runner.record(m) for m in messages]
        finally:
            await runner.close()

    records = asyncio.run(scenario())
    assert [rec["body"] for rec in records] == ["orphan"]
    assert records[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert pending(r, stream, "shared") == 0


# --- through the host ------------------------------------------------------------------


def test_batches_of_batch_size_and_the_batching_window(host: Host, r: redis.Redis, stream: str, recorder: str):
    for i in range(7):
        r.xadd(stream, {"body": f"b{i}"})
    trigger = host.add_trigger(
        recorder,
        {"type": "redis", "stream": stream, "start": "earliest", "batch_size": 3, "maximum_batching_window_ms": 400},
    )
    group = f"wasmhost-{recorder}"
    with ServerThread(host):
        wait_for(lambda: len(processed(host, recorder, SOURCE)) == 7, 30, "the first 7 entries")
        r.xadd(stream, {"body": "w0"})
        time.sleep(0.1)
        r.xadd(stream, {"body": "w1"})  # within the window opened by w0: the same batch
        wait_for(lambda: len(processed(host, recorder, SOURCE)) == 9, 30, "the last 2 entries")
        wait_for(lambda: pending(r, stream, group) == 0, 10, "no pending entries")
        wait_for(lambda: host.get_trigger(recorder, trigger.id).status.get("succeeded") == 9, 10, "the counters")
    assert batches(host, recorder) == [["b0", "b1", "b2"], ["b3", "b4", "b5"], ["b6"], ["w0", "w1"]]
    host.delete_trigger(recorder, trigger.id)
    assert r.xinfo_consumers(stream, group) == []  # removed with the trigger (nothing was pending)


def test_only_failed_entries_are_redelivered_until_they_succeed(host: Host, r: redis.Redis, stream: str, recorder: str):
    host.update_config(recorder, env={"FAIL_BODIES": "bad1,bad2"})
    host.add_trigger(recorder, {"type": "redis", "stream": stream, "retry_delay_ms": 200, "batch_size": 10})
    group = f"wasmhost-{recorder}"
    # start=latest: entries added after the trigger was created, even before it first runs
    ids = {body: r.xadd(stream, {"body": body}) for body in ("ok0", "bad1", "ok1", "bad2", "ok2")}
    with ServerThread(host):

        def failed_twice() -> bool:
            if not (r.exists(stream) and r.xinfo_groups(stream)):
                return False  # the runner has not started yet
            rows = r.xpending_range(stream, group, "-", "+", 10)
            counts = {row["message_id"]: row["times_delivered"] for row in rows}
            return set(counts) == {ids["bad1"], ids["bad2"]} and min(counts.values()) >= 3

        wait_for(failed_twice, 15, "bad1 and bad2 pending, delivered 3 times")
        host.update_config(recorder, env={})
        wait_for(lambda: {"bad1", "bad2"} <= set(processed(host, recorder, SOURCE)), 15, "the retries to succeed")
        wait_for(lambda: pending(r, stream, group) == 0, 10, "no pending entries")
    done = processed(host, recorder, SOURCE)
    assert sorted(done) == ["bad1", "bad2", "ok0", "ok1", "ok2"]  # each once: no success was redelivered


def test_an_unreachable_server_shows_in_the_status_and_the_host_keeps_serving(host: Host, recorder: str):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post(f"/functions/{recorder}/triggers", json={"type": "redis", "url": url, "stream": "s"})
        assert created.status_code == 201, created.text

        def status() -> dict[str, Any] | None:
            (listed,) = client.get(f"/functions/{recorder}/triggers").json()["triggers"]
            return listed["status"] if listed["status"].get("state") == "error" else None

        seen = wait_for(status, 20, "the trigger's error")
        assert "ConnectionError" in seen["last_error"] and seen["retry_in_s"] >= 1
        assert client.post(f"/invoke/{recorder}", json={"ping": 1}).json() == {"ping": 1}
        bad = client.post(f"/functions/{recorder}/triggers", json={"type": "redis", "stream": "s", "start": "now"})
        assert bad.status_code == 400 and "start must be one of latest, earliest" in bad.text


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing(
    host: Host, data_dir: Path, r: redis.Redis, stream: str, recorder: str, tmp_path: Path
):
    bodies = [json.dumps({"n": n, "sleep_ms": 400}) for n in range(6)]
    for body in bodies:
        r.xadd(stream, {"body": body})
    host.add_trigger(recorder, {"type": "redis", "stream": stream, "start": "earliest", "batch_size": 3})
    group = f"wasmhost-{recorder}"
    server = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(processed(host, recorder, SOURCE)) >= 3, 30, "the first batch")
        server.kill()  # the second batch is in the function (3 x 400 ms)
    finally:
        server.stop()
    assert processed(host, recorder, SOURCE) == bodies[:3]
    assert pending(r, stream, group) == 3  # read, not acknowledged
    killed_at = time.monotonic()
    server = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(processed(host, recorder, SOURCE)) >= 6, 30, "the redelivered batch")
        assert time.monotonic() - killed_at < 15  # at once, not after claim_idle_ms
        wait_for(lambda: pending(r, stream, group) == 0, 10, "no pending entries")
    finally:
        server.stop()
    assert processed(host, recorder, SOURCE) == bodies  # the first batch was not redelivered
