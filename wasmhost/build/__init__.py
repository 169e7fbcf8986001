"""``wasmhost build``: turn a function's source into a ``.wasm``, cached by its inputs.

One module per language (``python``, ``c``, …), registered in ``BUILDERS``.
A source is a folder (with an optional ``wasmhost.toml``) or a single file;
the language comes from ``wasmhost.toml``'s ``lang`` or the files present.
"""

from .base import BuildError, Built, build, detect_lang
from .project import Project

__all__ = ["BuildError", "Built", "Project", "build", "detect_lang"]
