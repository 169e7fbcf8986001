"""HTTP routes (placeholder: filled in by the http trigger work)."""

from __future__ import annotations

from typing import Any

from .base import TriggerType


class HttpRouteType(TriggerType):
    name = "http"


TYPE = HttpRouteType()


class HttpRoutes:
    def __init__(self, host: Any) -> None:
        self.host = host

    def handles(self, path: str) -> bool:
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise NotImplementedError
