"""The ASGI application: the raw invoke route in front of a Starlette app.

Built by :func:`create_app` from a :class:`~wasmhost.Host` (or, for
``uvicorn --workers``, by :func:`app_from_env` in each worker process).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from ..config import HostConfig
from ..errors import WasmhostError
from ..host import Host
from ..triggers.http_routes import HttpRoutes
from . import buckets, queues
from .invoke import InvokeEndpoint, Receive, Send
from .management import Management, error_response, json_response
from .operations import Operations
from .triggers import Triggers
from .versions import Versions

INVOKE_PREFIX = "/invoke/"


class WasmhostApp:
    """ASGI app: ``POST /invoke/{name}`` handled raw, everything else by Starlette."""

    def __init__(self, host: Host, admin_token: str | None = None, owns_host: bool = False) -> None:
        self.host = host
        self.invoke = InvokeEndpoint(host)
        #: Functions mounted on HTTP routes (``http`` triggers): every path outside the host's own.
        self.http_routes = HttpRoutes(host)
        management = Management(host, admin_token)

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            host.warm_up()
            host.start_async_worker()
            host.start_triggers()
            try:
                yield
            finally:
                await host.stop_triggers()
                await host.stop_async_worker()
                if owns_host:
                    host.close()

        async def not_found(request: Request, exc: Exception) -> Response:
            error = WasmhostError(f"no route for {request.method} {request.url.path}")
            error.type, error.status = "NotFound", 404
            return error_response(error)

        async def wasmhost_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, WasmhostError)
            return error_response(exc)

        routes = [
            *management.routes(),
            *Versions(host).routes(management.guard),
            *Operations(host).routes(management.guard),
            *Triggers(host).routes(management.guard),
            *buckets.routes(host, management.guard),
            *queues.routes(host, management.guard),
        ]
        self.starlette = Starlette(
            routes=routes,
            lifespan=lifespan,
            exception_handlers={404: not_found, WasmhostError: wasmhost_error},
        )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(INVOKE_PREFIX):
                name = path[len(INVOKE_PREFIX) :]
                if name and "/" not in name:
                    await self.invoke(scope, receive, send, name)
                    return
            elif self.http_routes.handles(path):
                await self.http_routes(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def create_app(host: Host, admin_token: str | None = None) -> WasmhostApp:
    """The ASGI app serving ``host``. The caller keeps ownership of ``host``."""
    return WasmhostApp(host, admin_token)


def app_from_env() -> WasmhostApp:
    """Factory for ``uvicorn --factory``: a Host from ``WASMHOST_*`` variables, owned by the app."""
    host = Host(config=HostConfig.from_env())
    return WasmhostApp(host, os.environ.get("WASMHOST_ADMIN_TOKEN") or None, owns_host=True)


__all__ = ["WasmhostApp", "app_from_env", "create_app", "json_response"]
