"""``wasmhost queue create|list|send|receive|delete|purge|attributes``: the embedded
durable queues, on the data directory or, with ``--url``, on a server.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .cli import Target, _dump, _fail, main
from .errors import WasmhostError


@main.group()
def queue() -> None:
    """Embedded durable queues (SQS-like): create, send, receive, delete messages."""


@queue.command(name="create")
@click.argument("name")
@click.option("--visibility-timeout-s", type=float, default=None, help="Seconds a received message stays hidden (30).")
@click.option("--message-retention-s", type=int, default=None, help="Seconds a message is kept (345600: 4 days).")
@click.option("--delay-s", type=float, default=None, help="Seconds a new message stays hidden (0).")
@click.option("--max-message-bytes", type=int, default=None, help="Largest message, body and attributes (262144).")
@click.option("--max-receive-count", type=int, default=None, help="Receives before a message is dead-lettered.")
@click.option("--dead-letter-queue", default=None, help="Queue that takes messages over --max-receive-count.")
@click.pass_obj
def create(target: Target, name: str, **options: Any) -> None:
    """Create queue NAME (the same attributes again is fine; others are a conflict)."""
    attributes = {key: _whole(value) for key, value in options.items() if value is not None}
    try:
        if target.url:
            record = target.client.create_queue(name, attributes)
        else:
            record, _ = target.host.queues.create(name, attributes)
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@queue.command(name="list")
@click.option("--prefix", default="", help="Only queues whose name starts with this.")
@click.option("--json", "as_json", is_flag=True, help="Print the queues as JSON.")
@click.pass_obj
def list_queues(target: Target, prefix: str, as_json: bool) -> None:
    """List the queues with their message counts."""
    try:
        records = target.client.queues(prefix) if target.url else target.host.queues.list(prefix)
    except WasmhostError as error:
        _fail(error)
    if as_json:
        click.echo(_dump(records))
        return
    if not records:
        click.echo("no queues", err=True)
        return
    click.echo(f"{'NAME':32} {'VISIBLE':>8} {'IN FLIGHT':>9} {'DELAYED':>8} DEAD-LETTER QUEUE")
    for record in records:
        click.echo(
            f"{record['name']:32} {record['approximate_number_of_messages']:>8} "
            f"{record['approximate_number_of_messages_not_visible']:>9} "
            f"{record['approximate_number_of_messages_delayed']:>8} {record.get('dead_letter_queue') or '-'}"
        )


@queue.command(name="send")
@click.argument("name")
@click.argument("bodies", metavar="BODY...", nargs=-1, required=True)
@click.option("--attribute", "attributes", multiple=True, metavar="NAME=VALUE", help="A String message attribute.")
@click.option("--delay-s", type=float, default=None, help="Hide the message(s) this long (default: the queue's).")
@click.pass_obj
def send(
    target: Target, name: str, bodies: tuple[str, ...], attributes: tuple[str, ...], delay_s: float | None
) -> None:
    """Send each BODY as a message to queue NAME (up to 10 in one batch; '-' reads stdin)."""
    message_attributes = {}
    for pair in attributes:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--attribute")
        message_attributes[key] = value
    texts = [sys.stdin.read() if body == "-" else body for body in bodies]
    messages = [
        {"body": text, "message_attributes": message_attributes or None, "delay_s": _whole(delay_s)} for text in texts
    ]
    try:
        if target.url:
            ids = [sent["message_id"] for sent in target.client.send_messages(name, messages)]
        else:
            from .queues import OutgoingMessage

            outgoing = [OutgoingMessage(m["body"], m["message_attributes"], m["delay_s"]) for m in messages]
            ids = target.host.queues.send_batch(name, outgoing)
    except WasmhostError as error:
        _fail(error)
    for message_id in ids:
        click.echo(message_id)


@queue.command(name="receive")
@click.argument("name")
@click.option("--max-messages", type=int, default=1, show_default=True, help="Most messages to receive (1-10).")
@click.option("--wait-time-s", type=float, default=0, show_default=True, help="Long polling: wait up to 20 s.")
@click.option("--visibility-timeout-s", type=float, default=None, help="Hide them this long (default: the queue's).")
@click.option("--delete", "delete_after", is_flag=True, help="Delete the messages once printed.")
@click.pass_obj
def receive(
    target: Target,
    name: str,
    max_messages: int,
    wait_time_s: float,
    visibility_timeout_s: float | None,
    delete_after: bool,
) -> None:
    """Receive messages from queue NAME and print them as JSON (with their receipt handles)."""
    options = {"wait_time_s": _whole(wait_time_s), "visibility_timeout_s": _whole(visibility_timeout_s)}
    try:
        if target.url:
            messages = target.client.receive_messages(name, max_messages, **options)
            if delete_after:
                for message in messages:
                    target.client.delete_message(name, message["receipt_handle"])
        else:
            received = target.host.queues.receive(name, max_messages, **options)
            messages = [m.to_dict() for m in received]
            if delete_after and received:
                target.host.queues.delete_messages(name, [m.receipt_handle for m in received])
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(messages))


@queue.command(name="delete")
@click.argument("name")
@click.option("--message", "handles", multiple=True, metavar="RECEIPT_HANDLE", help="Delete this message only.")
@click.pass_obj
def delete(target: Target, name: str, handles: tuple[str, ...]) -> None:
    """Delete queue NAME with its messages, or with --message, only those messages."""
    try:
        for handle in handles:
            if target.url:
                target.client.delete_message(name, handle)
            else:
                target.host.queues.delete_message(name, handle)
        if not handles:
            target.client.delete_queue(name) if target.url else target.host.queues.delete_queue(name)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted {len(handles)} message(s) from {name}" if handles else f"deleted queue {name}", err=True)


@queue.command(name="purge")
@click.argument("name")
@click.pass_obj
def purge(target: Target, name: str) -> None:
    """Delete every message of queue NAME (in flight too)."""
    try:
        purged = target.client.purge_queue(name) if target.url else target.host.queues.purge(name)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"purged {purged} message(s) from {name}", err=True)


@queue.command(name="attributes")
@click.argument("name")
@click.pass_obj
def attributes(target: Target, name: str) -> None:
    """Print queue NAME's attributes and message counts as JSON."""
    try:
        record = target.client.queue_attributes(name) if target.url else target.host.queues.attributes(name)
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


def _whole(value: Any) -> Any:
    """A float option that holds a whole number, as an int (so that attributes compare like JSON's)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
