"""The wasmhost error tree.

Every failure a caller can see is a :class:`WasmhostError` subclass with a
class-level ``type`` (the name users see in results and HTTP bodies) and
``status`` (the HTTP status the server answers with). Nothing here imports
HTTP code: the server maps ``status`` in one place.

Errors fall in two families:

* **request errors** (raised): the invocation never ran or the management call
  was refused — unknown function, bad name, bad module, throttled, payload too big;
* **invocation errors** (returned in ``InvocationResult.error``): the guest ran
  and failed — timeout, trap, fuel, memory, bad response, the guest's own error.
"""

from __future__ import annotations

from typing import Any


class WasmhostError(Exception):
    """Base of every wasmhost error. ``type`` and ``status`` are per class."""

    type: str = "InternalError"
    status: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as ``{"type", "message", **details}``, ready to encode."""
        return {"type": self.type, "message": self.message, **self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# --- request errors --------------------------------------------------------


class InvalidRequest(WasmhostError):
    """The request itself is malformed (body is not JSON/msgpack, bad option)."""

    type = "InvalidRequest"
    status = 400


class InvalidName(InvalidRequest):
    """A function name does not match ``[A-Za-z0-9_-]{1,64}``."""

    type = "InvalidName"


class InvalidConfig(InvalidRequest):
    """A function configuration value is out of range or of the wrong type."""

    type = "InvalidConfig"


class InvalidModule(InvalidRequest):
    """Deployed bytes are not an acceptable WebAssembly function."""

    type = "InvalidModule"


class Unauthorized(WasmhostError):
    """A management route was called without the admin token."""

    type = "Unauthorized"
    status = 401


class FunctionNotFound(WasmhostError):
    """No function is deployed under that name."""

    type = "FunctionNotFound"
    status = 404


class VersionNotFound(FunctionNotFound):
    """The function exists but has no such published version."""

    type = "VersionNotFound"


class AliasNotFound(FunctionNotFound):
    """The function exists but has no alias of that name."""

    type = "AliasNotFound"


class ResourceConflict(WasmhostError):
    """The change conflicts with the current state (a version an alias points at, say)."""

    type = "ResourceConflict"
    status = 409


class SecretsUnavailable(WasmhostError):
    """Stored secrets cannot be decrypted: the secret key is not the one they were stored with."""

    type = "SecretsUnavailable"
    status = 500


class PayloadTooLarge(WasmhostError):
    """The request body is over the invocation payload limit (6 MiB)."""

    type = "PayloadTooLarge"
    status = 413


class Throttled(WasmhostError):
    """The function or the host is at its concurrency limit."""

    type = "Throttled"
    status = 429


# --- invocation errors -----------------------------------------------------


class InvocationError(WasmhostError):
    """The guest ran and failed. Carried in ``InvocationResult.error``."""

    type = "InvocationError"
    status = 502


class Timeout(InvocationError):
    """The invocation ran past its ``timeout_ms`` (wall time) and was stopped."""

    type = "Timeout"
    status = 504


class FuelExhausted(InvocationError):
    """The invocation used up its ``fuel`` (CPU) budget and was stopped."""

    type = "FuelExhausted"


class OutOfMemory(InvocationError):
    """The guest needed more linear memory than ``memory_mb`` allows."""

    type = "OutOfMemory"


class Trap(InvocationError):
    """The guest trapped (unreachable, out-of-bounds access, stack overflow…)."""

    type = "Trap"


class InvalidResponse(InvocationError):
    """The guest's answer is not a msgpack ``{"ok"}`` / ``{"error"}`` map."""

    type = "InvalidResponse"


class FunctionError(InvocationError):
    """The guest answered ``{"error": {"type", "message"}}``.

    ``error_type`` is the guest's own type name; ``type`` stays
    ``FunctionError`` so callers can tell guest errors from host ones.
    """

    type = "FunctionError"

    def __init__(self, message: str, error_type: str = "Error", **details: Any) -> None:
        super().__init__(message, error_type=error_type, **details)
        self.error_type = error_type


class TriggerNotFound(WasmhostError):
    """No trigger with that id is attached to the function."""

    type = "TriggerNotFound"
    status = 404


# --- the bucket store ----------------------------------------------------


class InvalidBucketName(InvalidRequest):
    """A bucket name breaks S3's rules (3-63 characters: lower-case letters, digits, dots, hyphens)."""

    type = "InvalidBucketName"


class InvalidObjectKey(InvalidRequest):
    """An object key is empty, over 1024 bytes of UTF-8, not UTF-8, or holds a NUL character."""

    type = "InvalidObjectKey"


class NoSuchBucket(WasmhostError):
    """No bucket of that name exists in the bucket store."""

    type = "NoSuchBucket"
    status = 404


class NoSuchKey(WasmhostError):
    """The bucket has no object under that key."""

    type = "NoSuchKey"
    status = 404


class BucketAlreadyExists(ResourceConflict):
    """A bucket of that name exists already."""

    type = "BucketAlreadyExists"


class BucketNotEmpty(ResourceConflict):
    """A bucket that still holds objects cannot be deleted."""

    type = "BucketNotEmpty"


class EntityTooLarge(PayloadTooLarge):
    """An object is over the bucket store's size limit (``max_object_bytes``)."""

    type = "EntityTooLarge"


# --- the queue store -----------------------------------------------------


class QueueDoesNotExist(WasmhostError):
    """No embedded queue has that name."""

    type = "QueueDoesNotExist"
    status = 404


class QueueAlreadyExists(ResourceConflict):
    """A queue of that name exists with other attributes (creating it again with the same ones is fine)."""

    type = "QueueAlreadyExists"


class ReceiptHandleIsInvalid(InvalidRequest):
    """A receipt handle is malformed, or stale: its message was received again since, or is gone."""

    type = "ReceiptHandleIsInvalid"


class MessageTooLarge(PayloadTooLarge):
    """A message (body and attributes) is over its queue's ``max_message_bytes``."""

    type = "MessageTooLarge"


__all__ = [
    "BucketAlreadyExists",
    "BucketNotEmpty",
    "EntityTooLarge",
    "FuelExhausted",
    "FunctionError",
    "FunctionNotFound",
    "InvalidBucketName",
    "InvalidConfig",
    "InvalidModule",
    "InvalidName",
    "InvalidObjectKey",
    "InvalidRequest",
    "InvalidResponse",
    "InvocationError",
    "MessageTooLarge",
    "NoSuchBucket",
    "NoSuchKey",
    "OutOfMemory",
    "PayloadTooLarge",
    "QueueAlreadyExists",
    "QueueDoesNotExist",
    "ReceiptHandleIsInvalid",
    "Throttled",
    "Timeout",
    "Trap",
    "TriggerNotFound",
    "Unauthorized",
    "WasmhostError",
]
