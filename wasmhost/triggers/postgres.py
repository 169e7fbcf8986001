"""Database changes from PostgreSQL (``postgres``), like DynamoDB Streams -> Lambda.

Changes are captured inside PostgreSQL, with nothing but SQL, into an outbox in commit
order (``postgres_sql.py``: the capture, and every statement run against it).

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
import time
from typing import Any

import msgpack
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..errors import FunctionNotFound, InvalidConfig, Throttled, WasmhostError
from ..result import InvocationResult
from .base import Runner, TriggerContext, log
from .mapping import REPORT_EVERY_S, MappingType
from .postgres_sql import (
    EVENTS,
    INSTALL_LOCK,
    SCHEMA_SQL,
    Change,
    count_backlog,
    find_table,
    install_table_trigger,
    location,
    move_position,
    parse_table,
    read_outbox,
    remove_capture,
    stored_position,
)
from .postgres_sql import trigger_name as trigger_name  # re-exported
from .store import Trigger

#: Without a NOTIFY, look at the outbox this often anyway (a lost wake-up costs at most this).
IDLE_POLL_S = 5.0


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
                    remove_capture(conn, trigger.id)
        except psycopg.Error as error:
            log.warning(
                "trigger %s: could not remove its table trigger from %s: %s", trigger.id, _where(trigger), error
            )


def _where(trigger: Trigger) -> str:
    try:
        return f"{trigger.config['table']} on {location(trigger.config['dsn'])}"
    except (psycopg.Error, KeyError):
        return "?"


TYPE = PostgresType()


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
            found = await find_table(conn, qualified)
            if found is None:
                raise LookupError(f"table {self.trigger.config['table']} does not exist in {location(self.dsn)}")
            relid, self.schema = found
            await install_table_trigger(conn, self.trigger.id, relid, qualified, self.events)
        return True

    async def load_position(self) -> int:
        assert self.conn is not None
        position = await stored_position(self.conn, self.trigger.id)
        if position is None:
            raise StalePosition(f"trigger {self.trigger.id}: its position was removed")
        return position

    # --- reading -------------------------------------------------------------------

    async def read(self, after: int, limit: int) -> list[Change]:
        assert self.conn is not None
        return await read_outbox(self.conn, self.trigger.id, after, limit)

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
        if not await move_position(self.conn, self.trigger.id, self.position, seq):
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
        backlog = await count_backlog(self.conn, self.trigger.id, self.position)
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


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"
