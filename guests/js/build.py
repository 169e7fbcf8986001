#!/usr/bin/env python3
"""Build a JavaScript handler (Lambda's Node.js style) into a wasmhost component.

Usage::

    python guests/js/build.py HANDLER_FILE [--export NAME] -o OUT.wasm

or from Python: ``build_js(Path("index.js"), "handler", Path("out.wasm"))``.

Steps (node and ``npm ci --prefix guests/js`` are required):

1. esbuild bundles the handler file alone, to check that it exports NAME
   (ES modules; for CommonJS the check happens in step 3). A missing export
   raises :class:`BuildError` naming the file and the export.
2. A generated entry ``import * as user from HANDLER_FILE`` +
   ``export const handle = createHandle(user, NAME, ...)`` (``sdk/wasmhost.js``)
   is bundled by esbuild into one ES module, with the handler's relative
   imports and ``node_modules`` packages (ESM or CommonJS) inlined. A
   compact source map is appended so that runtime stack traces name the
   handler's own files and lines.
3. componentize-js (StarlingMonkey/SpiderMonkey, no ``--aot``) snapshots the
   bundle's top level with wizer and emits a component for world ``handler``
   of ``guests/wit``. The top level of the handler's modules therefore runs
   at BUILD time: a throw there fails the build, and values computed there
   (``Date.now()``...) are frozen into the snapshot.

Disabled StarlingMonkey features: ``http`` and ``fetch-event`` (no
``fetch()``, no wasi:http imports). Kept: ``stdio`` (console.*), ``clocks``
(Date.now, setTimeout: awaiting a timer traps without it) and ``random``
(without it Math.random and crypto.getRandomValues give the same numbers in
every instance).

Standard library only (Python 3.11+).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent
GUESTS = JS_DIR.parent
WIT_DIR = GUESTS / "wit"
WORLD = "handler"
SDK = JS_DIR / "sdk" / "wasmhost.js"
NODE_MODULES = JS_DIR / "node_modules"
COMPONENTIZE = NODE_MODULES / "@bytecodealliance" / "componentize-js" / "src" / "cli.js"
ESBUILD = NODE_MODULES / "esbuild" / "bin" / "esbuild"
DISABLED_FEATURES = ("http", "fetch-event")
INSTALL_HINT = "run `npm ci --prefix guests/js` (make install does it)"

# Appended to every component (a top-level custom section, which engines ignore):
# it tells the host that this SDK also reads JSON requests (guests/ABI.md,
# "Components"). Bytes: id 0, size 17, name length 12, "wasmhost:abi", "json".
ABI_SECTION = b"\x00\x11\x0cwasmhost:abijson"

# The world componentize-js builds: guests/wit's `handler` plus wasi:cli/environment,
# so that process.env holds the function's environment variables (StarlingMonkey
# itself imports no environment interface). Its version is semver-compatible with
# what StarlingMonkey imports (the component ends up importing the newest 0.2.x).
ENV_INTERFACE = "wasi:cli/environment@0.2.3"
ENV_WIT = """package wasi:cli@0.2.3;

interface environment {
  get-environment: func() -> list<tuple<string, string>>;
  get-arguments: func() -> list<string>;
  initial-cwd: func() -> option<string>;
}
"""

ENTRY_NAME = "__wasmhost_entry.js"
BUNDLE_NAME = "bundle.js"
INTERNAL_SOURCE = "<wasmhost>"  # source-map name of the SDK and the generated entry

ESBUILD_FLAGS = [
    "--bundle",
    "--format=esm",
    "--platform=neutral",  # no Node built-ins: StarlingMonkey is not Node
    "--main-fields=module,main",
    "--target=esnext",
    "--charset=utf8",
    "--legal-comments=none",
    "--log-level=error",
    # Common in npm packages; StarlingMonkey has no `process`.
    '--define:process.env.NODE_ENV="production"',
]


class BuildError(Exception):
    """The handler could not be built; the message says why."""


def toolchain_missing() -> str | None:
    """Why the JS toolchain cannot run (or None if it can)."""
    if shutil.which("node") is None:
        return "node is not installed (Node.js 18+ is needed)"
    if not COMPONENTIZE.is_file() or not ESBUILD.is_file():
        return f"guests/js/node_modules is not installed: {INSTALL_HINT}"
    return None


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _esbuild(entry: Path, outfile: Path, cwd: Path, *extra: str) -> dict[str, Any]:
    meta = outfile.with_suffix(".meta.json")
    proc = _run([str(ESBUILD), str(entry), *ESBUILD_FLAGS, f"--outfile={outfile}", f"--metafile={meta}", *extra], cwd)
    if proc.returncode != 0:
        msg = (proc.stderr + proc.stdout).strip()
        if "built into node" in msg:
            msg += "\n\nNode.js built-in modules do not exist in wasmhost's JavaScript runtime (StarlingMonkey)."
        raise BuildError(f"esbuild could not bundle {entry}:\n{msg}")
    result: dict[str, Any] = json.loads(meta.read_text())
    return result


def _check_export(handler_file: Path, export_name: str, tmp: Path) -> None:
    """Raise BuildError if the ES module ``handler_file`` has no export ``export_name``."""
    meta = _esbuild(handler_file, tmp / "check.js", tmp)
    inputs = meta["inputs"]
    # Metafile paths are relative to the working directory (tmp).
    key = next((k for k in inputs if (tmp / k).resolve() == handler_file), None)
    if key is not None and inputs[key].get("format") == "cjs":
        return  # CommonJS: exports are only known by running it (createHandle checks at build time)
    output = meta["outputs"][next(k for k in meta["outputs"] if k.endswith("check.js"))]
    exports = output.get("exports", [])
    if export_name not in exports:
        listed = ", ".join(exports) if exports else "none"
        raise BuildError(f"{handler_file} has no export named {export_name!r} (its exports: {listed})")


def _write_wit(tmp: Path) -> Path:
    """A WIT dir whose world ``handler`` is guests/wit's ``handler`` + wasi:cli/environment."""
    sources = sorted(WIT_DIR.glob("*.wit"))
    package = None
    for source in sources:
        m = re.search(r"^\s*package\s+([^;\s]+)\s*;", source.read_text(), re.M)
        if m:
            package = m.group(1)
    if not sources or package is None:
        raise BuildError(f"no WIT package found in {WIT_DIR}")
    name, _, version = package.partition("@")
    wit = tmp / "wit"
    (wit / "deps" / "function").mkdir(parents=True)
    (wit / "deps" / "cli").mkdir(parents=True)
    for source in sources:
        shutil.copy(source, wit / "deps" / "function" / source.name)
    (wit / "deps" / "cli" / "environment.wit").write_text(ENV_WIT)
    include = f"{name}/{WORLD}" + (f"@{version}" if version else "")
    (wit / "world.wit").write_text(
        f"package wasmhost:js-guest;\n\nworld {WORLD} {{\n  include {include};\n  import {ENV_INTERFACE};\n}}\n"
    )
    return wit


# --- source maps -----------------------------------------------------------------

_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64 = {c: i for i, c in enumerate(_B64_CHARS)}


def _decode_mappings(mappings: str) -> list[list[tuple[int, int, int, int]]]:
    """Source map v3 ``mappings`` -> per generated line, [(gen_col, src, line, col)] (0-based)."""
    lines: list[list[tuple[int, int, int, int]]] = []
    src = line = col = 0
    for text in mappings.split(";"):
        segs: list[tuple[int, int, int, int]] = []
        gen_col = 0
        for seg in text.split(","):
            if not seg:
                continue
            values, value, shift = [], 0, 0
            for ch in seg:
                digit = _B64[ch]
                value += (digit & 31) << shift
                if digit & 32:
                    shift += 5
                else:
                    values.append(-(value >> 1) if value & 1 else value >> 1)
                    value, shift = 0, 0
            gen_col += values[0]
            if len(values) >= 4:
                src, line, col = src + values[1], line + values[2], col + values[3]
                segs.append((gen_col, src, line, col))
        lines.append(segs)
    return lines


def _source_names(sources: list[str], map_dir: Path, base: Path) -> list[str]:
    names = []
    for s in sources:
        path = (map_dir / s).resolve()
        if path == SDK or path.name == ENTRY_NAME:
            names.append(INTERNAL_SOURCE)
        else:
            names.append(os.path.relpath(path, base))
    return names


class _SourceMap:
    def __init__(self, map_file: Path, base: Path):
        data = json.loads(map_file.read_text())
        self.sources = _source_names(data["sources"], map_file.parent, base)
        self.mappings = data["mappings"]
        self._lines: list[list[tuple[int, int, int, int]]] | None = None

    def lookup(self, line: int, col: int) -> tuple[str, int, int] | None:
        """1-based bundle position -> (source, line, column), 1-based."""
        if self._lines is None:
            self._lines = _decode_mappings(self.mappings)
        if not 1 <= line <= len(self._lines):
            return None
        best = None
        for seg in self._lines[line - 1]:
            if seg[0] <= col - 1:
                best = seg
            else:
                break
        if best is None:
            return None
        return self.sources[best[1]], best[2] + 1, best[3] + 1 + (col - 1 - best[0])

    def rewrite(self, text: str) -> str:
        """Replace ``bundle.js:L:C`` positions in ``text`` by the original ones."""

        def sub(m: re.Match[str]) -> str:
            found = self.lookup(int(m.group(1)), int(m.group(2)))
            return f"{found[0]}:{found[1]}:{found[2]}" if found else m.group(0)

        return re.sub(r"(?<![\w.])" + re.escape(BUNDLE_NAME) + r":(\d+):(\d+)", sub, text)

    def js(self) -> str:
        """A statement that hands the map to the SDK.

        The mappings are re-encoded so that each generated line stands alone
        (its first segment's source, line and column absolute instead of
        relative to the previous line), so the SDK decodes only the lines of
        the frames it formats: decoding a whole map in StarlingMonkey's
        interpreter costs ~1 ms per KiB.
        """
        if self._lines is None:
            self._lines = _decode_mappings(self.mappings)
        out = []
        for segs in self._lines:
            prev = (0, 0, 0, 0)
            parts = []
            for seg in segs:
                parts.append("".join(_vlq(a - b) for a, b in zip(seg, prev, strict=True)))
                prev = seg
            out.append(",".join(parts))
        payload = json.dumps({"file": BUNDLE_NAME, "sources": self.sources, "lines": ";".join(out)})
        return f"globalThis.__wasmhostSourceMap = {payload};\n"


def _vlq(value: int) -> str:
    v = (-value << 1) | 1 if value < 0 else value << 1
    chars = []
    while True:
        digit = v & 31
        v >>= 5
        chars.append(_B64_CHARS[digit | (32 if v else 0)])
        if not v:
            return "".join(chars)


# --- componentize ----------------------------------------------------------------


def _componentize_error(output: str, smap: _SourceMap | None) -> str:
    """The useful part of componentize-js's failure output (wizer's message, JS stack)."""
    text = output
    m = re.search(r"Failed to initialize component[^\n]*\n(.*?)(\n\s+at componentize|\Z)", output, re.S)
    if m:
        text = m.group(1)
    text = re.sub(r"\nAdditionally, some promises were rejected.*?(?=\nStack:|\Z)", "", text, flags=re.S)
    text = text.replace("Exception while evaluating top-level script\n", "")
    if smap is not None:
        text = smap.rewrite(text)
    found = re.search(r"HandlerNotFound: (.*)", text)
    if found:  # createHandle's own check (sdk/wasmhost.js): the message says it all
        return found.group(1).strip()
    lines = [ln for ln in text.splitlines() if INTERNAL_SOURCE not in ln]
    return "\n".join(lines).strip()


def build_js(handler_file: Path, export_name: str, out: Path) -> None:
    """Build ``handler_file``'s export ``export_name`` into the component ``out``.

    Raises :class:`BuildError` with a readable message on any failure
    (toolchain missing, bundling error, missing export, a throw in the
    handler's top-level code, componentize-js failure). ``out`` is written
    atomically (a temporary file renamed into place).
    """
    reason = toolchain_missing()
    if reason:
        raise BuildError(reason)
    handler_file = Path(handler_file).resolve()
    out = Path(out).resolve()
    if not handler_file.is_file():
        raise BuildError(f"handler file not found: {handler_file}")
    if not export_name:
        raise BuildError("the export name is empty")
    label = handler_file.name

    with tempfile.TemporaryDirectory(prefix="wasmhost-js-") as tmp_name:
        tmp = Path(tmp_name)
        _check_export(handler_file, export_name, tmp)

        entry = tmp / ENTRY_NAME
        entry.write_text(
            # The SDK first: it wraps the timers before the handler's modules run.
            f"import {{ createHandle }} from {json.dumps(str(SDK))};\n"
            f"import * as user from {json.dumps(str(handler_file))};\n"
            f'import {{ getEnvironment }} from "{ENV_INTERFACE}";\n'
            f"export const handle = createHandle(user, {json.dumps(export_name)}, {json.dumps(label)}, getEnvironment);\n"
        )
        bundle = tmp / BUNDLE_NAME
        _esbuild(entry, bundle, tmp, "--sourcemap=external", "--sources-content=false", "--external:wasi:*")
        smap = _SourceMap(bundle.with_name(BUNDLE_NAME + ".map"), handler_file.parent)
        with bundle.open("a") as f:
            f.write(smap.js())

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        cmd = [
            "node",
            str(COMPONENTIZE),
            BUNDLE_NAME,
            "--wit",
            str(_write_wit(tmp)),
            "--world-name",
            WORLD,
            "--disable",
            *DISABLED_FEATURES,
            "--out",
            str(tmp_out),
        ]
        try:
            proc = _run(cmd, tmp)  # cwd=tmp: the bundle is found (and named in stacks) as bundle.js
            if proc.returncode != 0 or not tmp_out.is_file():
                output = proc.stderr + proc.stdout
                detail = _componentize_error(output, smap)
                if "HandlerNotFound" in output:
                    raise BuildError(str(handler_file) + detail.removeprefix(label))
                if "Exception while evaluating top-level script" in output:
                    raise BuildError(
                        f"the top-level code of {handler_file} (or of a module it imports) threw; it runs at "
                        f"build time, when the component's snapshot is taken:\n{detail}"
                    )
                raise BuildError(f"componentize-js failed for {handler_file} (export {export_name!r}):\n{detail}")
            with tmp_out.open("ab") as f:
                f.write(ABI_SECTION)
            os.replace(tmp_out, out)
            for line in proc.stdout.splitlines():
                if line.startswith("WASMHOST_BUILD_WARNING "):
                    print(
                        f"warning: {handler_file}: {line.split(' ', 1)[1]}; top-level code runs at build time, "
                        "when the function's environment is unknown: read process.env inside the handler",
                        file=sys.stderr,
                    )
        finally:
            tmp_out.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a Lambda-style JavaScript handler into a wasmhost component.")
    parser.add_argument("handler_file", type=Path, help="the handler's module (.js/.mjs/.cjs/.ts)")
    parser.add_argument("--export", default="handler", help="the handler's export name (default: handler)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the component to write (.wasm)")
    args = parser.parse_args(argv)
    try:
        build_js(args.handler_file, args.export, args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
