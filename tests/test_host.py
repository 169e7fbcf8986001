"""The embedding API: deploy, invoke (sync and async), list, get, delete; the compile cache."""

from __future__ import annotations

import asyncio
import threading

import pytest

from wasmhost import FunctionConfig, FunctionNotFound, Host, InvalidConfig, Throttled


def test_embedding_api_round_trip(tmp_path, guest):
    with Host(data_dir=tmp_path / "data") as host:
        record = host.deploy("echo", guest("echo"), FunctionConfig(memory_mb=16, timeout_ms=1000, fuel=None, env={}))
        assert record.name == "echo" and record.version == "$LATEST"
        r = host.invoke("echo", {"a": 1})
        assert r.payload == {"a": 1} and r.error is None
        assert r.request_id and r.duration_ms > 0 and r.billed_ms >= 1
        assert r.fuel_used == 0 and r.max_memory_bytes > 0 and r.logs == ""  # no fuel budget: not metered
        assert isinstance(r.cold, bool)
        assert [f.name for f in host.list()] == ["echo"]
        assert host.get("echo").config.memory_mb == 16
        host.delete("echo")
        assert host.list() == []
        with pytest.raises(FunctionNotFound):
            host.invoke("echo", {})
        with pytest.raises(FunctionNotFound):
            host.delete("echo")


def test_defaults_follow_lambda():
    config = FunctionConfig()
    assert (config.memory_mb, config.timeout_ms, config.fuel, config.env) == (128, 3000, None, {})


@pytest.mark.parametrize(
    "changes",
    [
        {"memory_mb": 0},
        {"memory_mb": 5000},
        {"timeout_ms": 0},
        {"timeout_ms": "fast"},
        {"fuel": 0},
        {"env": {"1BAD": "x"}},
        {"env": {"OK": 1}},
        {"env": {"BIG": "x" * 5000}},
        {"colour": "blue"},
    ],
)
def test_config_is_validated(host, guest, changes):
    host.deploy("echo", guest("echo"))
    with pytest.raises(InvalidConfig):
        host.update_config("echo", **changes)


def test_ainvoke(host, guest):
    host.deploy("echo", guest("echo"))
    host.deploy("spin", guest("spin"), FunctionConfig(timeout_ms=100))

    async def both():
        return await asyncio.gather(host.ainvoke("echo", [1, 2]), host.ainvoke("spin", {}))

    echo, spin = asyncio.run(both())
    assert echo.payload == [1, 2]
    assert spin.error.type == "Timeout"
    assert spin.duration_ms >= 100


def test_first_invocation_is_cold_then_warm(tmp_path, guest):
    with Host(data_dir=tmp_path) as first:
        first.deploy("echo", guest("echo"))
        assert first.invoke("echo", 1).cold is False  # deploy left it ready
    with Host(data_dir=tmp_path) as second:
        assert second.invoke("echo", 1).cold is True
        assert second.invoke("echo", 1).cold is False


def test_restarted_host_compiles_nothing(tmp_path, guest):
    with Host(data_dir=tmp_path) as first:
        for name in ("echo", "hello", "fib"):
            first.deploy(name, guest(name))
        assert first.engine.cache.compiles == 3
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 3 and all(name.endswith(f"-{first.engine.fingerprint}.cwasm") for name in cached)
    with Host(data_dir=tmp_path) as second:
        assert second.invoke("fib", {"n": 15}).payload == 610
        assert second.invoke("hello").payload["statusCode"] == 200
        assert second.engine.cache.compiles == 0


def test_only_functions_with_a_fuel_budget_run_on_the_metered_engine(tmp_path, guest):
    with Host(data_dir=tmp_path) as host:
        host.deploy("fib", guest("fib"))
        assert host.invoke("fib", {"n": 20}).fuel_used == 0
        assert set(host._runtimes) == {False}  # the metered engine is made when first needed
        host.update_config("fib", fuel=10_000_000)
        assert host.runtime(host.get("fib").config).engine.metered
        metered = host.invoke("fib", {"n": 20})
        assert metered.payload == 6765 and metered.fuel_used > 10_000
        host.update_config("fib", fuel=1000)
        assert host.invoke("fib", {"n": 25}).error.type == "FuelExhausted"
        host.update_config("fib", fuel=None)
        plain = host.invoke("fib", {"n": 25})
        assert plain.payload == 75025 and plain.fuel_used == 0
    caches = {p.name.rsplit("-", 1)[1] for p in (tmp_path / "cache").iterdir()}
    assert len(caches) == 2  # compiled once per engine, each under its own fingerprint


def test_warm_up_prepares_deployed_functions_so_their_first_invoke_is_warm(tmp_path, guest):
    with Host(data_dir=tmp_path) as first:
        first.deploy("echo", guest("echo"))
        first.deploy("fib", guest("fib"), FunctionConfig(fuel=10**9))
    with Host(data_dir=tmp_path) as second:
        assert second.warm_up() == 2
        assert second.invoke("echo", 1).cold is False
        assert second.invoke("fib", {"n": 10}).cold is False
        assert second.engine.cache.compiles == 0


def test_deploying_known_code_again_maps_it_instead_of_compiling(tmp_path, guest):
    with Host(data_dir=tmp_path) as host:
        host.deploy("echo", guest("echo"))
        host.deploy("echo-copy", guest("echo"))
        host.deploy("echo", guest("echo"), FunctionConfig(memory_mb=32))
        assert host.engine.cache.compiles == 1
        assert host.invoke("echo-copy", "same code").payload == "same code"


def test_lost_cache_is_rebuilt_from_the_stored_module(tmp_path, guest):
    with Host(data_dir=tmp_path) as first:
        first.deploy("echo", guest("echo"))
    for path in (tmp_path / "cache").iterdir():
        path.unlink()
    with Host(data_dir=tmp_path) as second:
        assert second.invoke("echo", "again").payload == "again"
        assert second.engine.cache.compiles == 1


def test_redeploy_replaces_code_and_config(host, guest):
    host.deploy("f", guest("echo"))
    assert host.invoke("f", 7).payload == 7
    record = host.deploy("f", guest("counter"), FunctionConfig(memory_mb=32))
    assert record.revision == 2
    result = host.invoke("f", 7)
    assert result.payload == 1 and result.memory_mb == 32


def test_config_update_applies_to_the_next_invocation(host, guest):
    host.deploy("spin", guest("spin"), FunctionConfig(timeout_ms=1000))
    host.update_config("spin", timeout_ms=50)
    result = host.invoke("spin")
    assert result.error.type == "Timeout" and result.duration_ms < 900


def test_two_hosts_on_one_data_directory_see_each_others_deploys(tmp_path, guest):
    with Host(data_dir=tmp_path) as a, Host(data_dir=tmp_path) as b:
        a.deploy("f", guest("echo"))
        assert b.invoke("f", "x").payload == "x"
        a.deploy("f", guest("counter"))
        assert b.invoke("f", "x").payload == 1
        a.delete("f")
        with pytest.raises(FunctionNotFound):
            b.invoke("f")


def test_reserved_concurrency_throttles(host, guest):
    host.deploy("slow", guest("sleep_ms"), FunctionConfig(reserved_concurrency=1))
    started = threading.Event()
    results = []

    def long_call():
        started.set()
        results.append(host.invoke("slow", {"ms": 400}))

    worker = threading.Thread(target=long_call)
    worker.start()
    started.wait()
    import time

    time.sleep(0.1)
    with pytest.raises(Throttled) as info:
        host.invoke("slow", {"ms": 1})
    assert info.value.status == 429
    worker.join()
    assert results[0].error is None
    assert host.invoke("slow", {"ms": 1}).error is None  # the slot was released


def test_reserved_concurrency_zero_disables_a_function(host, guest):
    host.deploy("off", guest("echo"), FunctionConfig(reserved_concurrency=0))
    with pytest.raises(Throttled):
        host.invoke("off", 1)


def test_concurrent_invocations_from_many_threads(host, guest):
    host.deploy("echo", guest("echo"))
    host.deploy("fib", guest("fib"))
    errors = []

    def work(i: int) -> None:
        for j in range(50):
            name, event, expected = ("echo", {"i": i, "j": j}, {"i": i, "j": j}) if j % 2 else ("fib", {"n": 12}, 144)
            result = host.invoke(name, event)
            if result.payload != expected:
                errors.append((name, result.payload, result.error))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_prepared_code_is_bounded_by_the_cache_size(tmp_path, guest):
    from wasmhost import HostConfig

    with Host(config=HostConfig(data_dir=str(tmp_path), instance_cache_size=2)) as host:
        for i in range(5):
            host.deploy(f"f{i}", guest("echo") if i % 2 else guest("counter"))
        for i in range(5):
            assert host.invoke(f"f{i}", i).error is None
        assert len(host._prepared) <= 2 and len(host._ready) <= 2
        assert host.invoke("f0", 0).payload == 1  # evicted, loaded again from the cache
