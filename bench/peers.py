"""Peer systems that ``make bench`` runs side by side with wasmhost, serving the same echo.

Every peer answers ``POST http://127.0.0.1:PORT/invoke/echo`` with the JSON event it was
sent (200, ``application/json``), like wasmhost and ``bench/bare_echo.py``:

``workerd-js``
    Cloudflare's workerd (npm ``workerd``) running an ES-module worker that does
    ``Response.json(await request.json())`` (``bench/peers/workerd/echo-js.*``). workerd runs
    one isolate on one event-loop thread; it is started with its defaults.
``workerd-wasm``
    workerd running a worker that makes a FRESH ``WebAssembly.Instance`` of a small module
    for every request (as wasmhost does), copies the body into its memory, calls its
    ``handle`` export and returns the bytes it answers (``bench/peers/workerd/echo-wasm.*``).
    The module is written in ``echo.wat``; this file turns it into ``echo.wasm`` with
    ``wasmtime.wat2wasm`` before workerd starts (the .wasm is not committed). workerd compiles
    the module once, when it loads its config (a wasm module binding).
``serverless-offline``
    serverless v3 with the serverless-offline 13 plugin: API Gateway's HTTP API (payload 2.0)
    emulated by a hapi server in Node, in front of the Python 3.11 handler
    ``bench/peers/serverless/handler.py`` (``return json.loads(event["body"])``).
    How serverless-offline 13 runs a Python handler (``PythonRunner``): one long-lived child
    process per *function instance*, ``/bin/sh -c "python3 -u invoke.py handler handler"``,
    fed one JSON line per invocation on stdin and answering one line on stdout. Instances
    are pooled per function: a request takes an idle instance, and when every instance is
    busy a NEW one is spawned (no concurrency limit), so under ``wrk -c32`` the pool grows to
    about as many Python processes as there are requests in flight; an instance idle for
    ``terminateIdleLambdaTime`` (default 60 s) is killed. The pool is empty at start: the
    first request spawns the first Python process (its "cold start": sh + CPython start-up +
    importing the handler); later requests reuse warm processes. Defaults kept: lambda
    timeout 6 s (a timer per invocation), ``reloadHandler`` off, no Docker, not in-process.
    ``python3`` is found on PATH, with ``$VIRTUAL_ENV/bin`` put first by serverless-offline:
    we point ``VIRTUAL_ENV`` at the project venv (Python 3.11).

What "first request" (cold start) means per peer: ``workerd-js`` - the worker's isolate and
module are loaded at start-up, so the first request only pays first-call costs (lazy
compilation of ``fetch``); ``workerd-wasm`` - the same, and every request pays the fresh
instance; ``serverless-offline`` - spawning the first Python process and importing the
handler.

Install (npm, at install time only; nothing is downloaded at run time):
``npm ci --prefix bench/peers --no-audit --no-fund --loglevel=error``, or ``ensure_installed()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PEERS = ("workerd-js", "workerd-wasm", "serverless-offline")

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "bench" / "peers"
NODE_MODULES = PEERS_DIR / "node_modules"
PACKAGE_LOCK = PEERS_DIR / "package-lock.json"
# npm writes this "hidden lockfile" at the end of every install: its age is the install's.
INSTALLED_STAMP = NODE_MODULES / ".package-lock.json"
WORKERD_DIR = PEERS_DIR / "workerd"
SERVERLESS_DIR = PEERS_DIR / "serverless"
SERVERLESS_JS = NODE_MODULES / "serverless" / "bin" / "serverless.js"
SERVERLESS_OFFLINE_PKG = NODE_MODULES / "serverless-offline" / "package.json"
VENV = ROOT / ".venv"

ECHO_PATH = "/invoke/echo"
ECHO_EVENT = {"name": "world", "n": 42, "tags": ["a", "b"]}
ECHO_BODY = json.dumps(ECHO_EVENT, separators=(",", ":")).encode()

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
NPM_CI = ["npm", "ci", "--prefix", str(PEERS_DIR), "--no-audit", "--no-fund", "--loglevel=error"]

# serverless v3 talks to serverless.com (telemetry, notifications, update checks, dashboard)
# unless told not to; this machine cannot reach it. These keep it offline and quiet.
SERVERLESS_ENV = {
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_TRACKING_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
    "SLS_DEPRECATION_DISABLE": "*",
    "SLS_DISABLE_AUTO_UPDATE": "1",
    # 'warning' hides serverless-offline's per-request lines ("POST /invoke/echo (λ: echo)",
    # "RequestId: ... Duration: ..."): logging every request would distort throughput.
    "SLS_LOG_LEVEL": "warning",
    # Fake credentials and region: nothing is called on AWS, but the provider wants them.
    "AWS_ACCESS_KEY_ID": "AKIAOFFLINEBENCH0000",
    "AWS_SECRET_ACCESS_KEY": "offline-bench-not-a-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would make serverless use the dashboard/an account (network) or another config.
SERVERLESS_ENV_DROP = ("SERVERLESS_ACCESS_KEY", "SERVERLESS_PLATFORM_STAGE", "AWS_PROFILE", "AWS_SESSION_TOKEN")


class PeerUnavailable(Exception):
    """A peer cannot run on this machine; the message says why."""


@dataclass
class Peer:
    name: str
    url: str  # full URL to POST the echo to
    pid: int
    spawn_to_ready_ms: float  # from process spawn to the first successful echo answer
    first_request_ms: float  # the first echo request, sent once the port accepts connections

    def rss_bytes(self) -> int:
        """Resident memory of the peer's process and all its descendants, in bytes."""
        total = 0
        for pid in process_tree(self.pid):
            total += _rss_kib(pid) * 1024
        return total

    def pids(self) -> list[int]:
        """The peer's process and its live descendants."""
        return process_tree(self.pid)


# --- installation ---------------------------------------------------------------


def _install_is_current() -> bool:
    return INSTALLED_STAMP.exists() and INSTALLED_STAMP.stat().st_mtime >= PACKAGE_LOCK.stat().st_mtime


def ensure_installed() -> None:
    """Run ``npm ci --prefix bench/peers`` if node_modules is missing or older than package-lock.json."""
    if _install_is_current():
        return
    if shutil.which("npm") is None:
        raise PeerUnavailable("npm is not installed: the peers (workerd, serverless) are npm packages")
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    # One install at a time, should two benchmarks start together.
    with open(PEERS_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _install_is_current():
            return
        proc = subprocess.run(NPM_CI, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0 or not INSTALLED_STAMP.exists():
            raise PeerUnavailable(
                f"`{' '.join(NPM_CI)}` failed (exit {proc.returncode}):\n{_tail(proc.stderr + proc.stdout)}"
            )
        os.utime(INSTALLED_STAMP)


def _workerd_binary() -> Path | None:
    """workerd's native binary: the platform package's, else the one workerd's postinstall copied."""
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    candidates = []
    if arch is not None:
        candidates.append(NODE_MODULES / "@cloudflare" / f"workerd-linux-{arch}" / "bin" / "workerd")
    candidates.append(NODE_MODULES / "workerd" / "bin" / "workerd")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and path.read_bytes()[:4] == b"\x7fELF":
            return path
    return None


def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    proc = subprocess.run([node, "--version"], capture_output=True, text=True)
    match = re.match(r"v(\d+)\.", proc.stdout.strip())
    return int(match.group(1)) if match else None


def _serverless_venv() -> Path | None:
    """A virtualenv whose bin/ holds python3 = Python 3.11, for serverless-offline's ``python3``."""
    for venv in (VENV, Path(os.environ.get("VIRTUAL_ENV", "/nonexistent"))):
        if (venv / "bin" / "python3.11").exists() and (venv / "bin" / "python3").exists():
            return venv
    return None


def unavailable_reason(name: str) -> str | None:
    """None if the peer can run here, else why not (cheap: looks for the installed pieces)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; peers are {', '.join(PEERS)}")
    if not INSTALLED_STAMP.exists():
        return f"bench/peers is not installed: run `{' '.join(NPM_CI)}` (or peers.ensure_installed())"
    if name.startswith("workerd"):
        if platform.system() != "Linux":
            return f"workerd peers are set up for Linux only (this is {platform.system()})"
        binary = _workerd_binary()
        if binary is None:
            return (
                "workerd's native binary is missing from bench/peers/node_modules "
                f"(@cloudflare/workerd-linux-* for {platform.machine()}); reinstall with npm ci"
            )
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{binary} does not run here (exit {proc.returncode}): {_tail(proc.stderr, 5)}"
        if name == "workerd-wasm" and not _wasm_is_current():
            try:
                import wasmtime  # noqa: F401
            except ImportError:
                return "workerd-wasm needs Python's wasmtime package to build echo.wasm from echo.wat"
        return None
    # serverless-offline
    major = _node_major()
    if major is None:
        return "node is not installed (serverless v3 is a Node program)"
    if major < 18:
        return f"serverless-offline 13 needs Node >= 18.12; this node is v{major}"
    if not SERVERLESS_JS.exists() or not SERVERLESS_OFFLINE_PKG.exists():
        return "serverless or serverless-offline is missing from bench/peers/node_modules; reinstall with npm ci"
    if _serverless_venv() is None and shutil.which("python3.11") is None:
        return "the serverless-offline peer runs its handler with Python 3.11: no .venv/bin/python3.11, no python3.11"
    return None


# --- process tree -----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            continue
    return kids


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants (via /proc/<pid>/task/*/children)."""
    seen: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        if p in seen or not os.path.exists(f"/proc/{p}"):
            continue
        seen.append(p)
        stack.extend(_children(p))
    return seen


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a zombie (no VmRSS line)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the peer's process group (graceful), then SIGKILL whatever is left of its tree."""
    pgid = proc.pid  # started with start_new_session=True: its own session and process group
    tree = process_tree(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for pid in tree + process_tree(proc.pid):  # descendants that left the group, if any
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)  # orphans reparented to init are reaped by it


# --- starting peers ---------------------------------------------------------------------


def _wasm_is_current() -> bool:
    wasm, wat = WORKERD_DIR / "echo.wasm", WORKERD_DIR / "echo.wat"
    return wasm.exists() and wasm.stat().st_mtime >= wat.stat().st_mtime


def build_echo_wasm() -> Path:
    """bench/peers/workerd/echo.wasm from echo.wat (wasmtime.wat2wasm), rebuilt when older than the .wat."""
    wasm = WORKERD_DIR / "echo.wasm"
    if _wasm_is_current():
        return wasm
    try:
        import wasmtime
    except ImportError as e:
        raise PeerUnavailable("workerd-wasm needs Python's wasmtime package to build echo.wasm from echo.wat") from e
    binary = wasmtime.wat2wasm((WORKERD_DIR / "echo.wat").read_text())
    fd, tmp = tempfile.mkstemp(dir=WORKERD_DIR, prefix=".echo.", suffix=".wasm")
    with os.fdopen(fd, "wb") as f:
        f.write(binary)
    os.replace(tmp, wasm)  # atomic: a concurrent start never sees half a file
    return wasm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(name: str, port: int, scratch: Path) -> tuple[list[str], Path, dict[str, str]]:
    """argv, working directory and environment of a peer (scratch: a directory that lives as long as it)."""
    env = dict(os.environ)
    if name in ("workerd-js", "workerd-wasm"):
        binary = _workerd_binary()
        assert binary is not None
        config = "echo-js.capnp" if name == "workerd-js" else "echo-wasm.capnp"
        # --socket-addr overrides the address of the config's socket named "http".
        return [str(binary), "serve", config, "--socket-addr", f"http=127.0.0.1:{port}"], WORKERD_DIR, env
    # serverless-offline
    node = shutil.which("node")
    assert node is not None
    for key in SERVERLESS_ENV_DROP:
        env.pop(key, None)
    env.update(SERVERLESS_ENV)
    venv = _serverless_venv()
    if venv is not None:
        # serverless-offline's PythonRunner runs `python3` with $VIRTUAL_ENV/bin first on PATH.
        env["VIRTUAL_ENV"] = str(venv)
    else:
        env.pop("VIRTUAL_ENV", None)
        python311 = shutil.which("python3.11")
        assert python311 is not None
        # The interpreter itself, not a launcher such as pyenv's shim (a shell script per start).
        real = subprocess.run([python311, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        python311 = real.stdout.strip() or python311
        shim = scratch / "bin"
        shim.mkdir()
        (shim / "python3").symlink_to(python311)
        env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    argv = [node, str(SERVERLESS_JS), "offline", "start", "--host", "127.0.0.1", "--httpPort", str(port)]
    # The Lambda-invoke endpoint (an extra HTTP server; default 3002) on a free port of its own.
    argv += ["--lambdaPort", str(_free_port()), "--noSponsor"]
    return argv, SERVERLESS_DIR, env


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _post_echo(port: int, timeout: float) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", ECHO_PATH, body=ECHO_BODY, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def run_peer(name: str, port: int) -> Iterator[Peer]:
    """Start peer ``name`` on 127.0.0.1:port, wait until it answers the echo, yield it, stop its process tree.

    Raises PeerUnavailable if it cannot run here, RuntimeError if it does not become ready
    within 60 s or answers wrongly (with the tail of its output).
    """
    reason = unavailable_reason(name)
    if reason is not None:
        raise PeerUnavailable(f"{name}: {reason}")
    if _port_open(port):
        raise RuntimeError(f"{name}: 127.0.0.1:{port} is already in use")
    if name == "workerd-wasm":
        build_echo_wasm()
    with tempfile.TemporaryDirectory(prefix="wasmhost-peer-") as scratch, tempfile.TemporaryFile() as output:
        argv, cwd, env = _command(name, port, Path(scratch))

        def output_tail() -> str:
            output.seek(0)
            return _tail(output.read().decode(errors="replace")) or "(no output)"

        spawned = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = spawned + READY_TIMEOUT_S

            def check_alive(what: str) -> None:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited (code {proc.returncode}) {what}; its output:\n{output_tail()}")
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"{name} not ready after {READY_TIMEOUT_S:.0f} s ({what}); its output:\n{output_tail()}"
                    )

            # 1. The port accepts connections: no request is sent, so nothing warms up the function.
            while not _port_open(port):
                check_alive(f"before 127.0.0.1:{port} accepted connections")
                time.sleep(0.005)
            # 2. The first echo request: the function's cold start. Retried only if it fails.
            first_sent = time.perf_counter()
            last = ""
            while True:
                try:
                    status, body, ctype = _post_echo(port, timeout=max(0.1, deadline - time.perf_counter()))
                    if status == 200 and json.loads(body) == ECHO_EVENT and ctype.startswith("application/json"):
                        break
                    last = f"HTTP {status} {ctype!r} {body[:200]!r}"
                except (OSError, http.client.HTTPException, ValueError) as e:
                    last = repr(e)
                check_alive(f"the echo failed: {last}")
                time.sleep(0.01)
            answered = time.perf_counter()
            yield Peer(
                name=name,
                url=f"http://127.0.0.1:{port}{ECHO_PATH}",
                pid=proc.pid,
                spawn_to_ready_ms=(answered - spawned) * 1e3,
                first_request_ms=(answered - first_sent) * 1e3,
            )
        finally:
            _stop(proc)
