"""The ``wasmhost`` command. Thin: each command converts options and calls the Host API
(or, with ``--url``, the same API over HTTP)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from .config import FunctionConfig
from .errors import WasmhostError


def _dump(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode()


class Target:
    """Where commands act: a data directory (embedded Host) or a server (``--url``)."""

    def __init__(self, data_dir: str, url: str | None, token: str | None) -> None:
        self.data_dir, self.url, self.token = data_dir, url, token
        self._host: Any = None
        self._client: Any = None

    @property
    def host(self) -> Any:
        if self._host is None:
            from .host import Host

            self._host = Host(data_dir=self.data_dir)
        return self._host

    @property
    def client(self) -> Any:
        if self._client is None:
            from .client import Client

            self._client = Client(self.url or "", self.token)
        return self._client

    def close(self) -> None:
        for owner in (self._host, self._client):
            if owner is not None:
                owner.close()


def _fail(error: WasmhostError) -> None:
    click.echo(f"error: {error.type}: {error.message}", err=True)
    sys.exit(1)


@click.group()
@click.option(
    "--data-dir",
    envvar="WASMHOST_DATA_DIR",
    default="./.wasmhost",
    show_default=True,
    help="Data directory (registry, code, compile cache).",
)
@click.option("--url", envvar="WASMHOST_URL", default=None, help="Act on a running server instead.")
@click.option("--token", envvar="WASMHOST_ADMIN_TOKEN", default=None, help="Admin token for --url.")
@click.pass_context
def main(ctx: click.Context, data_dir: str, url: str | None, token: str | None) -> None:
    """wasmhost: run WebAssembly functions like AWS Lambda."""
    target = Target(data_dir, url, token)
    ctx.obj = target
    ctx.call_on_close(target.close)


def _config_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--memory-mb", type=int, default=None, help="Memory limit in MiB (default 128)."),
            click.option("--timeout-ms", type=int, default=None, help="Timeout in ms (default 3000)."),
            click.option("--fuel", type=int, default=None, help="CPU budget in fuel units (default unlimited)."),
            click.option(
                "--reserved-concurrency", type=int, default=None, help="Most concurrent invocations (all processes)."
            ),
            click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable."),
            click.option(
                "--secret", "secrets", multiple=True, metavar="NAME=VALUE", help="Secret environment variable."
            ),
            click.option("--max-retry-attempts", type=int, default=None, help="Async retries after a failure (0-2)."),
            click.option("--max-event-age-s", type=int, default=None, help="Async events older than this fail."),
            click.option("--on-success", default=None, metavar="function:NAME|queue:NAME", help="Async destination."),
            click.option("--on-failure", default=None, metavar="function:NAME|queue:NAME", help="Async destination."),
        ]
    ):
        fn = option(fn)
    return fn


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
        pairs[key] = value
    return pairs


def _changes(env: tuple[str, ...], secrets: tuple[str, ...], **values: Any) -> dict:
    changes: dict[str, Any] = {key: value for key, value in values.items() if value is not None}
    if env:
        changes["env"] = _pairs(env, "--env")
    if secrets:
        changes["secrets"] = _pairs(secrets, "--secret")
    return changes


@main.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_config_options
@click.pass_obj
def deploy(target: Target, name: str, path: Path, **options: Any) -> None:
    """Deploy PATH as function NAME: a .wasm or .wat, or source (a folder or a file) to build first."""
    try:
        triggers = None
        if path.is_dir() or path.suffix not in (".wasm", ".wat"):
            from .build import build

            built = build(path, progress=_progress)
            config = built.project.config(_changes(**options))
            path = built.path
            triggers = built.project.triggers or []  # none in the file: the file's earlier ones go
        else:
            config = FunctionConfig.from_dict(_changes(**options))
        code = path.read_bytes()
        if target.url:
            record = target.client.deploy(name, code, config)
            if triggers is not None:
                record["triggers"] = target.client.sync_triggers(name, triggers)
        else:
            record = target.host.deploy(name, code, config).to_dict()
            if triggers is not None:
                record["triggers"] = [t.to_dict() for t in target.host.sync_triggers(name, triggers)]
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path), default=".")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Copy the .wasm here."
)
@click.option("--force", is_flag=True, help="Rebuild even if the inputs did not change.")
def build(source: Path, output: Path | None, force: bool) -> None:
    """Build a function's SOURCE (a folder or a file, default .) into a .wasm; print its path."""
    from .build import build as build_source

    try:
        built = build_source(source, progress=_progress, force=force)
    except WasmhostError as error:
        _fail(error)
    if output is not None:
        import shutil

        shutil.copyfile(built.path, output)
        click.echo(str(output))
    else:
        click.echo(str(built.path))


@main.command()
@click.argument("name")
@click.option(
    "--lang",
    type=click.Choice(["python", "js", "c", "zig", "assemblyscript", "go", "rust"]),
    default="python",
    show_default=True,
)
def init(name: str, lang: str) -> None:
    """Create a new function folder NAME with a handler, wasmhost.toml and a README."""
    from .build.templates import init as create

    try:
        root = create(name, lang, Path.cwd())
    except WasmhostError as error:
        _fail(error)
    click.echo(f"created {root}: deploy it with `wasmhost deploy {name} {name}`", err=True)


@main.command()
@click.argument("name")
@_config_options
@click.pass_obj
def config(target: Target, name: str, **options: Any) -> None:
    """Change settings of function NAME."""
    try:
        changes = _changes(**options)
        if target.url:
            record = target.client.update_config(name, **changes)
        else:
            record = target.host.update_config(name, **changes).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@main.command()
@click.argument("name")
@click.option("--data", "data", default=None, help="The event, as JSON (default: null).")
@click.option("--data-file", type=click.File("rb"), default=None, help="Read the JSON event from a file (- = stdin).")
@click.option("--qualifier", "-q", default=None, help="A version or alias (or write NAME:QUALIFIER).")
@click.option(
    "--async", "run_async", is_flag=True, help="Queue the event (invocation type Event); print its request id."
)
@click.option("--log-tail", is_flag=True, help="Print the invocation's log (START … REPORT) to stderr.")
@click.option("--verbose", "-v", is_flag=True, help="The same as --log-tail.")
@click.pass_obj
def invoke(
    target: Target,
    name: str,
    data: str | None,
    data_file: Any,
    qualifier: str | None,
    run_async: bool,
    log_tail: bool,
    verbose: bool,
) -> None:
    """Invoke function NAME and print its answer as JSON."""
    raw = data_file.read() if data_file is not None else data
    try:
        event = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    tail = log_tail or verbose
    try:
        if target.url:
            _invoke_remote(target, name, event, qualifier, run_async, tail)
            return
        if run_async:
            request_id = target.host.invoke_event(name, event, qualifier=qualifier)
            click.echo(_dump({"request_id": request_id, "status": "queued"}))
            return
        result = target.host.invoke(name, event, qualifier=qualifier)
    except WasmhostError as error:
        _fail(error)
    if tail:
        from .telemetry.logs import invocation_lines

        for line in invocation_lines(result):
            click.echo(line, err=True)
    if result.error is not None:
        click.echo(_dump({"error": {**result.error.to_dict(), "request_id": result.request_id}}))
        sys.exit(1)
    click.echo(_dump(result.payload))


def _invoke_remote(target: Target, name: str, event: Any, qualifier: str | None, run_async: bool, tail: bool) -> None:
    response = target.client.invoke(
        name, event, qualifier=qualifier, invocation_type="Event" if run_async else None, log_tail=tail
    )
    encoded = response.headers.get("x-wasmhost-log-result")
    if tail and encoded:
        import base64

        click.echo(base64.b64decode(encoded).decode("utf-8", "replace"), err=True)
    click.echo(_dump(response.json()))
    if response.status_code >= 400:
        sys.exit(1)


@main.command(name="list")
@click.pass_obj
def list_functions(target: Target) -> None:
    """List deployed functions."""
    try:
        records = target.client.list() if target.url else [r.to_dict() for r in target.host.list()]
    except WasmhostError as error:
        _fail(error)
    if not records:
        click.echo("no functions deployed", err=True)
        return
    try:
        triggers = target.client.triggers() if target.url else [t.to_dict() for t in target.host.triggers()]
    except WasmhostError as error:
        _fail(error)
    by_function: dict[str, list[str]] = {}
    for trigger in triggers:
        by_function.setdefault(trigger["function"], []).append(trigger["type"])
    click.echo(f"{'NAME':24} {'MEMORY':>7} {'TIMEOUT':>8} {'SIZE':>9} {'REV':>4}  {'DIGEST':12}  TRIGGERS")
    for r in records:
        c = r["config"]
        kinds = by_function.get(r["name"], [])
        summary = ", ".join(
            f"{kind}" + (f" x{kinds.count(kind)}" if kinds.count(kind) > 1 else "") for kind in dict.fromkeys(kinds)
        )
        click.echo(
            f"{r['name']:24} {c['memory_mb']:>5}MB {c['timeout_ms']:>6}ms {r['size_bytes']:>9} "
            f"{r['revision']:>4}  {r['digest'][:12]}  {summary or '-'}"
        )


@main.command()
@click.argument("name")
@click.pass_obj
def get(target: Target, name: str) -> None:
    """Show function NAME."""
    try:
        record = target.client.get(name) if target.url else target.host.get(name).to_dict()
    except WasmhostError as error:
        _fail(error)
    click.echo(_dump(record))


@main.command()
@click.argument("name")
@click.pass_obj
def delete(target: Target, name: str) -> None:
    """Delete function NAME."""
    try:
        target.client.delete(name) if target.url else target.host.delete(name)
    except WasmhostError as error:
        _fail(error)
    click.echo(f"deleted {name}", err=True)


@main.command()
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--admin-token", envvar="WASMHOST_ADMIN_TOKEN", default=None, help="Bearer token for management routes.")
@click.option(
    "--deploy-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Deploy every .wasm/.wat in this folder (named after the file) before serving.",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_obj
def serve(
    target: Target, bind: str, port: int, workers: int, admin_token: str | None, deploy_dir: Path | None, log_level: str
) -> None:
    """Start the HTTP server."""
    from .server.run import ServeOptions, check_bind
    from .server.run import serve as run_server

    options = ServeOptions(bind, port, workers, target.data_dir, admin_token, log_level)
    try:
        check_bind(options)
        if deploy_dir is not None:
            _deploy_dir(target, deploy_dir)
            target.close()
            target._host = None
        run_server(options)
    except WasmhostError as error:
        _fail(error)


def bench_script() -> Path:
    """``bench/run.py`` of the source tree this package was imported from (it is not installed)."""
    return Path(__file__).resolve().parent.parent / "bench" / "run.py"


@main.command(name="bench")
@click.option("--quick", is_flag=True, help="A short run of every scenario (about a minute).")
@click.option("--only", default=None, metavar="SCENARIO[,SCENARIO]", help="Run only these scenarios.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Directory for the results.")
def bench(quick: bool, only: str | None, out: str | None) -> None:
    """Run the benchmark (bench/run.py of a source checkout): results in bench/results/."""
    import subprocess

    script = bench_script()
    if not script.is_file():
        click.echo(
            f"error: wasmhost bench runs the benchmark of a source checkout, and {script} does not exist: "
            "clone the repository, `pip install -e .` it, and run `wasmhost bench` (or `make bench`) there",
            err=True,
        )
        sys.exit(1)
    args = [sys.executable, str(script), *(["--quick"] if quick else [])]
    args += [*(["--only", only] if only else []), *(["--out", out] if out else [])]
    sys.exit(subprocess.run(args, cwd=script.parent.parent).returncode)


def _deploy_dir(target: Target, folder: Path) -> None:
    host = target.host
    for path in sorted([*folder.glob("*.wasm"), *folder.glob("*.wat")]):
        code = path.read_bytes()
        try:
            current = host.get(path.stem)
            if current.digest == host.blobs.digest(code):
                continue
            config = current.config
        except WasmhostError:
            config = FunctionConfig()
        try:
            host.deploy(path.stem, code, config)
            click.echo(f"deployed {path.stem} from {path}", err=True)
        except WasmhostError as error:
            click.echo(f"skipped {path}: {error.type}: {error.message}", err=True)


# Register the other commands (versions, aliases, logs, usage, dead letters; triggers, buckets, queues).
from . import cli_buckets, cli_ops, cli_queues, cli_triggers  # noqa: E402,F401

if __name__ == "__main__":
    main()
