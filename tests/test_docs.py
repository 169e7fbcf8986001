"""Every route, command, setting and error type users can meet is documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import wasmhost
from wasmhost import FunctionConfig, HostConfig, errors
from wasmhost.cli import main as cli
from wasmhost.server import buckets, queues
from wasmhost.server.management import Management
from wasmhost.server.operations import Operations
from wasmhost.server.triggers import Triggers
from wasmhost.server.versions import Versions

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    commands = re.findall(r"^make (\w+)", README.split("## ")[0], re.MULTILINE)
    assert commands[:2] == ["run", "test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


ROUTES = [
    *Management(None, None).routes(),  # type: ignore[arg-type]
    *Versions(None).routes(lambda endpoint: endpoint),  # type: ignore[arg-type]
    *Operations(None).routes(lambda endpoint: endpoint),  # type: ignore[arg-type]
    *Triggers(None).routes(lambda endpoint: endpoint),  # type: ignore[arg-type]
    *buckets.routes(None, lambda endpoint: endpoint),  # type: ignore[arg-type]
    *queues.routes(None, lambda endpoint: endpoint),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.methods} {r.path}")
def test_every_management_route_is_documented(route):
    # Starlette adds HEAD to every GET route: check HEAD only where it is a route of its own.
    methods = sorted(route.methods - {"HEAD"}) or ["HEAD"]
    path = re.sub(r":\w+}", "}", route.path)  # /buckets/{bucket}/{key:path} is documented as {key}
    for method in methods:
        assert f"`{method} {path}`" in README, f"{method} {path} is not in README.md"


def test_invoke_route_is_documented():
    assert "`POST /invoke/{name}`" in README


@pytest.mark.parametrize(
    "command",
    sorted(
        [name for name in cli.commands]
        + [f"{group} {sub}" for group, cmd in cli.commands.items() for sub in getattr(cmd, "commands", {})]
    ),
)
def test_every_cli_command_is_documented(command):
    assert f"`wasmhost {command}" in README


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(FunctionConfig)])
def test_every_function_setting_is_documented(field):
    assert f"| `{field}` |" in README


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(HostConfig)])
def test_every_host_setting_is_documented(field):
    assert f"| `{field}` |" in README


@pytest.mark.parametrize(
    "error",
    [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.WasmhostError)
        and cls.type not in ("InternalError", "InvocationError")
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_error_type_is_documented(error):
    assert f"`{error.type}`" in README


def test_public_api_is_exported():
    for name in ("Host", "FunctionConfig", "InvocationResult", "Timeout", "Trap"):
        assert name in wasmhost.__all__
