#!/usr/bin/env python3
"""Build the example guest functions into ``guests/dist/<name>.wasm``.

Usage (from anywhere; paths are relative to this file)::

    python guests/build.py              # build what is out of date
    python guests/build.py hello fib    # only these artifacts
    python guests/build.py --force      # rebuild everything
    python guests/build.py --clean      # delete guests/dist/*.wasm and stop

One builder function per guest language (see ``BUILDERS``); today only C,
compiled with Zig's bundled clang (``python -m ziglang cc``, from the
``ziglang`` wheel). An artifact is skipped when it is newer than all its
inputs (its source, the SDK header and this script, which holds the flags).
Each artifact prints one line. On a compiler failure the compiler's message
goes to stderr, the other artifacts still build, and the exit status is 1.
Outputs are written to a temporary file and renamed into place, so an
interrupted or failed build never leaves a fresh-looking broken artifact.

Standard library only (Python 3.11+).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GUESTS = Path(__file__).resolve().parent
REPO = GUESTS.parent
DIST = GUESTS / "dist"
C_DIR = GUESTS / "c"

# zig cc flags for C guests.
#  -mexec-model=reactor      WASI reactor: exports _initialize, no _start/main.
#  -Wl,-z,stack-size=64 KiB  zig's default wasm stack is 16 MiB, which makes the
#                            module's *initial* memory 257 pages (>16 MiB), so it
#                            could not even instantiate under memory_mb=16.
#                            This is only the shadow stack (arrays and address-
#                            taken locals; scalars live in wasm locals), and a
#                            small one keeps the pages a fresh instance touches
#                            few and close together. The stack sits below the
#                            data (stack-first): an overflow traps instead of
#                            corrupting data. Raise it for deep recursion over
#                            big local arrays.
#  -s                        strip: zig's prebuilt wasi-libc carries ~900 KiB of
#                            DWARF; stripped modules are ~8-30 KiB.
C_FLAGS = [
    "-target",
    "wasm32-wasi",
    "-mexec-model=reactor",
    "-O2",
    "-s",
    "-Wl,-z,stack-size=65536",
]


@dataclass
class Result:
    out: Path
    status: str  # "built", "fresh" or "FAILED"
    message: str = ""


@dataclass
class Options:
    force: bool
    only: set[str]  # artifact names to build; empty = all


def _rel(path: Path) -> str:
    """``path`` relative to the repository root when possible (for messages)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _is_fresh(out: Path, inputs: Sequence[Path]) -> bool:
    """True if ``out`` exists and is strictly newer than every input."""
    try:
        out_mtime = out.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    return all(out_mtime > p.stat().st_mtime_ns for p in inputs)


def _compile(
    out: Path,
    inputs: Sequence[Path],
    cmd_for: Callable[[Path], list[str]],
    opts: Options,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    """Run ``cmd_for(tmp_output)`` unless ``out`` is fresh; rename into place."""
    if not opts.force and _is_fresh(out, inputs):
        return Result(out, "fresh")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        proc = subprocess.run(
            cmd_for(tmp), cwd=cwd or REPO, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        if proc.returncode != 0 or not tmp.exists():
            msg = (proc.stderr + proc.stdout).strip() or f"exit status {proc.returncode}"
            return Result(out, "FAILED", msg)
        os.replace(tmp, out)
    except OSError as exc:  # e.g. the compiler could not be started
        return Result(out, "FAILED", str(exc))
    finally:
        tmp.unlink(missing_ok=True)
    return Result(out, "built")


# --- one builder per language ------------------------------------------------


def build_c(opts: Options) -> list[Result]:
    """``guests/c/examples/<name>.c`` -> ``guests/dist/<name>.wasm``."""
    header = C_DIR / "wasmhost.h"
    results = []
    for src in sorted((C_DIR / "examples").glob("*.c")):
        if opts.only and src.stem not in opts.only:
            continue
        out = DIST / f"{src.stem}.wasm"

        def cmd(tmp: Path, src: Path = src) -> list[str]:
            return [sys.executable, "-m", "ziglang", "cc", *C_FLAGS, "-I", str(C_DIR), "-o", str(tmp), str(src)]

        results.append(_compile(out, [src, header, Path(__file__).resolve()], cmd, opts))
    return results


@dataclass
class Artifact:
    """One thing a language plugin builds: ``guests/dist/<name>.wasm``."""

    name: str
    inputs: list[Path]
    command: Callable[[Path], list[str]]  # given the temporary output path
    env: dict[str, str] | None = None
    cwd: Path | None = None


def _plugin_builder(lang: str, plugin: Any) -> Callable[[Options], list[Result]]:
    """A builder for ``guests/<lang>/builder.py``.

    The plugin defines ``toolchain_missing() -> str | None`` (why its toolchain
    is unavailable, or None) and ``artifacts()``, a list of dicts with the
    fields of :class:`Artifact` (``name``, ``inputs``, ``command``, and
    optionally ``env`` and ``cwd``).
    """

    def build(opts: Options) -> list[Result]:
        reason = plugin.toolchain_missing()
        if reason:
            print(f"skip   {lang}: {reason}", file=sys.stderr, flush=True)
            return []
        results = []
        for fields in plugin.artifacts():
            artifact = Artifact(**fields)
            if opts.only and artifact.name not in opts.only:
                continue
            out = DIST / f"{artifact.name}.wasm"
            inputs = [*artifact.inputs, Path(plugin.__file__).resolve()]
            results.append(_compile(out, inputs, artifact.command, opts, artifact.env, artifact.cwd))
        return results

    return build


def _load_plugins() -> dict[str, Callable[[Options], list[Result]]]:
    builders: dict[str, Callable[[Options], list[Result]]] = {"c": build_c}
    for path in sorted(GUESTS.glob("*/builder.py")):
        spec = importlib.util.spec_from_file_location(f"wasmhost_guest_builder_{path.parent.name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        builders[path.parent.name] = _plugin_builder(path.parent.name, module)
    return builders


BUILDERS = _load_plugins()


def clean() -> int:
    removed = 0
    if DIST.is_dir():
        for path in sorted(DIST.glob("*.wasm")) + sorted(DIST.glob(".*.tmp.wasm")):
            path.unlink(missing_ok=True)
            print(f"removed {_rel(path)}")
            removed += 1
    print(f"clean: {removed} file(s) removed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the wasmhost example guests into guests/dist/.")
    parser.add_argument("names", nargs="*", help="artifact names to build (default: all)")
    parser.add_argument("--clean", action="store_true", help="delete guests/dist/*.wasm and exit")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--lang", action="append", choices=sorted(BUILDERS), help="only this language (repeatable; default: all)"
    )
    args = parser.parse_args(argv)

    if args.clean:
        return clean()

    opts = Options(force=args.force, only=set(args.names))
    results: list[Result] = []
    for lang in args.lang or list(BUILDERS):
        for res in BUILDERS[lang](opts):
            results.append(res)
            size = f" ({res.out.stat().st_size} bytes)" if res.status != "FAILED" else ""
            print(f"{res.status:<6} {_rel(res.out)}{size}", flush=True)
            if res.message:
                print(f"--- compiler output for {_rel(res.out)}:\n{res.message}", file=sys.stderr, flush=True)

    missing = opts.only - {r.out.stem for r in results}
    if missing:
        print(f"error: no source for: {', '.join(sorted(missing))}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status == "FAILED"]
    if failed:
        print(f"error: {len(failed)} artifact(s) failed to build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
