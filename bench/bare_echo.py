"""The ceiling: the same echo function as a plain Starlette app, with no sandbox.

It does what the echo guest does, minus the sandbox: parse the JSON event and
answer it as JSON. Served like wasmhost (uvicorn, no access log). Run as
``uvicorn bench.bare_echo:app``.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


app = Starlette(routes=[Route("/invoke/echo", echo, methods=["POST"])])
