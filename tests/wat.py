"""Small hand-written guests in WAT, for ABI edge cases the C examples don't reach."""

from __future__ import annotations


def _escape(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def responder(response: bytes, *, extra: str = "", alloc_result: str | None = None, out_len: int | None = None) -> str:
    """A guest that answers ``response`` (raw bytes) to any request."""
    alloc = alloc_result or "(global.get $bump) (global.set $bump (i32.add (global.get $bump) (local.get 0)))"
    length = len(response) if out_len is None else out_len
    return f"""
(module
  {extra}
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (data (i32.const 16) "{_escape(response)}")
  (func (export "wasmhost_alloc") (param i32) (result i32) {alloc})
  (func (export "wasmhost_handle") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {length})))
)
"""


OK_HI = b"\x81\xa2ok\xa2hi"  # {"ok": "hi"}
