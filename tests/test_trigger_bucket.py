"""Bucket notifications (type ``bucket``): S3's event shape, filters, the body extension,
retries then dead letters, the recursive-loop guard, no loss across ``kill -9`` of a real
server, and the thumbnail example end to end over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import httpx
import pytest

from wasmhost import FunctionConfig, Host
from wasmhost.buckets import BucketStore
from wasmhost.build import build
from wasmhost.errors import InvalidConfig
from wasmhost.triggers import TriggerStore, trigger_type

from .conftest import ServerThread
from .triggers_support import ROOT, ServeProcess, deploy_cached, log_lines, recorder_wasm, wait_for

THUMBNAIL = ROOT / "guests" / "python" / "examples" / "thumbnail"


# --- fixtures ----------------------------------------------------------------------


@dataclass
class Guests:
    """The recorder and thumbnail guests, built. Deploy them with ``deploy_cached``: their
    compiled code is shared by the session (deploys take ms, not the 10-20 s of a compile)."""

    recorder: bytes
    thumbnail: bytes
    thumbnail_config: FunctionConfig

    def data_dir(self, path: Path) -> Path:
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="module")
def python_guests(tmp_path_factory) -> Guests:
    built = build(THUMBNAIL)
    guests = Guests(recorder_wasm(), built.path.read_bytes(), built.project.config())
    with Host(data_dir=tmp_path_factory.mktemp("bucket-guests")) as host:  # compile both once
        deploy_cached(host, "recorder", guests.recorder)
        deploy_cached(host, "thumbnail", guests.thumbnail, guests.thumbnail_config)
    return guests


@contextmanager
def recorder_host(guests: Guests, tmp_path: Path, **env: str) -> Iterator[Host]:
    with Host(data_dir=guests.data_dir(tmp_path / "data")) as host:
        deploy_cached(host, "recorder", guests.recorder, FunctionConfig(timeout_ms=10000, env=env))
        yield host


def records(host: Host, function: str = "recorder") -> list[dict[str, Any]]:
    """The S3 records the recorder guest received, in order (it prints ``event <json>``)."""
    found = []
    for line in log_lines(host, function, "event "):
        found.extend(json.loads(line)["Records"])
    return found


def wait_records(host: Host, count: int, function: str = "recorder", timeout_s: float = 20) -> list[dict[str, Any]]:
    return wait_for(
        lambda: len(records(host, function)) >= count and records(host, function), timeout_s, f"{count} record(s)"
    )


def pgm(width: int, height: int, maxval: int = 255) -> tuple[bytes, list[int]]:
    """A binary PGM with a comment in its header, and its samples."""
    samples = [(x * 37 + y * 101 + x * y) % (maxval + 1) for y in range(height) for x in range(width)]
    if maxval > 255:
        pixels = b"".join(v.to_bytes(2, "big") for v in samples)
    else:
        pixels = bytes(samples)
    return b"P5\n# made by the test\n%d %d\n%d\n" % (width, height, maxval) + pixels, samples


def read_pgm(data: bytes) -> tuple[int, int, int, list[int]]:
    header_lines = []
    while len(b" ".join(header_lines).split()) < 4:
        line, data = data.split(b"\n", 1)
        if not line.startswith(b"#"):
            header_lines.append(line)
    magic, width, height, maxval = b" ".join(header_lines).split()
    pixels = data
    assert magic == b"P5"
    width, height, maxval = int(width), int(height), int(maxval)
    if maxval > 255:
        return width, height, maxval, [pixels[i] << 8 | pixels[i + 1] for i in range(0, len(pixels), 2)]
    return width, height, maxval, list(pixels)


def halved(width: int, height: int, samples: list[int]) -> list[int]:
    """The documented transform, written independently: mean of each 2x2 block, rounded half up."""
    out = []
    for y in range(height // 2):
        for x in range(width // 2):
            block = [samples[(2 * y + dy) * width + 2 * x + dx] for dy in (0, 1) for dx in (0, 1)]
            out.append((sum(block) + 2) // 4)
    return out


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "bucket is required"),
        ({"bucket": "No_Good"}, "bucket trigger: bucket: bucket name 'No_Good'"),
        ({"bucket": "ok-bucket", "events": ["s3:ObjectCreated:Put", "s3:Nope"]}, "events must be"),
        ({"bucket": "ok-bucket", "events": []}, "events must be"),
        ({"bucket": "ok-bucket", "prefix": 3}, "prefix must be a string"),
        ({"bucket": "ok-bucket", "include_body": "yes"}, "include_body must be true or false"),
        ({"bucket": "ok-bucket", "max_body_bytes": 5_000_000}, "max_body_bytes must be an integer from 0 to 4194304"),
        ({"bucket": "ok-bucket", "maximum_retry_attempts": -1}, "maximum_retry_attempts"),
        ({"bucket": "ok-bucket", "on_failure": "somewhere"}, "on_failure must be"),
        ({"bucket": "ok-bucket", "topic": "x"}, "unknown field(s) topic"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields, problem):
    with pytest.raises(InvalidConfig, match="bucket trigger") as caught:
        trigger_type("bucket").validate(fields)
    assert problem in caught.value.message


def test_defaults_and_description():
    config = trigger_type("bucket").validate({"bucket": "photos", "suffix": ".jpg", "include_body": True})
    assert config == {
        "enabled": True,
        "bucket": "photos",
        "events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        "prefix": "",
        "suffix": ".jpg",
        "include_body": True,
        "max_body_bytes": 262144,
        "maximum_retry_attempts": 2,
        "retry_delay_ms": 1000,
    }
    assert trigger_type("bucket").describe(config) == "photos ObjectCreated:*,ObjectRemoved:* suffix=.jpg +body"


def test_notifications_are_written_with_the_object_and_dropped_with_the_trigger(host, guest):
    host.deploy("echo", guest("echo"))
    host.buckets.create_bucket("watched")
    trigger = host.add_trigger("echo", {"type": "bucket", "bucket": "watched", "include_body": True})
    host.add_trigger("echo", {"type": "bucket", "bucket": "watched", "enabled": False})
    host.add_trigger("echo", {"type": "bucket", "bucket": "elsewhere"})
    for index in range(3):
        host.buckets.put_object("watched", f"k{index}", b"v1")
        host.buckets.put_object("watched", f"k{index}", b"v2")  # the first bytes stay for their notification
    host.buckets.delete_object("watched", "k0")
    store = host.buckets
    assert store.outbox_size(trigger.id) == 7 and store.outbox_size() == 7
    assert [(n.event_name, n.key) for n in store.pending(trigger.id)] == [
        *[("ObjectCreated:Put", f"k{i // 2}") for i in range(6)],
        ("ObjectRemoved:Delete", "k0"),
    ]
    blobs = lambda: sorted(p for p in store.objects_dir.rglob("*") if p.is_file())  # noqa: E731
    assert len(blobs()) == 6  # 2 current objects + 4 kept for notifications (k0's current one too)
    host.delete_trigger("echo", trigger.id)
    assert store.outbox_size() == 0
    assert len(blobs()) == 2


# --- delivery ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_event_is_s3s_shape_field_by_field(python_guests, tmp_path):
    with recorder_host(python_guests, tmp_path) as host, ServerThread(host) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        http.put("/buckets/photos")
        trigger = http.post("/functions/recorder/triggers", json={"type": "bucket", "bucket": "photos"}).json()
        assert trigger["type"] == "bucket" and trigger["id"].startswith("trg-")
        key = "my photos/cat ü+1.jpg"
        body = b"\xff\xd8 not really a jpeg"
        put = http.put(f"/buckets/photos/{quote(key, safe='')}", content=body)
        before = time.time()
        created = wait_records(host, 1)[0]
        assert created.pop("eventTime").endswith("Z")
        sequencer = created["s3"]["object"].pop("sequencer")
        assert created == {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "local",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "wasmhost"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {
                "x-amz-request-id": put.headers["x-amz-request-id"],
                "x-amz-id-2": created["responseElements"]["x-amz-id-2"],
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": trigger["id"],
                "bucket": {
                    "name": "photos",
                    "ownerIdentity": {"principalId": "wasmhost"},
                    "arn": "arn:aws:s3:::photos",
                },
                "object": {
                    "key": "my+photos/cat+%C3%BC%2B1.jpg",
                    "size": len(body),
                    "eTag": hashlib.md5(body).hexdigest(),
                },
            },
        }
        assert len(sequencer) == 16 and int(sequencer, 16) > 0
        assert created["responseElements"]["x-amz-id-2"]

        # a write by another process (no wake-up here): found by the runner's poll
        other_triggers = TriggerStore(host.trigger_store.path)
        other = BucketStore(host.buckets.root, other_triggers)
        other.delete_object("photos", key, source_ip="10.0.0.7")
        removed = wait_records(host, 2)[1]
        assert removed["eventName"] == "ObjectRemoved:Delete"
        assert removed["requestParameters"] == {"sourceIPAddress": "10.0.0.7"}
        assert removed["s3"]["object"].keys() == {"key", "sequencer"}
        assert removed["s3"]["object"]["key"] == "my+photos/cat+%C3%BC%2B1.jpg"
        assert int(removed["s3"]["object"]["sequencer"], 16) > int(sequencer, 16)
        assert time.time() - before < 10
        other.close()
        other_triggers.close()
        status = wait_for(lambda: host.get_trigger("recorder", trigger["id"]).status.get("delivered") == 2, 10)
        assert status
        http.close()


@pytest.mark.slow
def test_keys_are_url_encoded_as_s3_does(python_guests, tmp_path):
    keys = {
        "plain.txt": "plain.txt",
        "a b/c d.txt": "a+b/c+d.txt",
        "über/日本.png": "%C3%BCber/%E6%97%A5%E6%9C%AC.png",
        "1+1=2&x?(y)": "1%2B1%3D2%26x%3F%28y%29",
        "100%.txt": "100%25.txt",
    }
    with recorder_host(python_guests, tmp_path) as host, ServerThread(host):
        host.buckets.create_bucket("keys")
        host.add_trigger("recorder", {"type": "bucket", "bucket": "keys", "events": ["s3:ObjectCreated:Put"]})
        for key in keys:
            host.buckets.put_object("keys", key, b"x")
        got = [r["s3"]["object"]["key"] for r in wait_records(host, len(keys))]
    assert got == list(keys.values())  # in write order
    assert [unquote_plus(k) for k in got] == list(keys)


@pytest.mark.slow
def test_prefix_suffix_and_event_filters(python_guests, tmp_path):
    with recorder_host(python_guests, tmp_path) as host, ServerThread(host):
        host.buckets.create_bucket("media")
        images = host.add_trigger(
            "recorder",
            {"type": "bucket", "bucket": "media", "events": ["s3:ObjectCreated:*"], "prefix": "in/", "suffix": ".jpg"},
        )
        removals = host.add_trigger(
            "recorder", {"type": "bucket", "bucket": "media", "events": ["s3:ObjectRemoved:Delete"], "prefix": "in/"}
        )
        store = host.buckets
        for key in ("in/a.jpg", "in/b.png", "out/c.jpg", "in/sub/d.jpg", "in.jpg", "IN/e.jpg"):
            store.put_object("media", key, b"x")
        store.delete_object("media", "in/a.jpg")
        store.delete_object("media", "out/c.jpg")
        store.delete_object("media", "in/b.png")
        store.put_object("media", "in/zz-last.jpg", b"x")  # each trigger delivers in write order:
        store.delete_object("media", "in/zz-last.jpg")  # once these are in, everything before is
        wait_for(lambda: len(records(host)) >= 6, 20, "the last records")
        time.sleep(0.5)
        seen = [(r["s3"]["configurationId"], r["eventName"], r["s3"]["object"]["key"]) for r in records(host)]
    assert sorted(seen) == sorted(
        [
            (images.id, "ObjectCreated:Put", "in/a.jpg"),
            (images.id, "ObjectCreated:Put", "in/sub/d.jpg"),
            (images.id, "ObjectCreated:Put", "in/zz-last.jpg"),
            (removals.id, "ObjectRemoved:Delete", "in/a.jpg"),
            (removals.id, "ObjectRemoved:Delete", "in/b.png"),
            (removals.id, "ObjectRemoved:Delete", "in/zz-last.jpg"),
        ]
    )


@pytest.mark.slow
def test_include_body_hands_over_the_bytes_that_were_written(python_guests, tmp_path):
    with recorder_host(python_guests, tmp_path) as host:
        host.buckets.create_bucket("bodies")
        host.add_trigger("recorder", {"type": "bucket", "bucket": "bodies", "include_body": True, "max_body_bytes": 16})
        store = host.buckets
        store.put_object("bodies", "small", b"0123456789")
        store.put_object("bodies", "small", b"\x00second\xff")  # before the first was delivered
        store.put_object("bodies", "big", b"x" * 17)
        with ServerThread(host):
            got = wait_records(host, 3)
            wait_for(lambda: store.outbox_size() == 0, 10, "an empty outbox")
        objects = [r["s3"]["object"] for r in got]
        assert base64.b64decode(objects[0]["body"]) == b"0123456789"
        assert base64.b64decode(objects[1]["body"]) == b"\x00second\xff"
        assert "body" not in objects[2]
        assert objects[2]["bodyOmitted"] == "the object is 17 bytes, over max_body_bytes (16)"
        # the bytes kept for the first notification are gone once it was delivered
        assert len([p for p in store.objects_dir.rglob("*") if p.is_file()]) == 2


# --- failures ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failing_function_is_retried_then_dead_lettered(python_guests, tmp_path):
    with recorder_host(python_guests, tmp_path, FAIL_ALL="1") as host, ServerThread(host):
        host.buckets.create_bucket("fails")
        trigger = host.add_trigger("recorder", {"type": "bucket", "bucket": "fails"})
        started = time.monotonic()
        host.buckets.put_object("fails", "doomed.txt", b"x")
        letters = wait_for(lambda: host.events.dead_letters("recorder-failures"), 15, "a dead letter")
        elapsed = time.monotonic() - started
        assert 3.0 <= elapsed < 6, elapsed  # 2 retries, after 1 s and 2 s
        assert wait_for(lambda: host.usage("recorder")["invocations"] == 3, 5, "3 invocations")
        assert host.buckets.outbox_size() == 0
        letter = letters[0]
        assert letter["function"] == "recorder" and letter["attempts"] == 3
        assert letter["request_id"].startswith(trigger.id + ":")
        record = letter["record"]
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3
        assert record["requestContext"]["functionArn"].endswith(":function:recorder:$LATEST")
        assert record["responsePayload"] == {"errorType": "RuntimeError", "errorMessage": "FAIL_ALL is set"}
        assert record["responseContext"]["functionError"] == "Unhandled"
        assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "doomed.txt"

        # the function's own on_failure, and the trigger's retry settings
        host.update_config("recorder", on_failure="queue:bucket-dlq")
        host.delete_trigger("recorder", trigger.id)
        host.add_trigger(
            "recorder", {"type": "bucket", "bucket": "fails", "maximum_retry_attempts": 1, "retry_delay_ms": 100}
        )
        host.buckets.put_object("fails", "doomed-too.txt", b"x")
        letters = wait_for(lambda: host.events.dead_letters("bucket-dlq"), 15, "a dead letter in bucket-dlq")
        assert letters[0]["attempts"] == 2
        assert letters[0]["record"]["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "doomed-too.txt"
        assert wait_for(lambda: host.usage("recorder")["invocations"] == 5, 5, "2 more invocations")


@pytest.mark.slow
def test_a_recursive_loop_is_stopped_after_16_writes(python_guests, tmp_path):
    with Host(data_dir=python_guests.data_dir(tmp_path / "data")) as host:
        config = python_guests.thumbnail_config.updated({"env": {"TRANSFORM": "mirror", "THUMBNAIL_BUCKET": "loop"}})
        deploy_cached(host, "looper", python_guests.thumbnail, config)
        host.buckets.create_bucket("loop")
        host.add_trigger("looper", {"type": "bucket", "bucket": "loop", "include_body": True})
        image, _ = pgm(5, 3)
        with ServerThread(host):
            host.buckets.put_object("loop", "image.pgm", image)  # the function writes into its own bucket
            letters = wait_for(lambda: host.events.dead_letters("looper-failures"), 30, "the loop to be stopped")
            assert wait_for(lambda: host.usage("looper")["invocations"] == 16, 5, "16 invocations")
            time.sleep(0.5)
            assert host.usage("looper")["invocations"] == 16
        record = letters[0]["record"]
        assert record["requestContext"]["condition"] == "RecursiveInvocationDetected"
        assert record["responsePayload"]["errorType"] == "RecursiveInvocationException"
        assert record["requestPayload"]["Records"][0]["userIdentity"] == {"principalId": "function:looper"}
        info, data = host.buckets.get_object("loop", "image.pgm")
        assert info.depth == 16
        assert read_pgm(data) == read_pgm(image)  # mirrored 16 times
        assert host.buckets.outbox_size() == 0


# --- the example, end to end ----------------------------------------------------------


@pytest.mark.slow
def test_thumbnail_example_end_to_end_over_http(python_guests, tmp_path):
    with Host(data_dir=python_guests.data_dir(tmp_path / "data")) as host, ServerThread(host) as server:
        deploy_cached(host, "thumbnail", python_guests.thumbnail)  # the compiled code, for the deploy below
        deploy = subprocess.run(
            [sys.executable, "-m", "wasmhost", "--url", server.url, "deploy", "thumbnail", str(THUMBNAIL)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stderr
        [trigger] = host.triggers("thumbnail")  # from wasmhost.toml's [[triggers]]
        assert trigger.config["bucket"] == "uploads" and trigger.origin == "toml"
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.put("/buckets/uploads").status_code == 201
        assert http.put("/buckets/thumbnails").status_code == 201
        cases = {"cats/my cat.pgm": (37, 23, 255), "deep.pgm": (10, 6, 1000)}
        for key, (width, height, maxval) in cases.items():
            image, _ = pgm(width, height, maxval)
            assert http.put(f"/buckets/uploads/{quote(key)}", content=image).status_code == 200
        http.put("/buckets/uploads/notes.txt", content=b"not an image")  # suffix filter: ignored

        for key, (width, height, maxval) in cases.items():
            got = wait_for(
                lambda key=key: (r := http.get(f"/buckets/thumbnails/{quote(key)}")).status_code == 200 and r,
                30,
                f"thumbnails/{key}",
            )
            assert got.headers["content-type"] == "image/x-portable-graymap"
            assert got.headers["x-amz-meta-source"] == f"uploads/{quote(key, safe='/').replace('%20', '+')}"
            _, samples = pgm(width, height, maxval)
            assert read_pgm(got.content) == (width // 2, height // 2, maxval, halved(width, height, samples))
        listing = http.get("/buckets/thumbnails").json()
        assert [o["key"] for o in listing["objects"]] == ["cats/my cat.pgm", "deep.pgm"]
        assert any("halve uploads/cats/my cat.pgm 37x23" in line for line in log_lines(host, "thumbnail"))
        http.close()


# --- kill -9 -----------------------------------------------------------------------------


def outbox_size(data: Path) -> int:
    """Notifications not delivered yet, read as another process would."""
    triggers = TriggerStore(data / "triggers.db")
    try:
        with BucketStore(data / "buckets", triggers) as store:
            return store.outbox_size()
    finally:
        triggers.close()


@pytest.mark.slow
def test_no_notification_is_lost_across_kill_9(python_guests, tmp_path):
    """The thumbnail function is the witness: a notification is acknowledged only after the
    derived object was written, so every upload must end up with its thumbnail. (Logs are
    not: a killed server loses the log lines it had not flushed yet.)"""
    data = python_guests.data_dir(tmp_path / "data")
    uploads, thumbs = f"up-{uuid.uuid4().hex[:8]}", f"th-{uuid.uuid4().hex[:8]}"
    image, _ = pgm(4, 4)
    with Host(data_dir=data) as host:
        # reserved_concurrency 0: every invocation is throttled, so the notifications wait
        config = FunctionConfig(reserved_concurrency=0, timeout_ms=10000, env={"THUMBNAIL_BUCKET": thumbs})
        deploy_cached(host, "thumbnail", python_guests.thumbnail, config)
    server = ServeProcess(data, tmp_path / "serve.log")
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        trigger = {"type": "bucket", "bucket": uploads, "include_body": True, "events": ["s3:ObjectCreated:*"]}
        http.post("/functions/thumbnail/triggers", json=trigger).raise_for_status()
        http.put(f"/buckets/{uploads}").raise_for_status()
        http.put(f"/buckets/{thumbs}").raise_for_status()
        for index in range(20):
            http.put(f"/buckets/{uploads}/held-{index:02d}.pgm", content=image).raise_for_status()
        http.close()
        assert outbox_size(data) == 20
        server.kill()

        server = ServeProcess(data, tmp_path / "serve.log")
        http = httpx.Client(base_url=server.url, timeout=30)
        http.patch("/functions/thumbnail/config", json={"reserved_concurrency": 10}).raise_for_status()
        for index in range(20):  # and a kill while these are being delivered
            http.put(f"/buckets/{uploads}/live-{index:02d}.pgm", content=image).raise_for_status()
        http.close()
        server.kill()

        server = ServeProcess(data, tmp_path / "serve.log")
        http = httpx.Client(base_url=server.url, timeout=30)
        expected = [f"held-{i:02d}.pgm" for i in range(20)] + [f"live-{i:02d}.pgm" for i in range(20)]

        def derived() -> list[str]:
            return [o["key"] for o in http.get(f"/buckets/{thumbs}").json()["objects"]]

        wait_for(lambda: derived() == expected, 30, "every thumbnail")
        wait_for(lambda: outbox_size(data) == 0, 10, "an empty outbox")
        assert read_pgm(http.get(f"/buckets/{thumbs}/live-19.pgm").content)[:2] == (2, 2)
        http.close()
    finally:
        server.stop()
