"""Build plugin for Rust guests (loaded by ``guests/build.py``).

``guests/rust/examples/<name>.rs`` -> ``guests/dist/rust-<name>.wasm``. Two
rustc steps, no cargo and no crates from the network:

1. the SDK ``guests/rust/wasmhost.rs`` becomes ``libwasmhost.rlib`` (cached in
   ``guests/rust/.cache``, git-ignored, keyed by the SDK's content, the
   compiler and the flags);
2. the handler file becomes a cdylib with ``--extern wasmhost=<rlib>``, so it
   just writes ``wasmhost::handler!(f)``.

The compiler must have the wasm32 WASI standard library. On Debian that is
``apt-get install rustc libstd-rust-dev-wasm32 lld-14`` (rustc 1.63, target
``wasm32-wasi``, found as ``/usr/bin/rustc`` even when a rustup ``rustc``
without the target comes first on PATH); a rustup toolchain with
``rustup target add wasm32-wasip1`` works too. ``WASMHOST_RUSTC`` picks one.

Because the artifact needs two compiler runs, the command build.py runs is
this file: ``python guests/rust/builder.py SRC.rs OUT.wasm`` builds one
function. Standard library only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RUST_DIR = Path(__file__).resolve().parent
SDK = RUST_DIR / "wasmhost.rs"
EXAMPLES = RUST_DIR / "examples"
CACHE = RUST_DIR / ".cache"
TARGETS = ("wasm32-wasip1", "wasm32-wasi")  # new name first; Debian's rustc 1.63 has wasm32-wasi

# rustc flags for both steps.
#  -C opt-level=3 -C codegen-units=1   fast code (a fresh instance per call: code
#                                      quality, not size, is what costs time).
#  -C panic=abort                      wasm has no unwinding; a panic prints its
#                                      message to stderr (the logs) and traps.
COMMON_FLAGS = ["--edition", "2021", "-C", "opt-level=3", "-C", "codegen-units=1", "-C", "panic=abort"]
# Extra flags for the function (cdylib).
#  -C lto                              inline the SDK and std into the handler.
#  -C strip=symbols                    no DWARF / names: ~5.8 MiB -> ~50 KiB.
#  -C link-arg=-zstack-size=65536      a 64 KiB shadow stack instead of Rust's
#                                      1 MiB: 3 pages of initial memory instead
#                                      of 18, which makes a fresh instance
#                                      ~25% cheaper (see ABI.md §9). Raise it
#                                      for deep recursion or big local arrays
#                                      (an overflow traps: the stack is first).
CDYLIB_FLAGS = ["-C", "lto", "-C", "strip=symbols", "-C", "link-arg=-zstack-size=65536"]


def _candidates() -> list[str]:
    names = [os.environ.get("WASMHOST_RUSTC", ""), shutil.which("rustc") or "", "/usr/bin/rustc"]
    seen: list[str] = []
    for name in names:
        if name and name not in seen:
            seen.append(name)
    return seen


def _sysroot(rustc: str) -> Path | None:
    try:
        proc = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


@functools.cache
def toolchain() -> tuple[str, str, str] | None:
    """(rustc, target, version line) of the first rustc with a wasm32 WASI std."""
    for rustc in _candidates():
        sysroot = _sysroot(rustc)
        if sysroot is None:
            continue
        for target in TARGETS:
            if any((sysroot / "lib" / "rustlib" / target / "lib").glob("libstd-*.rlib")):
                version = subprocess.run([rustc, "--version"], capture_output=True, text=True).stdout.strip()
                return rustc, target, version
    return None


INSTALL_HINT = "apt-get install rustc libstd-rust-dev-wasm32 lld-14"


@functools.cache
def toolchain_missing() -> str | None:
    """None if a rustc with the wasm32 WASI std links a module, else why not."""
    found = toolchain()
    if found is None:
        tried = ", ".join(_candidates()) or "none on PATH"
        return f"rustc with the wasm32 WASI std is not installed: {INSTALL_HINT} (tried: {tried})"
    rustc, target, _ = found
    # Link a tiny module: catches a missing linker (rust-lld is lld-14 on Debian).
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.rs"
        src.write_text('#[no_mangle]\npub extern "C" fn probe() {}\n')
        cmd = [rustc, "--target", target, "--crate-type", "cdylib", "-o", str(Path(tmp) / "probe.wasm"), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{rustc} does not run ({exc})"
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            return f"{rustc} cannot build a {target} module ({INSTALL_HINT}?): {' '.join(lines[:3])}"
    return None


def _rlib() -> Path:
    """Where the SDK rlib for the current SDK source, compiler and flags goes."""
    found = toolchain()
    assert found is not None
    rustc, target, version = found
    key = hashlib.sha256("\0".join([SDK.read_text(), rustc, target, version, *COMMON_FLAGS]).encode()).hexdigest()[:16]
    return CACHE / f"{target}-{key}" / "libwasmhost.rlib"


def _run(cmd: list[str]) -> int:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr + proc.stdout)
    return proc.returncode


def build(src: Path, out: Path) -> int:
    """Compile the handler file ``src`` into ``out`` (0 on success; errors go to stderr)."""
    found = toolchain()
    if found is None:
        print(toolchain_missing(), file=sys.stderr)
        return 1
    rustc, target, _ = found
    rlib = _rlib()
    if not rlib.exists():
        rlib.parent.mkdir(parents=True, exist_ok=True)
        tmp = rlib.with_name(f".libwasmhost.{os.getpid()}.rlib")
        cmd = [rustc, *COMMON_FLAGS, "--target", target, "--crate-type", "rlib", "--crate-name", "wasmhost"]
        rc = _run([*cmd, "-o", str(tmp), str(SDK)])
        if rc != 0:
            tmp.unlink(missing_ok=True)
            return rc
        os.replace(tmp, rlib)
        for old in CACHE.glob(f"{target}-*"):  # rlibs of earlier SDK versions
            if old != rlib.parent:
                shutil.rmtree(old, ignore_errors=True)
    crate = src.stem.replace("-", "_")
    cmd = [rustc, *COMMON_FLAGS, *CDYLIB_FLAGS, "--target", target, "--crate-type", "cdylib"]
    cmd += ["--crate-name", crate, "--extern", f"wasmhost={rlib}", "-o", str(out), str(src)]
    return _run(cmd)


def command(src: Path, out: Path) -> list[str]:
    """The command building the handler file ``src`` into ``out`` (runs this file)."""
    return [sys.executable, str(Path(__file__).resolve()), str(src.resolve()), str(out)]


def artifacts() -> list[dict]:
    result = []
    for src in sorted(EXAMPLES.glob("*.rs")):

        def cmd(tmp: Path, src: Path = src) -> list[str]:
            return command(src, tmp)

        result.append({"name": f"rust-{src.stem}", "inputs": [src, SDK], "command": cmd, "cwd": RUST_DIR})
    return result


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python guests/rust/builder.py SRC.rs OUT.wasm", file=sys.stderr)
        sys.exit(2)
    sys.exit(build(Path(sys.argv[1]), Path(sys.argv[2]).resolve()))
