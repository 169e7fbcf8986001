"""Versions and aliases of the Host: publish $LATEST as numbered versions, name them.

A mixin of :class:`~wasmhost.host.Host` (which holds the registry); invocation
resolves qualifiers in ``Host._resolve``.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict
from typing import Any

from .errors import InvalidRequest
from .registry import AliasRecord, FunctionRecord, SqliteRegistry


class VersionsMixin:
    """``publish``, ``versions``, ``delete_version`` and the alias methods of ``Host``."""

    registry: SqliteRegistry
    _ready: OrderedDict[str, Any]

    # --- versions and aliases ----------------------------------------------

    def publish(self, name: str, description: str = "") -> FunctionRecord:
        """Freeze ``$LATEST`` (code and config) as a new numbered version and return it.

        When nothing changed since the newest version, that version is returned
        (as Lambda's PublishVersion). Raises ``FunctionNotFound``.
        """
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidRequest("description must be a string of at most 256 characters")
        return self.registry.publish(name, description)

    def versions(self, name: str) -> builtins.list[FunctionRecord]:
        """``$LATEST`` and the published versions of ``name``, oldest first."""
        return self.registry.versions(name)

    def get_version(self, name: str, version: str) -> FunctionRecord:
        """One version of ``name``. Raises ``FunctionNotFound`` or ``VersionNotFound``."""
        return self.registry.get_version(name, version)

    def delete_version(self, name: str, version: str) -> None:
        """Delete a published version. Raises ``ResourceConflict`` while an alias points at it."""
        self.registry.delete_version(name, version)
        self._ready.pop(f"{name}:{version}", None)

    def put_alias(
        self,
        name: str,
        alias: str,
        version: str,
        routing: dict[str, float] | None = None,
        description: str = "",
    ) -> AliasRecord:
        """Point ``alias`` at ``version``; ``routing={"M": 0.1}`` sends 10 % of calls to version M.

        Raises ``InvalidRequest`` naming the bad field, ``FunctionNotFound`` or ``VersionNotFound``.
        """
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidRequest("description must be a string of at most 256 characters")
        if not isinstance(version, str):
            raise InvalidRequest(f'version must be a string such as "1" or "$LATEST", got {version!r}')
        return self.registry.put_alias(name, alias, version, routing, description)

    def get_alias(self, name: str, alias: str) -> AliasRecord:
        return self.registry.get_alias(name, alias)

    def aliases(self, name: str) -> builtins.list[AliasRecord]:
        return self.registry.aliases(name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)
