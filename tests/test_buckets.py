"""The embedded bucket store: its semantics (wasmhost.buckets), its HTTP API through a
real server, and the ``wasmhost bucket`` commands as users run them."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from wasmhost import Host, HostConfig
from wasmhost.buckets import BucketStore, check_bucket_name
from wasmhost.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    InvalidBucketName,
    InvalidObjectKey,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
)
from wasmhost.triggers import TriggerStore

from .conftest import ServerThread


@pytest.fixture
def store(tmp_path):
    triggers = TriggerStore(tmp_path / "triggers.db")
    with BucketStore(tmp_path / "buckets", triggers, max_object_bytes=4 * 1024 * 1024) as buckets:
        yield buckets
    triggers.close()


def blobs(store: BucketStore) -> list[Path]:
    return [path for path in store.objects_dir.rglob("*") if path.is_file()]


# --- names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("My-Bucket", "lower-case letters"),
        ("under_score", "lower-case letters"),
        ("-abc", "begin and end"),
        ("abc.", "begin and end"),
        ("a..b", "two dots"),
        ("192.168.1.1", "IP address"),
        ("xn--abc", "xn--"),
        ("data-s3alias", "-s3alias"),
    ],
)
def test_bucket_names_follow_s3s_rules(name, problem):
    with pytest.raises(InvalidBucketName, match=problem):
        check_bucket_name(name)


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my.bucket-1", "0-photos", "v1.2.3"])
def test_valid_bucket_names(name):
    assert check_bucket_name(name) == name


# --- buckets -------------------------------------------------------------------


def test_buckets_are_created_listed_and_deleted_only_when_empty(store):
    store.create_bucket("photos")
    store.create_bucket("logs")
    with pytest.raises(BucketAlreadyExists):
        store.create_bucket("photos")
    assert [b.name for b in store.list_buckets()] == ["logs", "photos"]
    store.put_object("photos", "a.txt", b"x")
    with pytest.raises(BucketNotEmpty):
        store.delete_bucket("photos")
    store.delete_object("photos", "a.txt")
    store.delete_bucket("photos")
    with pytest.raises(NoSuchBucket):
        store.delete_bucket("photos")
    with pytest.raises(NoSuchBucket):
        store.put_object("photos", "a.txt", b"x")
    assert [b.name for b in store.list_buckets()] == ["logs"]


# --- objects -------------------------------------------------------------------


def test_put_get_head_delete(store):
    store.create_bucket("docs")
    body = b"hello, world\n" * 100
    info = store.put_object(
        "docs", "notes/today.txt", body, content_type="text/plain", metadata={"Author": "ada", "x": "1"}
    )
    assert info.size == len(body)
    assert info.etag == hashlib.md5(body).hexdigest()
    assert info.metadata == {"author": "ada", "x": "1"}
    head = store.head_object("docs", "notes/today.txt")
    assert head == info
    got, data = store.get_object("docs", "notes/today.txt")
    assert data == body and got.content_type == "text/plain"
    assert store.put_object("docs", "raw", b"\x00\xff").content_type == "application/octet-stream"

    # an overwrite replaces the bytes and frees the old file
    assert len(blobs(store)) == 2
    store.put_object("docs", "notes/today.txt", b"v2")
    assert store.get_object("docs", "notes/today.txt")[1] == b"v2"
    assert store.head_object("docs", "notes/today.txt").metadata == {}
    assert len(blobs(store)) == 2

    assert store.delete_object("docs", "notes/today.txt") is True
    assert store.delete_object("docs", "notes/today.txt") is False  # as S3: not an error
    with pytest.raises(NoSuchKey):
        store.get_object("docs", "notes/today.txt")
    with pytest.raises(NoSuchKey):
        store.head_object("docs", "notes/today.txt")
    with pytest.raises(NoSuchBucket):
        store.get_object("nobucket", "notes/today.txt")
    assert len(blobs(store)) == 1


def test_an_open_object_keeps_its_bytes_when_overwritten(store):
    store.create_bucket("docs")
    store.put_object("docs", "k", b"first")
    info, handle = store.open_object("docs", "k")
    store.put_object("docs", "k", b"second")
    with handle:
        assert handle.read() == b"first"
    assert store.get_object("docs", "k")[1] == b"second"


@pytest.mark.parametrize(
    "key", ["a/b/c.txt", "with space and +plus", "ünïcödé/日本語.png", "/leading//double/", "%2F?#&=", "k" * 1024]
)
def test_keys_may_hold_slashes_and_any_utf8(store, key):
    store.create_bucket("keys")
    store.put_object("keys", key, key.encode())
    assert store.get_object("keys", key)[1] == key.encode()
    assert [o.key for o in store.list_objects("keys").objects] == [key]


@pytest.mark.parametrize(
    ("key", "problem"), [("", "non-empty"), ("é" * 513, "1026 bytes"), ("a\x00b", "NUL"), (None, "non-empty")]
)
def test_bad_keys_are_refused(store, key, problem):
    store.create_bucket("keys")
    with pytest.raises(InvalidObjectKey, match=problem):
        store.put_object("keys", key, b"x")


def test_listing_is_in_utf8_order_with_prefix_and_pages(store):
    store.create_bucket("list")
    keys = ["a", "a/1", "a/2", "a/3/x", "ab", "b", "z", "é", "日", "\U0001f600", "a\U0010ffff", "a\U0010ffff/z"]
    for key in reversed(keys):
        store.put_object("list", key, b".")
    expected = sorted(keys, key=lambda k: k.encode())
    assert [o.key for o in store.list_objects("list").objects] == expected
    assert [o.key for o in store.list_objects("list", prefix="a/").objects] == ["a/1", "a/2", "a/3/x"]
    assert [o.key for o in store.list_objects("list", prefix="a\U0010ffff").objects] == ["a\U0010ffff", "a\U0010ffff/z"]
    assert [o.key for o in store.list_objects("list", prefix="é").objects] == ["é"]
    assert store.list_objects("list", prefix="nothing").objects == []

    pages, start_after = [], ""
    while True:
        page = store.list_objects("list", start_after=start_after, max_keys=5)
        pages.append([o.key for o in page.objects])
        if not page.is_truncated:
            assert page.next_start_after is None
            break
        start_after = page.next_start_after
        assert start_after == pages[-1][-1]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sum(pages, []) == expected
    page = store.list_objects("list", prefix="a", start_after="a/2", max_keys=2)
    assert [o.key for o in page.objects] == ["a/3/x", "ab"] and page.is_truncated
    for bad in (0, 1001, "10", True):
        with pytest.raises(InvalidRequest, match="max_keys"):
            store.list_objects("list", max_keys=bad)
    with pytest.raises(NoSuchBucket):
        store.list_objects("missing")


def test_objects_over_the_limit_are_refused_and_leave_nothing(tmp_path):
    triggers = TriggerStore(tmp_path / "triggers.db")
    with BucketStore(tmp_path / "buckets", triggers, max_object_bytes=10) as store:
        store.create_bucket("small")
        assert store.put_object("small", "ten", b"0123456789").size == 10
        with pytest.raises(EntityTooLarge, match="limit of 10 bytes"):
            store.put_object("small", "eleven", iter([b"012345", b"67890"]))
        with pytest.raises(NoSuchKey):
            store.head_object("small", "eleven")
        assert list(store.tmp_dir.iterdir()) == []
        assert len(blobs(store)) == 1
    triggers.close()


def test_big_bodies_are_streamed_from_files(store, tmp_path):
    store.create_bucket("big")
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put_object("big", "blob.bin", io.BytesIO(data))
    assert info.etag == hashlib.md5(data).hexdigest() and info.size == len(data)
    assert store.get_object("big", "blob.bin")[1] == data


def test_metadata_and_content_type_are_checked(store):
    store.create_bucket("meta")
    with pytest.raises(InvalidRequest, match="US-ASCII"):
        store.put_object("meta", "k", b"", metadata={"name": "café"})
    with pytest.raises(InvalidRequest, match="header name"):
        store.put_object("meta", "k", b"", metadata={"bad name": "v"})
    with pytest.raises(InvalidRequest, match="limit is 2048"):
        store.put_object("meta", "k", b"", metadata={"big": "x" * 2100})
    with pytest.raises(InvalidRequest, match="content type"):
        store.put_object("meta", "k", b"", content_type="text/plain\r\nx: y")
    with pytest.raises(NoSuchKey):
        store.head_object("meta", "k")


def test_the_store_is_durable_and_shared(tmp_path):
    triggers = TriggerStore(tmp_path / "triggers.db")
    first = BucketStore(tmp_path / "buckets", triggers)
    second = BucketStore(tmp_path / "buckets", triggers)  # another process's connection
    first.create_bucket("shared")
    first.put_object("shared", "k", b"from the first")
    assert second.get_object("shared", "k")[1] == b"from the first"
    second.delete_object("shared", "k")
    with pytest.raises(NoSuchKey):
        first.get_object("shared", "k")
    first.put_object("shared", "kept", b"still here")
    first.close()
    first.close()  # idempotent
    second.close()
    with BucketStore(tmp_path / "buckets", triggers) as reopened:
        assert reopened.get_object("shared", "kept")[1] == b"still here"
    triggers.close()


def test_files_left_by_a_crash_are_swept(store):
    store.create_bucket("sweep")
    store.put_object("sweep", "kept", b"kept")
    leftover = store.tmp_dir / "dead.part"
    leftover.write_bytes(b"half an object")
    orphan = store.objects_dir / "ab" / ("ab" + "0" * 30)  # renamed into place, never committed
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"never indexed")
    assert store.sweep(min_age_s=3600, blobs=True) == 0
    for path in [leftover, orphan, *blobs(store)]:
        os.utime(path, (1, 1))
    assert store.sweep(min_age_s=3600) == 1 and not leftover.exists() and orphan.exists()
    assert store.sweep(min_age_s=3600, blobs=True) == 1 and not orphan.exists()
    assert store.get_object("sweep", "kept")[1] == b"kept"


# --- HTTP ----------------------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    config = HostConfig(data_dir=str(tmp_path / "data"), max_object_bytes=64 * 1024 * 1024)
    with Host(config=config) as host, ServerThread(host, admin_token="s3cret") as server:
        with httpx.Client(base_url=server.url, headers={"authorization": "Bearer s3cret"}, timeout=30) as client:
            yield client


def error_type(response: httpx.Response) -> str:
    return response.json()["error"]["type"]


def test_http_buckets(api):
    created = api.put("/buckets/photos")
    assert created.status_code == 201 and created.json()["name"] == "photos"
    assert api.put("/buckets/photos").status_code == 409
    assert error_type(api.put("/buckets/Bad_Name")) == "InvalidBucketName"
    assert "lower-case" in api.put("/buckets/Bad_Name").json()["error"]["message"]
    api.put("/buckets/logs")
    assert [b["name"] for b in api.get("/buckets").json()["buckets"]] == ["logs", "photos"]
    api.put("/buckets/photos/cat.jpg", content=b"meow")
    refused = api.delete("/buckets/photos")
    assert refused.status_code == 409 and error_type(refused) == "BucketNotEmpty"
    missing = api.delete("/buckets/nothere")
    assert missing.status_code == 404 and error_type(missing) == "NoSuchBucket"
    assert api.delete("/buckets/logs").status_code == 204
    assert [b["name"] for b in api.get("/buckets").json()["buckets"]] == ["photos"]


def test_http_objects(api):
    api.put("/buckets/docs")
    body = b"%PDF-1.4 not really" * 1000
    put = api.put(
        "/buckets/docs/reports/2024/q1.pdf",
        content=body,
        headers={"content-type": "application/pdf", "x-amz-meta-author": "ada", "x-amz-meta-Team": "core"},
    )
    assert put.status_code == 200, put.text
    etag = hashlib.md5(body).hexdigest()
    assert put.headers["etag"] == f'"{etag}"' and len(put.headers["x-amz-request-id"]) == 16
    assert put.json()["size"] == len(body) and put.json()["etag"] == etag

    got = api.get("/buckets/docs/reports/2024/q1.pdf")
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == str(len(body))
    assert got.headers["etag"] == f'"{etag}"'
    assert got.headers["last-modified"].endswith(" GMT")
    assert got.headers["x-amz-meta-author"] == "ada" and got.headers["x-amz-meta-team"] == "core"

    head = api.head("/buckets/docs/reports/2024/q1.pdf")
    assert head.status_code == 200 and head.content == b""
    assert {k: head.headers[k] for k in ("content-length", "etag", "content-type", "x-amz-meta-author")} == {
        "content-length": str(len(body)),
        "etag": f'"{etag}"',
        "content-type": "application/pdf",
        "x-amz-meta-author": "ada",
    }
    assert api.get("/buckets/docs/reports/2024/q1.pdf", headers={"if-none-match": f'"{etag}"'}).status_code == 304

    assert api.delete("/buckets/docs/reports/2024/q1.pdf").status_code == 204
    gone = api.get("/buckets/docs/reports/2024/q1.pdf")
    assert gone.status_code == 404 and error_type(gone) == "NoSuchKey"
    head = api.head("/buckets/docs/reports/2024/q1.pdf")
    assert head.status_code == 404 and head.headers["x-wasmhost-error-type"] == "NoSuchKey"
    assert api.delete("/buckets/docs/reports/2024/q1.pdf").status_code == 204
    nobucket = api.get("/buckets/nobucket/k")
    assert nobucket.status_code == 404 and error_type(nobucket) == "NoSuchBucket"
    assert error_type(api.put("/buckets/nobucket/k", content=b"x")) == "NoSuchBucket"


@pytest.mark.parametrize("key", ["with space+plus.txt", "ünï/日本語.png", "a%2Fb?c#d&e=f", "dots/../and/./x", "a//b"])
def test_http_keys_are_read_percent_decoded_from_the_raw_path(api, key):
    api.put("/buckets/keys")
    path = f"/buckets/keys/{quote(key, safe='')}"
    assert api.put(path, content=key.encode()).status_code == 200
    assert api.get(path).content == key.encode()
    assert [o["key"] for o in api.get("/buckets/keys").json()["objects"]] == [key]


def test_http_bad_keys(api):
    api.put("/buckets/keys")
    too_long = api.put("/buckets/keys/" + "k" * 1025, content=b"x")
    assert too_long.status_code == 400 and error_type(too_long) == "InvalidObjectKey"
    assert "1025 bytes" in too_long.json()["error"]["message"]
    not_utf8 = api.put("/buckets/keys/%FF%FE", content=b"x")
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["error"]["message"]
    assert error_type(api.put("/buckets/keys/", content=b"x")) == "InvalidObjectKey"


def test_http_listing(api):
    api.put("/buckets/list")
    for index in range(7):
        api.put(f"/buckets/list/logs/{index}.txt", content=b"x" * index, headers={"content-type": "text/plain"})
    api.put("/buckets/list/other", content=b"")
    first = api.get("/buckets/list", params={"prefix": "logs/", "max_keys": 3}).json()
    assert [o["key"] for o in first["objects"]] == ["logs/0.txt", "logs/1.txt", "logs/2.txt"]
    assert first["is_truncated"] is True and first["next_start_after"] == "logs/2.txt" and first["key_count"] == 3
    entry = first["objects"][1]
    assert entry["size"] == 1 and entry["etag"] == hashlib.md5(b"x").hexdigest()
    assert entry["content_type"] == "text/plain" and entry["last_modified"].endswith("Z")
    rest = api.get(
        "/buckets/list", params={"prefix": "logs/", "start_after": first["next_start_after"], "max_keys": 10}
    ).json()
    assert [o["key"] for o in rest["objects"]] == [f"logs/{i}.txt" for i in range(3, 7)]
    assert rest["is_truncated"] is False and rest["next_start_after"] is None
    assert len(api.get("/buckets/list").json()["objects"]) == 8
    assert error_type(api.get("/buckets/list", params={"max_keys": "lots"})) == "InvalidRequest"
    assert error_type(api.get("/buckets/list", params={"max_keys": 5000})) == "InvalidRequest"
    assert "delimiter" in api.get("/buckets/list", params={"delimiter": "/"}).json()["error"]["message"]
    assert error_type(api.get("/buckets/nolist")) == "NoSuchBucket"


def test_http_object_size_limit(tmp_path):
    config = HostConfig(data_dir=str(tmp_path / "data"), max_object_bytes=1000)
    with Host(config=config) as host, ServerThread(host) as server, httpx.Client(base_url=server.url) as client:
        client.put("/buckets/small")
        assert client.put("/buckets/small/ok", content=b"x" * 1000).status_code == 200
        declared = client.put("/buckets/small/big", content=b"x" * 1001)
        assert declared.status_code == 413 and error_type(declared) == "EntityTooLarge"
        streamed = client.put("/buckets/small/big", content=iter([b"x" * 600, b"x" * 600]))  # chunked: no length
        assert streamed.status_code == 413 and "limit of 1000 bytes" in streamed.json()["error"]["message"]
        assert client.get("/buckets/small/big").status_code == 404
        assert list((tmp_path / "data" / "buckets" / "tmp").iterdir()) == []


def test_http_big_objects_stream_both_ways(api, tmp_path):
    from wasmhost.client import Client

    data = os.urandom(24 * 1024 * 1024)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    client = Client(str(api.base_url), token="s3cret")
    client.create_bucket("big")
    with source.open("rb") as handle:
        record = client.put_object("big", "big.bin", handle, "application/x-test", {"kind": "random"})
    assert record["etag"] == hashlib.md5(data).hexdigest()
    with (tmp_path / "copy.bin").open("wb") as out:
        headers, nothing = client.get_object("big", "big.bin", out)
    assert nothing is None and headers["x-amz-meta-kind"] == "random"
    assert (tmp_path / "copy.bin").read_bytes() == data
    client.close()


def test_http_needs_the_admin_token(tmp_path):
    with Host(data_dir=tmp_path / "data") as host, ServerThread(host, admin_token="s3cret") as server:
        for method, path in (("GET", "/buckets"), ("PUT", "/buckets/x1y"), ("GET", "/buckets/x1y/k")):
            response = httpx.request(method, server.url + path)
            assert response.status_code == 401, (method, path)
        authorized = httpx.put(server.url + "/buckets/x1y", headers={"authorization": "Bearer s3cret"})
        assert authorized.status_code == 201


# --- the CLI ---------------------------------------------------------------------


def wasmhost(*args: str, data_dir: Path | None = None, stdin: bytes | None = None, check: bool = True):
    command = [sys.executable, "-m", "wasmhost"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMHOST_")}
    result = subprocess.run(command + list(args), input=stdin, capture_output=True, env=env, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr.decode()}")
    return result


@pytest.mark.slow
def test_cli_on_the_data_directory(tmp_path):
    data = tmp_path / "data"
    source = tmp_path / "photo.png"
    source.write_bytes(b"\x89PNG fake")
    wasmhost("bucket", "create", "pics", data_dir=data)
    put = wasmhost("bucket", "put", "pics", "2024/photo one.png", str(source), "--meta", "by=ada", data_dir=data)
    assert b'"content_type": "image/png"' in put.stdout
    wasmhost("bucket", "put", "pics", "notes.txt", "-", data_dir=data, stdin=b"from stdin")
    listing = wasmhost("bucket", "ls", "pics", data_dir=data).stdout.decode().splitlines()
    assert [line.split(None, 2)[2] for line in listing] == ["2024/photo one.png", "notes.txt"]
    assert wasmhost("bucket", "ls", "pics", "--prefix", "2024/", "--json", data_dir=data).stdout.count(b'"key"') == 1
    assert wasmhost("bucket", "ls", data_dir=data).stdout.decode().split()[-1] == "pics"
    assert wasmhost("bucket", "get", "pics", "notes.txt", data_dir=data).stdout == b"from stdin"
    wasmhost("bucket", "get", "pics", "2024/photo one.png", "-o", str(tmp_path / "out.png"), data_dir=data)
    assert (tmp_path / "out.png").read_bytes() == b"\x89PNG fake"
    # what the CLI wrote is in the store every process shares
    with Host(data_dir=data) as host:
        assert host.buckets.head_object("pics", "2024/photo one.png").metadata == {"by": "ada"}
    refused = wasmhost("bucket", "rm", "pics", data_dir=data, check=False)
    assert refused.returncode == 1 and b"BucketNotEmpty" in refused.stderr
    missing = wasmhost("bucket", "get", "pics", "nope", "-o", str(tmp_path / "nope"), data_dir=data, check=False)
    assert missing.returncode == 1 and b"NoSuchKey" in missing.stderr and not (tmp_path / "nope").exists()
    wasmhost("bucket", "rm", "pics", "notes.txt", data_dir=data)
    wasmhost("bucket", "rm", "pics", "2024/photo one.png", data_dir=data)
    wasmhost("bucket", "rm", "pics", data_dir=data)
    assert wasmhost("bucket", "ls", data_dir=data).stdout == b""
    bad = wasmhost("bucket", "create", "No", data_dir=data, check=False)
    assert bad.returncode == 1 and b"InvalidBucketName" in bad.stderr


@pytest.mark.slow
def test_cli_with_url(tmp_path):
    with Host(data_dir=tmp_path / "data") as host, ServerThread(host) as server:
        url = ("--url", server.url)
        wasmhost(*url, "bucket", "create", "remote")
        wasmhost(*url, "bucket", "put", "remote", "a b/ü.txt", "-", stdin=b"over http")
        assert host.buckets.get_object("remote", "a b/ü.txt")[1] == b"over http"
        assert "a b/ü.txt" in wasmhost(*url, "bucket", "ls", "remote").stdout.decode()
        assert wasmhost(*url, "bucket", "get", "remote", "a b/ü.txt").stdout == b"over http"
        missing = wasmhost(*url, "bucket", "get", "remote", "zzz", check=False)
        assert missing.returncode == 1 and b"NoSuchKey" in missing.stderr
        wasmhost(*url, "bucket", "rm", "remote", "a b/ü.txt")
        wasmhost(*url, "bucket", "rm", "remote")
        assert host.buckets.list_buckets() == []
