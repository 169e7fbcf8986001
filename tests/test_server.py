"""The HTTP API through real uvicorn: invoke, every error status, management, auth."""

from __future__ import annotations

import asyncio
import time

import httpx
import msgpack
import pytest

from wasmhost import FunctionConfig

from .conftest import ServerThread


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["type"] == error_type
    assert error["message"]
    assert error["request_id"]
    assert response.headers["x-wasmhost-request-id"] == error["request_id"]
    return error


def test_invoke_json(client):
    response = client.post("/invoke/hello", json={"name": "world"})
    assert response.status_code == 200
    assert response.json() == {"statusCode": 200, "body": "Hello from Serverless!"}
    assert response.headers["content-type"] == "application/json"
    assert len(response.headers["x-wasmhost-request-id"]) == 36
    assert float(response.headers["x-wasmhost-duration-ms"]) > 0
    assert int(response.headers["x-wasmhost-billed-ms"]) >= 1


def test_invoke_without_body_sends_null(client):
    assert client.post("/invoke/echo").json() is None


def test_invoke_msgpack_in_and_out(client):
    event = {"bin": b"\x00\x01", "n": -5, "f": 1.5}
    response = client.post(
        "/invoke/echo", content=msgpack.packb(event), headers={"content-type": "application/msgpack"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(response.content) == event


def test_unknown_function_is_404(client):
    assert_error(client.post("/invoke/nope", json={}), 404, "FunctionNotFound")


def test_malformed_bodies_are_400(client):
    error = assert_error(client.post("/invoke/echo", content=b"{not json"), 400, "InvalidRequest")
    assert "not valid JSON" in error["message"]
    response = client.post("/invoke/echo", content=b"\xc1", headers={"content-type": "application/msgpack"})
    assert response.status_code == 400
    assert msgpack.unpackb(response.content)["error"]["type"] == "InvalidRequest"


def test_body_over_6_mib_is_413(client):
    big = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    error = assert_error(client.post("/invoke/echo", content=big), 413, "PayloadTooLarge")
    assert "6291456" in error["message"]

    def chunks():  # no content-length: the limit holds while streaming
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    assert_error(client.post("/invoke/echo", content=chunks()), 413, "PayloadTooLarge")


def test_function_error_is_502_with_its_type(client):
    error = assert_error(client.post("/invoke/error", json={}), 502, "FunctionError")
    assert error["error_type"] == "ValidationError"
    assert error["message"] == "name is required"


def test_trap_is_502(client):
    error = assert_error(client.post("/invoke/trap", json={}), 502, "Trap")
    assert "unreachable" in error["message"]


def test_out_of_memory_is_502(client):
    assert_error(client.post("/invoke/hog", json={}), 502, "OutOfMemory")


def test_timeout_is_504_and_carries_metering_headers(client):
    response = client.post("/invoke/spin", json={})
    error = assert_error(response, 504, "Timeout")
    assert "200 ms" in error["message"]
    assert float(response.headers["x-wasmhost-duration-ms"]) >= 200


def test_get_on_invoke_is_405(client):
    response = client.get("/invoke/echo")
    assert_error(response, 405, "MethodNotAllowed")
    assert response.headers["allow"] == "POST"


def test_reserved_concurrency_answers_429_with_retry_after(host, guest, server):
    host.deploy("slow", guest("sleep_ms"), FunctionConfig(timeout_ms=2000, reserved_concurrency=1))

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as ac:
            first = asyncio.create_task(ac.post("/invoke/slow", json={"ms": 600}))
            await asyncio.sleep(0.2)
            second = await ac.post("/invoke/slow", json={"ms": 1})
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    error = assert_error(second, 429, "Throttled")
    assert "reserved concurrency of 1" in error["message"]
    assert second.headers["retry-after"] == "1"


def test_spinning_guests_do_not_delay_other_requests(host, guest, server):
    host.deploy("spin1s", guest("spin"), FunctionConfig(timeout_ms=1000))

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as ac:
            spinners = [asyncio.create_task(ac.post("/invoke/spin1s", json={})) for _ in range(2)]
            await asyncio.sleep(0.1)

            async def timed_echo(i: int) -> float:
                started = time.monotonic()
                response = await ac.post("/invoke/echo", json={"i": i})
                assert response.json() == {"i": i}
                return time.monotonic() - started

            echo_times = await asyncio.gather(*(timed_echo(i) for i in range(50)))
            spin_results = await asyncio.gather(*spinners)
            return echo_times, spin_results

    echo_times, spin_results = asyncio.run(scenario())
    assert all(r.status_code == 504 for r in spin_results)
    # The spinners run for a whole second; the echoes must not wait for them.
    assert max(echo_times) < 0.5, max(echo_times)


# --- management ------------------------------------------------------------


def test_deploy_get_update_list_delete(client, guest):
    response = client.put(
        "/functions/greeter",
        content=guest("hello"),
        params=[("memory_mb", "32"), ("timeout_ms", "500"), ("env", "STAGE=dev"), ("on_failure", "queue:dlq")],
    )
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["name"] == "greeter"
    assert record["config"] == {
        "memory_mb": 32,
        "timeout_ms": 500,
        "fuel": None,
        "env": {"STAGE": "dev"},
        "secrets": {},
        "reserved_concurrency": None,
        "max_retry_attempts": 2,
        "max_event_age_s": 21600,
        "on_success": None,
        "on_failure": "queue:dlq",
    }
    assert record["revision"] == 1 and len(record["digest"]) == 64

    again = client.put("/functions/greeter", content=guest("echo"))
    assert again.status_code == 200 and again.json()["revision"] == 2
    assert client.post("/invoke/greeter", json={"x": 1}).json() == {"x": 1}

    patched = client.patch("/functions/greeter/config", json={"timeout_ms": 900, "fuel": 1000000})
    assert patched.status_code == 200
    assert patched.json()["config"]["timeout_ms"] == 900
    assert client.get("/functions/greeter").json()["config"]["fuel"] == 1000000

    names = [f["name"] for f in client.get("/functions").json()["functions"]]
    assert "greeter" in names and "echo" in names

    assert client.delete("/functions/greeter").status_code == 204
    assert_error(client.get("/functions/greeter"), 404, "FunctionNotFound")
    assert_error(client.post("/invoke/greeter", json={}), 404, "FunctionNotFound")
    assert_error(client.delete("/functions/greeter"), 404, "FunctionNotFound")


def test_deploy_accepts_wat(client):
    wat = '(module (memory (export "memory") 1) (data (i32.const 16) "\\81\\a2ok\\a2hi")'
    wat += ' (func (export "wasmhost_alloc") (param i32) (result i32) i32.const 1024)'
    wat += ' (func (export "wasmhost_handle") (param i32 i32) (result i64) i64.const 68719476743))'
    assert client.put("/functions/wat", content=wat).status_code == 201
    assert client.post("/invoke/wat").json() == "hi"


@pytest.mark.parametrize(
    ("path", "body", "params", "error_type", "fragment"),
    [
        ("/functions/bad", b"hello world", {}, "InvalidModule", "not WebAssembly"),
        ("/functions/bad", b"\0asm\x01\x00\x00\x00\x05", {}, "InvalidModule", "failed validation"),
        ("/functions/bad%20name", b"\0asm\x01\x00\x00\x00", {}, "InvalidName", "bad name"),
        ("/functions/ok", b"", {"memory_mb": "0"}, "InvalidConfig", "memory_mb"),
        ("/functions/ok", b"", {"memory_mb": "lots"}, "InvalidConfig", "memory_mb"),
        ("/functions/ok", b"", {"env": "NOEQUALS"}, "InvalidConfig", "NAME=value"),
        ("/functions/ok", b"", {"colour": "blue"}, "InvalidConfig", "colour"),
    ],
)
def test_bad_deploys_are_400_naming_the_problem(client, path, body, params, error_type, fragment):
    error = assert_error(client.put(path, content=body, params=params), 400, error_type)
    assert fragment in error["message"]


def test_deploy_refuses_modules_importing_outside_the_sandbox(client):
    wat = '(module (import "env" "system" (func)) (memory (export "memory") 1))'
    error = assert_error(client.put("/functions/evil", content=wat), 400, "InvalidModule")
    assert "env.system" in error["message"]


def test_bad_config_patch_is_400(client):
    assert_error(client.patch("/functions/echo/config", json={"timeout_ms": -1}), 400, "InvalidConfig")
    assert_error(client.patch("/functions/echo/config", content=b"[1]"), 400, "InvalidRequest")
    assert_error(client.patch("/functions/nope/config", json={"timeout_ms": 5}), 404, "FunctionNotFound")


def test_unknown_route_is_404_in_the_error_shape(client):
    # Under the host's own paths; any other path is the functions' (http triggers: API Gateway's 404).
    response = client.get("/functions/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"
    assert client.get("/nothing/here").json() == {"message": "Not Found"}


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_admin_token_guards_management_but_not_invoke(host, guest):
    host.deploy("echo", guest("echo"))
    with ServerThread(host, admin_token="s3cret") as running, httpx.Client(base_url=running.url) as c:
        assert_error(c.get("/functions"), 401, "Unauthorized")
        assert_error(c.put("/functions/x", content=guest("echo")), 401, "Unauthorized")
        wrong = {"authorization": "Bearer nope"}
        assert_error(c.delete("/functions/echo", headers=wrong), 401, "Unauthorized")
        right = {"authorization": "Bearer s3cret"}
        assert c.get("/functions", headers=right).status_code == 200
        assert c.post("/invoke/echo", json=1).json() == 1
