"""Build the optional C fast path of the invoke loop (see wasmhost/_fastpath.c).

Everything else is in pyproject.toml. If no C compiler is available the
extension is skipped and wasmhost uses its ctypes path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wasmhost._fastpath",
            ["wasmhost/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
