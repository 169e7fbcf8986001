"""Versions and aliases: publish freezes $LATEST, aliases route (with weights), qualifiers
resolve through the embedding API, HTTP and the CLI. And secret environment variables."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import httpx
import pytest
from click.testing import CliRunner

from wasmhost import (
    AliasNotFound,
    FunctionConfig,
    FunctionNotFound,
    Host,
    InvalidConfig,
    InvalidRequest,
    ResourceConflict,
    SecretsUnavailable,
    VersionNotFound,
)
from wasmhost.cli import main as cli

from .conftest import ServerThread


@pytest.fixture
def two_versions(host, guest):
    """``f`` with version 1 = hello (64 MB), version 2 = echo (32 MB); $LATEST = echo."""
    host.deploy("f", guest("hello"), FunctionConfig(memory_mb=64))
    v1 = host.publish("f", "hello")
    host.deploy("f", guest("echo"), FunctionConfig(memory_mb=32))
    v2 = host.publish("f", "echo")
    return v1, v2


def test_publish_freezes_code_and_config(host, guest, two_versions):
    v1, v2 = two_versions
    assert (v1.version, v2.version) == ("1", "2")
    assert (v1.config.memory_mb, v2.config.memory_mb) == (64, 32)
    host.update_config("f", memory_mb=16)  # $LATEST changes; published versions do not
    assert host.get_version("f", "2").config.memory_mb == 32
    assert "Hello" in str(host.invoke("f", {"name": "x"}, qualifier="1").payload)
    assert host.invoke("f:2", {"a": 1}).payload == {"a": 1}
    result = host.invoke("f", {"a": 2}, qualifier="1")
    assert (result.function_version, result.memory_mb) == ("1", 64)
    assert [r.version for r in host.versions("f")] == ["$LATEST", "1", "2"]


def test_publish_without_changes_returns_the_newest_version(host, guest, two_versions):
    assert host.publish("f").version == "2"
    host.update_config("f", timeout_ms=1234)
    assert host.publish("f").version == "3"


def test_version_numbers_are_never_reused(host, guest, two_versions):
    host.delete_version("f", "2")
    host.update_config("f", timeout_ms=999)
    assert host.publish("f").version == "3"
    with pytest.raises(VersionNotFound):
        host.invoke("f", {}, qualifier="2")


def test_aliases_resolve_and_report_the_version_that_ran(host, two_versions):
    alias = host.put_alias("f", "prod", "1", description="stable")
    assert (alias.version, alias.routing, alias.description) == ("1", {}, "stable")
    assert host.invoke("f:prod", {"name": "y"}).function_version == "1"
    host.put_alias("f", "prod", "2")
    assert host.invoke("f", {"a": 1}, qualifier="prod").function_version == "2"
    assert [a.name for a in host.aliases("f")] == ["prod"]
    host.delete_alias("f", "prod")
    with pytest.raises(AliasNotFound):
        host.invoke("f:prod", {})


def test_weighted_alias_splits_within_a_few_percent(host, two_versions):
    host.put_alias("f", "canary", "1", routing={"2": 0.1})
    ran = Counter(host.invoke("f:canary", {"name": "z"}).function_version for _ in range(1000))
    assert set(ran) == {"1", "2"}
    assert 0.07 <= ran["2"] / 1000 <= 0.13, ran


@pytest.mark.parametrize(
    ("alias", "version", "routing", "error", "fragment"),
    [
        ("123", "1", None, InvalidRequest, "not only digits"),
        ("bad name", "1", None, InvalidRequest, "alias name"),
        ("a", "x", None, InvalidRequest, "version must be"),
        ("a", "9", None, VersionNotFound, "no version 9"),
        ("a", "1", {"2": 1.5}, InvalidRequest, "between 0 and 1"),
        ("a", "1", {"1": 0.5}, InvalidRequest, "own version"),
        ("a", "1", {"2": 0.1, "3": 0.1}, InvalidRequest, "one additional version"),
        ("a", "$LATEST", {"2": 0.1}, InvalidRequest, "published primary"),
        ("a", "1", {"7": 0.1}, VersionNotFound, "no version 7"),
    ],
)
def test_bad_aliases_are_refused_naming_the_problem(host, two_versions, alias, version, routing, error, fragment):
    with pytest.raises(error) as info:
        host.put_alias("f", alias, version, routing=routing)
    assert fragment in info.value.message


def test_a_version_an_alias_uses_cannot_be_deleted(host, two_versions):
    host.put_alias("f", "prod", "1", routing={"2": 0.5})
    for version in ("1", "2"):
        with pytest.raises(ResourceConflict) as info:
            host.delete_version("f", version)
        assert "alias(es) prod" in info.value.message and info.value.status == 409
    host.put_alias("f", "prod", "2")
    host.delete_version("f", "1")
    with pytest.raises(InvalidRequest):
        host.delete_version("f", "$LATEST")


def test_unknown_function_version_and_alias_are_404s(host, two_versions):
    for call, error in [
        (lambda: host.invoke("nope:1", {}), FunctionNotFound),
        (lambda: host.invoke("f:7", {}), VersionNotFound),
        (lambda: host.invoke("f:beta", {}), AliasNotFound),
    ]:
        with pytest.raises(error) as info:
            call()
        assert info.value.status == 404


def test_deleting_a_function_removes_its_versions_and_aliases(host, guest, two_versions):
    host.put_alias("f", "prod", "1")
    host.delete("f")
    host.deploy("f", guest("echo"))
    assert [r.version for r in host.versions("f")] == ["$LATEST"]
    assert host.aliases("f") == []


def test_reserved_concurrency_of_latest_applies_to_every_version(host, two_versions):
    host.update_config("f", reserved_concurrency=0)
    result = None
    with pytest.raises(Exception) as info:
        result = host.invoke("f:1", {})
    assert result is None and info.value.type == "Throttled"


def test_versions_and_aliases_survive_a_restart(tmp_path, guest):
    with Host(tmp_path / "d") as first:
        first.deploy("g", guest("echo"))
        first.publish("g")
        first.put_alias("g", "live", "1")
    with Host(tmp_path / "d") as second:
        assert second.invoke("g:live", {"k": 1}).payload == {"k": 1}


# --- HTTP ---------------------------------------------------------------------------


def test_versions_and_aliases_over_http(host, guest):
    host.deploy("f", guest("hello"), FunctionConfig(memory_mb=64))
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        published = http.post("/functions/f/versions", json={"description": "first"})
        assert published.status_code == 201 and published.json()["version"] == "1"
        assert http.post("/functions/f/versions").status_code == 200  # unchanged: the same version
        host.deploy("f", guest("echo"))
        assert http.post("/functions/f/versions").json()["version"] == "2"
        listed = http.get("/functions/f/versions").json()["versions"]
        assert [v["version"] for v in listed] == ["$LATEST", "1", "2"]

        created = http.put("/functions/f/aliases/prod", json={"version": "1", "routing": {"2": 0.25}})
        assert created.status_code == 201 and created.json()["routing"] == {"2": 0.25}
        assert http.put("/functions/f/aliases/prod", json={"version": 2}).status_code == 200
        assert http.get("/functions/f/aliases/prod").json()["version"] == "2"
        assert [a["name"] for a in http.get("/functions/f/aliases").json()["aliases"]] == ["prod"]

        ran = http.post("/invoke/f?qualifier=prod", json={"a": 1})
        assert ran.status_code == 200 and ran.json() == {"a": 1}
        assert ran.headers["x-wasmhost-executed-version"] == "2"
        assert http.post("/invoke/f:1", json={"name": "n"}).headers["x-wasmhost-executed-version"] == "1"
        assert http.post("/invoke/f", json={}).headers["x-wasmhost-executed-version"] == "$LATEST"

        conflict = http.delete("/functions/f/versions/2")
        assert conflict.status_code == 409 and conflict.json()["error"]["type"] == "ResourceConflict"
        assert http.delete("/functions/f/versions/1").status_code == 204
        assert http.get("/functions/f/versions/1").json()["error"]["type"] == "VersionNotFound"
        assert http.post("/invoke/f:nope", json={}).status_code == 404
        assert http.post("/invoke/f?bogus=1", json={}).status_code == 400
        bad = http.put("/functions/f/aliases/x", json={"version": "2", "weights": {}})
        assert bad.status_code == 400 and "weights" in bad.json()["error"]["message"]
        missing = http.put("/functions/f/aliases/x", json={"routing": {}})
        assert missing.status_code == 400 and '"version" is required' in missing.json()["error"]["message"]
        assert http.delete("/functions/f/aliases/prod").status_code == 204
        assert http.get("/functions/f/aliases/prod").status_code == 404


# --- CLI ----------------------------------------------------------------------------


def test_versions_and_aliases_from_the_cli(tmp_path, guests):
    data = str(tmp_path / "cli")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--data-dir", data, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("deploy", "f", str(guests / "echo.wasm"))
    assert json.loads(run("publish", "f", "--description", "one"))["version"] == "1"
    run("config", "f", "--timeout-ms", "500")
    assert json.loads(run("publish", "f"))["version"] == "2"
    assert "one" in run("versions", "f")
    assert json.loads(run("alias", "set", "f", "prod", "1", "--routing", "2=0.5"))["routing"] == {"2": 0.5}
    assert "2=0.5" in run("alias", "list", "f")
    assert json.loads(run("invoke", "f:prod", "--data", '{"x": 1}')) == {"x": 1}
    assert json.loads(run("invoke", "f", "-q", "2", "--data", "[1]")) == [1]
    refused = runner.invoke(cli, ["--data-dir", data, "delete-version", "f", "1"])
    assert refused.exit_code == 1 and "ResourceConflict" in refused.output
    run("alias", "delete", "f", "prod")
    run("delete-version", "f", "1")
    assert "1" not in [line.split()[0] for line in run("versions", "f").splitlines()[1:]]


# --- secrets -------------------------------------------------------------------------


def test_secrets_reach_the_guest_are_masked_and_encrypted_at_rest(tmp_path, guest):
    data = tmp_path / "s"
    with Host(data) as host:
        config = FunctionConfig(env={"PLAIN": "p"}, secrets={"API_KEY": "hunter2-secret"})
        record = host.deploy("env", guest("getenv"), config)
        assert host.invoke("env").payload == {"PLAIN": "p", "API_KEY": "hunter2-secret"}
        shown = json.dumps([record.to_dict(), host.get("env").to_dict(), [r.to_dict() for r in host.list()]])
        assert "hunter2" not in shown and '"API_KEY": "********"' in shown
        host.update_config("env", memory_mb=64)  # a change elsewhere keeps the secret
        assert host.invoke("env").payload["API_KEY"] == "hunter2-secret"
        host.publish("env")
        assert host.invoke("env:1").payload["API_KEY"] == "hunter2-secret"
    stored = sqlite3.connect(data / "wasmhost.db").execute("SELECT config FROM functions").fetchone()[0]
    stored_versions = sqlite3.connect(data / "wasmhost.db").execute("SELECT config FROM versions").fetchone()[0]
    assert "hunter2" not in stored + stored_versions and "enc:" in stored
    assert (data / "secret.key").stat().st_mode & 0o777 == 0o600


def test_secrets_need_the_key_they_were_stored_with(tmp_path, guest, monkeypatch):
    data = tmp_path / "k"
    monkeypatch.setenv("WASMHOST_SECRET_KEY", "first passphrase")
    with Host(data) as host:
        host.deploy("env", guest("getenv"), FunctionConfig(secrets={"TOKEN": "t0k"}))
    monkeypatch.setenv("WASMHOST_SECRET_KEY", "another passphrase")
    with Host(data) as host:
        with pytest.raises(SecretsUnavailable) as info:
            host.invoke("env")
        assert "WASMHOST_SECRET_KEY" in info.value.message and "t0k" not in info.value.message
    monkeypatch.setenv("WASMHOST_SECRET_KEY", "first passphrase")
    with Host(data) as host:
        assert host.invoke("env").payload == {"TOKEN": "t0k"}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (dict(secrets={"1BAD": "x"}), "secrets name '1BAD'"),
        (dict(secrets={"A": 1}), "secrets value of A"),
        (dict(env={"A": "x"}, secrets={"A": "y"}), "both set A"),
        (dict(env={"A": "x" * 3000}, secrets={"B": "y" * 2000}), "together; the limit is 4096"),
        (dict(on_failure="s3:bucket"), "on_failure must be"),
        (dict(max_retry_attempts=3), "max_retry_attempts must be between 0 and 2"),
        (dict(max_event_age_s=10), "max_event_age_s must be between 60 and 21600"),
    ],
)
def test_bad_settings_name_the_field(config, fragment):
    with pytest.raises(InvalidConfig) as info:
        FunctionConfig(**config).validate()
    assert fragment in info.value.message


def test_secrets_over_http_are_never_shown(host, guest):
    with ServerThread(host) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        deployed = http.put("/functions/env", content=guest("getenv"), params=[("secret", "PW=s3cr3t"), ("env", "A=b")])
        assert deployed.status_code == 201, deployed.text
        assert "s3cr3t" not in deployed.text + http.get("/functions/env").text + http.get("/functions").text
        assert http.post("/invoke/env").json() == {"A": "b", "PW": "s3cr3t"}
        patched = http.patch("/functions/env/config", json={"secrets": {"PW": "n3w"}})
        assert patched.status_code == 200 and "n3w" not in patched.text
        assert http.post("/invoke/env").json()["PW"] == "n3w"
        bad = http.patch("/functions/env/config", json={"secrets": {"PW": 5}})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidConfig"
