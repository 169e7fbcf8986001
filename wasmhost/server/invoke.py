"""``POST /invoke/{name}`` as a raw ASGI callable: the hot route.

Starlette's Request/Response objects and router cost about as much as a small
guest, so the invoke route reads the body and writes the answer with bare ASGI
messages. Everything else goes through Starlette (``management``).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ..errors import InvalidRequest, InvalidResponse, PayloadTooLarge, WasmhostError
from ..host import Host
from ..result import InvocationResult
from ..telemetry.logs import invocation_lines
from .http import JSON, MSGPACK, decode_body, encode_body, error_body, error_headers, wants_msgpack

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class InvokeEndpoint:
    """Parses the event, calls ``Host.ainvoke``, answers 200 or the error's status."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.max_body = host.config.max_payload_bytes
        self.max_async_body = host.config.max_async_payload_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send, name: str) -> None:
        content_type = b""
        declared = -1
        invocation_type = b""
        log_type = b""
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value
            elif key == b"content-length":
                declared = int(value) if value.isdigit() else -1
            elif key == b"x-wasmhost-invocation-type":
                invocation_type = value
            elif key == b"x-wasmhost-log-type":
                log_type = value
        as_msgpack = wants_msgpack(content_type)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed()
            qualifier = _qualifier(scope["query_string"]) if scope["query_string"] else None
            if invocation_type and invocation_type != b"RequestResponse":
                await self._not_now(scope, receive, send, name, qualifier, invocation_type, declared, as_msgpack)
                return
            if log_type and log_type not in (b"Tail", b"None"):
                raise InvalidRequest("X-Wasmhost-Log-Type must be Tail or None")
            body = await self._read_body(receive, declared, self.max_body)
            event = decode_body(body, as_msgpack)
            result = await self.host.ainvoke(name, event, qualifier=qualifier)
        except WasmhostError as error:
            await self._answer_error(send, error, None, as_msgpack)
            return
        headers = [
            (b"x-wasmhost-request-id", result.request_id.encode()),
            (b"x-wasmhost-executed-version", result.function_version.encode()),
            (b"x-wasmhost-duration-ms", f"{result.duration_ms:.3f}".encode()),
            (b"x-wasmhost-billed-ms", str(result.billed_ms).encode()),
        ]
        if log_type == b"Tail":
            headers.append((b"x-wasmhost-log-result", log_tail(result)))
        if result.error is not None:
            await self._answer_error(send, result.error, result.request_id, as_msgpack, headers)
            return
        try:
            payload = encode_body(result.payload, as_msgpack)
        except (TypeError, ValueError) as exc:
            unencodable = InvalidResponse(
                f"the function's answer cannot be encoded as JSON ({exc}); ask for application/msgpack"
            )
            await self._answer_error(send, unencodable, result.request_id, as_msgpack, headers)
            return
        headers.append((b"content-type", MSGPACK if as_msgpack else JSON))
        await _respond(send, 200, headers, payload)

    async def _not_now(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        name: str,
        qualifier: str | None,
        invocation_type: bytes,
        declared: int,
        as_msgpack: bool,
    ) -> None:
        """``Event``: queue it durably, answer 202 with its request id. ``DryRun``: check, answer 204."""
        if invocation_type == b"Event":
            body = await self._read_body(receive, declared, self.max_async_body)
            event = decode_body(body, as_msgpack)
            request_id = await self.host.ainvoke_event(name, event, qualifier=qualifier)
            headers = [
                (b"x-wasmhost-request-id", request_id.encode()),
                (b"content-type", MSGPACK if as_msgpack else JSON),
            ]
            await _respond(send, 202, headers, encode_body({"request_id": request_id, "status": "queued"}, as_msgpack))
        elif invocation_type == b"DryRun":
            ready, _ = self.host._resolve(name, qualifier)
            headers = [(b"x-wasmhost-executed-version", ready.record.version.encode())]
            await _respond(send, 204, headers, b"")
        else:
            raise InvalidRequest("X-Wasmhost-Invocation-Type must be RequestResponse, Event or DryRun")

    async def _read_body(self, receive: Receive, declared: int, limit: int) -> bytes:
        if declared > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer_error(
        self,
        send: Send,
        error: WasmhostError,
        request_id: str | None,
        as_msgpack: bool,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        request_id = request_id or str(uuid.uuid4())
        headers = list(headers or [(b"x-wasmhost-request-id", request_id.encode())])
        headers += error_headers(error)
        if isinstance(error, MethodNotAllowed):
            headers.append((b"allow", b"POST"))
        headers.append((b"content-type", MSGPACK if as_msgpack else JSON))
        await _respond(send, error.status, headers, encode_body(error_body(error, request_id), as_msgpack))


class MethodNotAllowed(WasmhostError):
    type = "MethodNotAllowed"
    status = 405

    def __init__(self) -> None:
        super().__init__("invoke a function with POST")


#: Bytes of log returned by ``X-Wasmhost-Log-Type: Tail`` (Lambda's LogType=Tail: the last 4 KB).
LOG_TAIL_BYTES = 4096


def log_tail(result: InvocationResult) -> bytes:
    """The invocation's log lines (START … REPORT), last 4 KB, base64 (an HTTP header value)."""
    text = "\n".join(invocation_lines(result)).encode()
    return base64.b64encode(text[-LOG_TAIL_BYTES:])


def _qualifier(query_string: bytes) -> str | None:
    """``qualifier`` from the query string; any other parameter is an error."""
    qualifier = None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key != "qualifier":
            raise InvalidRequest(f"unknown query parameter {key!r} (only 'qualifier')")
        qualifier = value or None
    return qualifier


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
