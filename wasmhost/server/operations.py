"""What operators read over HTTP: logs (also followed live as server-sent events),
usage and cost, Prometheus metrics, and dead-letter queues (listed, read, re-driven).
Every route is guarded like the rest of the management API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidRequest
from ..host import Host
from .management import json_response
from .versions import json_object

#: How often a followed log polls the store for new lines, in seconds.
FOLLOW_POLL_S = 0.25


def _number(request: Request, key: str, kind: type = float, default: Any = None) -> Any:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest(f"{key} must be a number, got {raw!r}") from None


def _only(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


class Operations:
    def __init__(self, host: Host) -> None:
        self.host = host

    def routes(self, guard: Callable[[Any], Any]) -> list[Route]:
        return [
            Route("/functions/{name}/logs", guard(self.logs), methods=["GET"]),
            Route("/functions/{name}/usage", guard(self.usage), methods=["GET"]),
            Route("/metrics", guard(self.metrics), methods=["GET"]),
            Route("/dead-letters", guard(self.dead_letter_queues), methods=["GET"]),
            Route("/dead-letters/{queue}", guard(self.dead_letters), methods=["GET"]),
            Route("/dead-letters/{queue}/redrive", guard(self.redrive), methods=["POST"]),
        ]

    async def logs(self, request: Request) -> Response:
        _only(request, ("since", "request_id", "limit", "after", "follow"))
        name = request.path_params["name"]
        since = _number(request, "since")
        request_id = request.query_params.get("request_id") or None
        limit = _number(request, "limit", int, 1000)
        after = _number(request, "after", int)
        follow = request.query_params.get("follow", "") not in ("", "0", "false")
        if follow or "text/event-stream" in request.headers.get("accept", ""):
            # Checked before the stream starts, so a bad limit is a 400, not a broken stream.
            self.host.logs(name, since=since, request_id=request_id, limit=limit, after_id=after)
            return StreamingResponse(
                self._follow(request, name, since, request_id, limit, after),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        lines = await run_in_threadpool(
            self.host.logs, name, since=since, request_id=request_id, limit=limit, after_id=after
        )
        return json_response({"logs": lines})

    async def _follow(
        self, request: Request, name: str, since: float | None, request_id: str | None, limit: int, after: int | None
    ) -> AsyncIterator[bytes]:
        """Server-sent events: one ``data:`` JSON line per log line, then new ones as they come."""
        last = after
        yield b": following\n\n"
        while True:
            lines = await run_in_threadpool(
                self.host.logs, name, since=since, request_id=request_id, limit=limit, after_id=last
            )
            for line in lines:
                last = line["id"]
                yield b"id: %d\ndata: %s\n\n" % (line["id"], orjson.dumps(line))
            if await request.is_disconnected():
                return
            if not lines:
                await asyncio.sleep(FOLLOW_POLL_S)

    async def usage(self, request: Request) -> Response:
        _only(request, ("since", "until"))
        name = request.path_params["name"]
        report = await run_in_threadpool(
            self.host.usage, name, since=_number(request, "since"), until=_number(request, "until")
        )
        return json_response(report)

    async def metrics(self, request: Request) -> Response:
        body, content_type = await run_in_threadpool(self.host.metrics)
        return Response(body, media_type=content_type)

    async def dead_letter_queues(self, request: Request) -> Response:
        return json_response({"queues": await run_in_threadpool(self.host.dead_letter_queues)})

    async def dead_letters(self, request: Request) -> Response:
        _only(request, ("limit", "after"))
        messages = await run_in_threadpool(
            self.host.dead_letters,
            request.path_params["queue"],
            limit=_number(request, "limit", int, 100),
            after_id=_number(request, "after", int),
        )
        return json_response({"queue": request.path_params["queue"], "messages": messages})

    async def redrive(self, request: Request) -> Response:
        data = await json_object(request, "redrive", ("ids",), empty_ok=True)
        ids = data.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
            raise InvalidRequest('redrive: "ids" must be a list of message ids')
        count = await run_in_threadpool(self.host.redrive, request.path_params["queue"], ids)
        return json_response({"queue": request.path_params["queue"], "redriven": count})
