"""Configuration dataclasses. Every default lives here, with its unit.

Constructors only assign; ``validate()`` checks ranges and raises
:class:`~wasmhost.errors.InvalidConfig` naming the field.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidConfig

MiB = 1024 * 1024

#: Largest linear memory a function may ask for (wasm32 tops out at 4 GiB).
MAX_MEMORY_MB = 4096
#: Longest timeout a function may ask for (Lambda's 15 minutes).
MAX_TIMEOUT_MS = 15 * 60 * 1000
#: Environment variable names, as Lambda accepts them.
ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Total size of a function's environment (keys + values), as Lambda's 4 KB.
MAX_ENV_BYTES = 4096


@dataclass
class FunctionConfig:
    """How one function runs. Defaults follow AWS Lambda's."""

    memory_mb: int = 128
    """Cap on the guest's linear memory, in MiB (1–4096)."""
    timeout_ms: int = 3000
    """Wall-time limit of one invocation, in milliseconds (1–900000)."""
    fuel: int | None = None
    """CPU budget in wasmtime fuel units (≈ one per wasm instruction); None = unlimited."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables the guest sees through WASI (nothing else is inherited)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """More environment variables, whose values are encrypted at rest and never shown by
    list/get (``********``); ``env`` and ``secrets`` together fit in 4 KiB."""
    reserved_concurrency: int | None = None
    """Most invocations of this function in flight at once, across all processes on the
    data directory; None = no limit (only the host-wide one); 0 disables the function."""
    max_retry_attempts: int = 2
    """Asynchronous invocations: retries after a failed run (0–2), as Lambda's."""
    max_event_age_s: int = 21600
    """Asynchronous invocations: an event older than this (60–21600 s) is not run again
    and goes to ``on_failure`` instead."""
    on_success: str | None = None
    """Asynchronous invocations: where the record of a success goes,
    ``function:NAME`` (invoked asynchronously with it) or ``queue:NAME`` (a dead-letter queue)."""
    on_failure: str | None = None
    """Asynchronous invocations: where the record of a final failure goes (same forms)."""

    def validate(self) -> FunctionConfig:
        """Check every field; raise ``InvalidConfig`` naming the first bad one."""
        _check_int("memory_mb", self.memory_mb, 1, MAX_MEMORY_MB)
        _check_int("timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)
        if self.fuel is not None:
            _check_int("fuel", self.fuel, 1, 2**63 - 1)
        if self.reserved_concurrency is not None:
            _check_int("reserved_concurrency", self.reserved_concurrency, 0, 1_000_000)
        _check_int("max_retry_attempts", self.max_retry_attempts, 0, 2)
        _check_int("max_event_age_s", self.max_event_age_s, 60, 21600)
        for key in ("on_success", "on_failure"):
            check_destination(key, getattr(self, key))
        size = _check_env("env", self.env) + _check_env("secrets", self.secrets)
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise InvalidConfig(f"secrets and env both set {', '.join(both)}: a name goes in one of them")
        if size > MAX_ENV_BYTES:
            raise InvalidConfig(f"env and secrets are {size} bytes together; the limit is {MAX_ENV_BYTES}")
        return self

    def environment(self) -> dict[str, str]:
        """What the guest sees: ``env`` and ``secrets`` together."""
        return {**self.env, **self.secrets} if self.secrets else self.env

    def to_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """The settings as a dict; secret values are masked unless ``reveal_secrets``."""
        data = dataclasses.asdict(self)
        if not reveal_secrets:
            data["secrets"] = {name: SECRET_MASK for name in self.secrets}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionConfig:
        """Build from a mapping (JSON body, stored row); unknown keys are an error."""
        if not isinstance(data, dict):
            raise InvalidConfig("config must be an object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidConfig(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**data).validate()

    def updated(self, changes: dict[str, Any]) -> FunctionConfig:
        """A copy with ``changes`` applied and validated."""
        return FunctionConfig.from_dict({**self.to_dict(reveal_secrets=True), **changes})


#: How a secret value is shown.
SECRET_MASK = "********"


def _check_env(field_name: str, values: Any) -> int:
    """Check a name -> value mapping of environment variables; its size in bytes."""
    if not isinstance(values, dict):
        raise InvalidConfig(f"{field_name} must be a mapping of names to strings")
    size = 0
    for key, value in values.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            raise InvalidConfig(
                f"{field_name} name {key!r} is invalid: use letters, digits and _, starting with a letter"
            )
        if not isinstance(value, str):
            raise InvalidConfig(f"{field_name} value of {key} must be a string")
        size += len(key.encode()) + len(value.encode())
    return size


#: A destination: ``function:NAME`` or ``queue:NAME`` (names as function names).
DESTINATION = re.compile(r"^(function|queue):([A-Za-z0-9_-]{1,64})$")


def check_destination(name: str, value: Any) -> None:
    """``value`` is None or a valid destination; else ``InvalidConfig`` naming ``name``."""
    if value is None:
        return
    if not isinstance(value, str) or not DESTINATION.match(value):
        raise InvalidConfig(f"{name} must be 'function:NAME' or 'queue:NAME', got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfig(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidConfig(f"{name} must be between {low} and {high}, got {value}")


@dataclass
class HostConfig:
    """How a :class:`~wasmhost.Host` runs. Every field has a ``WASMHOST_*`` env override."""

    data_dir: str = "./.wasmhost"
    """Directory for the registry database, code blobs and the compile cache."""
    max_instances: int = 1000
    """Slots in wasmtime's pooling allocator: the most sandboxes alive at once in this process."""
    keep_resident_bytes: int = 256 * 1024
    """Bytes of each sandbox's memory kept mapped between invocations (zeroed, not unmapped)."""
    max_concurrency: int = 1000
    """Host-wide cap on invocations in flight in this process; over it callers get Throttled."""
    epoch_tick_ms: float = 2.0
    """Period of the epoch timer. Guests are stopped within about one tick after their deadline."""
    inline_slice_ms: int = 3
    """Async invocations first run on the caller's thread for at most this long; longer
    ones are restarted on a worker thread (see docs/architecture.md)."""
    worker_threads: int = 1000
    """Most threads for invocations that outgrow their inline slice, sleep, or are components.
    Started on demand; as many as ``max_concurrency`` so that every admitted invocation runs
    at once (a guest that sleeps holds its thread, as a Lambda instance would)."""
    log_limit_bytes: int = 256 * 1024
    """Guest stdout+stderr kept per invocation; the rest is dropped with a marker."""
    max_payload_bytes: int = 6 * MiB
    """Largest event accepted (Lambda's synchronous limit)."""
    instance_cache_size: int = 256
    """Compiled, pre-linked function versions kept ready in memory (LRU)."""
    log_retention_s: int = 7 * 86400
    """How long invocation logs and metering rows are kept, in seconds."""
    price_per_gb_second: float = 0.0000166667
    """Estimated cost of compute, in USD per GB-second (Lambda's public x86 price)."""
    price_per_million_requests: float = 0.20
    """Estimated cost of requests, in USD per million invocations (Lambda's)."""
    async_retry_delay_s: float = 1.0
    """Asynchronous invocations: delay before the first retry, doubled for the second."""
    async_max_in_flight: int = 64
    """Asynchronous invocations run at once by each host process."""
    max_async_payload_bytes: int = 256 * 1024
    """Largest event accepted for an asynchronous invocation (Lambda's 256 KiB)."""
    max_object_bytes: int = 5 * 1024 * MiB
    """Largest object the bucket store accepts, in bytes (S3's single-PUT limit, 5 GiB); over it: 413."""

    @classmethod
    def from_env(cls, **overrides: Any) -> HostConfig:
        """Defaults, then ``WASMHOST_<FIELD>`` environment variables, then ``overrides``."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"WASMHOST_{f.name.upper()}")
            if raw is not None:
                convert: Any = type(f.default)
                values[f.name] = convert(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
