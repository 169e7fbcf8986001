"""The component export: decode the request, call the handler, encode the answer."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import msgpack

Handler = Callable[[Any, "Context"], Any]

_blocking_sleep = time.sleep


def _sleep(seconds: float) -> None:
    """``time.sleep`` in slices of at most 10 ms.

    A WASI sleep blocks inside the host, where the host's deadline cannot stop
    it; between slices the guest is back in WebAssembly, where it can. So a
    sleeping handler is stopped within about 10 ms of its timeout.
    """
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        _blocking_sleep(min(left, 0.01))


time.sleep = _sleep


class Context:
    """Lambda's Python ``context`` object, filled from the request's context."""

    def __init__(self, raw: dict[str, Any]) -> None:
        name = raw.get("function_name", "")
        version = raw.get("function_version", "$LATEST")
        self.function_name: str = name
        self.function_version: str = version
        self.memory_limit_in_mb: int = raw.get("memory_limit_mb", 0)
        self.aws_request_id: str = raw.get("request_id", "")
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self._deadline_ms: int = raw.get("deadline_ms", 0)

    @property
    def log_stream_name(self) -> str:
        """Lambda's ``YYYY/MM/DD/[version]id`` (built when read: formatting dates is slow here)."""
        return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{self.function_version}]{self.aws_request_id[:32]}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the host stops this invocation."""
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return f"<Context {self.function_name} {self.aws_request_id}>"


def error_map(exc: BaseException) -> dict[str, Any]:
    """Lambda's error shape, plus the ABI's ``type`` and ``message``."""
    name = type(exc).__name__
    message = str(exc)
    stack = [line.rstrip("\n") for line in traceback.format_tb(exc.__traceback__)]
    error = {"type": name, "message": message, "errorType": name, "errorMessage": message, "stackTrace": stack}
    if isinstance(exc, MemoryError):
        error["type"] = "OutOfMemory"
    return error


def handle_request(request: bytes, handler: Handler) -> bytes:
    try:
        decoded = msgpack.unpackb(request)
        event, context = decoded["event"], Context(decoded["context"])
    except Exception as exc:  # noqa: BLE001 - any bad request is answered, not raised
        return msgpack.packb({"error": {"type": "InvalidRequest", "message": f"bad request: {exc}"}})
    try:
        result = handler(event, context)
        response = msgpack.packb({"ok": result})
    except BaseException as exc:  # noqa: BLE001 - the handler's failure is the answer
        response = msgpack.packb({"error": error_map(exc)})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return response


def make_world(handler: Handler) -> type:
    """The ``WitWorld`` class componentize-py expects, calling ``handler``."""

    class WitWorld:
        def handle(self, request: bytes) -> bytes:
            return handle_request(request, handler)

    return WitWorld
