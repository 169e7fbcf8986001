"""The capture of a ``postgres`` trigger (``postgres.py``), inside PostgreSQL, and
every statement wasmhost runs against it.

Capture is done inside PostgreSQL, with nothing but SQL (no ``wal_level=logical``,
no extension, no replication privilege, no replication slot):

- schema ``wasmhost_cdc`` (installed idempotently by the runner): an ``outbox``
  table of changes, a ``positions`` table (trigger id -> last delivered outbox
  id) and the trigger function ``capture()``;
- on the watched table, one ``CONSTRAINT TRIGGER ... DEFERRABLE INITIALLY
  DEFERRED ... FOR EACH ROW`` per wasmhost trigger, named ``wasmhost_<id>``.
  Being deferred, it runs at COMMIT (still inside the transaction), once per
  changed row in the order of the changes, with that change's OLD and NEW.
  ``capture()`` takes ``pg_advisory_xact_lock`` (one key for every watched
  table), then writes ``to_jsonb(OLD/NEW)`` to the outbox with an id from a
  sequence and ``NOTIFY``s the trigger's channel (delivered at commit).

Commit order: the lock is held from the first captured row until the
transaction has committed (it is released after the commit is visible), so
outbox ids are handed out one committing transaction after the other: ids are
in commit order, and once a reader sees id N no smaller id can appear later.
The cost: the commit phases (outbox inserts + commit) of transactions that
changed watched tables are serialized; the rest of those transactions runs
concurrently, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

EVENTS = ("INSERT", "UPDATE", "DELETE")
#: pg_trigger.tgtype bits: ROW, INSERT, DELETE, UPDATE (AFTER has no bit).
TGTYPE_ROW = 1
TGTYPE_BITS = {"INSERT": 4, "DELETE": 8, "UPDATE": 16}
#: Advisory lock keys (the two-int form, its own key space): commit order, and installs/removals.
LOCK_SPACE = 0x77617368  # "wash"
ORDER_LOCK = (LOCK_SPACE, 1)
INSTALL_LOCK = (LOCK_SPACE, 2)
#: The ``backlog`` in the status counts changes waiting up to this many (a count is not free).
MAX_BACKLOG_COUNT = 100_000
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

SCHEMA_SQL = (
    "CREATE SCHEMA IF NOT EXISTS wasmhost_cdc",
    # A sequence with CACHE 1 (the default): ids are handed out in call order across sessions.
    """CREATE TABLE IF NOT EXISTS wasmhost_cdc.outbox (
        id          bigserial,
        trigger_id  text        NOT NULL,
        op          text        NOT NULL,
        schema_name text        NOT NULL,
        table_name  text        NOT NULL,
        old         jsonb,
        new         jsonb,
        txid        bigint      NOT NULL,
        changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (trigger_id, id)
    )""",
    """CREATE TABLE IF NOT EXISTS wasmhost_cdc.positions (
        trigger_id text        PRIMARY KEY,
        last_id    bigint      NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    # SECURITY DEFINER: writers of the watched table need no rights on wasmhost_cdc.
    f"""CREATE OR REPLACE FUNCTION wasmhost_cdc.capture() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $capture$
    BEGIN
        -- Held until this transaction ends: outbox ids follow commit order.
        PERFORM pg_advisory_xact_lock({ORDER_LOCK[0]}, {ORDER_LOCK[1]});
        INSERT INTO wasmhost_cdc.outbox (trigger_id, op, schema_name, table_name, old, new, txid)
        VALUES (TG_ARGV[0], TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
                txid_current());
        PERFORM pg_notify('wasmhost_cdc_' || TG_ARGV[0], '');
        RETURN NULL;
    END
    $capture$""",
)


def parse_table(value: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table`` -> (schema or None, table); ValueError if not identifiers."""
    parts = value.split(".")
    if len(parts) > 2 or not all(IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(value)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def location(dsn: str) -> str:
    """``host:port/dbname`` of ``dsn``, never its password."""
    info = conninfo_to_dict(dsn)
    host = str(info.get("host") or "localhost").split(",")[0]
    port = str(info.get("port") or "5432").split(",")[0]
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def trigger_name(trigger_id: str) -> str:
    return f"wasmhost_{trigger_id}"


async def find_table(conn: psycopg.AsyncConnection[Any], qualified: str) -> tuple[int, str] | None:
    """The oid and schema of table ``qualified`` (quoted, as ``to_regclass`` takes it); None if there is none."""
    cursor = await conn.execute(
        "SELECT c.oid, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
        (qualified,),
    )
    found = await cursor.fetchone()
    return None if found is None else (found[0], found[1])


async def install_table_trigger(
    conn: psycopg.AsyncConnection[Any], trigger_id: str, relid: int, qualified: str, events: list[str]
) -> None:
    """Create the table trigger of ``trigger_id`` on table ``relid`` (named ``qualified``) for
    ``events``, recreating one on another table or for other events, and its position (0) if none."""
    name = trigger_name(trigger_id)
    tgtype = TGTYPE_ROW | sum(TGTYPE_BITS[e] for e in events)
    cursor = await conn.execute(
        "SELECT t.tgrelid, t.tgtype, t.tgdeferrable AND t.tginitdeferred, n.nspname, c.relname "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE t.tgname = %s",
        (name,),
    )
    for rel, kind, deferred, schema, table in await cursor.fetchall():
        if (rel, kind, deferred) != (relid, tgtype, True):  # another table or other events: recreate
            drop = sql.SQL("DROP TRIGGER {} ON {}.{}")  # (constraint triggers have no OR REPLACE)
            await conn.execute(drop.format(sql.Identifier(name), sql.Identifier(schema), sql.Identifier(table)))
    cursor = await conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s", (name, relid))
    if await cursor.fetchone() is None:
        await conn.execute(
            sql.SQL(
                "CREATE CONSTRAINT TRIGGER {} AFTER {} ON {} DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION wasmhost_cdc.capture({})"
            ).format(
                sql.Identifier(name),
                sql.SQL(" OR ").join(sql.SQL(e) for e in events),
                sql.SQL(qualified),
                sql.Literal(trigger_id),
            )
        )
    await conn.execute(
        "INSERT INTO wasmhost_cdc.positions (trigger_id, last_id) VALUES (%s, 0) ON CONFLICT DO NOTHING",
        (trigger_id,),
    )


def drop_table_triggers(conn: psycopg.Connection[Any], trigger_id: str) -> None:
    """Drop the table trigger of ``trigger_id`` wherever it is (the table may have been renamed)."""
    name = trigger_name(trigger_id)
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname = %s",
        (name,),
    ).fetchall()
    for schema, table in rows:
        drop = sql.SQL("DROP TRIGGER IF EXISTS {} ON {}.{}")
        conn.execute(drop.format(sql.Identifier(name), sql.Identifier(schema), sql.Identifier(table)))


def remove_capture(conn: psycopg.Connection[Any], trigger_id: str) -> None:
    """Drop the table trigger, the outbox rows and the position of ``trigger_id``."""
    drop_table_triggers(conn, trigger_id)
    if conn.execute("SELECT to_regclass('wasmhost_cdc.positions')").fetchone() != (None,):
        conn.execute("DELETE FROM wasmhost_cdc.outbox WHERE trigger_id = %s", (trigger_id,))
        conn.execute("DELETE FROM wasmhost_cdc.positions WHERE trigger_id = %s", (trigger_id,))


@dataclass
class Change:
    """One outbox row."""

    seq: int
    op: str
    schema: str
    table: str
    old: Any
    new: Any
    txid: int
    changed_at_ms: int


async def read_outbox(conn: psycopg.AsyncConnection[Any], trigger_id: str, after: int, limit: int) -> list[Change]:
    """Up to ``limit`` changes of ``trigger_id`` with an id after ``after``, in order."""
    cursor = await conn.execute(
        "SELECT id, op, schema_name, table_name, old::text, new::text, txid, "
        "(extract(epoch FROM changed_at) * 1000)::bigint FROM wasmhost_cdc.outbox "
        "WHERE trigger_id = %s AND id > %s ORDER BY id LIMIT %s",
        (trigger_id, after, limit),
    )
    return [
        Change(seq, op, schema, table, _json(old), _json(new), txid, at)
        for seq, op, schema, table, old, new, txid, at in await cursor.fetchall()
    ]


async def stored_position(conn: psycopg.AsyncConnection[Any], trigger_id: str) -> int | None:
    """The last delivered outbox id of ``trigger_id``; None if it has no position."""
    cursor = await conn.execute("SELECT last_id FROM wasmhost_cdc.positions WHERE trigger_id = %s", (trigger_id,))
    row = await cursor.fetchone()
    return None if row is None else int(row[0])


async def move_position(conn: psycopg.AsyncConnection[Any], trigger_id: str, old: int, seq: int) -> bool:
    """Move the position of ``trigger_id`` from ``old`` to ``seq`` and drop the outbox rows up to
    ``seq``; False (and nothing done) if the position is no longer ``old``."""
    # One statement (one transaction, one round trip): the compare-and-set, and the
    # delete only if it succeeded.
    cursor = await conn.execute(
        "WITH moved AS (UPDATE wasmhost_cdc.positions SET last_id = %(seq)s, updated_at = now() "
        "  WHERE trigger_id = %(id)s AND last_id = %(old)s RETURNING 1), "
        "gone AS (DELETE FROM wasmhost_cdc.outbox WHERE trigger_id = %(id)s AND id <= %(seq)s "
        "  AND EXISTS (SELECT 1 FROM moved)) "
        "SELECT count(*) FROM moved",
        {"seq": seq, "id": trigger_id, "old": old},
    )
    row = await cursor.fetchone()
    return bool(row and row[0] == 1)


async def count_backlog(conn: psycopg.AsyncConnection[Any], trigger_id: str, after: int) -> int:
    """How many changes of ``trigger_id`` wait after ``after``, counted up to ``MAX_BACKLOG_COUNT``."""
    cursor = await conn.execute(
        "SELECT count(*) FROM (SELECT FROM wasmhost_cdc.outbox WHERE trigger_id = %s AND id > %s LIMIT %s) AS o",
        (trigger_id, after, MAX_BACKLOG_COUNT),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)
