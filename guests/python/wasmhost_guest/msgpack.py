"""A small msgpack codec in pure Python (the guest cannot load C extensions).

Covers what the host sends and what handlers return: nil, bool, int (up to 64
bits), float, str, bytes, list/tuple, dict. Unknown types raise ``TypeError``.
"""

from __future__ import annotations

import struct
from typing import Any

_pack_d = struct.Struct(">Bd").pack


def packb(value: Any) -> bytes:
    out: list[bytes] = []
    _pack(value, out.append)
    return b"".join(out)


def _pack(value: Any, write: Any) -> None:  # noqa: C901 - one switch on type
    if value is None:
        write(b"\xc0")
    elif value is True:
        write(b"\xc3")
    elif value is False:
        write(b"\xc2")
    elif isinstance(value, int):
        if 0 <= value < 0x80:
            write(bytes((value,)))
        elif -32 <= value < 0:
            write(bytes((value & 0xFF,)))
        elif 0 <= value <= 0xFF:
            write(b"\xcc" + bytes((value,)))
        elif 0 <= value <= 0xFFFF:
            write(b"\xcd" + value.to_bytes(2, "big"))
        elif 0 <= value <= 0xFFFFFFFF:
            write(b"\xce" + value.to_bytes(4, "big"))
        elif 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            write(b"\xcf" + value.to_bytes(8, "big"))
        elif -0x80 <= value:
            write(b"\xd0" + value.to_bytes(1, "big", signed=True))
        elif -0x8000 <= value:
            write(b"\xd1" + value.to_bytes(2, "big", signed=True))
        elif -0x80000000 <= value:
            write(b"\xd2" + value.to_bytes(4, "big", signed=True))
        elif -0x8000000000000000 <= value:
            write(b"\xd3" + value.to_bytes(8, "big", signed=True))
        else:
            raise TypeError(f"integer {value} does not fit in 64 bits")
    elif isinstance(value, float):
        write(_pack_d(0xCB, value))
    elif isinstance(value, str):
        data = value.encode("utf-8")
        n = len(data)
        if n < 32:
            write(bytes((0xA0 | n,)))
        elif n <= 0xFF:
            write(b"\xd9" + bytes((n,)))
        elif n <= 0xFFFF:
            write(b"\xda" + n.to_bytes(2, "big"))
        else:
            write(b"\xdb" + n.to_bytes(4, "big"))
        write(data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        n = len(data)
        if n <= 0xFF:
            write(b"\xc4" + bytes((n,)))
        elif n <= 0xFFFF:
            write(b"\xc5" + n.to_bytes(2, "big"))
        else:
            write(b"\xc6" + n.to_bytes(4, "big"))
        write(data)
    elif isinstance(value, (list, tuple)):
        n = len(value)
        if n < 16:
            write(bytes((0x90 | n,)))
        elif n <= 0xFFFF:
            write(b"\xdc" + n.to_bytes(2, "big"))
        else:
            write(b"\xdd" + n.to_bytes(4, "big"))
        for item in value:
            _pack(item, write)
    elif isinstance(value, dict):
        n = len(value)
        if n < 16:
            write(bytes((0x80 | n,)))
        elif n <= 0xFFFF:
            write(b"\xde" + n.to_bytes(2, "big"))
        else:
            write(b"\xdf" + n.to_bytes(4, "big"))
        for key, item in value.items():
            _pack(key, write)
            _pack(item, write)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not msgpack serializable")


def unpackb(data: bytes) -> Any:
    value, end = _unpack(memoryview(data), 0)
    if end != len(data):
        raise ValueError("trailing bytes after the msgpack value")
    return value


def _unpack(buf: memoryview, i: int) -> tuple[Any, int]:  # noqa: C901 - one switch on the tag
    tag = buf[i]
    i += 1
    if tag < 0x80:
        return tag, i
    if tag >= 0xE0:
        return tag - 0x100, i
    if 0xA0 <= tag <= 0xBF:
        n = tag & 0x1F
        return str(buf[i : i + n], "utf-8"), i + n
    if 0x90 <= tag <= 0x9F:
        return _array(buf, i, tag & 0x0F)
    if 0x80 <= tag <= 0x8F:
        return _map(buf, i, tag & 0x0F)
    if tag == 0xC0:
        return None, i
    if tag == 0xC2:
        return False, i
    if tag == 0xC3:
        return True, i
    if tag in (0xC4, 0xC5, 0xC6):
        width = 1 << (tag - 0xC4)
        n = int.from_bytes(buf[i : i + width], "big")
        i += width
        return bytes(buf[i : i + n]), i + n
    if tag == 0xCA:
        return struct.unpack_from(">f", buf, i)[0], i + 4
    if tag == 0xCB:
        return struct.unpack_from(">d", buf, i)[0], i + 8
    if 0xCC <= tag <= 0xCF:
        width = 1 << (tag - 0xCC)
        return int.from_bytes(buf[i : i + width], "big"), i + width
    if 0xD0 <= tag <= 0xD3:
        width = 1 << (tag - 0xD0)
        return int.from_bytes(buf[i : i + width], "big", signed=True), i + width
    if tag in (0xD9, 0xDA, 0xDB):
        width = 1 << (tag - 0xD9)
        n = int.from_bytes(buf[i : i + width], "big")
        i += width
        return str(buf[i : i + n], "utf-8"), i + n
    if tag in (0xDC, 0xDD):
        width = 2 if tag == 0xDC else 4
        return _array(buf, i + width, int.from_bytes(buf[i : i + width], "big"))
    if tag in (0xDE, 0xDF):
        width = 2 if tag == 0xDE else 4
        return _map(buf, i + width, int.from_bytes(buf[i : i + width], "big"))
    raise ValueError(f"unsupported msgpack type byte 0x{tag:02x}")


def _array(buf: memoryview, i: int, n: int) -> tuple[list[Any], int]:
    items = []
    for _ in range(n):
        item, i = _unpack(buf, i)
        items.append(item)
    return items, i


def _map(buf: memoryview, i: int, n: int) -> tuple[dict[Any, Any], int]:
    result = {}
    for _ in range(n):
        key, i = _unpack(buf, i)
        value, i = _unpack(buf, i)
        result[key] = value
    return result, i
