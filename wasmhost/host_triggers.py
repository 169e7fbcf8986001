"""Triggers of the Host: attach, list and remove them, and run their background
part (``start_triggers``, called by the server at startup).

Also owns the embedded stores that triggers and clients share: the bucket store
(``buckets``) and the queue store (``queues``), both in the data directory.
A mixin of :class:`~wasmhost.host.Host`.
"""

from __future__ import annotations

import builtins
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import HostConfig
from .errors import ResourceConflict, TriggerNotFound
from .registry import SqliteRegistry
from .secretbox import SecretBox
from .triggers import Trigger, TriggerContext, TriggerStore, trigger_type, validate
from .triggers.supervisor import TriggerSupervisor

log = logging.getLogger("wasmhost.triggers")
#: Guards the lazy opening of the stores below (two threads must not open one twice).
_OPENING = threading.Lock()

if TYPE_CHECKING:
    from .buckets import BucketStore
    from .queues import QueueStore


class TriggersMixin:
    """Triggers, buckets and queues for ``Host``."""

    config: HostConfig
    registry: SqliteRegistry
    _trigger_store: TriggerStore | None = None
    _buckets: BucketStore | None = None
    _queues: QueueStore | None = None
    trigger_supervisor: TriggerSupervisor | None = None

    def get(self, name: str) -> Any:
        raise NotImplementedError  # Host.get

    @property
    def trigger_store(self) -> TriggerStore:
        if self._trigger_store is None:
            with _OPENING:
                if self._trigger_store is None:
                    root = Path(self.config.data_dir)
                    self._trigger_store = TriggerStore(root / "triggers.db", secrets=SecretBox(root))
        return self._trigger_store

    @property
    def buckets(self) -> BucketStore:
        """The embedded object store (``<data_dir>/buckets``)."""
        trigger_store = self.trigger_store
        if self._buckets is None:
            from .buckets import BucketStore

            with _OPENING:
                if self._buckets is not None:
                    return self._buckets
                self._buckets = BucketStore(
                    Path(self.config.data_dir) / "buckets",
                    trigger_store,
                    max_object_bytes=self.config.max_object_bytes,
                )
        return self._buckets

    @property
    def queues(self) -> QueueStore:
        """The embedded durable queues (``<data_dir>/queues.db``)."""
        if self._queues is None:
            from .queues import QueueStore

            with _OPENING:
                if self._queues is None:
                    self._queues = QueueStore(Path(self.config.data_dir) / "queues.db")
        return self._queues

    # --- triggers ----------------------------------------------------------------

    def add_trigger(self, function: str, spec: dict[str, Any], *, origin: str = "api") -> Trigger:
        """Attach a trigger (``{"type": ..., fields}``) to ``function``; returns it with its id.

        Raises ``FunctionNotFound``, ``InvalidConfig`` (naming the type and field)
        or ``ResourceConflict`` (an HTTP route already taken, say).
        """
        self.get(function)
        kind, config = validate(spec)
        kind.check_conflicts(config, self.trigger_store.list(type_=kind.name))
        trigger = self.trigger_store.add(function, kind.name, config, origin)
        if self.trigger_supervisor is not None:
            self.trigger_supervisor.wake()
        return trigger

    def triggers(self, function: str | None = None) -> builtins.list[Trigger]:
        """Triggers of ``function`` (all triggers when None), oldest first."""
        if function is not None:
            self.get(function)
        return self.trigger_store.list(function)

    def get_trigger(self, function: str, trigger_id: str) -> Trigger:
        trigger = self.trigger_store.get(trigger_id)
        if trigger is None or trigger.function != function:
            self.get(function)
            raise TriggerNotFound(f"function {function!r} has no trigger {trigger_id!r}")
        return trigger

    def delete_trigger(self, function: str, trigger_id: str) -> None:
        trigger = self.get_trigger(function, trigger_id)
        self.trigger_store.delete(trigger_id)
        self._removed([trigger])

    def delete_function_triggers(self, function: str) -> None:
        """Remove every trigger of ``function`` (called when the function is deleted)."""
        triggers = self.trigger_store.list(function)
        self.trigger_store.delete_function(function)
        self._removed(triggers)

    def _removed(self, triggers: builtins.list[Trigger]) -> None:
        if self.trigger_supervisor is not None:
            self.trigger_supervisor.wake()
        for trigger in triggers:
            try:
                trigger_type(trigger.type).removed(trigger, self)
            except Exception as error:  # cleanup outside the host is best effort; the trigger is gone
                log.warning("trigger %s (%s): cleanup failed: %s", trigger.id, trigger.type, error)

    def sync_triggers(self, function: str, specs: builtins.list[dict[str, Any]]) -> builtins.list[Trigger]:
        """Make ``function``'s ``origin="toml"`` triggers exactly ``specs`` (a project's
        ``[[triggers]]``): keep the identical ones, add the new ones, remove the rest.
        Triggers added through the API are left alone. All specs are validated first."""
        wanted = []
        for spec in specs:
            kind, config = validate(spec)
            wanted.append((kind, config))
        current = [t for t in self.trigger_store.list(function) if t.origin == "toml"]
        keep: set[str] = set()
        result = []
        for kind, config in wanted:
            same = next((t for t in current if t.type == kind.name and t.config == config and t.id not in keep), None)
            if same is not None:
                keep.add(same.id)
                result.append(same)
        dropped = [trigger for trigger in current if trigger.id not in keep]
        for trigger in dropped:
            self.trigger_store.delete(trigger.id)
        self._removed(dropped)
        for kind, config in wanted:
            if any(t.type == kind.name and t.config == config for t in result):
                continue
            try:
                kind.check_conflicts(config, self.trigger_store.list(type_=kind.name))
            except ResourceConflict:
                raise
            result.append(self.trigger_store.add(function, kind.name, config, "toml"))
        if self.trigger_supervisor is not None:
            self.trigger_supervisor.wake()
        return result

    # --- running them --------------------------------------------------------------

    def start_triggers(self, poll_s: float = 1.0) -> TriggerSupervisor:
        """Run the triggers' background parts on the running event loop (the server does)."""
        if self.trigger_supervisor is None:
            self.trigger_supervisor = TriggerSupervisor(TriggerContext(self, self.trigger_store), poll_s)  # type: ignore[arg-type]
            self.trigger_supervisor.start()
        return self.trigger_supervisor

    async def stop_triggers(self) -> None:
        if self.trigger_supervisor is not None:
            await self.trigger_supervisor.stop()
            self.trigger_supervisor = None

    def close_trigger_stores(self) -> None:
        for store in (self._buckets, self._queues, self._trigger_store):
            if store is not None:
                store.close()
