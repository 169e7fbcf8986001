"""The embedded bucket store over HTTP (placeholder: filled in by the bucket trigger work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import Route

from ..host import Host


def routes(host: Host, guard: Callable[[Any], Any]) -> list[Route]:
    return []
