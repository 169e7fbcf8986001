"""The scenarios, by name, in the order a full run goes through them.

Each is a module with ``run(ctx: BenchContext) -> dict`` (its figures, JSON-ready)
and a ``SIZES`` table keyed by level (``tiny``, ``quick``, ``full``).
"""

from __future__ import annotations

from types import ModuleType

from . import cold_invoke, deploy, http, limits, operations, peers, scale, triggers

SCENARIOS: dict[str, ModuleType] = {
    "cold_invoke": cold_invoke,
    "deploy": deploy,
    "http": http,
    "peers": peers,
    "limits": limits,
    "scale": scale,
    "operations": operations,
    "triggers": triggers,
}

__all__ = ["SCENARIOS"]
