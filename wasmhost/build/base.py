"""The build driver: find the language, hash the inputs, reuse or run a build."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WasmhostError
from .project import SUFFIXES, Project

Progress = Callable[[str], None]
#: Files and folders never part of a function's inputs.
IGNORED = {".git", "__pycache__", "node_modules", ".wasmhost", "dist", "build", ".zig-cache", "target"}


class BuildError(WasmhostError):
    """A function's source could not be built; the message names file and line where known."""

    type = "BuildError"
    status = 400


@dataclass
class Built:
    path: Path
    """The built ``.wasm`` (in the build cache)."""
    lang: str
    cached: bool
    project: Project


def guests_dir() -> Path:
    """The guest SDKs and WIT world (``guests/`` of a wasmhost checkout, or ``WASMHOST_GUESTS_DIR``)."""
    configured = os.environ.get("WASMHOST_GUESTS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "guests"
    if not (path / "wit").is_dir():
        raise BuildError(f"guest SDKs not found at {path}: set WASMHOST_GUESTS_DIR to a wasmhost checkout's guests/")
    return path


def cache_dir() -> Path:
    base = os.environ.get("WASMHOST_BUILD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wasmhost", "builds"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_files(root: Path) -> list[Path]:
    """Every file under ``root`` that is an input (sorted, build outputs skipped)."""
    if root.is_file():
        return [root]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED and not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".wasm"))
    return files


def digest_inputs(parts: Iterable[str | bytes], files: Iterable[Path], root: Path | None = None) -> str:
    """SHA-256 over ``parts`` and each file's relative name and bytes."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    for path in files:
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def detect_lang(source: Path, project: Project) -> str:
    """The language of ``source``: ``wasmhost.toml``'s ``lang``, else what its files are."""
    if project.lang:
        return project.lang
    if source.is_file():
        lang = SUFFIXES.get(source.suffix)
        if lang:
            return lang
        raise BuildError(f"{source}: cannot tell the language from the suffix {source.suffix!r}")
    found = {SUFFIXES[p.suffix] for p in source.iterdir() if p.is_file() and p.suffix in SUFFIXES}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise BuildError(f"{source}: no source files found (and no lang in wasmhost.toml)")
    raise BuildError(f"{source}: several languages found ({', '.join(sorted(found))}); set lang in wasmhost.toml")


def build(source: str | Path, *, progress: Progress | None = None, force: bool = False) -> Built:
    """Build ``source`` (a folder or a file) and return the ``.wasm``. Raises ``BuildError``."""
    from . import c as c_builder
    from . import js as js_builder
    from . import plugins
    from . import python as python_builder

    builders: dict[str, Any] = {"python": python_builder, "c": c_builder, "js": js_builder}
    for plugin_lang in plugins.FOLDERS:
        builders[plugin_lang] = _PluginBuilder(plugin_lang)
    source = Path(source).resolve()
    if not source.exists():
        raise BuildError(f"{source} does not exist")
    project = Project.load(source if source.is_dir() else source.parent)
    lang = detect_lang(source, project)
    builder = builders.get(lang)
    if builder is None:
        raise BuildError(f"building {lang} from source is not supported yet: build the .wasm and deploy it")
    say = progress or (lambda message: None)
    key = builder.cache_key(source, project)
    out = cache_dir() / f"{lang}-{key[:32]}.wasm"
    if out.exists() and not force:
        say(f"{lang}: up to date ({out.stat().st_size} bytes, cached)")
        return Built(out, lang, True, project)
    started = time.monotonic()
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    try:
        builder.build(source, project, tmp, say)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    say(f"{lang}: built {out.stat().st_size} bytes in {time.monotonic() - started:.1f} s")
    return Built(out, lang, False, project)


class _PluginBuilder:
    """Adapts ``plugins`` (one module, several languages) to the builder interface."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def cache_key(self, source: Path, project: Project) -> str:
        from . import plugins

        return plugins.cache_key(source, project, self.lang)

    def build(self, source: Path, project: Project, out: Path, say: Progress) -> None:
        from . import plugins

        plugins.build(source, project, out, say, self.lang)


def tool(name: str, hint: str) -> str:
    """The path of an executable installed beside this Python, or on PATH. Raises ``BuildError``."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} is not installed: {hint}")
    return found
