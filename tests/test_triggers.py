"""The trigger framework: the store, the API, the CLI, wasmhost.toml, the supervisor,
and the batch rules every event source mapping shares. Each type has its own file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wasmhost import FunctionConfig, Host
from wasmhost.build.project import Project
from wasmhost.cli import main as cli
from wasmhost.errors import FunctionError, InvalidConfig, SecretsUnavailable, TriggerNotFound
from wasmhost.result import InvocationResult
from wasmhost.triggers import TYPES, validate
from wasmhost.triggers.mapping import Message, failed_items
from wasmhost.triggers.store import TriggerStore

from .conftest import ServerThread

EVERY_5_MIN = {"type": "schedule", "expression": "rate(5 minutes)"}


# --- the store -------------------------------------------------------------------


def test_store_keeps_triggers_and_state_across_processes_and_counts_changes(tmp_path):
    first = TriggerStore(tmp_path / "triggers.db")
    second = TriggerStore(tmp_path / "triggers.db")  # another process's view
    before = second.generation()
    trigger = first.add("fn", "schedule", {"expression": "rate(1 minute)"})
    assert second.generation() == before + 1
    assert [t.id for t in second.list("fn")] == [trigger.id]
    assert second.get(trigger.id).config == {"expression": "rate(1 minute)"}

    assert first.compare_and_set_state(trigger.id, "tick", None, 1)
    assert not second.compare_and_set_state(trigger.id, "tick", None, 2), "only one of two racers may win"
    assert second.compare_and_set_state(trigger.id, "tick", 1, 2)
    assert first.get_state(trigger.id, "tick") == 2

    assert second.delete(trigger.id)
    assert first.get(trigger.id) is None and first.get_state(trigger.id, "tick") is None
    assert not first.delete(trigger.id)
    first.close()
    second.close()


# --- validation and the API --------------------------------------------------------


def test_every_type_of_the_issue_is_known():
    assert set(TYPES) == {"http", "schedule", "bucket", "queue", "redis", "nats", "amqp", "mqtt", "postgres"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"expression": "rate(5 minutes)"}, "trigger type must be one of"),
        ({"type": "carrier-pigeon"}, "carrier-pigeon"),
        ({**EVERY_5_MIN, "colour": "blue"}, "unknown field(s) colour"),
        ({**EVERY_5_MIN, "enabled": "yes"}, "enabled must be true or false"),
        ({"type": "redis", "stream": "s", "batch_size": 0}, "batch_size must be an integer from 1"),
        ({"type": "redis", "stream": "s", "on_failure": "bin:x"}, "on_failure must be"),
        ("not an object", "a trigger is a JSON object"),
    ],
)
def test_bad_triggers_are_refused_naming_the_problem(spec, message):
    with pytest.raises(InvalidConfig) as caught:
        validate(spec)
    assert message in caught.value.message


def test_triggers_over_http(host, guest):
    host.deploy("echo", guest("echo"))
    import httpx

    with ServerThread(host) as server, httpx.Client(base_url=server.url) as http:
        created = http.post("/functions/echo/triggers", json=EVERY_5_MIN)
        assert created.status_code == 201, created.text
        trigger = created.json()
        assert trigger["id"].startswith("trg-") and trigger["type"] == "schedule"
        assert trigger["function"] == "echo" and trigger["expression"] == "rate(5 minutes)"
        assert trigger["enabled"] is True and trigger["origin"] == "api"

        listed = http.get("/functions/echo/triggers").json()["triggers"]
        assert [t["id"] for t in listed] == [trigger["id"]]
        assert http.get(f"/functions/echo/triggers/{trigger['id']}").json()["id"] == trigger["id"]
        assert [t["id"] for t in http.get("/triggers").json()["triggers"]] == [trigger["id"]]

        bad = http.post("/functions/echo/triggers", json={"type": "schedule", "expression": "whenever"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidConfig"
        missing = http.post("/functions/nope/triggers", json=EVERY_5_MIN)
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "FunctionNotFound"
        not_json = http.post("/functions/echo/triggers", content=b"[1, 2]")
        assert not_json.status_code == 400

        assert http.delete(f"/functions/echo/triggers/{trigger['id']}").status_code == 204
        gone = http.delete(f"/functions/echo/triggers/{trigger['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "TriggerNotFound"
        assert http.get("/functions/echo/triggers").json()["triggers"] == []


def test_admin_token_guards_the_trigger_api(host, guest):
    import httpx

    host.deploy("echo", guest("echo"))
    with ServerThread(host, admin_token="t0ken") as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/functions/echo/triggers", json=EVERY_5_MIN).status_code == 401
        ok = http.post("/functions/echo/triggers", json=EVERY_5_MIN, headers={"authorization": "Bearer t0ken"})
        assert ok.status_code == 201


def test_deleting_a_function_deletes_its_triggers(host, guest):
    host.deploy("echo", guest("echo"))
    host.deploy("other", guest("echo"))
    host.add_trigger("echo", EVERY_5_MIN)
    kept = host.add_trigger("other", EVERY_5_MIN)
    host.delete("echo")
    assert [t.id for t in host.triggers()] == [kept.id]
    with pytest.raises(TriggerNotFound):
        host.get_trigger("other", "trg-000000000000")


# --- the CLI and wasmhost.toml ---------------------------------------------------------


def test_cli_adds_lists_and_deletes_triggers(tmp_path, guest):
    data = tmp_path / "data"
    with Host(data) as host:
        host.deploy("echo", guest("echo"))
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    added = runner.invoke(cli, [*base, "trigger", "add", "echo", "schedule", "expression=rate(5 minutes)"])
    assert added.exit_code == 0, added.output
    trigger = json.loads(added.stdout)
    typed = runner.invoke(
        cli, [*base, "trigger", "add", "echo", "schedule", "--json", '{"expression": "rate(1 hour)"}', "enabled=false"]
    )
    assert typed.exit_code == 0, typed.output
    assert json.loads(typed.stdout)["enabled"] is False, "FIELD=VALUE values are JSON when they parse"

    listed = runner.invoke(cli, [*base, "trigger", "list", "echo"])
    assert trigger["id"] in listed.stdout and "rate(5 minutes)" in listed.stdout and "disabled" in listed.stdout
    overview = runner.invoke(cli, [*base, "list"])
    assert "schedule x2" in overview.stdout

    bad = runner.invoke(cli, [*base, "trigger", "add", "echo", "schedule", "expression=sometimes"])
    assert bad.exit_code != 0 and "InvalidConfig" in bad.output
    deleted = runner.invoke(cli, [*base, "trigger", "delete", "echo", trigger["id"]])
    assert deleted.exit_code == 0
    assert trigger["id"] not in runner.invoke(cli, [*base, "trigger", "list", "--json"]).stdout


def test_wasmhost_toml_triggers_are_validated_and_kept_in_step_by_deploys(tmp_path, guest):
    project = tmp_path / "fn"
    project.mkdir()
    (project / "wasmhost.toml").write_text('[[triggers]]\ntype = "schedule"\nexpression = "never"\n')
    with pytest.raises(InvalidConfig) as caught:
        Project.load(project)
    assert "trigger 1" in caught.value.message and "wasmhost.toml" in caught.value.message

    (project / "wasmhost.toml").write_text(
        '[[triggers]]\ntype = "schedule"\nexpression = "rate(5 minutes)"\n\n'
        '[[triggers]]\ntype = "schedule"\nexpression = "rate(1 hour)"\n'
    )
    specs = Project.load(project).triggers
    with Host(tmp_path / "data") as host:
        host.deploy("echo", guest("echo"))
        by_hand = host.add_trigger("echo", {"type": "schedule", "expression": "rate(2 hours)"})
        first = host.sync_triggers("echo", specs)
        assert sorted(t.config["expression"] for t in first) == ["rate(1 hour)", "rate(5 minutes)"]
        again = host.sync_triggers("echo", specs)
        assert {t.id for t in again} == {t.id for t in first}, "an unchanged file changes no trigger"
        host.sync_triggers("echo", specs[:1])
        left = {t.config["expression"]: t.origin for t in host.triggers("echo")}
        assert left == {"rate(5 minutes)": "toml", "rate(2 hours)": "api"}, "API triggers are not the file's"
        assert host.get_trigger("echo", by_hand.id).origin == "api"


# --- the supervisor ------------------------------------------------------------------


def test_each_trigger_runs_in_exactly_one_of_two_hosts_and_moves_when_its_host_stops(tmp_path, guest):
    data = tmp_path / "data"

    async def scenario() -> None:
        with Host(data) as one, Host(data) as two:
            one.deploy("echo", guest("echo"))
            triggers = [one.add_trigger("echo", EVERY_5_MIN) for _ in range(4)]
            first = one.start_triggers(poll_s=0.05)
            second = two.start_triggers(poll_s=0.05)
            await asyncio.sleep(0.5)
            ids = {t.id for t in triggers}
            assert set(first.running) | set(second.running) == ids
            assert not set(first.running) & set(second.running)
            await one.stop_triggers()
            deadline = time.monotonic() + 5
            while set(second.running) != ids and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert set(second.running) == ids, "the other host takes the triggers over"
            one.delete_trigger("echo", triggers[0].id)
            deadline = time.monotonic() + 5
            while triggers[0].id in second.running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert triggers[0].id not in second.running, "a deleted trigger stops where it runs"
            await two.stop_triggers()

    asyncio.run(scenario())


def test_a_failing_runner_is_restarted_and_its_error_shown(tmp_path, guest):
    async def scenario() -> None:
        with Host(tmp_path / "data") as host:
            host.deploy("echo", guest("echo"))
            trigger = host.add_trigger("echo", {"type": "redis", "url": "redis://127.0.0.1:1/0", "stream": "s"})
            host.start_triggers(poll_s=0.05)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = host.get_trigger("echo", trigger.id).status
                if status.get("state") == "error":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "error" and status["last_error"], status
            assert status["retry_in_s"] >= 1
            await host.stop_triggers()

    asyncio.run(scenario())


# --- the batch rules of event source mappings -------------------------------------------


def _result(payload=None, error=None) -> InvocationResult:
    return InvocationResult(
        payload=payload,
        error=error,
        request_id="r-1",
        function_name="fn",
        function_version="$LATEST",
        duration_ms=1.0,
        billed_ms=1,
        memory_mb=128,
        fuel_used=0,
        max_memory_bytes=0,
        cold=False,
        logs="",
    )


def test_batch_item_failures_follow_lambdas_rules():
    batch = [Message("a", "1"), Message("b", "2"), Message("c", "3")]
    assert failed_items(_result({"batchItemFailures": []}), batch)[0] == set()
    assert failed_items(_result({"anything": 1}), batch)[0] == set()
    assert failed_items(_result(None), batch)[0] == set()
    assert failed_items(_result({"batchItemFailures": None}), batch)[0] == set()
    assert failed_items(_result({"batchItemFailures": [{"itemIdentifier": "b"}]}), batch)[0] == {"b"}
    every = {"a", "b", "c"}
    failed, why = failed_items(_result({"batchItemFailures": [{"itemIdentifier": "zzz"}]}), batch)
    assert failed == every and "not in the batch" in why["errorMessage"]
    assert failed_items(_result({"batchItemFailures": [{"itemIdentifier": ""}]}), batch)[0] == every
    assert failed_items(_result({"batchItemFailures": "b"}), batch)[0] == every
    failed, why = failed_items(_result(error=FunctionError("boom", "ValueError")), batch)
    assert failed == every and why["errorMessage"] == "boom"


def test_a_body_that_is_not_utf8_is_given_base64():
    message = Message.from_bytes("m", b"\xff\x00binary")
    assert message.attributes == {"BodyEncoding": "base64"} and message.body == "/wBiaW5hcnk="
    assert Message.from_bytes("m", "héllo".encode()).body == "héllo"


def test_function_config_is_unchanged_by_triggers(host, guest):
    host.deploy("echo", guest("echo"), FunctionConfig(timeout_ms=1234))
    host.add_trigger("echo", EVERY_5_MIN)
    assert host.get("echo").config.timeout_ms == 1234


def test_a_project_without_triggers_has_none(tmp_path):
    assert Project.load(Path(tmp_path)).triggers is None


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:****@127.0.0.1:5672/"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:****@127.0.0.1:6379/0"),
        ("postgresql://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"),
        ("host=db password='a b' user=u", "host=db password=**** user=u"),
        ("nats://s3cr3t@127.0.0.1:4222", "nats://****@127.0.0.1:4222"),
    ],
)
def test_passwords_in_connection_strings_are_not_shown(given, shown):
    from wasmhost.triggers.store import Trigger

    trigger = Trigger("trg-1", "fn", "amqp", {"url": given, "queue": "q"}, 0.0)
    assert trigger.to_dict()["url"] == shown
    assert trigger.config["url"] == given, "the runner still gets the real one"


def test_deploying_a_project_keeps_its_file_triggers_in_step(tmp_path):
    project = tmp_path / "fn"
    project.mkdir()
    (project / "echo.c").write_text((Path(__file__).parent.parent / "guests/c/examples/echo.c").read_text())
    (project / "wasmhost.toml").write_text('lang = "c"\n\n[[triggers]]\ntype = "schedule"\nexpression = "rate(5 minutes)"\n')
    base = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    first = runner.invoke(cli, [*base, "deploy", "fn", str(project)])
    assert first.exit_code == 0, first.output
    assert [t["expression"] for t in json.loads(first.stdout)["triggers"]] == ["rate(5 minutes)"]
    (project / "wasmhost.toml").write_text('lang = "c"\n')
    second = runner.invoke(cli, [*base, "deploy", "fn", str(project)])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["triggers"] == [], "a file without [[triggers]] declares none"


def test_passwords_in_trigger_fields_are_encrypted_at_rest(tmp_path, guest, monkeypatch):
    data = tmp_path / "data"
    url = "amqp://app:s3cr3t-pw@127.0.0.1:1/"
    with Host(data) as host:
        host.deploy("echo", guest("echo"))
        trigger = host.add_trigger("echo", {"type": "amqp", "url": url, "queue": "q"})
    stored = b"".join(path.read_bytes() for path in data.glob("triggers.db*"))
    assert b"s3cr3t-pw" not in stored and b"amqp://" not in stored, "the URL is not on disk in clear"
    with Host(data) as again:
        assert again.get_trigger("echo", trigger.id).config["url"] == url, "the runner gets it back"
        assert again.get_trigger("echo", trigger.id).to_dict()["url"] == "amqp://app:****@127.0.0.1:1/"
    monkeypatch.setenv("WASMHOST_SECRET_KEY", "not the key it was stored with")
    with Host(data) as wrong_key, pytest.raises(SecretsUnavailable) as caught:
        wrong_key.triggers("echo")
    assert "cannot decrypt field url of trigger" in caught.value.message
