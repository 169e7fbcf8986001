"""``wasmhost trigger add|list|delete``: attach event sources to functions, on the
data directory or, with ``--url``, on a server.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from .cli import Target, _dump, _fail, main
from .errors import InvalidConfig, WasmhostError


def parse_fields(pairs: tuple[str, ...], raw_json: str | None) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs (a VALUE that parses as JSON is taken as JSON: numbers,
    true/false, lists, objects) over the object given with ``--json``."""
    fields: dict[str, Any] = {}
    if raw_json:
        try:
            loaded = orjson.loads(raw_json)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"--json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("--json must be a JSON object")
        fields.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"fields are given as FIELD=VALUE, got {pair!r}")
        try:
            fields[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            fields[key] = value
    return fields


@main.group()
def trigger() -> None:
    """Attach, list and remove triggers (HTTP routes, schedules, buckets, queues, streams, database changes)."""


@trigger.command(name="add")
@click.argument("name")
@click.argument("type_", metavar="TYPE")
@click.argument("fields", nargs=-1)
@click.option("--json", "raw_json", default=None, help="The fields as one JSON object.")
@click.pass_obj
def add(target: Target, name: str, type_: str, fields: tuple[str, ...], raw_json: str | None) -> None:
    """Attach a TYPE trigger to function NAME; fields as FIELD=VALUE (see the README).

    \b
    wasmhost trigger add api http route='GET /api/users/{id}'
    wasmhost trigger add nightly schedule expression='cron(0 3 * * ? *)' timezone=Europe/Paris
    wasmhost trigger add worker redis stream=orders group=workers batch_size=10
    """
    spec = {**parse_fields(fields, raw_json), "type": type_}
    try:
        if target.url:
            record = target.client.add_trigger(name, spec)
        else:
            record = target.host.add_trigger(name, spec).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@trigger.command(name="list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the triggers as JSON.")
@click.pass_obj
def list_triggers(target: Target, name: str | None, as_json: bool) -> None:
    """List the triggers of NAME (of every function without NAME)."""
    try:
        if target.url:
            records = target.client.triggers(name)
        else:
            records = [t.to_dict() for t in target.host.triggers(name)]
    except WasmhostError as error:
        _fail(error)
    if as_json:
        click.echo(_dump(records))
        return
    if not records:
        click.echo("no triggers", err=True)
        return
    click.echo(f"{'ID':16} {'FUNCTION':20} {'TYPE':9} {'STATE':10} SOURCE")
    for record in records:
        state = (record.get("status") or {}).get("state", "-") if record.get("enabled", True) else "disabled"
        click.echo(f"{record['id']:16} {record['function']:20} {record['type']:9} {state:10} {describe(record)}")


@trigger.command(name="delete")
@click.argument("name")
@click.argument("trigger_id")
@click.pass_obj
def delete(target: Target, name: str, trigger_id: str) -> None:
    """Remove trigger TRIGGER_ID from function NAME."""
    try:
        target.client.delete_trigger(name, trigger_id) if target.url else target.host.delete_trigger(name, trigger_id)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted trigger {trigger_id} of {name}", err=True)


def describe(record: dict[str, Any]) -> str:
    """The one-line summary of a trigger as listed (its type's ``describe``)."""
    from .triggers import trigger_type

    config = {k: v for k, v in record.items() if k not in ("id", "function", "type", "origin", "created_at", "status")}
    try:
        return trigger_type(record["type"]).describe(config)
    except (InvalidConfig, KeyError, TypeError):
        return record["type"]
