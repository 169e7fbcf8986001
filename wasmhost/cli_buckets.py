"""``wasmhost bucket create|ls|put|get|rm``: the embedded bucket store, on the data
directory or, with ``--url``, on a server. Writes here notify bucket triggers as
writes over HTTP do (a server on the same data directory picks them up within 0.1 s).
"""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import IO, Any

import click

from .cli import Target, _dump, _fail, main
from .errors import WasmhostError


@main.group()
def bucket() -> None:
    """The embedded object store: buckets and objects (see also bucket triggers)."""


@bucket.command(name="create")
@click.argument("name")
@click.pass_obj
def create(target: Target, name: str) -> None:
    """Create bucket NAME (3-63 characters: lower-case letters, digits, dots, hyphens)."""
    try:
        record = target.client.create_bucket(name) if target.url else target.host.buckets.create_bucket(name).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@bucket.command(name="ls")
@click.argument("name", required=False)
@click.option("--prefix", default="", help="Only keys that start with this.")
@click.option("--start-after", default="", help="Only keys after this one.")
@click.option("--max-keys", type=int, default=None, help="List at most this many (default: all, by pages of 1000).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ls(target: Target, name: str | None, prefix: str, start_after: str, max_keys: int | None, as_json: bool) -> None:
    """List the buckets, or the objects of bucket NAME (key order)."""
    try:
        if name is None:
            buckets = (
                target.client.buckets() if target.url else [b.to_dict() for b in target.host.buckets.list_buckets()]
            )
            if as_json:
                click.echo(_dump(buckets))
            for record in [] if as_json else buckets:
                click.echo(f"{record['created_at']}  {record['name']}")
            return
        objects = _list(target, name, prefix, start_after, max_keys)
    except WasmhostError as error:
        _fail(error)
    if as_json:
        click.echo(_dump(objects))
        return
    for record in objects:
        click.echo(f"{record['last_modified']}  {record['size']:>12}  {record['key']}")


def _list(target: Target, bucket: str, prefix: str, start_after: str, max_keys: int | None) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    while max_keys is None or len(objects) < max_keys:
        page_size = 1000 if max_keys is None else min(1000, max_keys - len(objects))
        if target.url:
            page = target.client.list_objects(bucket, prefix, start_after, page_size)
            objects += page["objects"]
            start_after, more = page["next_start_after"], page["is_truncated"]
        else:
            listing = target.host.buckets.list_objects(bucket, prefix, start_after, page_size)
            objects += [o.to_dict(with_metadata=False) for o in listing.objects]
            start_after, more = listing.next_start_after, listing.is_truncated
        if not more:
            break
    return objects


@bucket.command(name="put")
@click.argument("name")
@click.argument("key")
@click.argument("path", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--content-type", default=None, help="Default: guessed from PATH's name, else application/octet-stream.")
@click.option("--meta", "meta", multiple=True, metavar="NAME=VALUE", help="User metadata (x-amz-meta-NAME).")
@click.pass_obj
def put(target: Target, name: str, key: str, path: str, content_type: str | None, meta: tuple[str, ...]) -> None:
    """Write object KEY of bucket NAME from PATH (a file, or - for standard input)."""
    metadata = {}
    for pair in meta:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--meta")
        metadata[field] = value
    if content_type is None and path != "-":
        content_type = mimetypes.guess_type(path)[0]
    source: IO[bytes] = sys.stdin.buffer if path == "-" else Path(path).open("rb")
    try:
        if target.url:
            record = target.client.put_object(name, key, source, content_type, metadata)
        else:
            info = target.host.buckets.put_object(name, key, source, content_type=content_type, metadata=metadata)
            record = {"bucket": name, **info.to_dict()}
    except WasmhostError as error:
        _fail(error)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    click.echo(_dump(record))


@bucket.command(name="get")
@click.argument("name")
@click.argument("key")
@click.option("-o", "--output", default="-", type=click.Path(dir_okay=False, allow_dash=True), help="Default: stdout.")
@click.pass_obj
def get(target: Target, name: str, key: str, output: str) -> None:
    """Write the bytes of object KEY of bucket NAME to standard output (or --output FILE)."""
    to_stdout = output == "-"
    out: IO[bytes] = sys.stdout.buffer if to_stdout else Path(output).open("wb")
    try:
        if target.url:
            target.client.get_object(name, key, out)
        else:
            _, handle = target.host.buckets.open_object(name, key)
            with handle:
                while chunk := handle.read(1024 * 1024):
                    out.write(chunk)
    except WasmhostError as error:
        if not to_stdout:
            out.close()
            Path(output).unlink(missing_ok=True)
        _fail(error)
    if to_stdout:
        out.flush()
    else:
        out.close()


@bucket.command(name="rm")
@click.argument("name")
@click.argument("key", required=False)
@click.pass_obj
def rm(target: Target, name: str, key: str | None) -> None:
    """Delete object KEY of bucket NAME; without KEY, delete the bucket (it must be empty)."""
    try:
        if key is None:
            target.client.delete_bucket(name) if target.url else target.host.buckets.delete_bucket(name)
            click.echo(f"deleted bucket {name}", err=True)
            return
        if target.url:
            target.client.delete_object(name, key)
        else:
            target.host.buckets.delete_object(name, key)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted {name}/{key}", err=True)
