"""wasmhost's Python guest SDK: run a Lambda-style ``handler(event, context)``.

Built into a WebAssembly component by ``wasmhost build`` (componentize-py,
world ``handler`` in guests/wit). The generated entry module calls
:func:`make_world` with the user's handler; everything here runs inside the
sandbox.
"""

from .runtime import Context, make_world

__all__ = ["Context", "make_world"]
