"""``http`` triggers: functions on HTTP routes, with API Gateway's payload format 2.0.

One Host (data directory) for the module with the ``httpapi`` Python guest
compiled once (about 15 s) and served by uvicorn; each test deploys its own
function (quick: the code is compiled already), mounts it under a path prefix
of its own, and deletes the function at the end (which removes its routes).
Requests go through real HTTP, as users send them.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from wasmhost import FunctionConfig, Host
from wasmhost.errors import InvalidConfig, ResourceConflict
from wasmhost.server import create_app
from wasmhost.server.app import INVOKE_PREFIX
from wasmhost.triggers.http_routes import RESERVED_PREFIXES, HttpRoutes

from .conftest import ServerThread
from .triggers_support import ROOT, ServeProcess, wait_for

HTTPAPI = ROOT / "guests" / "python" / "examples" / "httpapi"


@pytest.fixture(scope="module")
def api_wasm() -> bytes:
    from wasmhost.build import build

    return build(HTTPAPI).path.read_bytes()


@pytest.fixture(scope="module")
def api_host(tmp_path_factory: pytest.TempPathFactory, api_wasm: bytes) -> Iterator[Host]:
    with Host(data_dir=tmp_path_factory.mktemp("http") / "data") as host:
        host.deploy("httpapi", api_wasm, FunctionConfig(timeout_ms=5000))  # compiles it once
        yield host


@pytest.fixture(scope="module")
def http_server(api_host: Host) -> Iterator[ServerThread]:
    with ServerThread(api_host) as running:
        yield running


@pytest.fixture
def client(http_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=http_server.url, timeout=30) as c:
        yield c


@pytest.fixture
def fn(api_host: Host, api_wasm: bytes) -> Iterator[str]:
    """A function running the ``httpapi`` guest; deleted (with its routes) at the end."""
    name = f"api-{uuid.uuid4().hex[:8]}"
    api_host.deploy(name, api_wasm, FunctionConfig(timeout_ms=5000))
    yield name
    api_host.delete(name)


@pytest.fixture
def prefix() -> str:
    """A path prefix no other test uses."""
    return f"/t{uuid.uuid4().hex[:10]}"


def add(client: httpx.Client, function: str, **fields: Any) -> dict[str, Any]:
    """``POST /functions/{function}/triggers`` an http trigger; the created trigger."""
    response = client.post(f"/functions/{function}/triggers", json={"type": "http", **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def request_id_of(response: httpx.Response) -> str:
    request_id = response.headers["x-wasmhost-request-id"]
    assert response.headers["apigw-requestid"] == request_id
    return request_id


# --- the event ------------------------------------------------------------------


def test_event_shape_field_by_field(client: httpx.Client, fn: str, prefix: str) -> None:
    trigger = add(client, fn, route=f"POST {prefix}/shop/{{category}}/items/{{item}}")
    before = time.time()
    response = client.post(
        f"{prefix}/shop/tea%20cups/items/42?q=a&q=b&name=%C3%A9t%C3%A9&flag",
        content=b'{"k": 1}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "session=abc; theme=dark"),
            ("User-Agent", "tester/1.0"),
        ],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    event = response.json()
    route_key = f"POST {prefix}/shop/{{category}}/items/{{item}}"
    raw_path = f"{prefix}/shop/tea%20cups/items/42"
    assert event["version"] == "2.0"
    assert event["routeKey"] == route_key
    assert event["rawPath"] == raw_path
    assert event["rawQueryString"] == "q=a&q=b&name=%C3%A9t%C3%A9&flag"
    assert event["cookies"] == ["session=abc", "theme=dark"]
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["x-multi"] == "one,two"  # repeated headers joined with commas
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "tester/1.0"
    assert headers["host"] == client.base_url.netloc.decode()
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(client.base_url.port)
    assert "cookie" not in headers  # cookies are in "cookies"
    assert event["queryStringParameters"] == {"q": "a,b", "name": "été", "flag": ""}
    assert event["pathParameters"] == {"category": "tea cups", "item": "42"}  # URL-decoded
    assert "stageVariables" not in event
    assert event["body"] == '{"k": 1}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "000000000000"
    assert context["apiId"] == trigger["id"]
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"
    assert context["http"] == {
        "method": "POST",
        "path": raw_path,
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tester/1.0",
    }
    assert context["requestId"] == request_id_of(response)
    assert context["routeKey"] == route_key
    assert context["stage"] == "$default"
    assert before * 1000 - 1 <= context["timeEpoch"] <= time.time() * 1000 + 1
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["timeEpoch"] / 1000))
    assert context["time"] == stamp
    assert set(context) == {
        "accountId",
        "apiId",
        "domainName",
        "domainPrefix",
        "http",
        "requestId",
        "routeKey",
        "stage",
        "time",
        "timeEpoch",
    }


def test_greedy_proxy_and_a_request_without_body(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, route=f"ANY {prefix}/files/{{path+}}")
    event = client.get(f"{prefix}/files/a/b%2Fc/d%20e.txt").json()
    assert event["routeKey"] == f"ANY {prefix}/files/{{path+}}"
    assert event["pathParameters"] == {"path": "a/b/c/d e.txt"}
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False
    for absent in ("body", "cookies", "queryStringParameters", "stageVariables"):
        assert absent not in event, absent
    assert client.delete(f"{prefix}/files/x").json()["requestContext"]["http"]["method"] == "DELETE"
    head = client.head(f"{prefix}/files/x")
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0
    # A greedy parameter takes one segment at least, as API Gateway's.
    assert client.get(f"{prefix}/files/").status_code == 404
    assert client.get(f"{prefix}/files").status_code == 404


@pytest.mark.parametrize(
    ("content_type", "body", "as_text"),
    [
        ("application/json", b'{"a": 1}', True),
        ("application/json; charset=utf-8", b'{"a": "\xc3\xa9"}', True),
        ("text/plain", "héllo".encode(), True),
        ("text/csv", b"a,b\n1,2\n", True),
        ("application/xml", b"<a/>", True),
        ("application/javascript", b"let a = 1", True),
        # As API Gateway HTTP APIs do: everything else is base64, form posts included.
        ("application/x-www-form-urlencoded", b"a=1&b=2", False),
        ("application/octet-stream", bytes(range(256)), False),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00", False),
        (None, b"no content type", False),
        ("text/plain", b"\xff\xfe not utf-8", False),
    ],
)
def test_the_body_is_text_or_base64_by_content_type(
    client: httpx.Client, fn: str, prefix: str, content_type: str | None, body: bytes, as_text: bool
) -> None:
    add(client, fn, route=f"PUT {prefix}/upload")
    headers = {"content-type": content_type} if content_type else {}
    event = client.put(f"{prefix}/upload", content=body, headers=headers).json()
    assert event["isBase64Encoded"] is (not as_text)
    assert event["body"] == (body.decode() if as_text else base64.b64encode(body).decode())


# --- the response -------------------------------------------------------------------


def test_a_full_response_maps_status_headers_and_cookies(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, route=f"GET {prefix}/custom")
    response = client.get(f"{prefix}/custom", params={"do": "custom", "status": "418"})
    assert response.status_code == 418
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_list("set-cookie") == ["session=abc; Path=/; HttpOnly", "theme=dark"]
    assert response.text == f"created {request_id_of(response)}"
    assert int(response.headers["content-length"]) == len(response.content)


def test_a_binary_body_round_trips(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, route=f"POST {prefix}/binary")
    data = bytes(range(256)) * 64
    response = client.post(f"{prefix}/binary?do=binary", content=data, headers={"content-type": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == data


def test_values_without_status_code_are_answered_200_json(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, routes=[f"GET {prefix}/text", "GET /hello/{name}"])
    text = client.get(f"{prefix}/text?do=text")
    assert (text.status_code, text.headers["content-type"], text.content) == (200, "application/json", b'"hello"')
    hello = client.get("/hello/Ada")  # the guest's own route: a plain object
    assert (hello.status_code, hello.headers["content-type"]) == (200, "application/json")
    assert hello.json() == {"message": "hello Ada"}


def test_failures_map_like_api_gateway(
    client: httpx.Client, fn: str, prefix: str, api_host: Host, api_wasm: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    add(client, fn, route=f"ANY {prefix}/fail")
    raised = client.get(f"{prefix}/fail?do=raise")
    assert (raised.status_code, raised.json()) == (502, {"message": "Internal Server Error"})
    request_id = request_id_of(raised)
    in_logs = lambda: [e for e in api_host.logs(fn, limit=100) if request_id in e["message"]]  # noqa: E731
    wait_for(in_logs, timeout_s=10, what="the failed invocation in the function's logs under the answer's request id")

    invalid = client.get(f"{prefix}/fail?do=invalid")
    assert (invalid.status_code, invalid.json()) == (502, {"message": "Internal Server Error"})
    logged = [r.getMessage() for r in caplog.records if request_id_of(invalid) in r.getMessage()]
    assert logged and "body must be a string, got dict" in logged[0], caplog.text

    too_big = client.post(f"{prefix}/fail", content=b"x" * (6 * 1024 * 1024 + 1))
    assert (too_big.status_code, too_big.json()) == (413, {"message": "Request Entity Too Large"})
    request_id_of(too_big)

    slow, throttled = f"{fn}-slow", f"{fn}-throttled"
    api_host.deploy(slow, api_wasm, FunctionConfig(timeout_ms=300))
    api_host.deploy(throttled, api_wasm, FunctionConfig(reserved_concurrency=0))
    try:
        add(client, slow, route=f"GET {prefix}/slow")
        add(client, throttled, route=f"GET {prefix}/throttled")
        started = time.monotonic()
        timed_out = client.get(f"{prefix}/slow?do=sleep&ms=2000")
        assert (timed_out.status_code, timed_out.json()) == (504, {"message": "Endpoint request timed out"})
        assert time.monotonic() - started < 1.9
        limited = client.get(f"{prefix}/throttled")
        assert (limited.status_code, limited.json()) == (429, {"message": "Too Many Requests"})
        request_id_of(limited)
    finally:
        api_host.delete(slow)
        api_host.delete(throttled)


def test_a_route_to_a_missing_alias_is_500_until_it_exists(
    client: httpx.Client, fn: str, prefix: str, api_host: Host
) -> None:
    add(client, fn, route=f"GET {prefix}/live", qualifier="live")
    missing = client.get(f"{prefix}/live")
    assert (missing.status_code, missing.json()) == (500, {"message": "Internal Server Error"})
    api_host.publish(fn)
    api_host.put_alias(fn, "live", "1")
    assert client.get(f"{prefix}/live").status_code == 200


# --- matching -------------------------------------------------------------------------


def test_the_most_specific_route_wins(
    client: httpx.Client, fn: str, prefix: str, api_host: Host, api_wasm: bytes
) -> None:
    other = f"{fn}-other"
    api_host.deploy(other, api_wasm)
    try:
        # Added first, so that order cannot be what makes the method routes win.
        add(client, other, route="$default")
        add(client, other, routes=[f"ANY {prefix}/p/exact", f"ANY {prefix}/p/{{id}}", f"ANY {prefix}/{{proxy+}}"])
        add(client, fn, routes=[f"GET {prefix}/p/exact", f"GET {prefix}/p/{{id}}", f"GET {prefix}/p/{{rest+}}"])
        word = prefix[1:]
        add(client, fn, route=f"ANY /{{first}}/{word}")
        cases = [
            ("GET", f"{prefix}/p/exact", f"GET {prefix}/p/exact", {}),
            ("POST", f"{prefix}/p/exact", f"ANY {prefix}/p/exact", {}),  # a method route over ANY
            ("GET", f"{prefix}/p/7", f"GET {prefix}/p/{{id}}", {"id": "7"}),  # exact over {param}
            ("PATCH", f"{prefix}/p/7", f"ANY {prefix}/p/{{id}}", {"id": "7"}),
            ("GET", f"{prefix}/p/7/8", f"GET {prefix}/p/{{rest+}}", {"rest": "7/8"}),  # {param} over greedy
            ("POST", f"{prefix}/p/7/8", f"ANY {prefix}/{{proxy+}}", {"proxy": "p/7/8"}),
            ("GET", f"/any/{word}", f"ANY /{{first}}/{word}", {"first": "any"}),
            ("GET", f"{prefix}/{word}", f"ANY {prefix}/{{proxy+}}", {"proxy": word}),  # a literal first segment wins
            ("GET", f"{prefix}x/anything", "$default", None),
            ("GET", "/", "$default", None),  # {proxy+} needs one segment
        ]
        for method, path, route_key, params in cases:
            event = client.request(method, path).json()
            assert (event["routeKey"], event.get("pathParameters")) == (route_key, params or None), (method, path)
        # Host paths are the host's, whatever the routes.
        assert "functions" in client.get("/functions").json()
        assert client.get("/healthz").status_code == 200
        assert client.post("/invoke/httpapi", json={"version": "x"}).json() == {"version": "x"}
    finally:
        api_host.delete(other)


def test_no_route_is_404(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, route=f"GET {prefix}/only-get")
    for method, path in [("GET", f"{prefix}/nothing"), ("POST", f"{prefix}/only-get"), ("GET", f"{prefix}/only-get/x")]:
        response = client.request(method, path)
        assert (response.status_code, response.json()) == (404, {"message": "Not Found"}), (method, path)
        request_id_of(response)
    # A host path that does not exist is the management API's 404, not a route's.
    assert client.get("/functions/x/nothing").json()["error"]["type"] == "NotFound"


def test_cors_preflight_and_response_headers(client: httpx.Client, fn: str, prefix: str) -> None:
    cors = {
        "allow_origins": ["https://app.example"],
        "allow_methods": ["GET", "PUT"],
        "allow_headers": ["Content-Type", "X-Api-Key"],
        "expose_headers": ["x-custom"],
        "max_age": 600,
        "allow_credentials": True,
    }
    add(client, fn, route=f"PUT {prefix}/things/{{id}}", cors=cors)
    add(client, fn, route=f"GET {prefix}/plain")  # another route set, without CORS
    preflight = {"origin": "https://app.example", "access-control-request-method": "PUT"}
    answer = client.options(f"{prefix}/things/1", headers={**preflight, "access-control-request-headers": "x-api-key"})
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.headers["access-control-allow-methods"] == "GET,PUT"
    assert answer.headers["access-control-allow-headers"] == "content-type,x-api-key"
    assert answer.headers["access-control-max-age"] == "600"
    assert answer.headers["access-control-allow-credentials"] == "true"
    request_id_of(answer)
    refused = client.options(f"{prefix}/things/1", headers={**preflight, "origin": "https://evil.example"})
    assert refused.status_code == 204
    assert not [h for h in refused.headers if h.startswith("access-control-")]
    # No CORS on that route set: OPTIONS is an ordinary request, and there is no OPTIONS route.
    assert (
        client.options(f"{prefix}/plain", headers={**preflight, "access-control-request-method": "GET"}).status_code
        == 404
    )

    actual = client.put(f"{prefix}/things/1?do=custom", headers={"origin": "https://app.example"})
    assert actual.status_code == 201
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert actual.headers["access-control-allow-credentials"] == "true"
    assert actual.headers["access-control-expose-headers"] == "x-custom"
    assert actual.headers["vary"] == "origin"
    other_origin = client.put(f"{prefix}/things/1", headers={"origin": "https://evil.example"})
    assert other_origin.status_code == 200 and "access-control-allow-origin" not in other_origin.headers
    assert "access-control-allow-origin" not in client.put(f"{prefix}/things/1").headers

    add(client, fn, route=f"GET {prefix}/open", cors={"allow_origins": ["*"], "allow_methods": ["*"]})
    opened = client.options(
        f"{prefix}/open", headers={"origin": "https://x.example", "access-control-request-method": "GET"}
    )
    assert (opened.headers["access-control-allow-origin"], opened.headers["access-control-allow-methods"]) == ("*", "*")
    assert (
        client.get(f"{prefix}/open", headers={"origin": "https://x.example"}).headers["access-control-allow-origin"]
        == "*"
    )


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({}, "give route"),
        ({"route": "GET /a", "routes": ["GET /b"]}, "one of them"),
        ({"route": 5}, "route 5"),
        ({"route": "FETCH /a"}, "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY"),
        ({"route": "GET a/b"}, "must start with '/'"),
        ({"route": "GET /a?x=1"}, "query"),
        ({"route": "GET /a//b"}, "empty segment"),
        ({"route": "GET /a/"}, "trailing"),
        ({"route": "GET /a/{p+}/b"}, "greedy parameter {p+} must be the last segment"),
        ({"route": "GET /a/{id}/{id}"}, "appears twice"),
        ({"route": "GET /a/file-{id}"}, "whole {name}"),
        ({"route": "GET /a/%20"}, "no %-escapes"),
        ({"routes": []}, "non-empty list"),
        ({"routes": ["GET /a", 3]}, "routes[1] 3"),
        ({"routes": ["GET /a/{x}", "get /a/{y}"]}, "the same route"),
        ({"route": "GET /a", "cors": ["*"]}, "cors must be an object"),
        ({"route": "GET /a", "cors": {"allow_origin": ["*"]}}, "unknown cors field(s) allow_origin"),
        ({"route": "GET /a", "cors": {}}, "cors.allow_origins is required"),
        ({"route": "GET /a", "cors": {"allow_origins": ["app.example"]}}, "cors.allow_origins: 'app.example'"),
        ({"route": "GET /a", "cors": {"allow_origins": ["*"], "allow_methods": ["FETCH"]}}, "cors.allow_methods"),
        ({"route": "GET /a", "cors": {"allow_origins": ["*"], "allow_headers": ["a b"]}}, "cors.allow_headers"),
        ({"route": "GET /a", "cors": {"allow_origins": ["*"], "max_age": 86401}}, "cors.max_age"),
        ({"route": "GET /a", "cors": {"allow_origins": ["*"], "allow_credentials": "yes"}}, "cors.allow_credentials"),
        ({"route": "GET /a", "cors": {"allow_origins": ["*"], "allow_credentials": True}}, "cannot be true"),
        ({"route": "GET /a", "path": "/a"}, "unknown field(s) path"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(
    api_host: Host, fn: str, fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidConfig) as refused:
        api_host.add_trigger(fn, {"type": "http", **fields})
    assert fragment in refused.value.message
    assert refused.value.message.startswith("http trigger: ")


def test_invalid_fields_are_400_over_http(client: httpx.Client, fn: str) -> None:
    response = client.post(f"/functions/{fn}/triggers", json={"type": "http", "route": "GET /a/{p+}/b"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "InvalidConfig"
    assert "route 'GET /a/{p+}/b'" in response.json()["error"]["message"]


def host_prefixes(host: Host) -> set[str]:
    """First path segments the server serves itself, read from the app (not a list kept by hand)."""
    app = create_app(host)
    prefixes = {INVOKE_PREFIX.strip("/")}
    for route in app.starlette.routes:
        path = getattr(route, "path", "")
        prefixes.add(path.lstrip("/").split("/", 1)[0])
    return prefixes


def test_routes_under_the_host_paths_are_refused(api_host: Host, fn: str) -> None:
    served = host_prefixes(api_host)
    assert {"invoke", "functions", "triggers", "healthz", "metrics", "dead-letters"} <= served
    assert served <= RESERVED_PREFIXES, f"add {sorted(served - RESERVED_PREFIXES)} to http_routes.RESERVED_PREFIXES"
    routes = HttpRoutes(api_host)
    for reserved in sorted(RESERVED_PREFIXES):
        for route in (f"GET /{reserved}", f"ANY /{reserved}/x/{{y+}}"):
            with pytest.raises(InvalidConfig, match=f"/{reserved} is one of the host's own paths"):
                api_host.add_trigger(fn, {"type": "http", "route": route})
        assert not routes.handles(f"/{reserved}") and not routes.handles(f"/{reserved}/a/b")
    assert routes.handles("/") and routes.handles("/invoker") and routes.handles("/api/functions")
    api_host.add_trigger(fn, {"type": "http", "route": "GET /functionsx/{a}"})  # a prefix of a word is not the word


def test_a_route_taken_by_another_function_is_409(
    client: httpx.Client, fn: str, prefix: str, api_host: Host, api_wasm: bytes
) -> None:
    other = f"{fn}-other"
    api_host.deploy(other, api_wasm)
    try:
        add(client, fn, routes=[f"GET {prefix}/c/{{id}}", "$default"])
        taken = client.post(f"/functions/{other}/triggers", json={"type": "http", "route": f"get {prefix}/c/{{other}}"})
        assert taken.status_code == 409
        error = taken.json()["error"]
        assert error["type"] == "ResourceConflict"
        assert f"GET {prefix}/c/{{id}}" in error["message"] and fn in error["message"]
        with pytest.raises(ResourceConflict, match=r"\$default"):
            api_host.add_trigger(other, {"type": "http", "routes": [f"GET {prefix}/free", "$default"]})
        with pytest.raises(ResourceConflict):  # the same function too
            api_host.add_trigger(fn, {"type": "http", "route": f"GET {prefix}/c/{{x}}"})
        add(client, other, route=f"ANY {prefix}/c/{{id}}")  # another method is another route
        add(client, other, route=f"GET {prefix}/c/{{id}}/more")
        assert len(api_host.triggers(other)) == 2
    finally:
        api_host.delete(other)


def test_deleting_the_trigger_or_the_function_removes_its_routes(
    client: httpx.Client, prefix: str, api_host: Host, api_wasm: bytes
) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    api_host.deploy(name, api_wasm)
    first = add(client, name, route=f"GET {prefix}/one")
    add(client, name, route=f"GET {prefix}/two")
    assert client.get(f"{prefix}/one").status_code == 200
    assert client.delete(f"/functions/{name}/triggers/{first['id']}").status_code == 204
    assert client.get(f"{prefix}/one").status_code == 404
    assert client.get(f"{prefix}/two").status_code == 200
    assert client.delete(f"/functions/{name}").status_code == 204
    assert client.get(f"{prefix}/two").status_code == 404
    # ...and the route is free again.
    other = f"api-{uuid.uuid4().hex[:8]}"
    api_host.deploy(other, api_wasm)
    try:
        add(client, other, route=f"GET {prefix}/one")
        assert client.get(f"{prefix}/one").status_code == 200
    finally:
        api_host.delete(other)


def test_a_disabled_trigger_does_not_route(client: httpx.Client, fn: str, prefix: str) -> None:
    add(client, fn, route=f"GET {prefix}/off", enabled=False)
    assert client.get(f"{prefix}/off").status_code == 404


# --- several processes -----------------------------------------------------------------------


def test_a_route_added_by_another_host_is_served_at_once_and_publicly(api_host: Host, fn: str, prefix: str) -> None:
    """Host B on the same data directory, served with an admin token; Host A adds and removes
    routes: B routes (or stops routing) from the very next request, without the token."""
    with Host(data_dir=api_host.config.data_dir) as other, ServerThread(other, admin_token="s3cret") as served:
        with httpx.Client(base_url=served.url, timeout=30) as b:
            assert b.get("/functions").status_code == 401  # the management API wants the token
            for round_ in range(5):
                trigger = api_host.add_trigger(fn, {"type": "http", "route": f"GET {prefix}/r{round_}/{{id}}"})
                response = b.get(f"{prefix}/r{round_}/x")
                assert response.status_code == 200, (round_, response.text)
                assert response.json()["requestContext"]["apiId"] == trigger.id
                api_host.delete_trigger(fn, trigger.id)
                assert b.get(f"{prefix}/r{round_}/x").status_code == 404


@pytest.mark.slow
def test_a_route_added_with_the_cli_reaches_a_serve_process(
    api_host: Host, fn: str, prefix: str, tmp_path: Path
) -> None:
    data_dir = str(api_host.config.data_dir)
    serve = ServeProcess(Path(data_dir), tmp_path / "serve.log")
    try:
        route = f"ANY {prefix}/cli/{{proxy+}}"
        command = [
            sys.executable,
            "-m",
            "wasmhost",
            "--data-dir",
            data_dir,
            "trigger",
            "add",
            fn,
            "http",
            f"route={route}",
        ]
        added = subprocess.run(command, capture_output=True, text=True, check=True)
        trigger = orjson.loads(added.stdout)
        response = httpx.post(f"{serve.url}{prefix}/cli/a/b", content=b"hi", headers={"content-type": "text/plain"})
        assert response.status_code == 200, response.text
        event = response.json()
        assert (event["routeKey"], event["pathParameters"], event["body"]) == (route, {"proxy": "a/b"}, "hi")
        listed = subprocess.run(
            [sys.executable, "-m", "wasmhost", "--data-dir", data_dir, "trigger", "list", fn],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(rf"{trigger['id']}\s+{fn}\s+http\s+\S+\s+{re.escape(route)}", listed), listed
        deleted = httpx.delete(f"{serve.url}/functions/{fn}/triggers/{trigger['id']}")
        assert deleted.status_code == 204
        assert httpx.get(f"{serve.url}{prefix}/cli/a/b").status_code == 404
    finally:
        serve.stop()
