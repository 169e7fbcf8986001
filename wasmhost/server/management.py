"""The management API: deploy, read, reconfigure, list and delete functions.

Guarded by the admin token when one is set (``Authorization: Bearer <token>``).
Deploys compile code, which can take seconds, so they run on a thread.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import FunctionConfig
from ..errors import InvalidConfig, InvalidRequest, PayloadTooLarge, Unauthorized, WasmhostError
from ..host import Host
from .http import decode_body, encode_body, error_body, error_headers

#: Largest module accepted by a deploy (bytes).
MAX_MODULE_BYTES = 256 * 1024 * 1024
_INT_FIELDS = ("memory_mb", "timeout_ms", "fuel", "reserved_concurrency", "max_retry_attempts", "max_event_age_s")
_STR_FIELDS = ("on_success", "on_failure")
#: Repeated ``NAME=value`` query parameters, and the config field each fills.
_PAIR_FIELDS = {"env": "env", "secret": "secrets"}


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_body(value, False), status, headers, media_type="application/json")


def error_response(error: WasmhostError) -> Response:
    body = error_body(error)
    headers = {k.decode(): v.decode() for k, v in error_headers(error)}
    headers["x-wasmhost-request-id"] = body["error"]["request_id"]
    return json_response(body, error.status, headers)


def config_from_query(request: Request) -> FunctionConfig:
    """A FunctionConfig from the query: ``memory_mb``, ``timeout_ms``, ``fuel``,
    ``reserved_concurrency``, ``max_retry_attempts``, ``max_event_age_s``, ``on_success``,
    ``on_failure``, and repeated ``env=NAME=value`` / ``secret=NAME=value``.
    """
    values: dict[str, Any] = {}
    for key in request.query_params:
        if key not in (*_INT_FIELDS, *_STR_FIELDS, *_PAIR_FIELDS):
            raise InvalidConfig(f"unknown query parameter {key!r}")
    for key in _INT_FIELDS:
        raw = request.query_params.get(key)
        if raw is not None and raw != "":
            try:
                values[key] = int(raw)
            except ValueError:
                raise InvalidConfig(f"{key} must be an integer, got {raw!r}") from None
    for key in _STR_FIELDS:
        raw = request.query_params.get(key)
        if raw:
            values[key] = raw
    for param, field_name in _PAIR_FIELDS.items():
        pairs = {}
        for pair in request.query_params.getlist(param):
            key, sep, value = pair.partition("=")
            if not sep:
                raise InvalidConfig(f"{param} must be given as NAME=value, got {pair!r}")
            pairs[key] = value
        values[field_name] = pairs
    return FunctionConfig.from_dict(values)


class Management:
    def __init__(self, host: Host, admin_token: str | None) -> None:
        self.host = host
        self.admin_token = admin_token

    def routes(self) -> list[Route]:
        guard = self.guard
        return [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/functions", guard(self.list_functions), methods=["GET"]),
            Route("/functions/{name}", guard(self.deploy), methods=["PUT"]),
            Route("/functions/{name}", guard(self.get_function), methods=["GET"]),
            Route("/functions/{name}", guard(self.delete_function), methods=["DELETE"]),
            Route("/functions/{name}/config", guard(self.update_config), methods=["PATCH"]),
        ]

    def guard(self, endpoint: Any) -> Any:
        """``endpoint`` behind the admin token, its WasmhostErrors answered as JSON."""

        async def guarded(request: Request) -> Response:
            try:
                self._authorize(request)
                return await endpoint(request)
            except WasmhostError as error:
                return error_response(error)

        return guarded

    def _authorize(self, request: Request) -> None:
        if self.admin_token is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise Unauthorized("this route needs 'Authorization: Bearer <admin token>'")

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def list_functions(self, request: Request) -> Response:
        return json_response({"functions": [record.to_dict() for record in self.host.list()]})

    async def deploy(self, request: Request) -> Response:
        name = request.path_params["name"]
        config = config_from_query(request)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_MODULE_BYTES:
            raise PayloadTooLarge(f"module is {declared} bytes; the limit is {MAX_MODULE_BYTES}")
        code = await request.body()
        if len(code) > MAX_MODULE_BYTES:
            raise PayloadTooLarge(f"module is over the limit of {MAX_MODULE_BYTES} bytes")
        record = await run_in_threadpool(self.host.deploy, name, code, config)
        return json_response(record.to_dict(), 201 if record.revision == 1 else 200)

    async def get_function(self, request: Request) -> Response:
        return json_response(self.host.get(request.path_params["name"]).to_dict())

    async def update_config(self, request: Request) -> Response:
        changes = decode_body(await request.body(), False)
        if not isinstance(changes, dict):
            raise InvalidRequest("body must be a JSON object of config fields to change")
        record = self.host.update_config(request.path_params["name"], **changes)
        return json_response(record.to_dict())

    async def delete_function(self, request: Request) -> Response:
        # In a thread: removing triggers may undo things outside the host (a database trigger).
        await run_in_threadpool(self.host.delete, request.path_params["name"])
        return Response(status_code=204)
