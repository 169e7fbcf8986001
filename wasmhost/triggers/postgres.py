"""Database changes from PostgreSQL (``postgres``), like DynamoDB Streams -> Lambda.

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

The runner reads ``id > position`` in order, invokes the function with
``{"Records": [...]}`` and, only after it succeeded, moves the position and
deletes the delivered outbox rows in one transaction; the position update is a
compare-and-set on the old value, so a stale runner can never move it back.
Stream rules as in Lambda: a failed batch is retried in order; with
``batchItemFailures`` the position moves to just before the lowest failed record
and the next batch starts there; after ``maximum_retry_attempts`` the rest of
the batch goes to ``on_failure`` and the position moves past it (without
``on_failure`` it is retried for ever: nothing is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..errors import FunctionNotFound, InvalidConfig, Throttled, WasmhostError
from ..result import InvocationResult
from .base import Runner, TriggerContext
from .mapping import REPORT_EVERY_S, MappingType
from .store import Trigger

log = logging.getLogger("wasmhost.triggers")

EVENTS = ("INSERT", "UPDATE", "DELETE")
#: pg_trigger.tgtype bits: ROW, INSERT, DELETE, UPDATE (AFTER has no bit).
TGTYPE_ROW = 1
TGTYPE_BITS = {"INSERT": 4, "DELETE": 8, "UPDATE": 16}
#: Advisory lock keys (the two-int form, its own key space): commit order, and installs/removals.
LOCK_SPACE = 0x77617368  # "wash"
ORDER_LOCK = (LOCK_SPACE, 1)
INSTALL_LOCK = (LOCK_SPACE, 2)
#: Without a NOTIFY, look at the outbox this often anyway (a lost wake-up costs at most this).
IDLE_POLL_S = 5.0
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


class PostgresType(MappingType):
    name = "postgres"
    source_fields = ("dsn", "table", "events", "starting_position")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self.validate_mapping(fields)
        dsn = self.string(fields, "dsn", required=True, pattern_hint="postgresql://user@host:5432/dbname")
        try:
            conninfo_to_dict(dsn)
        except psycopg.Error as error:  # libpq quotes the string back: never show it (a password)
            reason = str(error).replace(dsn, "<dsn>").splitlines()[0]
            raise InvalidConfig(f"postgres trigger: dsn is not a PostgreSQL connection string ({reason})") from None
        values["dsn"] = dsn
        table = self.string(fields, "table", required=True, pattern_hint="schema.table or table")
        try:
            parse_table(table)
        except ValueError:
            raise InvalidConfig(
                f"postgres trigger: table must be 'schema.table' or 'table', each a name of letters, digits, "
                f"_ and $ not starting with a digit (at most 63 characters), got {table!r}"
            ) from None
        values["table"] = table
        events = [e.upper() for e in self.string_list(fields, "events", list(EVENTS))]
        if not events or not set(events) <= set(EVENTS) or len(set(events)) != len(events):
            raise InvalidConfig(
                f"postgres trigger: events must be a non-empty list of distinct {', '.join(EVENTS)}, "
                f"got {fields.get('events')!r}"
            )
        values["events"] = [e for e in EVENTS if e in events]
        position = self.string(fields, "starting_position", "LATEST")
        if position != "LATEST":
            raise InvalidConfig(
                f"postgres trigger: starting_position must be LATEST, got {position!r} (changes are captured "
                "from when the trigger is installed on the table; there is no older history to start from)"
            )
        values["starting_position"] = position
        return values

    def describe(self, config: dict[str, Any]) -> str:
        try:
            where = location(config["dsn"])
        except psycopg.Error:
            where = "?"
        return f"{config['table']} on {where} ({', '.join(config.get('events', EVENTS))})"

    def runner(self, trigger: Trigger, ctx: TriggerContext) -> Runner:
        return PostgresRunner(trigger, ctx)

    def removed(self, trigger: Trigger, host: Any) -> None:
        """Drop the table trigger, the outbox rows and the position (best effort: logs).
        Blocks for up to 5 s to connect and 5 s to lock the table (DROP TRIGGER waits for
        the transactions using it)."""
        try:
            with psycopg.connect(trigger.config["dsn"], autocommit=True, connect_timeout=5) as conn:
                conn.execute("SET lock_timeout = '5s'")
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
                    drop_table_triggers(conn, trigger.id)
                    if conn.execute("SELECT to_regclass('wasmhost_cdc.positions')").fetchone() != (None,):
                        conn.execute("DELETE FROM wasmhost_cdc.outbox WHERE trigger_id = %s", (trigger.id,))
                        conn.execute("DELETE FROM wasmhost_cdc.positions WHERE trigger_id = %s", (trigger.id,))
        except psycopg.Error as error:
            log.warning(
                "trigger %s: could not remove its table trigger from %s: %s", trigger.id, _where(trigger), error
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


def _where(trigger: Trigger) -> str:
    try:
        return f"{trigger.config['table']} on {location(trigger.config['dsn'])}"
    except (psycopg.Error, KeyError):
        return "?"


TYPE = PostgresType()


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


class StalePosition(RuntimeError):
    """The stored position is not the one this runner started from (another runner moved it)."""


class PostgresRunner(Runner):
    """Installs the capture, then delivers the outbox in order (see the module doc)."""

    event_source = "wasmhost:postgres"

    def __init__(self, trigger: Trigger, ctx: TriggerContext) -> None:
        super().__init__(trigger, ctx)
        config = trigger.config
        self.dsn: str = config["dsn"]
        self.schema, self.table = parse_table(config["table"])
        self.events: list[str] = config.get("events", list(EVENTS))
        self.batch_size: int = config.get("batch_size", 10)
        self.window_s: float = config.get("maximum_batching_window_ms", 0) / 1000
        self.max_retries: int = config.get("maximum_retry_attempts", -1)
        self.retry_delay_s: float = config.get("retry_delay_ms", 1000) / 1000
        self.on_failure: str | None = config.get("on_failure")
        self.channel = f"wasmhost_cdc_{trigger.id}"
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.position = 0
        #: Failed runs in a row whose lowest failed record was ``head`` (reset when the position moves).
        self.head: int | None = None
        self.attempts = 0
        self.stats: dict[str, Any] = {"received": 0, "succeeded": 0, "failed": 0, "dead_lettered": 0}
        self._reported = 0.0

    def source_arn(self) -> str:
        where = location(self.dsn)
        return f"arn:wasmhost:postgres:local:{where}/table/{self.schema or '?'}.{self.table}/stream/{self.trigger.id}"

    # --- setup -------------------------------------------------------------------

    async def run(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=10, application_name=f"wasmhost {self.trigger.id}"
        )
        if not await self.install():
            return  # the trigger was deleted meanwhile: nothing to run
        # The position's commits need not wait for the disk: a position lost in a PostgreSQL
        # crash only makes the last deliveries (wal_writer_delay x 3, 0.6 s) repeat, never go missing.
        await self.conn.execute("SET synchronous_commit = off")
        await self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.position = await self.load_position()
        self.ctx.report(self.trigger, state="running", last_error=None, position=self.position)
        while True:
            batch = await self.collect()
            if batch:
                await self.deliver(batch)
            await self.maybe_report()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def install(self) -> bool:
        """Create (idempotently) the schema and the table trigger; False if the trigger is gone.

        Under ``INSTALL_LOCK``, as ``removed`` is, after checking the trigger is still in
        the store: a removal cannot be undone by a runner that was still starting.
        """
        assert self.conn is not None
        conn = self.conn
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
            if await asyncio.to_thread(self.ctx.store.get, self.trigger.id) is None:
                return False
            for statement in SCHEMA_SQL:
                await conn.execute(statement)
            qualified = sql.Identifier(*(p for p in (self.schema, self.table) if p)).as_string(conn)
            cursor = await conn.execute(
                "SELECT c.oid, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
                (qualified,),
            )
            found = await cursor.fetchone()
            if found is None:
                raise LookupError(f"table {self.trigger.config['table']} does not exist in {location(self.dsn)}")
            relid, self.schema = found
            name = trigger_name(self.trigger.id)
            tgtype = TGTYPE_ROW | sum(TGTYPE_BITS[e] for e in self.events)
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
                        sql.SQL(" OR ").join(sql.SQL(e) for e in self.events),
                        sql.SQL(qualified),
                        sql.Literal(self.trigger.id),
                    )
                )
            await conn.execute(
                "INSERT INTO wasmhost_cdc.positions (trigger_id, last_id) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (self.trigger.id,),
            )
        return True

    async def load_position(self) -> int:
        assert self.conn is not None
        cursor = await self.conn.execute(
            "SELECT last_id FROM wasmhost_cdc.positions WHERE trigger_id = %s", (self.trigger.id,)
        )
        row = await cursor.fetchone()
        if row is None:
            raise StalePosition(f"trigger {self.trigger.id}: its position was removed")
        return int(row[0])

    # --- reading -------------------------------------------------------------------

    async def read(self, after: int, limit: int) -> list[Change]:
        assert self.conn is not None
        cursor = await self.conn.execute(
            "SELECT id, op, schema_name, table_name, old::text, new::text, txid, "
            "(extract(epoch FROM changed_at) * 1000)::bigint FROM wasmhost_cdc.outbox "
            "WHERE trigger_id = %s AND id > %s ORDER BY id LIMIT %s",
            (self.trigger.id, after, limit),
        )
        return [
            Change(seq, op, schema, table, _json(old), _json(new), txid, at)
            for seq, op, schema, table, old, new, txid, at in await cursor.fetchall()
        ]

    async def wait(self, timeout_s: float) -> None:
        """Until a NOTIFY on this trigger's channel arrives (or one came meanwhile), at most ``timeout_s``."""
        assert self.conn is not None
        async for _ in self.conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1):
            pass  # the generator stops by itself after one: breaking out would keep the connection locked

    async def collect(self) -> list[Change]:
        """Up to ``batch_size`` changes after the position, waiting at most
        ``maximum_batching_window_ms`` after the first for more."""
        batch = await self.read(self.position, self.batch_size)
        if not batch:
            await self.wait(IDLE_POLL_S)
            batch = await self.read(self.position, self.batch_size)
        if batch and self.window_s > 0:
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                await self.wait(left)
                batch += await self.read(batch[-1].seq, self.batch_size - len(batch))
        self.stats["received"] += len(batch)
        return batch

    # --- delivering -------------------------------------------------------------------

    async def deliver(self, batch: list[Change]) -> None:
        records = [self.record(change) for change in batch]
        lowest: int | None
        try:
            result = await self.ctx.invoke(self.trigger, {"Records": records})
        except (Throttled, FunctionNotFound) as error:  # not the batch's fault: not counted as an attempt
            self.note_error(error)
            await asyncio.sleep(max(self.retry_delay_s, 1.0 if isinstance(error, FunctionNotFound) else 0.1))
            return
        except WasmhostError as error:  # the event cannot be encoded, and the like: the batch failed
            self.note_error(error)
            lowest, why = 0, {"errorType": error.type, "errorMessage": error.message}
        else:
            lowest, why = lowest_failure(result, batch)
        self.stats["last_batch_at"] = time.time()
        if lowest is None:
            await self.checkpoint(batch[-1].seq)
            self.stats["succeeded"] += len(batch)
            return
        if lowest > 0:  # Lambda checkpoints just before the lowest failed record
            await self.checkpoint(batch[lowest - 1].seq)
            self.stats["succeeded"] += lowest
        rest = batch[lowest:]
        self.stats["failed"] += len(rest)
        self.stats["last_failure"] = why
        self.attempts = self.attempts + 1 if self.head == rest[0].seq else 1
        self.head = rest[0].seq
        if self.on_failure and 0 <= self.max_retries < self.attempts:
            try:
                await self.send_on_failure(records[lowest:], rest, why)
            except Exception as error:  # the destination failed: keep retrying the batch instead
                log.warning("trigger %s: on_failure %s failed: %s", self.trigger.id, self.on_failure, error)
                self.note_error(error)
            else:
                await self.checkpoint(rest[-1].seq)
                self.stats["dead_lettered"] += len(rest)
                return
        await asyncio.sleep(self.retry_delay_s)

    async def checkpoint(self, seq: int) -> None:
        """Delivered up to ``seq``: move the position (compare-and-set) and drop those outbox rows."""
        assert self.conn is not None
        if seq <= self.position:
            return
        # One statement (one transaction, one round trip): the compare-and-set, and the
        # delete only if it succeeded.
        cursor = await self.conn.execute(
            "WITH moved AS (UPDATE wasmhost_cdc.positions SET last_id = %(seq)s, updated_at = now() "
            "  WHERE trigger_id = %(id)s AND last_id = %(old)s RETURNING 1), "
            "gone AS (DELETE FROM wasmhost_cdc.outbox WHERE trigger_id = %(id)s AND id <= %(seq)s "
            "  AND EXISTS (SELECT 1 FROM moved)) "
            "SELECT count(*) FROM moved",
            {"seq": seq, "id": self.trigger.id, "old": self.position},
        )
        row = await cursor.fetchone()
        if not row or row[0] != 1:
            raise StalePosition(
                f"trigger {self.trigger.id}: the position is no longer {self.position} (moved by another runner,"
                " or the trigger was removed); starting over from the stored one"
            )
        self.position = seq
        self.head, self.attempts = None, 0

    async def send_on_failure(self, records: list[dict[str, Any]], batch: list[Change], why: dict[str, Any]) -> None:
        """One record for the batch (Lambda's stream on-failure shape, with the records themselves:
        they leave the outbox once the position moves past them)."""
        assert self.on_failure is not None
        kind, _, target = self.on_failure.partition(":")
        first, last = str(batch[0].seq), str(batch[-1].seq)
        record = {
            "version": "1.0",
            "timestamp": _iso(int(time.time() * 1000)),
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.attempts,
                "functionArn": f"arn:wasmhost:lambda:local:function:{self.trigger.function}",
                "triggerId": self.trigger.id,
            },
            "responseContext": why,
            "PostgresBatchInfo": {
                "streamArn": self.source_arn(),
                "startSequenceNumber": first,
                "endSequenceNumber": last,
                "batchSize": len(batch),
                "approximateArrivalOfFirstRecord": _iso(batch[0].changed_at_ms),
                "approximateArrivalOfLastRecord": _iso(batch[-1].changed_at_ms),
            },
            "Records": records,
        }
        if kind == "function":
            await self.ctx.host.ainvoke_event(target, record)
        else:  # the host's dead-letter queues: a redrive reruns the function on these records
            await asyncio.to_thread(
                self.ctx.host.events.add_dead_letter,
                target,
                request_id=f"{self.trigger.id}:{first}-{last}",
                function=self.trigger.function,
                qualifier=self.trigger.qualifier,
                event_bytes=msgpack.packb({"Records": records}, use_bin_type=True),
                record=record,
                attempts=self.attempts,
            )

    def record(self, change: Change) -> dict[str, Any]:
        seq = str(change.seq)
        return {
            "eventID": seq,
            "eventName": change.op,
            "eventVersion": "1.0",
            "eventSource": self.event_source,
            "eventSourceARN": self.source_arn(),
            "awsRegion": "local",
            "postgres": {
                "schema": change.schema,
                "table": change.table,
                "old": change.old,
                "new": change.new,
                "sequenceNumber": seq,
                "commitTimestamp": _iso(change.changed_at_ms),
                "txid": change.txid,
            },
        }

    # --- status ----------------------------------------------------------------------

    def note_error(self, error: BaseException) -> None:
        self.stats["last_error"] = f"{type(error).__name__}: {error}"

    async def maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._reported < REPORT_EVERY_S or self.conn is None:
            return
        self._reported = now
        cursor = await self.conn.execute(
            "SELECT count(*) FROM (SELECT FROM wasmhost_cdc.outbox WHERE trigger_id = %s AND id > %s LIMIT %s) AS o",
            (self.trigger.id, self.position, MAX_BACKLOG_COUNT),
        )
        row = await cursor.fetchone()
        backlog = int(row[0]) if row else 0
        await asyncio.to_thread(
            self.ctx.report, self.trigger, state="running", position=self.position, backlog=backlog, **self.stats
        )


def lowest_failure(result: InvocationResult, batch: list[Change]) -> tuple[int | None, dict[str, Any]]:
    """Index in ``batch`` of the lowest failed record (None: all succeeded), and why; Lambda's
    rules for streams: an error fails the whole batch; ``batchItemFailures`` empty or null is
    success; an identifier that is empty, null or not a ``sequenceNumber`` of the batch fails it all."""
    if result.error is not None:
        error = result.error
        return 0, {"errorType": error.type, "errorMessage": error.message, "requestId": result.request_id}
    payload = result.payload
    items = payload.get("batchItemFailures") if isinstance(payload, dict) else None
    if not items:
        return None, {}
    why = {"errorType": "BatchItemFailures", "requestId": result.request_id}
    if not isinstance(items, list):
        return 0, {**why, "errorMessage": "batchItemFailures is not a list: the whole batch failed"}
    index = {str(change.seq): i for i, change in enumerate(batch)}
    lowest = len(batch)
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in index:
            message = f"itemIdentifier {identifier!r} is not a sequenceNumber of the batch: the whole batch failed"
            return 0, {**why, "errorMessage": message}
        lowest = min(lowest, index[identifier])
    message = f"the function reported {len(items)} failed record(s); retrying from sequenceNumber {batch[lowest].seq}"
    return lowest, {**why, "errorMessage": message}


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"
