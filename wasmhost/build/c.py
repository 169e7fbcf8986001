"""C functions: one folder of ``.c`` files (or one file) and the SDK header, via zig cc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .base import BuildError, Progress, digest_inputs, guests_dir, source_files
from .project import Project

FLAGS = ["-target", "wasm32-wasi", "-mexec-model=reactor", "-O2", "-s", "-Wl,-z,stack-size=65536"]


def _sources(source: Path) -> list[Path]:
    files = [source] if source.is_file() else sorted(source.glob("*.c"))
    if not files:
        raise BuildError(f"{source}: no .c files")
    return files


def cache_key(source: Path, project: Project) -> str:
    root = source if source.is_dir() else source.parent
    header = guests_dir() / "c" / "wasmhost.h"
    inputs = [*source_files(source), header]
    return digest_inputs(["c", *FLAGS], inputs, root)


def build(source: Path, project: Project, out: Path, say: Progress) -> None:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        raise BuildError("zig is not installed: pip install ziglang (make install does it)") from None
    files = _sources(source)
    say(f"c: zig cc {' '.join(f.name for f in files)}")
    include = guests_dir() / "c"
    command = [sys.executable, "-m", "ziglang", "cc", *FLAGS, "-I", str(include), "-o", str(out), *map(str, files)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"C build failed:\n{proc.stderr.strip()}")
