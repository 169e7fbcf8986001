"""Zig and AssemblyScript functions, built with the toolchains of ``guests/<lang>/builder.py``.

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

FOLDERS = {"zig": "zig", "assemblyscript": "assemblyscript"}
SUFFIX = {"zig": ".zig", "assemblyscript": ".ts"}


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
    path = source / f"handler{SUFFIX[lang]}"
    if not path.exists():
        raise BuildError(f"{source}: no handler{SUFFIX[lang]}")
    return path


def sdk_file(lang: str) -> Path:
    module = plugin(lang)
    return Path(module.SDK)


def cache_key(source: Path, project: Project, lang: str) -> str:
    root = source if source.is_dir() else source.parent
    inputs = [*source_files(source), sdk_file(lang), guests_dir() / FOLDERS[lang] / "builder.py"]
    return digest_inputs([lang], inputs, root)


def build(source: Path, project: Project, out: Path, say: Progress, lang: str) -> None:
    module = plugin(lang)
    missing = module.toolchain_missing()
    if missing:
        raise BuildError(f"the {lang} toolchain is not available: {missing}")
    handler = entry(source, lang)
    if lang == "zig":
        command, cwd = module.command(handler, out), handler.parent
        _run(command, cwd, lang, say, handler)
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
        shutil.copyfile(sdk_file(lang), work_dir / "wasmhost.ts")
        node = module._node() or "node"
        command = [node, str(module.ASC), str(work_dir / handler.name), *module.ASC_FLAGS, "-o", str(out)]
        _run(command, Path(module.ROOT), lang, say, handler)


def _run(command: list[str], cwd: Path, lang: str, say: Progress, handler: Path) -> None:
    say(f"{lang}: compiling {handler.name}")
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise BuildError(f"{lang} build of {handler} failed:\n{(proc.stderr + proc.stdout).strip()[-4000:]}")
