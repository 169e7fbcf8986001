"""Zig, AssemblyScript, Go and Rust functions, built with the toolchains of ``guests/<lang>/builder.py``.

Those plugins build the examples for ``make guests``; the same compiler
commands build a user's function here, so the two never drift apart.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

from .base import BuildError, Progress, digest_inputs, guests_dir, source_files
from .project import Project

FOLDERS = {"zig": "zig", "assemblyscript": "assemblyscript", "go": "go", "rust": "rust"}
SUFFIX = {"zig": ".zig", "assemblyscript": ".ts", "go": ".go", "rust": ".rs"}
HANDLER_FILE = {"zig": "handler.zig", "assemblyscript": "handler.ts", "go": "main.go", "rust": "handler.rs"}


@cache
def plugin(lang: str) -> ModuleType:
    path = guests_dir() / FOLDERS[lang] / "builder.py"
    spec = importlib.util.spec_from_file_location(f"wasmhost_build_plugin_{lang}", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"no {lang} toolchain plugin at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry(source: Path, lang: str) -> Path:
    """The handler file: ``source`` itself, or ``handler<suffix>`` in the folder."""
    if source.is_file():
        return source
    path = source / HANDLER_FILE[lang]
    if not path.exists():
        raise BuildError(f"{source}: no {HANDLER_FILE[lang]}")
    return path


def sdk_files(lang: str) -> list[Path]:
    module = plugin(lang)
    if lang == "go":
        return list(module.sdk_inputs())
    return [Path(module.SDK)]


def cache_key(source: Path, project: Project, lang: str) -> str:
    root = source if source.is_dir() else source.parent
    inputs = [*source_files(source), *sdk_files(lang), guests_dir() / FOLDERS[lang] / "builder.py"]
    return digest_inputs([lang], inputs, root)


def build(source: Path, project: Project, out: Path, say: Progress, lang: str) -> None:
    module = plugin(lang)
    missing = module.toolchain_missing()
    if missing:
        raise BuildError(f"the {lang} toolchain is not available: {missing}")
    handler = entry(source, lang)
    if lang in ("zig", "rust"):
        _run(module.command(handler, out), handler.parent, lang, say, handler)
        return
    if lang == "go":
        _build_go(module, source, handler, out, say)
        return
    # AssemblyScript resolves imports by path: build a copy of the sources with
    # the SDK beside them as ./wasmhost.ts.
    with tempfile.TemporaryDirectory(prefix="wasmhost-as-") as work:
        work_dir = Path(work)
        for path in source_files(handler.parent if source.is_file() else source):
            if path.suffix == ".ts":
                target = work_dir / path.relative_to(handler.parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        shutil.copyfile(sdk_files(lang)[0], work_dir / "wasmhost.ts")
        node = module._node() or "node"
        command = [node, str(module.ASC), str(work_dir / handler.name), *module.ASC_FLAGS, "-o", str(out)]
        _run(command, Path(module.ROOT), lang, say, handler)


def _build_go(module: ModuleType, source: Path, handler: Path, out: Path, say: Progress) -> None:
    """A temporary Go module holding the function's package, with the SDK module replaced locally."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-go-") as work:
        work_dir = Path(work)
        files = [handler] if source.is_file() else sorted(source.glob("*.go"))
        for path in files:
            shutil.copyfile(path, work_dir / path.name)
        sdk = Path(module.GO_DIR)
        (work_dir / "go.mod").write_text(
            "module wasmhost.local/function\n\ngo 1.24\n\n"
            "require wasmhost.local/wasmhost v0.0.0\n\n"
            f"replace wasmhost.local/wasmhost => {sdk}\n"
        )
        _run(module.command(work_dir, out), work_dir, "go", say, handler, env=module.env())


def _run(
    command: list[str], cwd: Path, lang: str, say: Progress, handler: Path, env: dict[str, str] | None = None
) -> None:
    import os

    say(f"{lang}: compiling {handler.name}")
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise BuildError(f"{lang} build of {handler} failed:\n{(proc.stderr + proc.stdout).strip()[-4000:]}")
