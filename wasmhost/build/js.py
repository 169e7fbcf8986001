"""JavaScript functions: Lambda's ``export const handler = async (event, context) => …``.

The work is done by ``guests/js/build.py`` (esbuild bundles the handler and its
imports, componentize-js builds the component); this adapts it to
``wasmhost build``. The handler is named like Lambda's Node.js handlers,
``file.export``, default ``index.handler``.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

from .base import BuildError, Progress, digest_inputs, guests_dir, source_files
from .project import Project

DEFAULT_HANDLER = "index.handler"


@cache
def _toolchain() -> ModuleType:
    path = guests_dir() / "js" / "build.py"
    spec = importlib.util.spec_from_file_location("wasmhost_js_build", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"no JavaScript toolchain at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handler_spec(source: Path, project: Project) -> tuple[Path, str]:
    """(handler file, export name)."""
    root = source if source.is_dir() else source.parent
    spec = project.handler or (f"{source.stem}.handler" if source.is_file() else DEFAULT_HANDLER)
    module, _, export = spec.rpartition(".")
    if not module or not export:
        raise BuildError(f"handler {spec!r} must be written file.export, like index.handler")
    for suffix in (".js", ".mjs", ".ts"):
        path = root / f"{module}{suffix}"
        if path.exists():
            return path, export
    raise BuildError(f"handler file {root / module}.js not found (handler = {spec!r})")


def cache_key(source: Path, project: Project) -> str:
    root = source if source.is_dir() else source.parent
    path, export = handler_spec(source, project)
    js = guests_dir() / "js"
    inputs = [*source_files(root if source.is_dir() else path), *source_files(js / "sdk"), js / "build.py"]
    inputs.append(js / "package-lock.json")
    return digest_inputs(["js", export], inputs, root)


def build(source: Path, project: Project, out: Path, say: Progress) -> None:
    toolchain = _toolchain()
    path, export = handler_spec(source, project)
    say(f"js: componentize-js {path.name}:{export} (takes about 10 s)")
    try:
        toolchain.build_js(path, export, out)
    except toolchain.BuildError as exc:
        raise BuildError(str(exc)) from None
