"""Custom sections of WebAssembly binaries (modules and components).

A custom section (id 0) is ``0x00, LEB128(size), LEB128(len(name)), name, payload``;
engines ignore its content. wasmhost reads one at the top level of a component:
``wasmhost:abi`` with the payload ``json`` says the guest SDK also accepts a
JSON request and may answer in JSON (guests/ABI.md, "Components").
"""

from __future__ import annotations

import mmap
from pathlib import Path

CUSTOM_SECTION_ID = 0
#: The section a guest SDK appends to declare the request formats it reads.
ABI_SECTION = "wasmhost:abi"
JSON_FEATURE = b"json"
_HEADER = 8  # b"\0asm" + a 4-byte version/layer field


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


def _read_uleb128(data: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    """The value at ``pos`` and the position after it. Raises ``ValueError`` when truncated."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise ValueError("truncated or overlong LEB128")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def custom_section(name: str, payload: bytes) -> bytes:
    """The bytes of one custom section named ``name`` holding ``payload``."""
    encoded_name = name.encode()
    body = uleb128(len(encoded_name)) + encoded_name + payload
    return bytes([CUSTOM_SECTION_ID]) + uleb128(len(body)) + body


def with_custom_section(binary: bytes, name: str, payload: bytes) -> bytes:
    """``binary`` (a module or component) with a custom section appended (allowed after any section)."""
    if binary[:4] != b"\0asm":
        raise ValueError("not a WebAssembly binary")
    return binary + custom_section(name, payload)


def find_custom_section(data: bytes | mmap.mmap, name: str) -> bytes | None:
    """The payload of the first top-level custom section ``name``, or None.

    Walks section headers only (a component's core modules are skipped whole),
    so it costs microseconds even for a 20 MB component. A malformed binary
    gives None: validation is the engine's job.
    """
    if data[:4] != b"\0asm":
        return None
    wanted = name.encode()
    pos = _HEADER
    try:
        while pos < len(data):
            section_id = data[pos]
            size, body = _read_uleb128(data, pos + 1)
            end = body + size
            if section_id == CUSTOM_SECTION_ID:
                name_len, name_start = _read_uleb128(data, body)
                if data[name_start : name_start + name_len] == wanted:
                    return bytes(data[name_start + name_len : end])
            pos = end
    except ValueError:
        return None
    return None


def accepts_json(data: bytes | mmap.mmap) -> bool:
    """True when the binary declares (``wasmhost:abi`` section) that it reads JSON requests."""
    payload = find_custom_section(data, ABI_SECTION)
    return payload is not None and JSON_FEATURE in payload.split(b",")


def file_accepts_json(path: Path) -> bool:
    """``accepts_json`` for a file, mapped rather than read (components are megabytes)."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return accepts_json(data)
    except (OSError, ValueError):
        return False
