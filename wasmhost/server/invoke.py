"""``POST /invoke/{name}`` as a raw ASGI callable: the hot route.

Starlette's Request/Response objects and router cost about as much as a small
guest, so the invoke route reads the body and writes the answer with bare ASGI
messages. Everything else goes through Starlette (``management``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import InvalidRequest, InvalidResponse, PayloadTooLarge, WasmhostError
from ..host import Host
from .http import JSON, MSGPACK, decode_body, encode_body, error_body, error_headers, wants_msgpack

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class InvokeEndpoint:
    """Parses the event, calls ``Host.ainvoke``, answers 200 or the error's status."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.max_body = host.config.max_payload_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send, name: str) -> None:
        content_type = b""
        declared = -1
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value
            elif key == b"content-length":
                declared = int(value) if value.isdigit() else -1
        as_msgpack = wants_msgpack(content_type)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed()
            body = await self._read_body(receive, declared)
            event = decode_body(body, as_msgpack)
            result = await self.host.ainvoke(name, event)
        except WasmhostError as error:
            await self._answer_error(send, error, None, as_msgpack)
            return
        headers = [
            (b"x-wasmhost-request-id", result.request_id.encode()),
            (b"x-wasmhost-duration-ms", f"{result.duration_ms:.3f}".encode()),
            (b"x-wasmhost-billed-ms", str(result.billed_ms).encode()),
        ]
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

    async def _read_body(self, receive: Receive, declared: int) -> bytes:
        if declared > self.max_body:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {self.max_body}")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_body} bytes")
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


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
