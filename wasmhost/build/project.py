"""``wasmhost.toml``: a function project's name, language, handler and settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FunctionConfig
from ..errors import InvalidConfig

FILENAME = "wasmhost.toml"
LANGS = ("python", "js", "c", "zig", "assemblyscript", "go", "rust")
#: Source suffix -> language, for a single file or a folder without wasmhost.toml.
SUFFIXES = {
    ".py": "python",
    ".js": "js",
    ".mjs": "js",
    ".c": "c",
    ".zig": "zig",
    ".ts": "assemblyscript",
    ".go": "go",
    ".rs": "rust",
}


#: Function settings a ``wasmhost.toml`` may hold (everything but ``secrets``).
SETTINGS = (
    "memory_mb",
    "timeout_ms",
    "fuel",
    "env",
    "reserved_concurrency",
    "max_retry_attempts",
    "max_event_age_s",
    "on_success",
    "on_failure",
)


@dataclass
class Project:
    """What ``wasmhost.toml`` says (all optional), with the folder it is in."""

    root: Path
    name: str | None = None
    lang: str | None = None
    handler: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``[[triggers]]`` tables: attached by ``wasmhost deploy`` (and kept in step on every deploy).
    triggers: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, root: Path) -> Project:
        """Read ``root/wasmhost.toml`` if present. Raises ``InvalidConfig`` naming the file and problem."""
        path = root / FILENAME
        if not path.exists():
            return cls(root)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfig(f"{path}: {exc}") from None
        unknown = sorted(set(data) - {"name", "lang", "handler", "triggers", *SETTINGS})
        if unknown:
            hint = " (secrets do not belong in a file: use --secret or the API)" if "secrets" in unknown else ""
            raise InvalidConfig(f"{path}: unknown key(s) {', '.join(unknown)}{hint}")
        lang = data.get("lang")
        if lang is not None and lang not in LANGS:
            raise InvalidConfig(f"{path}: lang must be one of {', '.join(LANGS)}, got {lang!r}")
        settings = {k: data[k] for k in SETTINGS if k in data}
        FunctionConfig.from_dict(settings)  # validate now, naming the field
        triggers = data.get("triggers")
        if triggers is not None:
            if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
                raise InvalidConfig(f"{path}: triggers must be an array of tables ([[triggers]] with a type)")
            from ..triggers import validate

            for number, spec in enumerate(triggers, 1):
                try:
                    validate(spec)
                except InvalidConfig as error:
                    raise InvalidConfig(f"{path}: trigger {number}: {error.message}") from None
        return cls(root, data.get("name"), lang, data.get("handler"), settings, triggers)

    def config(self, overrides: dict[str, Any] | None = None) -> FunctionConfig:
        """The function config: ``wasmhost.toml``'s settings, then ``overrides``."""
        return FunctionConfig.from_dict({**self.settings, **(overrides or {})})
