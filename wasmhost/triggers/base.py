"""What every trigger type is made of: its fields (validated), and, for types that
wait for something outside (a schedule, a queue, a database), a ``Runner``.

A trigger type turns an outside event into a Lambda-shaped event and calls
``TriggerContext.invoke`` (``Host.ainvoke``) or ``invoke_event`` (the durable
asynchronous queue). Nothing else in the host changes per type.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import check_destination
from ..errors import InvalidConfig
from ..result import InvocationResult
from .store import Trigger, TriggerStore

if TYPE_CHECKING:
    from ..host import Host

log = logging.getLogger("wasmhost.triggers")

#: Fields every trigger type accepts.
COMMON_FIELDS = ("qualifier", "enabled")


class TriggerType:
    """A kind of trigger. Subclasses set ``name`` and ``fields`` and override ``validate``.

    ``validate`` gets the fields the user gave (without ``type``) and returns them
    checked and completed with defaults; it raises ``InvalidConfig`` naming the
    type and the field. ``runner`` returns what runs in the background for one
    trigger of this type (``None``: nothing does, as for HTTP routes).
    """

    name: ClassVar[str]
    #: Field names this type accepts, beside ``COMMON_FIELDS``.
    fields: ClassVar[tuple[str, ...]] = ()

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(fields)

    def check_conflicts(self, config: dict[str, Any], existing: list[Trigger]) -> None:
        """Raise ``ResourceConflict`` if ``config`` clashes with a trigger already there (any function)."""

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> Runner | None:
        return None

    def removed(self, trigger: Trigger, host: Any) -> None:
        """Called (in the process that removes it) after ``trigger`` was deleted, or its
        function was: undo what the type set up outside the host (database triggers...).
        Must not raise for a resource that is already gone or unreachable (log instead)."""

    def describe(self, config: dict[str, Any]) -> str:
        """One short line for ``wasmhost list`` and ``wasmhost trigger list``."""
        return self.name

    # --- helpers for validate ----------------------------------------------

    def check_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Reject unknown fields; return the common ones checked (``qualifier``, ``enabled``)."""
        unknown = sorted(set(fields) - set(self.fields) - set(COMMON_FIELDS))
        if unknown:
            allowed = ", ".join((*self.fields, *COMMON_FIELDS))
            raise InvalidConfig(f"{self.name} trigger: unknown field(s) {', '.join(unknown)} (allowed: {allowed})")
        common: dict[str, Any] = {"enabled": self.boolean(fields, "enabled", True)}
        qualifier = fields.get("qualifier")
        if qualifier is not None:
            common["qualifier"] = self.string(fields, "qualifier", pattern_hint="a version number or alias name")
        return common

    def string(
        self,
        fields: dict[str, Any],
        key: str,
        default: str | None = None,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        pattern_hint: str | None = None,
    ) -> Any:
        value = fields.get(key, default)
        if value is None:
            if required:
                raise InvalidConfig(f"{self.name} trigger: {key} is required")
            return None
        if not isinstance(value, str) or not value:
            hint = f" ({pattern_hint})" if pattern_hint else ""
            raise InvalidConfig(f"{self.name} trigger: {key} must be a non-empty string{hint}, got {value!r}")
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                raise InvalidConfig(f"{self.name} trigger: {key} must be one of {', '.join(options)}, got {value!r}")
        return value

    def integer(self, fields: dict[str, Any], key: str, default: int | None, low: int, high: int) -> Any:
        value = fields.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidConfig(f"{self.name} trigger: {key} must be an integer from {low} to {high}, got {value!r}")
        return value

    def boolean(self, fields: dict[str, Any], key: str, default: bool) -> bool:
        value = fields.get(key, default)
        if not isinstance(value, bool):
            raise InvalidConfig(f"{self.name} trigger: {key} must be true or false, got {value!r}")
        return value

    def destination(self, fields: dict[str, Any], key: str) -> str | None:
        """A ``function:NAME`` / ``queue:NAME`` destination, or None when absent."""
        value = fields.get(key)
        try:
            check_destination(key, value)
        except InvalidConfig as error:
            raise InvalidConfig(f"{self.name} trigger: {error.message}") from None
        return value  # type: ignore[no-any-return]

    def string_list(self, fields: dict[str, Any], key: str, default: list[str] | None = None) -> list[str]:
        value = fields.get(key, default if default is not None else [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InvalidConfig(f"{self.name} trigger: {key} must be a list of non-empty strings, got {value!r}")
        return list(value)


class TriggerContext:
    """What a runner may use: the host, the trigger store, the data directory."""

    def __init__(self, host: Host, store: TriggerStore, owner: str | None = None) -> None:
        self.host = host
        self.store = store
        self.data_dir = Path(host.config.data_dir)
        #: Names this process in runner status (``pid@hostname``-like).
        self.owner = owner or f"pid {os.getpid()}"

    async def invoke(self, trigger: Trigger, event: Any, request_id: str | None = None) -> InvocationResult:
        """Run the trigger's function on ``event`` now (``Host.ainvoke``). Raises what it raises
        (``FunctionNotFound``, ``Throttled``...); a failed guest is in ``result.error``."""
        return await self.host.ainvoke(trigger.function, event, qualifier=trigger.qualifier, request_id=request_id)

    async def invoke_event(self, trigger: Trigger, event: Any, request_id: str | None = None) -> str:
        """Queue ``event`` for the trigger's function (asynchronous invocation: durable, retried)."""
        return await self.host.ainvoke_event(
            trigger.function, event, qualifier=trigger.qualifier, request_id=request_id
        )

    def report(self, trigger: Trigger, **status: Any) -> None:
        """Merge ``status`` into the trigger's visible status (``GET /functions/{name}/triggers``)."""
        current = self.store.get_state(trigger.id, "status", {}) or {}
        current.update(status, owner=self.owner, updated_at=time.time())
        self.store.set_state(trigger.id, "status", current)


class Runner:
    """What runs in the background for one trigger, in exactly one process at a time.

    ``run`` runs until cancelled. If it raises, the supervisor records the error
    in the trigger's status and calls ``run`` again after a back-off (a broker
    that is down, a database that went away). Long waits must be ``await``s so
    that cancellation stops the runner promptly; blocking calls go through
    ``asyncio.to_thread``.
    """

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        self.trigger = trigger
        self.ctx = ctx

    async def run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections; called after ``run`` ends (also when cancelled)."""
