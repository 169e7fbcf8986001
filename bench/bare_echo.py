"""The ceiling: a bare Starlette echo with no sandbox, served like wasmhost (uvicorn, 1 worker).

Run as ``uvicorn bench.bare_echo:app``.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


app = Starlette(routes=[Route("/invoke/echo", echo, methods=["POST"])])
