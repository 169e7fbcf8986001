"""The C fast path and the ctypes path behave the same, error for error."""

from __future__ import annotations

import ctypes
import os

import pytest
from wasmtime import _ffi as ffi

from wasmhost import FunctionConfig, Host
from wasmhost import sandbox as sandbox_module

from .wat import OK_HI, responder


def test_fast_path_is_built_where_ci_runs():
    if os.environ.get("CI") == "true":
        assert sandbox_module._fastpath is not None, "wasmhost._fastpath was not built"
    elif sandbox_module._fastpath is None:
        pytest.skip("wasmhost._fastpath is not built here (no C compiler at install)")


def test_struct_layouts_match_wasmtime_py():
    # wasmhost/_fastpath.c declares these structs itself; they must match the C API.
    assert ctypes.sizeof(ffi.wasmtime_func_t) == 16
    assert ctypes.sizeof(ffi.wasmtime_memory_t) == 24
    assert ctypes.sizeof(ffi.wasmtime_extern_t) == 32 and ffi.wasmtime_extern_t.of.offset == 8
    assert ctypes.sizeof(ffi.wasmtime_instance_t) == 16
    assert ctypes.sizeof(ffi.wasmtime_val_raw_t) == 16


CASES = [
    ("echo", {"a": [1, 2.5, None, b"\x01"]}, {}),
    ("hello", None, {}),
    ("counter", {}, {}),
    ("error", {}, {}),
    ("trap", {}, {}),
    ("hog", {}, {"memory_mb": 16}),
    ("spin", {}, {"timeout_ms": 50}),
    ("fib", {"n": 25}, {"fuel": 10_000}),
    ("fib", {"n": 15}, {}),
    ("getenv", {}, {"env": {"K": "v"}}),
    ("chatty", {"lines": 3}, {}),
    ("nap", {"ms": 5000}, {"timeout_ms": 100}),
]


@pytest.fixture
def hosts(tmp_path):
    fast, slow = Host(data_dir=tmp_path / "fast"), Host(data_dir=tmp_path / "slow")
    for fuel in (None, 1):  # the plain and the metered engine's sandboxes
        slow.runtime(FunctionConfig(fuel=fuel)).sandbox.fast = False
    yield fast, slow
    fast.close()
    slow.close()


def outcome(result):
    error = result.error and (result.error.type, result.error.message.split("(")[0])
    return result.payload, error, result.logs, result.max_memory_bytes, result.fuel_used > 0


@pytest.mark.parametrize(("name", "event", "config"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_both_paths_agree(hosts, guest, name, event, config):
    fast, slow = hosts
    results = []
    for host in (fast, slow):
        host.deploy(name, guest(name), FunctionConfig(**config))
        results.append(outcome(host.invoke(name, event)))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "code",
    [
        responder(OK_HI, alloc_result="i32.const 0"),
        responder(OK_HI, alloc_result="i32.const 65530"),
        responder(OK_HI, out_len=70000),
        responder(b"\xc1"),
    ],
)
def test_both_paths_agree_on_abi_misuse(hosts, code):
    fast, slow = hosts
    results = []
    for host in (fast, slow):
        host.deploy("f", code)
        results.append(outcome(host.invoke("f", {"x": "y" * 20})))
    assert results[0] == results[1]
    assert results[0][1] is not None


@pytest.mark.parametrize("fast", ["1", "0"])
def test_every_ticker_advances_the_epoch_and_stops_cleanly(tmp_path, monkeypatch, fast):
    # The C ticker thread where the extension is built, the POSIX timer otherwise:
    # each must advance the epoch at about its period and stop when closed.
    if fast == "1" and sandbox_module._fastpath is None:
        pytest.skip("wasmhost._fastpath is not built here")
    monkeypatch.setenv("WASMHOST_FASTPATH", fast)
    import time

    import wasmtime

    from wasmhost.engine import EpochTicker

    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    ticker = EpochTicker(engine, 2.0)
    assert ticker.kind == ("native-thread" if fast == "1" else "posix-timer")
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, '(module (func (export "spin") (loop (br 0))))')
    spin = wasmtime.Instance(store, module, []).exports(store)["spin"]
    store.set_epoch_deadline(25)  # 25 ticks of 2 ms
    started = time.perf_counter()
    with pytest.raises(wasmtime.Trap):
        spin(store)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert 40 <= elapsed_ms < 500, elapsed_ms
    ticker.close()
    ticker.close()  # idempotent
