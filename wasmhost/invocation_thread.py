"""What the thread running a guest knows about it, and WASI sleeping with a deadline.

Epoch interruption cannot stop a guest blocked inside a host call, and WASI's
``poll_oneoff`` is how core-module guests sleep. The replacement defined here
never sleeps past the invocation's deadline (the guest is stopped there with
``Timeout``), and in an inline slice, where sleeping would block the event
loop, it aborts the attempt so that it restarts on a worker thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import wasmtime


class SliceExpired(Exception):
    """An inline attempt ran out of its slice; run it again on a worker thread."""


class _Current(threading.local):
    """The invocation running on this thread (a Store is used by one thread only)."""

    scratch: Any = None  # sandbox._Scratch, created on first use
    deadline: float = 0.0  # time.monotonic() at which the guest must stop
    inline: bool = False
    aborted: bool = False  # a host function stopped the guest at its deadline


_current = _Current()


_SUBSCRIPTION_SIZE = 48
_EVENT_SIZE = 32
_CLOCK, _FD_READ, _FD_WRITE = 0, 1, 2
_ERRNO_SUCCESS, _ERRNO_INVAL = 0, 28


def define_poll_oneoff(linker: wasmtime.Linker) -> None:
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    linker.define_func("wasi_snapshot_preview1", "poll_oneoff", ty, _poll_oneoff, access_caller=True)


def _poll_oneoff(caller: wasmtime.Caller, in_ptr: int, out_ptr: int, count: int, nevents_ptr: int) -> int:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory) or count == 0:
        return _ERRNO_INVAL
    data = memory.read(caller, in_ptr, in_ptr + count * _SUBSCRIPTION_SIZE)
    now_ns = {0: time.time_ns(), 1: time.monotonic_ns()}
    events: list[bytes] = []
    sleep_ns: int | None = None
    clocks: list[tuple[int, int]] = []  # (userdata, wait_ns)
    for i in range(count):
        sub = data[i * _SUBSCRIPTION_SIZE : (i + 1) * _SUBSCRIPTION_SIZE]
        userdata = int.from_bytes(sub[0:8], "little")
        tag = sub[8]
        if tag == _CLOCK:
            clock_id = int.from_bytes(sub[16:20], "little")
            timeout = int.from_bytes(sub[24:32], "little")
            absolute = int.from_bytes(sub[40:42], "little") & 1
            wait = timeout - now_ns.get(clock_id, now_ns[1]) if absolute else timeout
            wait = max(wait, 0)
            clocks.append((userdata, wait))
            sleep_ns = wait if sleep_ns is None else min(sleep_ns, wait)
        elif tag in (_FD_READ, _FD_WRITE):
            # stdin is empty and stdout/stderr never block: report them ready.
            events.append(_event(userdata, 0, tag))
        else:
            return _ERRNO_INVAL
    if not events and sleep_ns:
        remaining = _current.deadline - time.monotonic()
        if _current.inline:
            # Sleeping here would block the event loop: restart on a worker thread.
            _current.aborted = True
            raise SliceExpired("guest sleeps")
        if sleep_ns / 1e9 >= remaining:
            # The sleep would outlast the invocation: sleep to the deadline, then stop it.
            time.sleep(max(0.0, remaining))
            _current.aborted = True
            raise TimeoutError("deadline reached in poll_oneoff")
        time.sleep(sleep_ns / 1e9)
    if not events:
        events = [_event(userdata, 0, _CLOCK) for userdata, wait in clocks if wait <= (sleep_ns or 0)]
    memory.write(caller, b"".join(events), out_ptr)
    memory.write(caller, len(events).to_bytes(4, "little"), nevents_ptr)
    return _ERRNO_SUCCESS


def _event(userdata: int, error: int, kind: int) -> bytes:
    return userdata.to_bytes(8, "little") + error.to_bytes(2, "little") + bytes([kind]) + bytes(5) + bytes(16)
