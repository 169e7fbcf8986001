"""The HTTP edge: body codecs and the one place where errors become HTTP answers."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import msgpack
import orjson

from ..errors import InvalidRequest, WasmhostError

JSON = b"application/json"
MSGPACK = b"application/msgpack"
_MSGPACK_TYPES = (b"application/msgpack", b"application/x-msgpack", b"application/vnd.msgpack")


def wants_msgpack(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() in _MSGPACK_TYPES


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_body(value: Any, as_msgpack: bool) -> bytes:
    """``value`` as msgpack or JSON (binary as base64 in JSON, non-string keys as strings)."""
    if as_msgpack:
        return msgpack.packb(value, use_bin_type=True)
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def decode_body(body: bytes, as_msgpack: bool) -> Any:
    """The event in a request body; empty means ``None``. Raises ``InvalidRequest``."""
    if not body:
        return None
    if as_msgpack:
        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise InvalidRequest(f"body is not valid msgpack: {exc}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None


def error_body(error: WasmhostError, request_id: str | None = None) -> dict[str, Any]:
    """The one error shape: ``{"error": {"type", "message", "request_id", ...details}}``."""
    detail = error.to_dict()
    detail["request_id"] = request_id or str(uuid.uuid4())
    return {"error": detail}


def error_headers(error: WasmhostError) -> list[tuple[bytes, bytes]]:
    retry = error.details.get("retry_after_s")
    return [(b"retry-after", str(retry).encode())] if retry is not None else []
