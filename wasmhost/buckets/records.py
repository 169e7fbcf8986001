"""What the bucket store returns: buckets, objects and pages of a listing, with the
S3-style times and request ids they are reported with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson


def iso_time(epoch_s: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds), as S3 writes times."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": iso_time(self.created_at)}


@dataclass(frozen=True)
class ObjectInfo:
    """One object as indexed. ``etag`` is the MD5 of its bytes (hex, unquoted); times are epoch seconds."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)
    depth: int = 0

    def to_dict(self, with_metadata: bool = True) -> dict[str, Any]:
        value: dict[str, Any] = {
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "content_type": self.content_type,
            "last_modified": iso_time(self.last_modified),
        }
        if with_metadata:
            value["metadata"] = self.metadata
        return value


@dataclass(frozen=True)
class ObjectPage:
    """One page of a listing; ``next_start_after`` continues it when ``is_truncated``."""

    objects: list[ObjectInfo]
    is_truncated: bool
    next_start_after: str | None


def new_request_id() -> str:
    """An S3-like request id (16 upper-case hex digits), reported as ``x-amz-request-id``."""
    return secrets.token_hex(8).upper()


def _object(row: tuple[Any, ...]) -> ObjectInfo:
    bucket, key, size, etag, content_type, last_modified, metadata, depth = row
    return ObjectInfo(bucket, key, size, etag, content_type, last_modified, orjson.loads(metadata), depth)
