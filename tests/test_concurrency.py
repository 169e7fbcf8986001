"""SharedConcurrency: limits counted across objects, threads and real processes on one file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmhost.concurrency import FUNCTION_SLOTS, PROCESS_ROWS, SharedConcurrency, _process_alive, _process_start
from wasmhost.errors import InvalidName, Throttled, WasmhostError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, params=["c", "python"])
def hot_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the C fast path (wasmhost/_fastpath.c) and with the pure-Python one."""
    import wasmhost.concurrency

    if request.param == "python":
        monkeypatch.setattr(wasmhost.concurrency, "_fast", None)
    elif wasmhost.concurrency._fast is None:
        pytest.skip("the C fast path is not built here")
    return str(request.param)


@pytest.fixture
def shm(tmp_path: Path) -> Path:
    return tmp_path / "concurrency.shm"


@pytest.fixture
def gate(shm: Path) -> Iterator[SharedConcurrency]:
    with SharedConcurrency(shm, host_limit=100) as g:
        yield g


# --- one process -------------------------------------------------------------


def test_reserved_concurrency_caps_one_function(gate: SharedConcurrency) -> None:
    gate.acquire("f", 2)
    gate.acquire("f", 2)
    with pytest.raises(Throttled, match="function 'f' is at its reserved concurrency of 2") as refused:
        gate.acquire("f", 2)
    assert refused.value.details == {"retry_after_s": 1}
    gate.acquire("g", 2)  # another function is not held back
    assert (gate.in_flight("f"), gate.in_flight("g"), gate.in_flight()) == (2, 1, 3)
    gate.release("f")
    gate.acquire("f", 2)
    assert gate.in_flight("f") == 2


def test_host_limit_caps_the_total(shm: Path) -> None:
    with SharedConcurrency(shm, host_limit=3) as gate:
        for name in ("a", "b", "c"):
            gate.acquire(name, None)
        with pytest.raises(Throttled, match="host is at its concurrency limit of 3"):
            gate.acquire("d", 10)
        gate.release("b")
        gate.acquire("d", 10)
        assert gate.in_flight() == 3


def test_reserved_zero_always_refuses(gate: SharedConcurrency) -> None:
    with pytest.raises(Throttled, match="reserved concurrency of 0"):
        gate.acquire("f", 0)
    assert gate.in_flight() == 0


def test_release_without_acquire_is_an_error(gate: SharedConcurrency) -> None:
    with pytest.raises(ValueError, match="without a matching acquire"):
        gate.release("f")
    gate.acquire("f", None)
    gate.release("f")
    with pytest.raises(ValueError, match="without a matching acquire"):
        gate.release("f")
    assert gate.in_flight() == 0


def test_names_must_fit_the_table(gate: SharedConcurrency) -> None:
    gate.acquire("x" * 64, 1)
    with pytest.raises(InvalidName):
        gate.acquire("x" * 65, 1)
    with pytest.raises(InvalidName):
        gate.acquire("", 1)


def test_snapshot_names_every_function(gate: SharedConcurrency) -> None:
    gate.acquire("echo", None)
    gate.acquire("echo", None)
    gate.acquire("resize-image_2", None)
    gate.release("resize-image_2")
    assert gate.snapshot() == {"echo": 2, "resize-image_2": 0}


def test_two_objects_on_one_file_share_the_counts(shm: Path) -> None:
    with SharedConcurrency(shm, host_limit=100) as a, SharedConcurrency(shm, host_limit=100) as b:
        a.acquire("f", 3)
        a.acquire("f", 3)
        b.acquire("f", 3)
        with pytest.raises(Throttled, match="reserved concurrency of 3"):
            b.acquire("f", 3)
        with pytest.raises(Throttled):
            a.acquire("f", 3)
        assert a.in_flight("f") == b.in_flight("f") == 3
        assert b.snapshot() == {"f": 3}
        a.close()  # gives back a's two slots
        a.close()
        assert b.in_flight("f") == 1
        b.acquire("f", 3)
        b.acquire("f", 3)


def test_close_ends_use(shm: Path) -> None:
    gate = SharedConcurrency(shm, host_limit=10)
    gate.acquire("f", None)
    gate.close()
    gate.release("f")  # an invocation finishing after shutdown
    with pytest.raises(ValueError, match="closed"):
        gate.acquire("f", None)
    with pytest.raises(ValueError, match="closed"):
        gate.in_flight()
    with SharedConcurrency(shm, host_limit=10) as again:
        assert again.in_flight() == 0


def test_a_forgotten_object_gives_back_its_row(shm: Path) -> None:
    with SharedConcurrency(shm, host_limit=10) as watcher:
        forgotten = SharedConcurrency(shm, host_limit=10)
        forgotten.acquire("f", None)
        assert watcher.in_flight("f") == 1
        del forgotten
        assert watcher.in_flight("f") == 0


def test_at_most_64_processes_share_a_file(shm: Path) -> None:
    gates = [SharedConcurrency(shm, host_limit=10) for _ in range(PROCESS_ROWS)]
    try:
        with pytest.raises(WasmhostError, match=f"all {PROCESS_ROWS} process rows are taken"):
            SharedConcurrency(shm, host_limit=10)
        gates.pop().close()
        gates.append(SharedConcurrency(shm, host_limit=10))
    finally:
        for gate in gates:
            gate.close()


def test_thousands_of_functions_are_each_counted_exactly(shm: Path) -> None:
    names = [f"function-{i}" for i in range(2000)]
    with SharedConcurrency(shm, host_limit=10_000) as a, SharedConcurrency(shm, host_limit=10_000) as b:
        for i, name in enumerate(names):
            for _ in range(i % 3 + 1):
                a.acquire(name, 3)
        expected = {name: i % 3 + 1 for i, name in enumerate(names)}
        assert {name: b.in_flight(name) for name in names} == expected  # b finds each by probing
        assert b.snapshot() == expected
        for i, name in enumerate(names):
            if i % 3 == 2:
                with pytest.raises(Throttled):
                    b.acquire(name, 3)
            else:
                b.acquire(name, 3)
        assert b.in_flight() == sum(expected.values()) + sum(1 for i in range(2000) if i % 3 != 2)
        assert sum(a.snapshot().values()) == b.in_flight()


def test_a_sweep_forgets_idle_functions_and_keeps_busy_ones(shm: Path) -> None:
    def pass_through(names: range) -> None:
        for i in names:
            a.acquire(f"passing-{i}", 1)
            a.release(f"passing-{i}")

    held = [f"held-{i}" for i in range(100)]
    with SharedConcurrency(shm, host_limit=10_000) as a:
        pass_through(range(6000))
        for name in held:  # in a crowded table: many sit past idle functions that a sweep forgets
            a.acquire(name, 1)
        pass_through(range(6000, FUNCTION_SLOTS + 2000))  # more names than the table has slots
        assert len(a.snapshot()) < FUNCTION_SLOTS  # idle functions were forgotten
        with SharedConcurrency(shm, host_limit=10_000) as b:
            assert all(b.in_flight(name) == 1 for name in held)
            for name in held:
                with pytest.raises(Throttled):
                    b.acquire(name, 1)  # b finds the held slot: no second counter


def test_a_slot_remembered_from_before_a_sweep_is_looked_up_again(shm: Path) -> None:
    with SharedConcurrency(shm, host_limit=10_000) as a, SharedConcurrency(shm, host_limit=10_000) as b:
        b.acquire("idle", None)
        b.release("idle")  # b remembers where "idle" was
        for i in range(FUNCTION_SLOTS):  # a sweep forgets "idle"; other names take the slots
            a.acquire(f"passing-{i}", None)
            a.release(f"passing-{i}")
        assert "idle" not in a.snapshot()
        b.acquire("idle", None)
        assert {name: count for name, count in a.snapshot().items() if count} == {"idle": 1}


def test_a_full_table_refuses_new_functions(shm: Path) -> None:
    with SharedConcurrency(shm, host_limit=100_000) as gate:
        for i in range(FUNCTION_SLOTS):
            gate.acquire(f"f{i}", None)
        with pytest.raises(Throttled, match=f"limit of {FUNCTION_SLOTS} functions"):
            gate.acquire("one-more", None)
        gate.acquire("f0", None)  # functions in the table go on
        gate.release("f1")
        gate.acquire("one-more", None)
        assert gate.in_flight("one-more") == 1
        assert gate.in_flight() == FUNCTION_SLOTS + 1


def test_threads_end_at_zero(gate: SharedConcurrency) -> None:
    peak, _ = hammer(gate, "f", 3, threads=4, rounds=1000)
    assert 1 <= peak <= 3
    assert gate.in_flight() == 0


def test_process_identity_defeats_pid_reuse() -> None:
    start = _process_start(os.getpid())
    assert start > 0
    assert _process_alive(os.getpid(), start)
    assert not _process_alive(os.getpid(), start + 1)  # same pid, a later process
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not _process_alive(int(exited.stdout), 0)


# --- several processes -------------------------------------------------------


def hammer(gate: SharedConcurrency, name: str, reserved: int, threads: int, rounds: int) -> tuple[int, int]:
    """Threads acquire, look at the count, release; returns (highest count seen, times throttled)."""
    peak = throttled = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak, throttled
        for _ in range(rounds):
            try:
                gate.acquire(name, reserved)
            except Throttled:
                with lock:
                    throttled += 1
                continue
            try:
                seen = gate.in_flight(name)
                with lock:
                    peak = max(peak, seen)
            finally:
                gate.release(name)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return peak, throttled


def child_main() -> None:
    """A process holding a SharedConcurrency, driven by lines on stdin: ``acquire f 3``, ``release f``, ``hammer f 3``."""
    gate = SharedConcurrency(Path(sys.argv[1]), int(sys.argv[2]))
    print("ready", flush=True)
    for line in sys.stdin:
        command, name, *limit = line.split()
        reserved = int(limit[0]) if limit else None
        try:
            if command == "acquire":
                gate.acquire(name, reserved)
                answer = "ok"
            elif command == "release":
                gate.release(name)
                answer = "ok"
            else:
                answer = "{} {}".format(*hammer(gate, name, reserved or 1, threads=4, rounds=1500))
        except Throttled as error:
            answer = f"throttled {error.message}"
        print(answer, flush=True)


class Child:
    """Another real process with its own SharedConcurrency on the same file."""

    def __init__(self, shm: Path, host_limit: int = 100) -> None:
        code = "from tests.test_concurrency import child_main; child_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(shm), str(host_limit)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def child(shm: Path) -> Iterator[Child]:
    process = Child(shm)
    yield process
    process.close()


@pytest.mark.slow
def test_reserved_concurrency_counts_both_processes(shm: Path, child: Child) -> None:
    with SharedConcurrency(shm, host_limit=100) as gate:
        assert child.ask("acquire f 3") == "ok"
        assert child.ask("acquire f 3") == "ok"
        gate.acquire("f", 3)
        with pytest.raises(Throttled, match="reserved concurrency of 3"):
            gate.acquire("f", 3)
        assert child.ask("acquire f 3") == "throttled function 'f' is at its reserved concurrency of 3"
        assert gate.in_flight("f") == 3
        assert child.ask("release f") == "ok"
        gate.acquire("f", 3)
        assert gate.snapshot() == {"f": 3}


@pytest.mark.slow
def test_host_limit_counts_both_processes(shm: Path, child: Child) -> None:
    with SharedConcurrency(shm, host_limit=3) as gate:
        assert child.ask("acquire a") == "ok"
        assert child.ask("acquire b") == "ok"
        gate.acquire("c", None)
        with pytest.raises(Throttled, match="host is at its concurrency limit of 3"):
            gate.acquire("c", None)
        assert gate.in_flight() == 3


@pytest.mark.slow
def test_a_killed_process_gives_its_slots_back(shm: Path, child: Child) -> None:
    with SharedConcurrency(shm, host_limit=100, reclaim_interval_s=0.05) as gate:
        assert child.ask("acquire f 2") == "ok"
        assert child.ask("acquire f 2") == "ok"
        with pytest.raises(Throttled):
            gate.acquire("f", 2)
        child.process.kill()  # SIGKILL, and not reaped yet: a zombie holds nothing either
        deadline = time.monotonic() + 5
        while True:
            try:
                gate.acquire("f", 2)
                break
            except Throttled:
                assert time.monotonic() < deadline, "the killed process's slots never came back"
                time.sleep(0.01)
        assert (gate.in_flight("f"), gate.in_flight()) == (1, 1)
        assert gate.snapshot() == {"f": 1}


@pytest.mark.slow
def test_threads_in_two_processes_end_at_zero(shm: Path, child: Child) -> None:
    with SharedConcurrency(shm, host_limit=100) as gate:
        child.send("hammer f 3")
        peak, _ = hammer(gate, "f", 3, threads=4, rounds=1500)
        child_peak, _ = map(int, child.read().split())
        assert max(peak, child_peak) <= 3
        assert gate.in_flight("f") == gate.in_flight() == 0
        assert child.ask("acquire f 3") == "ok"
        assert gate.in_flight("f") == 1
