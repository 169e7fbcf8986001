"""Triggers over HTTP: ``POST /functions/{name}/triggers`` (``{"type": ..., fields}``),
``GET /functions/{name}/triggers``, ``GET``/``DELETE /functions/{name}/triggers/{id}``,
``GET /triggers`` (every function's), and ``PUT /functions/{name}/triggers``
(``{"triggers": [...]}``: replace the triggers a project file declared, as a deploy does). Guarded like the rest of the management API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidRequest
from ..host import Host
from .http import decode_body
from .management import json_response


class Triggers:
    def __init__(self, host: Host) -> None:
        self.host = host

    def routes(self, guard: Callable[[Any], Any]) -> list[Route]:
        return [
            Route("/triggers", guard(self.list_all), methods=["GET"]),
            Route("/functions/{name}/triggers", guard(self.add), methods=["POST"]),
            Route("/functions/{name}/triggers", guard(self.list_triggers), methods=["GET"]),
            Route("/functions/{name}/triggers", guard(self.sync), methods=["PUT"]),
            Route("/functions/{name}/triggers/{id}", guard(self.get_trigger), methods=["GET"]),
            Route("/functions/{name}/triggers/{id}", guard(self.delete_trigger), methods=["DELETE"]),
        ]

    async def add(self, request: Request) -> Response:
        spec = decode_body(await request.body(), False)
        if not isinstance(spec, dict):
            raise InvalidRequest("the body must be a JSON object with a 'type' and that type's fields")
        trigger = await run_in_threadpool(self.host.add_trigger, request.path_params["name"], spec)
        return json_response(trigger.to_dict(), 201)

    async def sync(self, request: Request) -> Response:
        """``{"triggers": [...]}``: the function's project-file triggers become exactly these."""
        body = decode_body(await request.body(), False)
        specs = body.get("triggers") if isinstance(body, dict) else None
        if not isinstance(specs, list):
            raise InvalidRequest('the body must be {"triggers": [trigger, ...]}')
        triggers = await run_in_threadpool(self.host.sync_triggers, request.path_params["name"], specs)
        return json_response({"triggers": [t.to_dict() for t in triggers]})

    async def list_triggers(self, request: Request) -> Response:
        triggers = await run_in_threadpool(self.host.triggers, request.path_params["name"])
        return json_response({"triggers": [t.to_dict() for t in triggers]})

    async def list_all(self, request: Request) -> Response:
        triggers = await run_in_threadpool(self.host.triggers)
        return json_response({"triggers": [t.to_dict() for t in triggers]})

    async def get_trigger(self, request: Request) -> Response:
        trigger = self.host.get_trigger(request.path_params["name"], request.path_params["id"])
        return json_response(trigger.to_dict())

    async def delete_trigger(self, request: Request) -> Response:
        await run_in_threadpool(self.host.delete_trigger, request.path_params["name"], request.path_params["id"])
        return Response(status_code=204)
