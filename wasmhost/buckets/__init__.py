"""The embedded bucket store: S3-like buckets of objects in the data directory.

Layout of ``<data_dir>/buckets``:

- ``index.db``: SQLite (WAL, ``synchronous=FULL``) with the buckets, one row per
  object (size, MD5 ETag, content type, last modified, user metadata, the file
  holding its bytes) and the notification **outbox**;
- ``objects/<ab>/<32 hex>``: the bytes of one write of one object (a "blob"),
  never modified once written;
- ``tmp/``: uploads being written.

A write streams the body into ``tmp/`` (the MD5 computed on the way), fsyncs it,
renames it under ``objects/`` and fsyncs the directory, then commits, in one
transaction, the object's row **and one outbox row per bucket trigger that
matches** (bucket, event, prefix, suffix). So a notification exists exactly when
the write does, whatever crashes when: the trigger's runner drains the outbox
(``wasmhost.triggers.bucket``) and deletes a row only once it is handled.

A blob is deleted when nothing refers to it any more: neither its object (it was
overwritten or deleted) nor an outbox row that will hand its bytes to a function
(``include_body``). Every process on the data directory shares the index; a
process wakes its own runners at once after a write (``subscribe``), other
processes' runners notice within their poll. Thread-safe; ``close`` is idempotent.
"""

from __future__ import annotations

# ``NAME as NAME``: public names kept importable from here though not in ``__all__`` (as before the split).
from .blobs import Upload
from .names import DEFAULT_CONTENT_TYPE as DEFAULT_CONTENT_TYPE
from .names import MAX_KEY_BYTES as MAX_KEY_BYTES
from .names import MAX_METADATA_BYTES as MAX_METADATA_BYTES
from .names import check_bucket_name, check_content_type, check_key, check_metadata
from .outbox import CREATED, DEFAULT_EVENTS, EVENT_TYPES, REMOVED, Notification, event_matches
from .records import BucketInfo, ObjectInfo, ObjectPage, iso_time, new_request_id
from .store import MAX_LIST_KEYS as MAX_LIST_KEYS
from .store import SCHEMA as SCHEMA
from .store import BucketStore

__all__ = [
    "check_content_type",
    "check_metadata",
    "CREATED",
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "REMOVED",
    "BucketInfo",
    "BucketStore",
    "Notification",
    "ObjectInfo",
    "ObjectPage",
    "Upload",
    "check_bucket_name",
    "check_key",
    "event_matches",
    "iso_time",
    "new_request_id",
]
