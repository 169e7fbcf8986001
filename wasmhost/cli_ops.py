"""``wasmhost`` commands for running functions in production: versions and aliases,
logs, usage and dead letters. Each acts on the data directory or, with ``--url``,
on a server, through the same API.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import click

from .cli import Target, _dump, _fail, main
from .errors import WasmhostError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None) -> float | None:
    """``10m``, ``2h``, ``1d`` (ago), epoch seconds, or an ISO 8601 time → epoch seconds."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"expected a duration (30s, 10m, 2h, 1d), epoch seconds or an ISO time, got {value!r}"
        ) from None


# --- versions and aliases ----------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--description", default="", help="A note kept with the version.")
@click.pass_obj
def publish(target: Target, name: str, description: str) -> None:
    """Freeze $LATEST of NAME (code and config) as a new numbered version."""
    try:
        record = (
            target.client.publish(name, description) if target.url else target.host.publish(name, description).to_dict()
        )
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@main.command()
@click.argument("name")
@click.pass_obj
def versions(target: Target, name: str) -> None:
    """List $LATEST and the published versions of NAME."""
    try:
        records = target.client.versions(name) if target.url else [r.to_dict() for r in target.host.versions(name)]
    except WasmhostError as error:
        _fail(error)
    click.echo(f"{'VERSION':10} {'DIGEST':14} {'MEMORY':>7} {'TIMEOUT':>8}  DESCRIPTION")
    for r in records:
        c = r["config"]
        click.echo(
            f"{r['version']:10} {r['digest'][:12]:14} {c['memory_mb']:>5}MB {c['timeout_ms']:>6}ms  {r['description']}"
        )


@main.command(name="delete-version")
@click.argument("name")
@click.argument("version")
@click.pass_obj
def delete_version(target: Target, name: str, version: str) -> None:
    """Delete published VERSION of NAME (refused while an alias points at it)."""
    try:
        target.client.delete_version(name, version) if target.url else target.host.delete_version(name, version)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted {name}:{version}", err=True)


@main.group()
def alias() -> None:
    """Aliases: names for versions, with optional weighted routing."""


def _routing(pairs: tuple[str, ...]) -> dict[str, float]:
    routing = {}
    for pair in pairs:
        version, sep, weight = pair.partition("=")
        try:
            routing[version] = float(weight) if sep else float("nan")
        except ValueError:
            raise click.BadParameter(f"expected VERSION=WEIGHT, got {pair!r}", param_hint="--routing") from None
        if not sep:
            raise click.BadParameter(f"expected VERSION=WEIGHT, got {pair!r}", param_hint="--routing")
    return routing


@alias.command(name="set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@click.option("--routing", multiple=True, metavar="VERSION=WEIGHT", help="Send WEIGHT (0-1) of calls to VERSION.")
@click.option("--description", default="", help="A note kept with the alias.")
@click.pass_obj
def alias_set(
    target: Target, name: str, alias_name: str, version: str, routing: tuple[str, ...], description: str
) -> None:
    """Point ALIAS of NAME at VERSION (create or update)."""
    weights = _routing(routing)
    try:
        if target.url:
            record = target.client.put_alias(name, alias_name, version, weights, description)
        else:
            record = target.host.put_alias(name, alias_name, version, weights, description).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@alias.command(name="get")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def alias_get(target: Target, name: str, alias_name: str) -> None:
    """Show ALIAS of NAME."""
    try:
        if target.url:
            record = target.client.get_alias(name, alias_name)
        else:
            record = target.host.get_alias(name, alias_name).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@alias.command(name="list")
@click.argument("name")
@click.pass_obj
def alias_list(target: Target, name: str) -> None:
    """List the aliases of NAME."""
    try:
        records = target.client.aliases(name) if target.url else [a.to_dict() for a in target.host.aliases(name)]
    except WasmhostError as error:
        _fail(error)
    click.echo(f"{'ALIAS':20} {'VERSION':10} ROUTING")
    for r in records:
        routing = ", ".join(f"{v}={w:g}" for v, w in r["routing"].items()) or "-"
        click.echo(f"{r['name']:20} {r['version']:10} {routing}")


@alias.command(name="delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def alias_delete(target: Target, name: str, alias_name: str) -> None:
    """Delete ALIAS of NAME."""
    try:
        target.client.delete_alias(name, alias_name) if target.url else target.host.delete_alias(name, alias_name)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted alias {name}:{alias_name}", err=True)


# --- logs and usage -------------------------------------------------------------------


def _print_log(line: dict[str, Any]) -> None:
    stamp = datetime.fromtimestamp(line["timestamp"]).isoformat(timespec="milliseconds")
    click.echo(f"{stamp}  {line['message']}")


@main.command()
@click.argument("name")
@click.option("--since", default=None, help="Only lines after this: 30s, 10m, 2h, 1d, epoch seconds or ISO time.")
@click.option("--request-id", default=None, help="Only this invocation's lines.")
@click.option("--limit", default=1000, show_default=True, type=int, help="Most lines printed (before --follow).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as invocations run.")
@click.pass_obj
def logs(target: Target, name: str, since: str | None, request_id: str | None, limit: int, follow: bool) -> None:
    """Print the logs of function NAME: START, the guest's output, END and REPORT lines."""
    start = parse_since(since)
    try:
        if target.url:
            if follow:
                for line in target.client.follow_logs(name, since=start, request_id=request_id, limit=limit):
                    _print_log(line)
                return
            lines = target.client.logs(name, since=start, request_id=request_id, limit=limit)
        else:
            lines = target.host.logs(name, since=start, request_id=request_id, limit=limit)
    except WasmhostError as error:
        _fail(error)
    for line in lines:
        _print_log(line)
    if follow and not target.url:
        last = lines[-1]["id"] if lines else None
        try:
            while True:
                time.sleep(0.25)
                for line in target.host.logs(name, request_id=request_id, after_id=last, since=start, limit=1000):
                    _print_log(line)
                    last = line["id"]
        except KeyboardInterrupt:
            return


@main.command()
@click.argument("name")
@click.option("--since", default="30d", show_default=True, help="Start: 30s, 10m, 2h, 1d, epoch seconds or ISO time.")
@click.option("--until", default=None, help="End (default: now).")
@click.pass_obj
def usage(target: Target, name: str, since: str, until: str | None) -> None:
    """Invocations, errors, throttles, GB-seconds, fuel and estimated cost of NAME."""
    try:
        if target.url:
            report = target.client.usage(name, parse_since(since), parse_since(until))
        else:
            report = target.host.usage(name, since=parse_since(since), until=parse_since(until))
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(report))


# --- dead letters ---------------------------------------------------------------------


@main.group(name="dead-letters")
def dead_letters() -> None:
    """Dead-letter queues: asynchronous events that failed for good."""


@dead_letters.command(name="list")
@click.argument("queue", required=False)
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--after", default=None, type=int, help="Only messages with a larger id.")
@click.pass_obj
def dead_letters_list(target: Target, queue: str | None, limit: int, after: int | None) -> None:
    """Without QUEUE: every queue and its size. With QUEUE: its messages (JSON)."""
    try:
        if queue is None:
            queues = target.client.dead_letter_queues() if target.url else target.host.dead_letter_queues()
            for name, count in sorted(queues.items()):
                click.echo(f"{name:30} {count:>8}")
            if not queues:
                click.echo("no dead letters", err=True)
            return
        if target.url:
            messages = target.client.dead_letters(queue, limit, after)
        else:
            messages = target.host.dead_letters(queue, limit=limit, after_id=after)
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(messages))


@dead_letters.command(name="redrive")
@click.argument("queue")
@click.option("--id", "ids", multiple=True, type=int, help="Only these messages (default: all).")
@click.pass_obj
def dead_letters_redrive(target: Target, queue: str, ids: tuple[int, ...]) -> None:
    """Queue the events of QUEUE's messages again, as new asynchronous invocations."""
    chosen = list(ids) if ids else None
    try:
        count = target.client.redrive(queue, chosen) if target.url else target.host.redrive(queue, chosen)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"redriven {count} message(s) from {queue}", err=True)
