"""The embedded queues over HTTP, guarded like the management API:

``POST /queues/{name}`` (create, JSON attributes), ``GET /queues`` (``?prefix=``),
``GET /queues/{name}`` (attributes and counts), ``DELETE /queues/{name}``,
``POST /queues/{name}/messages`` (one ``{"body", "message_attributes", "delay_s"}`` or
``{"messages": [...]}``), ``POST /queues/{name}/receive`` (``{"max_messages",
"wait_time_s", "visibility_timeout_s"}``; long polling holds no thread),
``DELETE /queues/{name}/messages/{receipt_handle}``, ``POST /queues/{name}/visibility``
(``{"receipt_handle", "visibility_timeout_s"}``) and ``POST /queues/{name}/purge``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidRequest
from ..host import Host
from ..queues import OutgoingMessage, check_queue_name
from .http import decode_body
from .management import json_response

_MESSAGE_FIELDS = ("body", "message_attributes", "delay_s")
_RECEIVE_FIELDS = ("max_messages", "wait_time_s", "visibility_timeout_s")


def routes(host: Host, guard: Callable[[Any], Any]) -> list[Route]:
    return Queues(host).routes(guard)


class Queues:
    def __init__(self, host: Host) -> None:
        self.host = host

    def routes(self, guard: Callable[[Any], Any]) -> list[Route]:
        return [
            Route("/queues", guard(self.list_queues), methods=["GET"]),
            Route("/queues/{name}", guard(self.create), methods=["POST"]),
            Route("/queues/{name}", guard(self.attributes), methods=["GET"]),
            Route("/queues/{name}", guard(self.delete_queue), methods=["DELETE"]),
            Route("/queues/{name}/messages", guard(self.send), methods=["POST"]),
            Route("/queues/{name}/receive", guard(self.receive), methods=["POST"]),
            Route("/queues/{name}/messages/{receipt_handle}", guard(self.delete_message), methods=["DELETE"]),
            Route("/queues/{name}/visibility", guard(self.change_visibility), methods=["POST"]),
            Route("/queues/{name}/purge", guard(self.purge), methods=["POST"]),
        ]

    async def list_queues(self, request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        return json_response({"queues": await run_in_threadpool(self.host.queues.list, prefix)})

    async def create(self, request: Request) -> Response:
        attributes = await _object(request, "the queue's attributes", allow_empty=True)
        queue, created = await run_in_threadpool(self.host.queues.create, request.path_params["name"], attributes)
        return json_response(queue, 201 if created else 200)

    async def attributes(self, request: Request) -> Response:
        return json_response(await run_in_threadpool(self.host.queues.attributes, request.path_params["name"]))

    async def delete_queue(self, request: Request) -> Response:
        await run_in_threadpool(self.host.queues.delete_queue, request.path_params["name"])
        return Response(status_code=204)

    async def send(self, request: Request) -> Response:
        name = check_queue_name(request.path_params["name"])
        body = await _object(request, '{"body": ...} or {"messages": [{"body": ...}, ...]}')
        if "messages" in body:
            if set(body) != {"messages"} or not isinstance(body["messages"], list):
                raise InvalidRequest('a batch is {"messages": [{"body", "message_attributes", "delay_s"}, ...]}')
            messages = [_message(item, f"messages[{i}]") for i, item in enumerate(body["messages"])]
            ids = await run_in_threadpool(self.host.queues.send_batch, name, messages)
            sent = [{"message_id": id_, "md5_of_body": _md5(m.body)} for id_, m in zip(ids, messages, strict=True)]
            return json_response({"messages": sent}, 201)
        message = _message(body, "the message")
        ids = await run_in_threadpool(self.host.queues.send_batch, name, [message])
        return json_response({"message_id": ids[0], "md5_of_body": _md5(message.body)}, 201)

    async def receive(self, request: Request) -> Response:
        options = await _object(request, "the receive options", allow_empty=True)
        _known(options, _RECEIVE_FIELDS, "receive")
        messages = await self.host.queues.areceive(
            request.path_params["name"],
            options.get("max_messages", 1),
            wait_time_s=options.get("wait_time_s", 0),
            visibility_timeout_s=options.get("visibility_timeout_s"),
        )
        return json_response({"messages": [m.to_dict() for m in messages]})

    async def delete_message(self, request: Request) -> Response:
        params = request.path_params
        await run_in_threadpool(self.host.queues.delete_message, params["name"], params["receipt_handle"])
        return Response(status_code=204)

    async def change_visibility(self, request: Request) -> Response:
        body = await _object(request, '{"receipt_handle", "visibility_timeout_s"}')
        _known(body, ("receipt_handle", "visibility_timeout_s"), "visibility")
        if "receipt_handle" not in body or "visibility_timeout_s" not in body:
            raise InvalidRequest('the body must be {"receipt_handle": ..., "visibility_timeout_s": seconds}')
        await run_in_threadpool(
            self.host.queues.change_visibility,
            request.path_params["name"],
            body["receipt_handle"],
            body["visibility_timeout_s"],
        )
        return Response(status_code=204)

    async def purge(self, request: Request) -> Response:
        purged = await run_in_threadpool(self.host.queues.purge, request.path_params["name"])
        return json_response({"purged": purged})


async def _object(request: Request, what: str, allow_empty: bool = False) -> dict[str, Any]:
    body = decode_body(await request.body(), False)
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object: {what}")
    return body


def _known(body: dict[str, Any], fields: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise InvalidRequest(f"{what}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(fields)})")


def _message(item: Any, where: str) -> OutgoingMessage:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object with a 'body', got {item!r:.80}")
    _known(item, _MESSAGE_FIELDS, where)
    if "body" not in item:
        raise InvalidRequest(f"{where} has no 'body'")
    return OutgoingMessage(item["body"], item.get("message_attributes"), item.get("delay_s"))


def _md5(body: Any) -> str:
    return hashlib.md5(str(body).encode()).hexdigest()
