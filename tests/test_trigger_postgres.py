"""The ``postgres`` trigger against the real PostgreSQL on localhost:5432 (database ``test``).

One Host (data directory) for the module with the ``changes`` guest compiled once;
each test has its own table and function, and runs the triggers with a
``ServerThread`` (or a real ``wasmhost serve`` to ``kill -9``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from wasmhost import FunctionConfig, Host
from wasmhost.cli import main as cli
from wasmhost.errors import InvalidConfig
from wasmhost.triggers import TriggerContext, validate
from wasmhost.triggers.postgres import TYPE, PostgresRunner, StalePosition, trigger_name

from .conftest import ServerThread
from .triggers_support import ROOT, ServeProcess, log_lines, require_service, wait_for

DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Trust authentication ignores the password: it is there to check it is never shown.
DSN_WITH_PASSWORD = "postgresql://postgres:s3cret-pw@127.0.0.1:5432/test"
CHANGES = ROOT / "guests" / "python" / "examples" / "changes"


@pytest.fixture(scope="module")
def changes_wasm() -> bytes:
    from wasmhost.build import build

    return build(CHANGES).path.read_bytes()


@pytest.fixture(scope="module")
def pg_host(tmp_path_factory: pytest.TempPathFactory, changes_wasm: bytes) -> Iterator[Host]:
    require_service(5432, "PostgreSQL")
    with Host(data_dir=tmp_path_factory.mktemp("pg") / "data") as host:
        host.deploy("changes", changes_wasm, FunctionConfig(timeout_ms=30000))  # compiles it once
        yield host


@pytest.fixture
def pg() -> Iterator[psycopg.Connection[Any]]:
    require_service(5432, "PostgreSQL")
    with psycopg.connect(DSN, autocommit=True) as conn:
        yield conn


@pytest.fixture
def table(pg: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"cdc_{uuid.uuid4().hex[:12]}"
    pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text, fail boolean, sleep_ms int)")
    yield name
    pg.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def fn(pg_host: Host, changes_wasm: bytes) -> Iterator[str]:
    """A function running the ``changes`` guest (compiled already: deploying is quick); deleting
    it at the end removes its triggers, and so their table triggers and outbox rows."""
    name = f"changes-{uuid.uuid4().hex[:8]}"
    pg_host.deploy(name, changes_wasm, FunctionConfig(timeout_ms=30000))
    yield name
    pg_host.delete(name)


def add(host: Host, function: str, table: str, **fields: Any) -> str:
    trigger = host.add_trigger(function, {"type": "postgres", "dsn": DSN, "table": table, **fields})
    return trigger.id


def installed(pg: psycopg.Connection[Any], trigger_id: str) -> bool:
    row = pg.execute("SELECT count(*) FROM pg_trigger WHERE tgname = %s", (trigger_name(trigger_id),)).fetchone()
    return bool(row and row[0])


def position(pg: psycopg.Connection[Any], trigger_id: str) -> int | None:
    row = pg.execute("SELECT last_id FROM wasmhost_cdc.positions WHERE trigger_id = %s", (trigger_id,)).fetchone()
    return None if row is None else int(row[0])


def changes(host: Host, function: str) -> list[dict[str, Any]]:
    """Records the guest logged, in order (repeats kept)."""
    return [json.loads(line) for line in log_lines(host, function, "change ")]


def batches(host: Host, function: str) -> list[list[int]]:
    return [[int(seq) for seq in line.split(",")] for line in log_lines(host, function, "batch ")]


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [(r["postgres"]["new"] or r["postgres"]["old"])["id"] for r in records]


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["postgres"]["sequenceNumber"]) for r in records]


def wait_ids(host: Host, function: str, expected: list[int], timeout_s: float = 20) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        records = changes(host, function)
        return records if set(expected) <= set(ids(records)) else None

    return wait_for(check, timeout_s, what=f"changes of rows {expected} delivered to {function}")  # type: ignore[no-any-return]


# --- fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "t"}, "dsn is required"),
        ({"dsn": DSN}, "table is required"),
        ({"dsn": "postgresql://u:pw@[bad/x", "table": "t"}, "dsn is not a PostgreSQL connection string"),
        ({"dsn": DSN, "table": "a.b.c"}, "table must be 'schema.table' or 'table'"),
        ({"dsn": DSN, "table": 'x"; DROP TABLE y; --'}, "table must be"),
        ({"dsn": DSN, "table": "1abc"}, "table must be"),
        ({"dsn": DSN, "table": "t", "events": ["INSERT", "TRUNCATE"]}, "events must be a non-empty list"),
        ({"dsn": DSN, "table": "t", "events": []}, "events must be a non-empty list"),
        ({"dsn": DSN, "table": "t", "starting_position": "TRIM_HORIZON"}, "starting_position must be LATEST"),
        ({"dsn": DSN, "table": "t", "batch_size": 0}, "batch_size must be an integer from 1"),
        ({"dsn": DSN, "table": "t", "on_failure": "nowhere"}, "on_failure"),
        ({"dsn": DSN, "table": "t", "slot": "x"}, "unknown field(s) slot"),
    ],
)
def test_bad_fields_are_rejected_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        validate({"type": "postgres", **fields})
    assert message in caught.value.message
    assert caught.value.message.startswith("postgres trigger:")
    assert "pw@" not in caught.value.message


def test_defaults_and_description_hide_the_password() -> None:
    _, config = validate({"type": "postgres", "dsn": DSN_WITH_PASSWORD, "table": "app.Orders", "events": ["delete"]})
    assert config["events"] == ["DELETE"] and config["starting_position"] == "LATEST"
    assert config["batch_size"] == 10 and config["maximum_retry_attempts"] == -1
    described = TYPE.describe(config)
    assert described == "app.Orders on 127.0.0.1:5432/test (DELETE)"


def test_the_cli_adds_lists_and_deletes_a_postgres_trigger(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]
) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(pg_host.config.data_dir)]
    added = runner.invoke(
        cli, [*base, "trigger", "add", fn, "postgres", f"dsn={DSN_WITH_PASSWORD}", f"table={table}", "events=delete"]
    )
    assert added.exit_code == 0, added.output
    trigger = json.loads(added.stdout)
    assert trigger["events"] == ["DELETE"] and trigger["batch_size"] == 10
    listed = runner.invoke(cli, [*base, "trigger", "list", fn])
    assert f"{table} on 127.0.0.1:5432/test (DELETE)" in listed.stdout and "s3cret-pw" not in listed.stdout
    bad = runner.invoke(cli, [*base, "trigger", "add", fn, "postgres", f"dsn={DSN}", "table=a.b.c"])
    assert bad.exit_code != 0 and "postgres trigger: table must be" in bad.output
    with ServerThread(pg_host):  # the runner installs the table trigger
        wait_for(lambda: installed(pg, trigger["id"]), what="the table trigger")
    deleted = runner.invoke(cli, [*base, "trigger", "delete", fn, trigger["id"]])
    assert deleted.exit_code == 0, deleted.output
    assert not installed(pg, trigger["id"])


# --- delivery ----------------------------------------------------------------------


def test_inserts_updates_deletes_are_delivered_with_old_and_new_rows(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]
) -> None:
    with ServerThread(pg_host) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post(
            f"/functions/{fn}/triggers",
            json={"type": "postgres", "dsn": DSN_WITH_PASSWORD, "table": f"public.{table}", "batch_size": 10},
        )
        assert answer.status_code == 201, answer.text
        trigger_id = answer.json()["id"]
        deletes_only = add(pg_host, fn, table, events=["DELETE"])  # a second mapping on the same table
        wait_for(lambda: installed(pg, trigger_id) and installed(pg, deletes_only), what="the table triggers")
        pg.execute(f"INSERT INTO {table} (id, note) VALUES (1, 'one')")
        pg.execute(f"UPDATE {table} SET note = 'uno' WHERE id = 1")
        with pg.transaction():
            pg.execute(f"INSERT INTO {table} (id, note) VALUES (2, 'two')")
            pg.execute(f"DELETE FROM {table} WHERE id = 1")
        records = wait_for(lambda: len(changes(pg_host, fn)) >= 5 and changes(pg_host, fn), what="5 records")
        status = client.get(f"/functions/{fn}/triggers/{trigger_id}").json()["status"]

    mine = [r for r in records if r["eventSourceARN"].endswith(trigger_id)]
    assert [(r["eventName"], r["postgres"]["old"], r["postgres"]["new"]) for r in mine] == [
        ("INSERT", None, {"id": 1, "note": "one", "fail": None, "sleep_ms": None}),
        (
            "UPDATE",
            {"id": 1, "note": "one", "fail": None, "sleep_ms": None},
            {"id": 1, "note": "uno", "fail": None, "sleep_ms": None},
        ),  # fmt: skip
        ("INSERT", None, {"id": 2, "note": "two", "fail": None, "sleep_ms": None}),
        ("DELETE", {"id": 1, "note": "uno", "fail": None, "sleep_ms": None}, None),
    ]
    assert seqs(mine) == sorted(seqs(mine))
    first = mine[0]
    assert first["eventSource"] == "wasmhost:postgres" and first["eventVersion"] == "1.0"
    assert first["eventID"] == first["postgres"]["sequenceNumber"]
    assert first["awsRegion"] == "local"
    assert first["eventSourceARN"] == (
        f"arn:wasmhost:postgres:local:127.0.0.1:5432/test/table/public.{table}/stream/{trigger_id}"
    )
    assert first["postgres"]["schema"] == "public" and first["postgres"]["table"] == table
    assert time.strptime(first["postgres"]["commitTimestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert mine[2]["postgres"]["txid"] == mine[3]["postgres"]["txid"] != mine[0]["postgres"]["txid"]
    # the DELETE-only mapping saw the delete alone
    theirs = [r for r in records if r["eventSourceARN"].endswith(deletes_only)]
    assert [r["eventName"] for r in theirs] == ["DELETE"]
    assert "s3cret-pw" not in json.dumps(records) and "s3cret-pw" not in json.dumps(status)
    # delivered rows leave the outbox, the position is the last one
    wait_for(lambda: position(pg, trigger_id) == seqs(mine)[-1], what="the position")
    left = pg.execute("SELECT count(*) FROM wasmhost_cdc.outbox WHERE trigger_id = %s", (trigger_id,)).fetchone()
    assert left == (0,)


def test_changes_arrive_in_commit_order(pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]) -> None:
    with ServerThread(pg_host):
        trigger_id = add(pg_host, fn, table)
        wait_for(lambda: installed(pg, trigger_id), what="the table trigger")
        with psycopg.connect(DSN) as first, psycopg.connect(DSN) as second:
            first.execute(f"INSERT INTO {table} (id, note) VALUES (1, 'first writes first')")
            second.execute(f"INSERT INTO {table} (id, note) VALUES (2, 'second commits first')")
            second.commit()
            first.execute(f"INSERT INTO {table} (id, note) VALUES (3, 'first, after the other committed')")
            first.commit()
        records = wait_ids(pg_host, fn, [1, 2, 3])
    assert ids(records) == [2, 1, 3]
    assert seqs(records) == sorted(seqs(records))


def test_the_batching_window_fills_a_batch(pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]) -> None:
    with ServerThread(pg_host):
        trigger_id = add(pg_host, fn, table, batch_size=10, maximum_batching_window_ms=1500)
        wait_for(lambda: installed(pg, trigger_id), what="the table trigger")
        for row in (1, 2, 3):  # three transactions, 100 ms apart
            pg.execute(f"INSERT INTO {table} (id) VALUES ({row})")
            time.sleep(0.1)
        records = wait_ids(pg_host, fn, [1, 2, 3])
    assert batches(pg_host, fn) == [seqs(records)]


def test_a_failed_batch_is_retried_in_order(pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]) -> None:
    pg_host.update_config(fn, env={"FAIL_ALL": "1"})
    with ServerThread(pg_host):
        add(pg_host, fn, table, batch_size=2, retry_delay_ms=100)
        wait_for(lambda: position(pg, pg_host.triggers(fn)[0].id) is not None, what="the install")
        for row in (1, 2, 3):
            pg.execute(f"INSERT INTO {table} (id) VALUES ({row})")
        wait_for(
            lambda: sum("FAIL_ALL is set" in line for line in log_lines(pg_host, fn)) >= 3,
            what="three failed runs",
        )
        assert changes(pg_host, fn) == []
        pg_host.update_config(fn, env={})
        records = wait_ids(pg_host, fn, [1, 2, 3])
    assert ids(records) == [1, 2, 3]  # in order, each once
    assert batches(pg_host, fn) == [seqs(records)[:2], seqs(records)[2:]]


def test_batch_item_failures_checkpoint_at_the_lowest_failed_record(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]
) -> None:
    dead_letters = f"pg-dlq-{uuid.uuid4().hex[:8]}"
    with ServerThread(pg_host):
        trigger_id = add(
            pg_host, fn, table, maximum_retry_attempts=1, retry_delay_ms=50, on_failure=f"queue:{dead_letters}"
        )
        wait_for(lambda: installed(pg, trigger_id), what="the table trigger")
        with pg.transaction():  # one transaction: one batch
            pg.execute(f"INSERT INTO {table} (id, fail) VALUES (1, false), (2, true), (3, false), (4, false)")
        wait_for(lambda: len(batches(pg_host, fn)) >= 2, what="the retry")
        pg.execute(f"INSERT INTO {table} (id) VALUES (5)")
        records = wait_ids(pg_host, fn, [5])
        # the position moved past the dead-lettered batch, then past 5
        wait_for(lambda: position(pg, trigger_id) == seqs(records)[-1], what="the position")

    one, two, three, four, five = sorted(set(seqs(records)))
    # 1 succeeded, 2 failed: checkpoint after 1, retry from 2; 2 failed again (1 retry allowed): on_failure
    assert batches(pg_host, fn) == [[one, two, three, four], [two, three, four], [five]]
    letters = pg_host.events.dead_letters(dead_letters)
    assert len(letters) == 1
    record = letters[0]["record"]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["PostgresBatchInfo"]["startSequenceNumber"] == str(two)
    assert record["PostgresBatchInfo"]["endSequenceNumber"] == str(four)
    assert [r["postgres"]["new"]["id"] for r in record["Records"]] == [2, 3, 4]
    assert "retrying from sequenceNumber" in record["responseContext"]["errorMessage"]


def test_a_restart_resumes_without_loss_or_repeat(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]
) -> None:
    with ServerThread(pg_host):
        trigger_id = add(pg_host, fn, table)
        wait_for(lambda: installed(pg, trigger_id), what="the table trigger")
        pg.execute(f"INSERT INTO {table} (id) VALUES (1), (2)")
        wait_ids(pg_host, fn, [1, 2])
        wait_for(lambda: position(pg, trigger_id) == max(seqs(changes(pg_host, fn))), what="the position")
    # the host is down: changes are kept in the outbox
    pg.execute(f"INSERT INTO {table} (id) VALUES (3)")
    pg.execute(f"UPDATE {table} SET note = 'later' WHERE id = 1")
    time.sleep(0.3)
    assert len(changes(pg_host, fn)) == 2
    with ServerThread(pg_host):
        records = wait_ids(pg_host, fn, [3])
        records = wait_for(lambda: len(changes(pg_host, fn)) >= 4 and changes(pg_host, fn), what="the update")
        time.sleep(0.3)
        records = changes(pg_host, fn)
    assert [(r["eventName"], i) for r, i in zip(records, ids(records), strict=True)] == [
        ("INSERT", 1),
        ("INSERT", 2),
        ("INSERT", 3),
        ("UPDATE", 1),
    ]
    assert seqs(records) == sorted(set(seqs(records)))


def test_a_stale_runner_cannot_move_the_position_back(pg_host: Host, fn: str, table: str, pg) -> None:
    trigger = pg_host.add_trigger(fn, {"type": "postgres", "dsn": DSN, "table": table})
    ctx = TriggerContext(pg_host, pg_host.trigger_store)

    async def scenario() -> None:
        ahead, stale = PostgresRunner(trigger, ctx), PostgresRunner(trigger, ctx)
        try:
            for runner in (ahead, stale):
                runner.conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
                assert await runner.install()
                runner.position = await runner.load_position()
            pg.execute(f"INSERT INTO {table} (id) VALUES (1), (2)")
            batch = await ahead.read(ahead.position, 10)
            assert [change.new["id"] for change in batch] == [1, 2]
            await ahead.checkpoint(batch[1].seq)
            with pytest.raises(StalePosition):
                await stale.checkpoint(batch[0].seq)
            assert position(pg, trigger.id) == batch[1].seq
        finally:
            await ahead.close()
            await stale.close()

    asyncio.run(scenario())


def test_deleting_the_trigger_removes_the_table_trigger(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any]
) -> None:
    with ServerThread(pg_host) as server:
        trigger_id = add(pg_host, fn, table)
        wait_for(lambda: installed(pg, trigger_id) and position(pg, trigger_id) is not None, what="the install")
        answer = httpx.delete(f"{server.url}/functions/{fn}/triggers/{trigger_id}", timeout=30)
        assert answer.status_code == 204
    assert not installed(pg, trigger_id)
    assert position(pg, trigger_id) is None
    pg.execute(f"INSERT INTO {table} (id) VALUES (1)")
    left = pg.execute("SELECT count(*) FROM wasmhost_cdc.outbox WHERE trigger_id = %s", (trigger_id,)).fetchone()
    assert left == (0,)


@pytest.mark.slow
def test_kill_9_mid_batch_loses_no_committed_change(
    pg_host: Host, fn: str, table: str, pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    data_dir = Path(pg_host.config.data_dir)
    serve = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        answer = httpx.post(
            f"{serve.url}/functions/{fn}/triggers",
            json={"type": "postgres", "dsn": DSN, "table": table, "batch_size": 1},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        trigger_id = answer.json()["id"]
        wait_for(lambda: installed(pg, trigger_id), what="the table trigger")
        pg.execute(f"INSERT INTO {table} (id) VALUES (1)")
        pg.execute(f"INSERT INTO {table} (id, sleep_ms) VALUES (2, 5000)")
        pg.execute(f"INSERT INTO {table} (id) VALUES (3)")
        first = wait_ids(pg_host, fn, [1])
        time.sleep(0.5)  # row 2's batch is in the function now
        assert position(pg, trigger_id) == seqs(first)[0]
        serve.kill()
    finally:
        serve.stop()
    pg.execute(f"INSERT INTO {table} (id) VALUES (4)")
    pg.execute(f"UPDATE {table} SET note = 'after the crash' WHERE id = 3")
    serve = ServeProcess(data_dir, tmp_path / "serve.log")
    try:
        records = wait_for(
            lambda: len(changes(pg_host, fn)) >= 5 and changes(pg_host, fn), timeout_s=40, what="every change"
        )
    finally:
        serve.stop()
    assert [(r["eventName"], i) for r, i in zip(records, ids(records), strict=True)] == [
        ("INSERT", 1),
        ("INSERT", 2),  # the batch in flight at the crash, delivered again (its first run never finished)
        ("INSERT", 3),
        ("INSERT", 4),
        ("UPDATE", 3),
    ]
    wait_for(lambda: position(pg, trigger_id) == seqs(records)[-1], what="the position")
