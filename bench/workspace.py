"""The echo of every guest language, deployed once into a data directory kept between runs.

Deploying compiles (seconds for the 12–19 MB JavaScript and Python
components), so scenarios that only invoke share ``bench/.workspace``: a
function is deployed again only when its bytes changed or its compiled code is
missing. The deploy scenario measures compiling on fresh directories of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wasmhost import FunctionConfig, Host

from .context import DIST, ROOT

LANGUAGES = ("c", "zig", "assemblyscript", "rust", "go", "python", "javascript")
"""Guest languages, in the order tables list them."""
COMPONENT_LANGUAGES = ("python", "javascript")
_ECHO_FILES = {
    "c": "echo.wasm",
    "zig": "zig-echo.wasm",
    "assemblyscript": "as-echo.wasm",
    "rust": "rust-echo.wasm",
    "go": "go-echo.wasm",
    "javascript": "js-echo.wasm",
}
PYTHON_ECHO_SOURCE = ROOT / "guests" / "python" / "examples" / "kitchen"
ECHO_CONFIG = FunctionConfig(memory_mb=64, timeout_ms=5000)
IN_PROCESS_EVENT = {"action": "echo", "name": "world", "n": 42, "tags": ["a", "b"]}
"""The echo event in-process (the Python kitchen guest picks its behaviour by ``action``)."""


@dataclass
class Artifact:
    """One language's echo: its ``.wasm``, or why there is none."""

    language: str
    path: Path | None
    unavailable: str | None = None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path else 0


def function_name(language: str) -> str:
    """``echo`` for C (what the HTTP scenarios call), ``echo-<language>`` for the others."""
    return "echo" if language == "c" else f"echo-{language}"


def artifacts(languages: Sequence[str] = LANGUAGES, progress: Callable[[str], None] | None = None) -> list[Artifact]:
    """Each language's echo from guests/dist; Python's built from its source (cached by wasmhost.build)."""
    found = []
    for language in languages:
        if language == "python":
            found.append(_python_echo(progress))
            continue
        path = DIST / _ECHO_FILES[language]
        if path.exists():
            found.append(Artifact(language, path))
        else:
            found.append(Artifact(language, None, f"guests/dist/{path.name} is not built (make guests)"))
    return found


def _python_echo(progress: Callable[[str], None] | None) -> Artifact:
    from wasmhost.build import build

    try:
        built = build(PYTHON_ECHO_SOURCE, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a missing toolchain is reported, not fatal
        return Artifact("python", None, f"building {PYTHON_ECHO_SOURCE.relative_to(ROOT)} failed: {exc}")
    return Artifact("python", built.path)


def ensure_deployed(workspace: Path, found: Sequence[Artifact], progress: Callable[[str], None] | None = None) -> None:
    """Deploy every available artifact into ``workspace`` unless it is there, unchanged and compiled.

    A workspace an older wasmhost cannot open is wiped and filled again.
    """
    try:
        _deploy_missing(workspace, found, progress)
    except Exception:  # noqa: BLE001 - e.g. a registry schema from another wasmhost version
        shutil.rmtree(workspace, ignore_errors=True)
        _deploy_missing(workspace, found, progress)


def _deploy_missing(workspace: Path, found: Sequence[Artifact], progress: Callable[[str], None] | None) -> None:
    with Host(data_dir=workspace) as host:
        for artifact in found:
            if artifact.path is None:
                continue
            code = artifact.path.read_bytes()
            name = function_name(artifact.language)
            digest = host.blobs.digest(code)
            try:
                current = host.get(name)
            except Exception:  # noqa: BLE001 - FunctionNotFound: deploy it
                current = None
            if current is not None and current.digest == digest and host.engine.cache.path(digest).exists():
                continue
            if progress:
                progress(f"deploying the {artifact.language} echo into {workspace.name} (compiles once)")
            host.deploy(name, code, ECHO_CONFIG)
