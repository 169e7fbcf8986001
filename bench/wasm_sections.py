"""Append a custom section to a WebAssembly module: same code, a different digest.

A custom section (id 0) is ``0x00, LEB128(size), LEB128(len(name)), name, payload``;
engines ignore its content, so ``echo.wasm`` plus a unique section is a new
module to the compile cache (its SHA-256 differs) that behaves like echo.
"""

from __future__ import annotations

CUSTOM_SECTION_ID = 0


def uleb128(value: int) -> bytes:
    """``value`` (≥ 0) as unsigned LEB128: 7 bits a byte, low bits first, high bit = more follows."""
    if value < 0:
        raise ValueError(f"uleb128 of a negative number: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def custom_section(name: str, payload: bytes) -> bytes:
    """The bytes of one custom section named ``name`` holding ``payload``."""
    encoded_name = name.encode()
    body = uleb128(len(encoded_name)) + encoded_name + payload
    return bytes([CUSTOM_SECTION_ID]) + uleb128(len(body)) + body


def with_custom_section(module: bytes, name: str, payload: bytes) -> bytes:
    """``module`` (a core wasm binary) with a custom section appended (allowed after any section)."""
    if module[:4] != b"\0asm":
        raise ValueError("not a WebAssembly binary")
    return module + custom_section(name, payload)
