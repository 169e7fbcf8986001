"""The embedded durable queue (wasmhost/queues/): SQS's semantics one by one, its HTTP API
through a real server, and the ``wasmhost queue`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from wasmhost.errors import (
    InvalidConfig,
    InvalidName,
    InvalidRequest,
    MessageTooLarge,
    QueueAlreadyExists,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
)
from wasmhost.queues import OutgoingMessage, QueueStore

from .conftest import ServerThread


@pytest.fixture
def store(tmp_path: Path):
    with QueueStore(tmp_path / "queues.db") as queues:
        yield queues


def counts(store: QueueStore, name: str, now: float | None = None) -> tuple[int, int, int]:
    attributes = store.attributes(name, now=now)
    return (
        attributes["approximate_number_of_messages"],
        attributes["approximate_number_of_messages_not_visible"],
        attributes["approximate_number_of_messages_delayed"],
    )


# --- queues -------------------------------------------------------------------


def test_create_is_idempotent_with_the_same_attributes_and_a_conflict_with_others(store):
    created, fresh = store.create("orders", {"visibility_timeout_s": 10})
    assert fresh and created["visibility_timeout_s"] == 10 and created["message_retention_s"] == 4 * 86400
    assert created["delay_s"] == 0 and created["max_message_bytes"] == 256 * 1024
    assert created["arn"] == "arn:aws:sqs:local:000000000000:orders"
    again, fresh = store.create("orders", {"visibility_timeout_s": 10})
    assert not fresh and again["created_at"] == created["created_at"]
    with pytest.raises(QueueAlreadyExists, match="visibility_timeout_s is 10, not 30") as raised:
        store.create("orders")
    assert raised.value.status == 409


@pytest.mark.parametrize("name", ["", "a" * 81, "has space", "dot.ted", "ünicode", "slash/ed", None])
def test_queue_names_are_validated_like_sqs(store, name):
    with pytest.raises(InvalidName, match="1-80 characters"):
        store.create(name)


def test_longest_name_and_every_allowed_character(store):
    store.create("a" * 80)
    store.create("Az09-_")
    assert [q["name"] for q in store.list()] == ["Az09-_", "a" * 80]


@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"visibility": 1}, "unknown attribute"),
        ({"visibility_timeout_s": 43201}, "visibility_timeout_s must be from 0 to 43200"),
        ({"visibility_timeout_s": True}, "must be a number of seconds"),
        ({"message_retention_s": 59}, "message_retention_s must be from 60"),
        ({"delay_s": 901}, "delay_s must be from 0 to 900"),
        ({"max_message_bytes": 1023}, "max_message_bytes must be an integer from 1024"),
        ({"max_receive_count": 3}, "needs both max_receive_count and dead_letter_queue"),
        ({"max_receive_count": 0, "dead_letter_queue": "dlq"}, "max_receive_count must be an integer from 1"),
        ({"max_receive_count": 3, "dead_letter_queue": "nope"}, "dead_letter_queue 'nope' does not exist"),
        ({"max_receive_count": 3, "dead_letter_queue": "q"}, "must be another queue"),
        ({"max_receive_count": 3, "dead_letter_queue": "bad name"}, "dead_letter_queue: queue name"),
    ],
)
def test_queue_attributes_are_validated(store, attributes, message):
    with pytest.raises(InvalidConfig, match=message):
        store.create("q", attributes)
    assert not store.exists("q")


def test_list_with_prefix_and_delete_queue(store):
    for name in ("jobs-a", "jobs-b", "other"):
        store.create(name)
    store.send("jobs-a", "x")
    assert [q["name"] for q in store.list("jobs-")] == ["jobs-a", "jobs-b"]
    store.delete_queue("jobs-a")
    assert [q["name"] for q in store.list()] == ["jobs-b", "other"]
    for call in (
        lambda: store.send("jobs-a", "x"),
        lambda: store.receive("jobs-a"),
        lambda: store.attributes("jobs-a"),
        lambda: store.purge("jobs-a"),
        lambda: store.delete_queue("jobs-a"),
    ):
        with pytest.raises(QueueDoesNotExist, match="queue 'jobs-a' does not exist") as raised:
            call()
        assert raised.value.status == 404
    store.create("jobs-a")  # the old messages went with the old queue
    assert counts(store, "jobs-a") == (0, 0, 0)


def test_send_creates_a_missing_queue_only_when_asked(store):
    with pytest.raises(QueueDoesNotExist):
        store.send("made", "x")
    message_id = store.send("made", "x", create=True)
    assert uuid.UUID(message_id)
    assert store.attributes("made")["visibility_timeout_s"] == 30
    assert store.receive("made")[0].message_id == message_id


# --- messages -----------------------------------------------------------------


def test_a_received_message_is_hidden_for_the_visibility_timeout_then_received_again(store):
    store.create("q", {"visibility_timeout_s": 30})
    sent_at = time.time()
    message_id = store.send("q", "hello", now=sent_at)
    first = store.receive("q", now=sent_at + 1)
    assert [m.body for m in first] == ["hello"] and first[0].message_id == message_id
    assert first[0].receive_count == 1 and first[0].first_received_at == sent_at + 1
    assert store.receive("q", now=sent_at + 30) == []
    assert counts(store, "q", now=sent_at + 30) == (0, 1, 0)
    again = store.receive("q", now=sent_at + 31)
    assert [m.message_id for m in again] == [message_id]
    assert again[0].receive_count == 2 and again[0].receipt_handle != first[0].receipt_handle
    attributes = again[0].attributes()
    assert attributes["ApproximateReceiveCount"] == "2"
    assert attributes["SentTimestamp"] == str(int(sent_at * 1000))
    assert attributes["ApproximateFirstReceiveTimestamp"] == str(int((sent_at + 1) * 1000))


def test_visibility_timeout_override_and_real_expiry(store):
    store.create("q")
    store.send("q", "x")
    assert len(store.receive("q", visibility_timeout_s=0.3)) == 1
    assert store.receive("q") == []
    time.sleep(0.35)
    assert [m.receive_count for m in store.receive("q")] == [2]


def test_change_visibility_hides_longer_or_shows_at_once(store):
    store.create("q")
    now = time.time()
    store.send("q", "x", now=now)
    [message] = store.receive("q", now=now)
    store.change_visibility_batch("q", [message.receipt_handle], 100, now=now)
    assert store.receive("q", now=now + 99) == []
    store.change_visibility("q", message.receipt_handle, 0)
    [again] = store.receive("q")
    assert again.receive_count == 2
    with pytest.raises(ReceiptHandleIsInvalid, match="received again since"):
        store.change_visibility("q", message.receipt_handle, 10)
    store.delete_message("q", again.receipt_handle)
    with pytest.raises(ReceiptHandleIsInvalid, match="deleted or has expired"):
        store.change_visibility("q", again.receipt_handle, 10)
    with pytest.raises(InvalidConfig, match="visibility_timeout_s must be from 0 to 43200"):
        store.change_visibility("q", again.receipt_handle, 43201)


def test_a_stale_receipt_handle_cannot_delete_the_message(store):
    store.create("q", {"visibility_timeout_s": 0})
    store.send("q", "x")
    [first] = store.receive("q")
    [second] = store.receive("q")  # visibility 0: received again at once
    with pytest.raises(ReceiptHandleIsInvalid, match="received again since") as raised:
        store.delete_message("q", first.receipt_handle)
    assert raised.value.status == 400
    assert counts(store, "q")[0] == 1  # still there
    store.delete_message("q", second.receipt_handle)
    assert counts(store, "q") == (0, 0, 0)
    store.delete_message("q", second.receipt_handle)  # already gone: fine, as in SQS
    for bad in ("", "nonsense", "1.zz", "12"):
        with pytest.raises(ReceiptHandleIsInvalid, match="not one this queue store gave out"):
            store.delete_message("q", bad)


def test_delete_messages_in_one_batch_reports_the_refused(store):
    store.create("q", {"visibility_timeout_s": 0})
    store.send_batch("q", [OutgoingMessage("a"), OutgoingMessage("b")])
    first = store.receive("q", 10)
    second = store.receive("q", 10)
    refused = store.delete_messages("q", [first[0].receipt_handle, second[1].receipt_handle, "junk"])
    assert set(refused) == {first[0].receipt_handle, "junk"}
    assert [m.body for m in store.receive("q", 10)] == [first[0].body]


def test_receive_count_and_redrive_to_the_dead_letter_queue(store):
    store.create("dlq")
    store.create("q", {"visibility_timeout_s": 10, "max_receive_count": 2, "dead_letter_queue": "dlq"})
    now = time.time()
    poison = store.send("q", "poison", {"kind": "bad"}, now=now)
    assert store.receive("q", now=now)[0].receive_count == 1
    assert store.receive("q", now=now + 11)[0].receive_count == 2
    # A third receive would exceed max_receive_count: the message moves instead of being received.
    assert store.receive("q", now=now + 22) == []
    assert counts(store, "q", now=now + 22) == (0, 0, 0)
    [dead] = store.receive("dlq", now=now + 22)
    assert dead.message_id == poison and dead.body == "poison" and dead.receive_count == 1
    assert dead.message_attributes == {"kind": {"dataType": "String", "stringValue": "bad"}}
    assert dead.sent_at == now  # retention counts from the first send, as in SQS
    assert dead.attributes()["DeadLetterQueueSourceArn"] == "arn:aws:sqs:local:000000000000:q"


def test_a_redriven_message_makes_room_for_the_next_in_the_same_receive(store):
    store.create("dlq")
    store.create("q", {"visibility_timeout_s": 0, "max_receive_count": 1, "dead_letter_queue": "dlq"})
    store.send("q", "poison")
    assert [m.body for m in store.receive("q")] == ["poison"]
    store.send("q", "good")
    assert [m.body for m in store.receive("q", 10)] == ["good"]
    assert [m.body for m in store.receive("dlq", 10)] == ["poison"]


def test_without_its_dead_letter_queue_a_message_stays_receivable(store):
    store.create("dlq")
    store.create("q", {"visibility_timeout_s": 0, "max_receive_count": 1, "dead_letter_queue": "dlq"})
    store.send("q", "x")
    store.receive("q")
    store.delete_queue("dlq")
    assert [m.receive_count for m in store.receive("q")] == [2]  # not lost


def test_delay_of_the_queue_and_of_a_message(store):
    store.create("q", {"delay_s": 60, "visibility_timeout_s": 600})
    now = time.time()
    store.send("q", "queue-delay", now=now)
    store.send("q", "no-delay", delay_s=0, now=now)
    store.send("q", "longer", delay_s=120, now=now)
    assert counts(store, "q", now=now) == (1, 0, 2)
    assert [m.body for m in store.receive("q", 10, now=now)] == ["no-delay"]
    assert [m.body for m in store.receive("q", 10, now=now + 61)] == ["queue-delay"]
    assert [m.body for m in store.receive("q", 10, now=now + 121)] == ["longer"]
    with pytest.raises(InvalidConfig, match="delay_s must be from 0 to 900"):
        store.send("q", "x", delay_s=901)


def test_retention_deletes_messages_received_or_not(store):
    store.create("q", {"message_retention_s": 60})
    now = time.time()
    store.send("q", "in-flight", now=now)
    store.receive("q", visibility_timeout_s=600, now=now)
    store.send("q", "waiting", now=now + 1)
    assert counts(store, "q", now=now + 59) == (1, 1, 0)
    assert counts(store, "q", now=now + 61) == (0, 0, 0)
    assert store.receive("q", 10, now=now + 61) == []
    assert counts(store, "q", now=now) == (0, 0, 0)  # deleted, not only hidden


def test_purge_deletes_every_message_in_flight_too(store):
    store.create("q")
    store.send_batch("q", [OutgoingMessage(str(i)) for i in range(5)])
    store.receive("q", 2)
    assert counts(store, "q") == (3, 2, 0)
    assert store.purge("q") == 5
    assert counts(store, "q") == (0, 0, 0)
    assert store.receive("q", 10) == []


def test_receive_returns_up_to_ten_oldest_first(store):
    store.create("q")
    for start in (0, 10):
        store.send_batch("q", [OutgoingMessage(str(i)) for i in range(start, start + 10)])
    assert [m.body for m in store.receive("q", 10)] == [str(i) for i in range(10)]
    assert [m.body for m in store.receive("q", 4)] == ["10", "11", "12", "13"]
    for bad in (0, 11, True, "3"):
        with pytest.raises(InvalidConfig, match="max_messages must be an integer from 1 to 10"):
            store.receive("q", bad)
    with pytest.raises(InvalidConfig, match="wait_time_s must be from 0 to 20"):
        store.receive("q", wait_time_s=21)


def test_message_attributes_in_every_form(store):
    store.create("q")
    store.send(
        "q",
        "x",
        {
            "text": "v",
            "count": 3,
            "raw": b"\x00\x01",
            "sqs": {"DataType": "Number.int", "StringValue": "7"},
            "lambda": {"dataType": "Binary", "binaryValue": "AAE="},
        },
    )
    [message] = store.receive("q")
    assert message.message_attributes == {
        "text": {"dataType": "String", "stringValue": "v"},
        "count": {"dataType": "Number", "stringValue": "3"},
        "raw": {"dataType": "Binary", "binaryValue": "AAE="},
        "sqs": {"dataType": "Number.int", "stringValue": "7"},
        "lambda": {"dataType": "Binary", "binaryValue": "AAE="},
    }


@pytest.mark.parametrize(
    "body, attributes, message",
    [
        ("", None, "body must be a non-empty string"),
        (b"bytes", None, "body must be a non-empty string"),
        ("nul\x00", None, "which SQS does not allow"),
        ("x", {"bad name": "v"}, "message attribute name 'bad name' is invalid"),
        ("x", {"AWS.trace": "v"}, "is invalid"),
        ("x", {"a..b": "v"}, "is invalid"),
        ("x", {f"a{i}": "v" for i in range(11)}, "at most 10 message attributes"),
        ("x", {"n": {"DataType": "Number", "StringValue": "ten"}}, "'ten' is not a number"),
        ("x", {"n": {"DataType": "Date", "StringValue": "x"}}, "dataType must be String, Number or Binary"),
        ("x", {"n": [1]}, "must be a string, a number"),
        ("x", "not-a-dict", "message_attributes must be an object"),
    ],
)
def test_bad_messages_are_refused_naming_the_problem(store, body, attributes, message):
    store.create("q")
    with pytest.raises(InvalidRequest, match=message):
        store.send("q", body, attributes)
    assert counts(store, "q") == (0, 0, 0)


def test_a_message_over_max_message_bytes_is_413_counting_its_attributes(store):
    store.create("q", {"max_message_bytes": 1024})
    store.send("q", "x" * 1024)
    with pytest.raises(MessageTooLarge, match="1025 bytes .* max_message_bytes is 1024") as raised:
        store.send("q", "x" * 1025)
    assert raised.value.status == 413
    with pytest.raises(MessageTooLarge):
        store.send("q", "x" * 1000, {"attribute": "y" * 20})
    assert counts(store, "q") == (1, 0, 0)


def test_a_batch_is_all_or_nothing_and_ten_at_most(store):
    store.create("q", {"max_message_bytes": 1024})
    with pytest.raises(MessageTooLarge, match="message 1 is 2000 bytes"):
        store.send_batch("q", [OutgoingMessage("ok"), OutgoingMessage("x" * 2000)])
    with pytest.raises(InvalidRequest, match="message 2: body must be"):
        store.send_batch("q", [OutgoingMessage("ok"), OutgoingMessage("ok"), OutgoingMessage("")])
    with pytest.raises(InvalidRequest, match="a batch has 1 to 10 messages, got 11"):
        store.send_batch("q", [OutgoingMessage("x")] * 11)
    assert counts(store, "q") == (0, 0, 0)
    ids = store.send_batch("q", [OutgoingMessage(str(i)) for i in range(10)])
    assert len(set(ids)) == 10


def test_messages_survive_closing_the_store(tmp_path):
    with QueueStore(tmp_path / "queues.db") as first:
        first.create("q")
        message_id = first.send("q", "kept")
    with QueueStore(tmp_path / "queues.db") as second:
        assert [m.message_id for m in second.receive("q")] == [message_id]


# --- long polling ---------------------------------------------------------------


def send_later(store: QueueStore, queue: str, body: str, delay_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), store.send(queue, body)))
    thread.start()
    return thread


@pytest.fixture
def slow_polling_store(tmp_path: Path):
    """A store that looks at the file only every 10 s: only a wake-up makes a long poll return sooner."""
    with QueueStore(tmp_path / "queues.db", poll_s=10) as queues:
        yield queues


def test_long_polling_is_woken_by_a_send_at_once(slow_polling_store):
    store = slow_polling_store
    store.create("q")
    sender = send_later(store, "q", "ping", 0.3)
    started = time.monotonic()
    messages = store.receive("q", wait_time_s=10)
    elapsed = time.monotonic() - started
    sender.join()
    assert [m.body for m in messages] == ["ping"]
    assert 0.29 <= elapsed < 1.5


def test_async_long_polling_is_woken_by_a_send_at_once(slow_polling_store):
    store = slow_polling_store
    store.create("q")

    async def main() -> tuple[list, float]:
        sender = send_later(store, "q", "ping", 0.3)
        started = time.monotonic()
        messages = await store.areceive("q", wait_time_s=10)
        elapsed = time.monotonic() - started
        await asyncio.to_thread(sender.join)
        return messages, elapsed

    messages, elapsed = asyncio.run(main())
    assert [m.body for m in messages] == ["ping"]
    assert 0.29 <= elapsed < 1.5


def test_long_polling_sees_sends_of_another_store_on_the_same_file(tmp_path):
    """Two QueueStore objects share no wake-ups: the waiting one finds the message by polling."""
    with QueueStore(tmp_path / "queues.db") as receiver, QueueStore(tmp_path / "queues.db") as sender:
        receiver.create("q")

        async def main() -> list[float]:
            latencies = []
            for body in ("sync", "async"):
                thread = send_later(sender, "q", body, 0.3)
                started = time.monotonic()
                if body == "sync":
                    messages = await asyncio.to_thread(receiver.receive, "q", wait_time_s=10)
                else:
                    messages = await receiver.areceive("q", wait_time_s=10)
                latencies.append(time.monotonic() - started - 0.3)
                await asyncio.to_thread(thread.join)
                assert [m.body for m in messages] == [body]
            return latencies

        latencies = asyncio.run(main())
    assert all(-0.01 <= latency < 0.5 for latency in latencies), latencies


def test_long_polling_waits_for_a_delayed_message_or_times_out_empty(store):
    store.create("q")
    started = time.monotonic()
    assert store.receive("q", wait_time_s=0.3) == []
    assert 0.29 <= time.monotonic() - started < 1.0
    store.send("q", "soon", delay_s=0.4)
    started = time.monotonic()
    assert [m.body for m in asyncio.run(store.areceive("q", wait_time_s=5))] == ["soon"]
    assert 0.3 <= time.monotonic() - started < 1.0


def test_a_cancelled_async_receive_loses_nothing(store):
    store.create("q")
    store.send_batch("q", [OutgoingMessage(str(i)) for i in range(10)])

    async def main() -> None:
        for _ in range(20):  # cancel at every moment: before, during and after the receive thread
            task = asyncio.ensure_future(store.areceive("q", 10, visibility_timeout_s=600))
            await asyncio.sleep(0)
            task.cancel()
            try:
                got = await task
            except asyncio.CancelledError:
                continue
            store.change_visibility_batch("q", [m.receipt_handle for m in got], 0)

    asyncio.run(main())
    time.sleep(0.1)  # a give-back may run on its own thread
    assert counts(store, "q") == (10, 0, 0)


# --- over HTTP ------------------------------------------------------------------


@pytest.fixture
def api(host):
    with ServerThread(host, admin_token="secret") as server:
        with httpx.Client(base_url=server.url, headers={"authorization": "Bearer secret"}, timeout=30) as client:
            yield client


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["type"]


def test_http_queue_lifecycle(api):
    name = f"q-{uuid.uuid4().hex[:8]}"
    assert httpx.get(f"{api.base_url}/queues").status_code == 401
    created = api.post(f"/queues/{name}", json={"visibility_timeout_s": 5})
    assert created.status_code == 201 and created.json()["visibility_timeout_s"] == 5
    assert api.post(f"/queues/{name}", json={"visibility_timeout_s": 5}).status_code == 200
    assert error_of(api.post(f"/queues/{name}", json={"visibility_timeout_s": 6})) == (409, "QueueAlreadyExists")
    assert error_of(api.post("/queues/bad.name")) == (400, "InvalidName")
    assert error_of(api.post("/queues/other", json={"delay_s": -1})) == (400, "InvalidConfig")
    assert api.post("/queues/other").status_code == 201  # no body: the defaults
    assert [q["name"] for q in api.get("/queues", params={"prefix": "q-"}).json()["queues"]] == [name]

    sent = api.post(f"/queues/{name}/messages", json={"body": "one", "message_attributes": {"k": "v"}})
    assert sent.status_code == 201 and sent.json()["md5_of_body"] == "f97c5d29941bfb1b2fdab0874906ab82"
    batch = api.post(f"/queues/{name}/messages", json={"messages": [{"body": "two"}, {"body": "three", "delay_s": 0}]})
    assert [m["md5_of_body"] for m in batch.json()["messages"]] == [
        "b8a9f715dbb64fd5c56e7783c6820a61",
        "35d6d33467aae9a2e3dccb4b6b027878",
    ]
    assert api.get(f"/queues/{name}").json()["approximate_number_of_messages"] == 3

    received = api.post(f"/queues/{name}/receive", json={"max_messages": 10}).json()["messages"]
    assert [m["body"] for m in received] == ["one", "two", "three"]
    first = received[0]
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["message_attributes"] == {"k": {"dataType": "String", "stringValue": "v"}}
    attributes = api.get(f"/queues/{name}").json()
    assert attributes["approximate_number_of_messages_not_visible"] == 3

    assert api.delete(f"/queues/{name}/messages/{first['receipt_handle']}").status_code == 204
    shown = api.post(
        f"/queues/{name}/visibility", json={"receipt_handle": received[1]["receipt_handle"], "visibility_timeout_s": 0}
    )
    assert shown.status_code == 204
    [again] = api.post(f"/queues/{name}/receive", json={"max_messages": 10}).json()["messages"]
    assert again["body"] == "two" and again["attributes"]["ApproximateReceiveCount"] == "2"
    stale = api.delete(f"/queues/{name}/messages/{received[1]['receipt_handle']}")
    assert error_of(stale) == (400, "ReceiptHandleIsInvalid")
    assert "received again since" in stale.json()["error"]["message"]

    assert api.post(f"/queues/{name}/purge").json() == {"purged": 2}
    assert api.delete(f"/queues/{name}").status_code == 204
    assert error_of(api.get(f"/queues/{name}")) == (404, "QueueDoesNotExist")
    assert error_of(api.post(f"/queues/{name}/messages", json={"body": "x"})) == (404, "QueueDoesNotExist")
    api.delete("/queues/other")


def test_http_bad_requests_name_the_problem(api):
    name = f"q-{uuid.uuid4().hex[:8]}"
    api.post(f"/queues/{name}", json={"max_message_bytes": 1024})
    too_big = api.post(f"/queues/{name}/messages", json={"body": "x" * 2000})
    assert error_of(too_big) == (413, "MessageTooLarge")
    cases = [
        ("/messages", {"bodi": "x"}, "unknown field(s) bodi"),
        ("/messages", {"messages": "x"}, "a batch is"),
        ("/messages", {"messages": [{"body": "x"}] * 11}, "a batch has 1 to 10 messages"),
        ("/messages", [1], "the body must be a JSON object"),
        ("/receive", {"max_messages": 11}, "max_messages must be an integer from 1 to 10"),
        ("/receive", {"wait": 1}, "unknown field(s) wait"),
        ("/visibility", {"receipt_handle": "x"}, "receipt_handle"),
    ]
    for path, body, message in cases:
        response = api.post(f"/queues/{name}{path}", json=body)
        assert response.status_code == 400, (path, body)
        assert message in response.json()["error"]["message"], (path, response.json())
    assert error_of(
        api.post(f"/queues/{name}/visibility", json={"receipt_handle": "x", "visibility_timeout_s": 1})
    ) == (
        400,
        "ReceiptHandleIsInvalid",
    )
    api.delete(f"/queues/{name}")


def test_http_long_polling_is_woken_by_a_send(api):
    name = f"q-{uuid.uuid4().hex[:8]}"
    api.post(f"/queues/{name}")

    def later() -> None:
        time.sleep(0.3)
        api.post(f"/queues/{name}/messages", json={"body": "ping"})

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    response = api.post(f"/queues/{name}/receive", json={"wait_time_s": 10, "visibility_timeout_s": 60})
    elapsed = time.monotonic() - started
    thread.join()
    assert [m["body"] for m in response.json()["messages"]] == ["ping"]
    assert 0.29 <= elapsed < 1.5
    api.delete(f"/queues/{name}")


# --- the command line ---------------------------------------------------------------


def run(*args: str, data_dir: Path | None = None, env: dict | None = None, check: bool = True):
    command = [sys.executable, "-m", "wasmhost"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    result = subprocess.run(
        command + list(args), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


@pytest.mark.slow
def test_queue_commands_on_the_data_dir_and_on_a_server(tmp_path, host):
    data = tmp_path / "cli"
    run("queue", "create", "dlq", data_dir=data)
    created = json.loads(
        run("queue", "create", "jobs", "--max-receive-count", "2", "--dead-letter-queue", "dlq", data_dir=data).stdout
    )
    assert created["max_receive_count"] == 2 and created["dead_letter_queue"] == "dlq"
    ids = run("queue", "send", "jobs", "a", "b", "--attribute", "k=v", data_dir=data).stdout.split()
    assert len(ids) == 2
    listing = run("queue", "list", data_dir=data).stdout
    assert "jobs" in listing and "dlq" in listing
    received = json.loads(run("queue", "receive", "jobs", "--max-messages", "10", data_dir=data).stdout)
    assert [m["message_id"] for m in received] == ids
    run("queue", "delete", "jobs", "--message", received[0]["receipt_handle"], data_dir=data)
    attributes = json.loads(run("queue", "attributes", "jobs", data_dir=data).stdout)
    assert attributes["approximate_number_of_messages_not_visible"] == 1
    assert "purged 1 message(s)" in run("queue", "purge", "jobs", data_dir=data).stderr
    run("queue", "delete", "jobs", data_dir=data)
    missing = run("queue", "attributes", "jobs", data_dir=data, check=False)
    assert missing.returncode == 1 and "QueueDoesNotExist" in missing.stderr

    with ServerThread(host, admin_token="tok") as server:
        env = {"WASMHOST_URL": server.url, "WASMHOST_ADMIN_TOKEN": "tok"}
        run("queue", "create", "remote", "--visibility-timeout-s", "5", env=env)
        run("queue", "send", "remote", "hello", env=env)
        [message] = json.loads(run("queue", "receive", "remote", "--wait-time-s", "1", "--delete", env=env).stdout)
        assert message["body"] == "hello"
        assert host.queues.attributes("remote")["approximate_number_of_messages_not_visible"] == 0
        assert "remote" in run("queue", "list", env=env).stdout
        run("queue", "delete", "remote", env=env)
        assert not host.queues.exists("remote")
