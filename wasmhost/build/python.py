"""Python functions: Lambda's ``handler(event, context)`` built into a component.

The handler file is checked first (it parses; the function exists), pure-Python
dependencies from ``requirements.txt`` are installed beside it for the build,
and componentize-py compiles the interpreter, the guest SDK (guests/python),
the handler and its folder into one component. componentize-py imports the
handler at build time and snapshots the initialised interpreter, which is what
makes a fresh instance start in about 2 ms.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

from .base import BuildError, Progress, digest_inputs, guests_dir, source_files, tool
from .project import Project

DEFAULT_HANDLERS = ("handler.handler", "lambda_function.lambda_handler")
ENTRY = "wasmhost_entry"


def handler_spec(source: Path, project: Project) -> tuple[Path, str, str]:
    """(handler file, module name, function name) from ``handler = "file.function"``."""
    root = source if source.is_dir() else source.parent
    spec = project.handler
    if spec is None and source.is_file():
        spec = f"{source.stem}.handler"
        if not _defines(source, "handler") and _defines(source, "lambda_handler"):
            spec = f"{source.stem}.lambda_handler"
    if spec is None:
        for candidate in DEFAULT_HANDLERS:
            if (root / f"{candidate.split('.')[0]}.py").exists():
                spec = candidate
                break
        else:
            raise BuildError(f"{root}: no handler.py or lambda_function.py, and no handler in wasmhost.toml")
    module, _, function = spec.rpartition(".")
    if not module or not function:
        raise BuildError(f"handler {spec!r} must be written file.function, like handler.handler")
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        raise BuildError(f"handler file {path} not found (handler = {spec!r})")
    return path, module, function


def _defines(path: Path, name: str) -> bool:
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError:
        return False
    return name in _top_level_names(tree)


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def check_handler(path: Path, function: str) -> None:
    """Raise ``BuildError`` for a syntax error (file:line) or a missing handler function."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise BuildError(f"{path}:{exc.lineno}: syntax error: {exc.msg}", file=str(path), line=exc.lineno) from None
    names = _top_level_names(tree)
    if function not in names:
        defined = sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        raise BuildError(f"{path}: no function {function!r} (defined: {', '.join(defined) or 'none'})", file=str(path))


def cache_key(source: Path, project: Project) -> str:
    root = source if source.is_dir() else source.parent
    path, module, function = handler_spec(source, project)
    sdk = guests_dir()
    inputs = [
        *source_files(root if source.is_dir() else path),
        *source_files(sdk / "python"),
        sdk / "wit" / "world.wit",
    ]
    version = importlib.metadata.version("componentize-py")
    return digest_inputs(["python", module, function, version, sys.version], inputs, root)


def build(source: Path, project: Project, out: Path, say: Progress) -> None:
    path, module, function = handler_spec(source, project)
    check_handler(path, function)
    componentize = tool("componentize-py", "pip install componentize-py (make install does it)")
    sdk = guests_dir()
    root = path.parent if source.is_file() else source
    with tempfile.TemporaryDirectory(prefix="wasmhost-build-") as work:
        work_dir = Path(work)
        (work_dir / f"{ENTRY}.py").write_text(
            "from wasmhost_guest import make_world\n"
            f"from {module} import {function} as _handler\n"
            "WitWorld = make_world(_handler)\n"
        )
        paths = [work_dir, root, sdk / "python"]
        requirements = root / "requirements.txt"
        if requirements.exists():
            say(f"python: installing pure-Python dependencies from {requirements.name}")
            deps = work_dir / "deps"
            _pip_install(requirements, deps)
            paths.append(deps)
        say(f"python: componentize-py {path.name}:{function} (takes about 10 s)")
        command = [componentize, "-d", str(sdk / "wit"), "-w", "handler", "componentize", ENTRY]
        for p in paths:
            command += ["-p", str(p)]
        command += ["-o", str(out)]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=work_dir)
        if proc.returncode != 0:
            raise BuildError(f"componentize-py failed for {path}:\n{_last_lines(proc.stderr + proc.stdout)}")


def _pip_install(requirements: Path, target: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--only-binary=:all:", "--platform", "any", "--implementation", "py",
        "-r", str(requirements),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(
            f"{requirements}: could not install (only pure-Python wheels can run in the sandbox):\n"
            + _last_lines(proc.stderr)
        )


def _last_lines(text: str, count: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-count:])
