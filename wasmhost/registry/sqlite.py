"""The function registry in SQLite (WAL), shared by every process on a data directory.

Reads are served from an in-process cache that is dropped whenever any process
has committed a change (see :mod:`.generation`), so a function deployed through
one ``--workers`` process is visible to the others on their next call.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FunctionConfig
from ..errors import AliasNotFound, FunctionNotFound, InvalidRequest, ResourceConflict, VersionNotFound
from ..secretbox import SecretBox
from .generation import Generation

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name        TEXT PRIMARY KEY,
    digest      TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'module',  -- 'module' or 'component'

    config      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
-- Published versions: immutable copies of $LATEST (code digest and config).
CREATE TABLE IF NOT EXISTS versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    config      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    PRIMARY KEY (name, version)
);
-- Aliases: a name for a version, optionally with a weighted second version.
CREATE TABLE IF NOT EXISTS aliases (
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    version     TEXT NOT NULL,
    routing     TEXT NOT NULL DEFAULT '{}',  -- {"<version>": weight in (0, 1)}
    description TEXT NOT NULL DEFAULT '',
    revision    INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (name, alias)
);
"""
#: Columns added after the first release, added to older databases at open.
MIGRATIONS = (("functions", "last_version", "INTEGER NOT NULL DEFAULT 0"),)

LATEST = "$LATEST"
#: Alias names as Lambda's: letters, digits, - and _, not all digits.
ALIAS_PATTERN = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,64}$")
_FUNCTION_COLUMNS = "name, digest, kind, config, size_bytes, revision, created_at, updated_at"


@dataclass(frozen=True)
class FunctionRecord:
    """A deployed function version: its code (by digest) and how it runs.

    ``version`` is ``$LATEST`` (what deploys update) or a published number ("1", "2", …).
    """

    name: str
    digest: str
    kind: str
    config: FunctionConfig
    size_bytes: int
    revision: int
    created_at: float
    updated_at: float
    version: str = field(default=LATEST)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "digest": self.digest,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "revision": self.revision,
            "config": self.config.to_dict(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AliasRecord:
    """An alias of a function: ``version`` runs, except a ``routing`` share of invocations."""

    function: str
    name: str
    version: str
    routing: dict[str, float]
    description: str
    revision: int
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "name": self.name,
            "version": self.version,
            "routing": dict(self.routing),
            "description": self.description,
            "revision": self.revision,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class SqliteRegistry:
    """Functions, versions and aliases in ``<data_dir>/wasmhost.db``. Thread-safe; closes idempotently.

    Secret environment values are encrypted with ``secrets`` before they are
    written and decrypted when read.
    """

    def __init__(self, path: Path, secrets: SecretBox) -> None:
        self.path = path
        self.secrets = secrets
        self.generation = Generation(path.with_suffix(".gen"))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        for table, column, declaration in MIGRATIONS:
            columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                try:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                except sqlite3.OperationalError:  # another process added it first
                    pass
        self._lock = threading.Lock()
        # $LATEST records by name; versions and aliases by ("v"|"a", name, qualifier).
        self._cache: dict[str | tuple[str, ...], Any] = {}
        self._seen_generation = -1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
                self.generation.close()

    # --- reads (cached until any process commits a change) ----------------

    def _cached(self, key: str | tuple[str, ...], load: Callable[[], Any]) -> Any:
        generation = self.generation.value()
        if generation == self._seen_generation:
            found = self._cache.get(key)
            if found is not None:
                return found
        with self._lock:
            if generation != self._seen_generation:
                self._cache.clear()
                self._seen_generation = generation
            found = self._cache.get(key)
            if found is None:
                found = self._cache[key] = load()
            return found

    def get(self, name: str) -> FunctionRecord:
        """The ``$LATEST`` record of ``name``. Raises ``FunctionNotFound``."""
        # The invoke path: keyed by the bare name, no closure unless it must load.
        if self.generation.value() == self._seen_generation:
            found = self._cache.get(name)  # type: ignore[call-overload]
            if found is not None:
                return found  # type: ignore[no-any-return]
        return self._cached(name, lambda: self._load_latest(name))  # type: ignore[arg-type,no-any-return]

    def _load_latest(self, name: str) -> FunctionRecord:
        row = self._conn.execute(f"SELECT {_FUNCTION_COLUMNS} FROM functions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise FunctionNotFound(f"function {name!r} is not deployed")
        return self._record(row)

    def get_version(self, name: str, version: str) -> FunctionRecord:
        """``name`` at ``version`` (``$LATEST`` or a number). Raises ``FunctionNotFound``/``VersionNotFound``."""
        if version == LATEST:
            return self.get(name)
        return self._cached(("v", name, version), lambda: self._load_version(name, version))  # type: ignore[no-any-return]

    def _load_version(self, name: str, version: str) -> FunctionRecord:
        number = _version_number(version)
        row = self._conn.execute(
            "SELECT name, digest, kind, config, size_bytes, version, description, created_at FROM versions "
            "WHERE name = ? AND version = ?",
            (name, number),
        ).fetchone()
        if row is None:
            self._load_latest(name)  # FunctionNotFound first, when the function itself is missing
            raise VersionNotFound(f"function {name!r} has no version {version}")
        return self._version_record(row)

    def get_alias(self, name: str, alias: str) -> AliasRecord:
        """The alias ``alias`` of ``name``. Raises ``FunctionNotFound``/``AliasNotFound``."""
        return self._cached(("a", name, alias), lambda: self._load_alias(name, alias))  # type: ignore[no-any-return]

    def _load_alias(self, name: str, alias: str) -> AliasRecord:
        row = self._conn.execute(
            "SELECT name, alias, version, routing, description, revision, created_at, updated_at FROM aliases "
            "WHERE name = ? AND alias = ?",
            (name, alias),
        ).fetchone()
        if row is None:
            self._load_latest(name)
            raise AliasNotFound(f"function {name!r} has no alias {alias!r}")
        return _alias_record(row)

    def _changed(self) -> None:
        """After a commit (lock held): tell every process, ourselves included."""
        self.generation.bump()

    def list(self) -> builtins.list[FunctionRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_FUNCTION_COLUMNS} FROM functions ORDER BY name").fetchall()
        return [self._record(row) for row in rows]

    def versions(self, name: str) -> builtins.list[FunctionRecord]:
        """``$LATEST`` then every published version of ``name``, oldest first. Raises ``FunctionNotFound``."""
        latest = self.get(name)
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, digest, kind, config, size_bytes, version, description, created_at FROM versions "
                "WHERE name = ? ORDER BY version",
                (name,),
            ).fetchall()
        return [latest, *(self._version_record(row) for row in rows)]

    def aliases(self, name: str) -> builtins.list[AliasRecord]:
        """Every alias of ``name``, by name. Raises ``FunctionNotFound``."""
        self.get(name)
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, alias, version, routing, description, revision, created_at, updated_at FROM aliases "
                "WHERE name = ? ORDER BY alias",
                (name,),
            ).fetchall()
        return [_alias_record(row) for row in rows]

    # --- writes ------------------------------------------------------------

    def put(self, name: str, digest: str, kind: str, config: FunctionConfig, size_bytes: int) -> FunctionRecord:
        """Create or replace ``$LATEST`` of ``name`` (a deploy): bumps its revision."""
        now = time.time()
        with self._lock:
            self._conn.execute(
                """INSERT INTO functions (name, digest, kind, config, size_bytes, revision, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, 1, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET digest = excluded.digest, kind = excluded.kind,
                     config = excluded.config,
                     size_bytes = excluded.size_bytes, revision = revision + 1, updated_at = excluded.updated_at""",
                (name, digest, kind, self._config_text(config), size_bytes, now, now),
            )
            self._changed()
        return self.get(name)

    def update_config(self, name: str, config: FunctionConfig) -> FunctionRecord:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE functions SET config = ?, revision = revision + 1, updated_at = ? WHERE name = ?",
                (self._config_text(config), time.time(), name),
            )
            self._changed()
        if cursor.rowcount == 0:
            raise FunctionNotFound(f"function {name!r} is not deployed")
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove ``name`` with its versions and aliases. Raises ``FunctionNotFound``.

        Blobs stay (other functions may share them).
        """
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            cursor = self._conn.execute("DELETE FROM functions WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM versions WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM aliases WHERE name = ?", (name,))
            self._changed()
        if cursor.rowcount == 0:
            raise FunctionNotFound(f"function {name!r} is not deployed")

    def publish(self, name: str, description: str = "") -> FunctionRecord:
        """Freeze ``$LATEST`` as the next version number; if the newest version already
        has the same code and config, that version is returned instead (as Lambda does).
        Numbers are never reused, even after a version is deleted.
        """
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            row = self._conn.execute(
                f"SELECT {_FUNCTION_COLUMNS}, last_version FROM functions WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise FunctionNotFound(f"function {name!r} is not deployed")
            latest, last_version = self._record(row[:-1]), row[-1]
            newest = self._conn.execute(
                "SELECT name, digest, kind, config, size_bytes, version, description, created_at FROM versions "
                "WHERE name = ? ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            if newest is not None:
                previous = self._version_record(newest)
                if previous.digest == latest.digest and previous.config == latest.config:
                    return previous
            number = last_version + 1
            self._conn.execute(
                "INSERT INTO versions (name, version, digest, kind, config, size_bytes, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, number, latest.digest, latest.kind, row[3], latest.size_bytes, description, time.time()),
            )
            self._conn.execute("UPDATE functions SET last_version = ? WHERE name = ?", (number, name))
            self._changed()
        return self.get_version(name, str(number))

    def delete_version(self, name: str, version: str) -> None:
        """Remove a published version. Raises ``ResourceConflict`` while an alias points at it."""
        if version == LATEST:
            raise InvalidRequest("$LATEST cannot be deleted on its own: delete the function")
        number = _version_number(version)
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            users = [
                alias
                for alias, primary, routing in self._conn.execute(
                    "SELECT alias, version, routing FROM aliases WHERE name = ?", (name,)
                )
                if primary == str(number) or str(number) in json.loads(routing)
            ]
            if users:
                raise ResourceConflict(
                    f"version {number} of {name!r} is used by alias(es) {', '.join(sorted(users))}: "
                    "point them elsewhere or delete them first",
                    aliases=sorted(users),
                )
            cursor = self._conn.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, number))
            self._changed()
        if cursor.rowcount == 0:
            self.get(name)
            raise VersionNotFound(f"function {name!r} has no version {version}")

    def put_alias(
        self, name: str, alias: str, version: str, routing: dict[str, float] | None = None, description: str = ""
    ) -> AliasRecord:
        """Create or update ``alias`` of ``name``. Raises ``InvalidRequest`` naming the bad field,
        ``FunctionNotFound`` or ``VersionNotFound``.
        """
        routing = _check_alias(alias, version, routing)
        for needed in (version, *routing):
            self.get_version(name, needed)
        now = time.time()
        with self._lock:
            self._conn.execute(
                """INSERT INTO aliases (name, alias, version, routing, description, revision, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, 1, ?, ?)
                   ON CONFLICT(name, alias) DO UPDATE SET version = excluded.version, routing = excluded.routing,
                     description = excluded.description, revision = revision + 1,
                     updated_at = excluded.updated_at""",
                (name, alias, version, json.dumps(routing), description, now, now),
            )
            self._changed()
        return self.get_alias(name, alias)

    def delete_alias(self, name: str, alias: str) -> None:
        """Raises ``FunctionNotFound``/``AliasNotFound``."""
        with self._lock:
            cursor = self._conn.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
            self._changed()
        if cursor.rowcount == 0:
            self.get(name)
            raise AliasNotFound(f"function {name!r} has no alias {alias!r}")

    # --- rows ------------------------------------------------------------------

    def _config_text(self, config: FunctionConfig) -> str:
        data = config.to_dict(reveal_secrets=True)
        data["secrets"] = {key: self.secrets.encrypt(value) for key, value in config.secrets.items()}
        return json.dumps(data)

    def _config(self, text: str, name: str) -> FunctionConfig:
        data = json.loads(text)
        stored = data.get("secrets") or {}
        if stored:
            data["secrets"] = {
                key: self.secrets.decrypt(value, f"secret {key} of {name!r}") for key, value in stored.items()
            }
        return FunctionConfig(**data)

    def _record(self, row: tuple[Any, ...]) -> FunctionRecord:
        name, digest, kind, config, size_bytes, revision, created_at, updated_at = row
        return FunctionRecord(
            name=name,
            digest=digest,
            kind=kind,
            config=self._config(config, name),
            size_bytes=size_bytes,
            revision=revision,
            created_at=created_at,
            updated_at=updated_at,
        )

    def _version_record(self, row: tuple[Any, ...]) -> FunctionRecord:
        name, digest, kind, config, size_bytes, version, description, created_at = row
        return FunctionRecord(
            name=name,
            digest=digest,
            kind=kind,
            config=self._config(config, name),
            size_bytes=size_bytes,
            revision=1,
            created_at=created_at,
            updated_at=created_at,
            version=str(version),
            description=description,
        )


def _version_number(version: str) -> int:
    if not isinstance(version, str) or not version.isdigit() or int(version) < 1:
        raise InvalidRequest(f"version must be $LATEST or a published version number, got {version!r}")
    return int(version)


def _check_alias(alias: str, version: str, routing: dict[str, float] | None) -> dict[str, float]:
    """Validate an alias's fields; the routing table with float weights."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise InvalidRequest(
            f"alias name {alias!r} is invalid: use 1-64 of A-Z a-z 0-9 _ -, not only digits (those are versions)"
        )
    if version != LATEST:
        _version_number(version)
    routing = routing or {}
    if not isinstance(routing, dict):
        raise InvalidRequest('routing must be an object {"<version>": weight}')
    if len(routing) > 1:
        raise InvalidRequest("routing may name one additional version")
    checked: dict[str, float] = {}
    for extra, weight in routing.items():
        _version_number(extra)
        if version == LATEST:
            raise InvalidRequest("routing needs a published primary version, not $LATEST")
        if extra == version:
            raise InvalidRequest(f"routing names the alias's own version {extra}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 < weight < 1.0:
            raise InvalidRequest(f"routing weight of version {extra} must be a number between 0 and 1, got {weight!r}")
        checked[extra] = float(weight)
    return checked


def _alias_record(row: tuple[Any, ...]) -> AliasRecord:
    name, alias, version, routing, description, revision, created_at, updated_at = row
    return AliasRecord(
        function=name,
        name=alias,
        version=version,
        routing=json.loads(routing),
        description=description,
        revision=revision,
        created_at=created_at,
        updated_at=updated_at,
    )
