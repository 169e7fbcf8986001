"""Build plugin for Zig guests (loaded by ``guests/build.py``).

``guests/zig/examples/<name>.zig`` -> ``guests/dist/zig-<name>.wasm``, each
compiled with the SDK ``guests/zig/wasmhost.zig`` as the module ``wasmhost``
(``@import("wasmhost")``) by the Zig from the ``ziglang`` wheel.

Zig's local cache goes to ``guests/zig/.zig-cache`` (git-ignored there); its
global cache (compiler_rt, std) stays in the user's cache dir (``~/.cache/zig``).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

ZIG_DIR = Path(__file__).resolve().parent
SDK = ZIG_DIR / "wasmhost.zig"
EXAMPLES = ZIG_DIR / "examples"
CACHE = ZIG_DIR / ".zig-cache"

# zig build-exe flags for Zig guests.
#  -target wasm32-wasi        core wasm32 module; WASI preview 1 is the only import namespace.
#  -O ReleaseFast -fstrip     no DWARF; ReleaseFast executes about half the wasm
#                             instructions of ReleaseSmall per invocation (std's
#                             helpers are not inlined there) for ~3 KiB more module.
#  -fno-entry -rdynamic       no _start/main: a library-like module whose @export'ed
#                             wasmhost_alloc/wasmhost_handle (and memory) are exported.
#                             No _initialize is needed: Zig has no constructors.
#  --stack 65536              64 KiB shadow stack instead of Zig's 16 MiB default
#                             (which makes the minimum memory 257 pages); see ABI.md §9.
ZIG_FLAGS = [
    "-target",
    "wasm32-wasi",
    "-O",
    "ReleaseFast",
    "-fstrip",
]
LINK_FLAGS = [
    "-fno-entry",
    "-rdynamic",
    "--stack",
    "65536",
]


def _zig() -> list[str]:
    return [sys.executable, "-m", "ziglang"]


@functools.cache
def toolchain_missing() -> str | None:
    """None if ``python -m ziglang`` runs, else why not."""
    try:
        proc = subprocess.run([*_zig(), "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"python -m ziglang does not run ({exc})"
    if proc.returncode != 0:
        return f"python -m ziglang version failed: {(proc.stderr or proc.stdout).strip()}"
    return None


def command(src: Path, out: Path) -> list[str]:
    """The compiler command building ``src`` (a handler file) into ``out``."""
    return [
        *_zig(),
        "build-exe",
        *ZIG_FLAGS,
        "--dep",
        "wasmhost",
        f"-Mroot={src}",
        f"-Mwasmhost={SDK}",
        *LINK_FLAGS,
        "--cache-dir",
        str(CACHE),
        f"-femit-bin={out}",
    ]


def artifacts() -> list[dict]:
    result = []
    for src in sorted(EXAMPLES.glob("*.zig")):

        def cmd(tmp: Path, src: Path = src) -> list[str]:
            return command(src, Path(tmp).resolve())

        result.append({"name": f"zig-{src.stem}", "inputs": [src, SDK], "command": cmd, "cwd": ZIG_DIR})
    return result
