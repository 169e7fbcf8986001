"""guests/build.py plugin: the JavaScript examples -> ``guests/dist/js-<name>.wasm``.

Each ``guests/js/examples/<name>/index.{js,mjs,cjs,ts}`` exporting ``handler``
is built by ``guests/js/build.py`` (esbuild + componentize-js) into a
component for ``guests/wit`` world ``handler``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent
EXAMPLES = JS_DIR / "examples"
BUILD_PY = JS_DIR / "build.py"
INDEX_NAMES = ("index.js", "index.mjs", "index.cjs", "index.ts")


def _build_module() -> Any:
    spec = importlib.util.spec_from_file_location("wasmhost_guest_js_build", BUILD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = _build_module()


def toolchain_missing() -> str | None:
    """None when node and guests/js/node_modules (componentize-js, esbuild) are there."""
    reason: str | None = _build.toolchain_missing()
    return reason


def _sources(folder: Path) -> list[Path]:
    """The files a build of ``folder`` depends on (its own node_modules excluded)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and "node_modules" not in p.relative_to(folder).parts)


def artifacts() -> list[dict[str, Any]]:
    common = [
        BUILD_PY,
        _build.SDK,
        JS_DIR / "package-lock.json",
        *sorted(_build.WIT_DIR.glob("*.wit")),
    ]
    found = []
    for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        found_index = next((folder / n for n in INDEX_NAMES if (folder / n).is_file()), None)
        if found_index is None:
            continue
        index: Path = found_index

        def command(tmp: Path, index: Path = index) -> list[str]:
            return [sys.executable, str(BUILD_PY), str(index), "--export", "handler", "-o", str(tmp)]

        found.append(
            {
                "name": f"js-{folder.name}",
                "inputs": [*_sources(folder), *common],
                "command": command,
                "cwd": JS_DIR,
            }
        )
    return found
