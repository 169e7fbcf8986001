"""guests/build.py plugin: AssemblyScript examples -> guests/dist/as-<name>.wasm.

``guests/assemblyscript/examples/<name>.ts`` is compiled with the pinned
``asc`` from ``node_modules`` (``npm ci`` in this folder installs it). Standard
library only; works from any current directory.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ASC = ROOT / "node_modules" / ".bin" / "asc"
SDK = ROOT / "assembly" / "wasmhost.ts"
EXAMPLES = ROOT / "examples"
MIN_NODE = 20  # assemblyscript 0.28 requires node >= 20

# asc flags for wasmhost guests.
#  --runtime stub          bump allocator, no GC: every invocation is a fresh
#                          instance that is thrown away, so nothing needs freeing
#                          (and nothing costs a collection).
#  --use abort=wasmhost_abort
#                          the SDK's abort (a @global: message to stderr, then
#                          trap) instead of the default import `env.abort`,
#                          which the host would refuse at deploy.
#  -O3                     optimize for speed (modules are ~10 KiB anyway).
ASC_FLAGS = [
    "--runtime",
    "stub",
    "--use",
    "abort=wasmhost_abort",
    "-O3",
]


def _node() -> str | None:
    return shutil.which("node")


def toolchain_missing() -> str | None:
    """Why the AssemblyScript toolchain cannot run, or None if it can."""
    hint = "run `npm ci --prefix guests/assemblyscript` (make install does it)"
    node = _node()
    if node is None:
        return f"node not found on PATH (need node >= {MIN_NODE}); then {hint}"
    try:
        proc = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        major = int(proc.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return f"`node --version` failed (need node >= {MIN_NODE})"
    if major < MIN_NODE:
        return f"node {proc.stdout.strip()} is too old (assemblyscript needs node >= {MIN_NODE})"
    if not ASC.exists():
        return f"{ASC.relative_to(ROOT.parent.parent)} is missing: {hint}"
    return None


def artifacts() -> list[dict[str, Any]]:
    """One artifact per ``examples/<name>.ts``, named ``as-<name>``."""
    node = _node() or "node"
    common_inputs = [SDK, ROOT / "package-lock.json"]
    result = []
    for src in sorted(EXAMPLES.glob("*.ts")):

        def command(tmp: Path, src: Path = src) -> list[str]:
            return [node, str(ASC), str(src), *ASC_FLAGS, "-o", str(tmp)]

        result.append(
            {
                "name": f"as-{src.stem}",
                "inputs": [src, *common_inputs],
                "command": command,
                "cwd": ROOT,
            }
        )
    return result
