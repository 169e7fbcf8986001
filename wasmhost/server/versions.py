"""Versions and aliases over HTTP: publish, list, read and delete versions; put, list, read
and delete aliases. Every route is guarded like the rest of the management API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import AliasNotFound, InvalidRequest
from ..host import Host
from .http import decode_body
from .management import json_response

#: Fields of ``PUT /functions/{name}/aliases/{alias}``.
ALIAS_FIELDS = ("version", "routing", "description")


async def json_object(request: Request, what: str, allowed: tuple[str, ...], empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` keys; ``InvalidRequest`` names the problem."""
    body = await request.body()
    if not body and empty_ok:
        return {}
    data = decode_body(body, False)
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what}: the body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidRequest(f"{what}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return data


class Versions:
    def __init__(self, host: Host) -> None:
        self.host = host

    def routes(self, guard: Callable[[Any], Any]) -> list[Route]:
        return [
            Route("/functions/{name}/versions", guard(self.publish), methods=["POST"]),
            Route("/functions/{name}/versions", guard(self.list_versions), methods=["GET"]),
            Route("/functions/{name}/versions/{version}", guard(self.get_version), methods=["GET"]),
            Route("/functions/{name}/versions/{version}", guard(self.delete_version), methods=["DELETE"]),
            Route("/functions/{name}/aliases", guard(self.list_aliases), methods=["GET"]),
            Route("/functions/{name}/aliases/{alias}", guard(self.put_alias), methods=["PUT"]),
            Route("/functions/{name}/aliases/{alias}", guard(self.get_alias), methods=["GET"]),
            Route("/functions/{name}/aliases/{alias}", guard(self.delete_alias), methods=["DELETE"]),
        ]

    async def publish(self, request: Request) -> Response:
        data = await json_object(request, "publish", ("description",), empty_ok=True)
        name = request.path_params["name"]
        before = {record.version for record in self.host.versions(name)}
        record = self.host.publish(name, data.get("description", ""))
        return json_response(record.to_dict(), 200 if record.version in before else 201)

    async def list_versions(self, request: Request) -> Response:
        records = self.host.versions(request.path_params["name"])
        return json_response({"versions": [record.to_dict() for record in records]})

    async def get_version(self, request: Request) -> Response:
        record = self.host.get_version(request.path_params["name"], request.path_params["version"])
        return json_response(record.to_dict())

    async def delete_version(self, request: Request) -> Response:
        self.host.delete_version(request.path_params["name"], request.path_params["version"])
        return Response(status_code=204)

    async def list_aliases(self, request: Request) -> Response:
        aliases = self.host.aliases(request.path_params["name"])
        return json_response({"aliases": [alias.to_dict() for alias in aliases]})

    async def put_alias(self, request: Request) -> Response:
        name, alias = request.path_params["name"], request.path_params["alias"]
        data = await json_object(request, "alias", ALIAS_FIELDS)
        if "version" not in data:
            raise InvalidRequest('alias: the field "version" is required (a version number or "$LATEST")')
        version = data["version"]
        if isinstance(version, int) and not isinstance(version, bool):
            version = str(version)
        try:
            self.host.get_alias(name, alias)
            existed = True
        except AliasNotFound:
            existed = False
        record = self.host.put_alias(name, alias, version, data.get("routing"), data.get("description", ""))
        return json_response(record.to_dict(), 200 if existed else 201)

    async def get_alias(self, request: Request) -> Response:
        record = self.host.get_alias(request.path_params["name"], request.path_params["alias"])
        return json_response(record.to_dict())

    async def delete_alias(self, request: Request) -> Response:
        self.host.delete_alias(request.path_params["name"], request.path_params["alias"])
        return Response(status_code=204)
