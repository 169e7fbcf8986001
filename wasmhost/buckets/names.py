"""What the bucket store accepts: bucket names and object keys (S3's rules), user
metadata and content types. Each check returns the value or raises the error saying why."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..errors import InvalidBucketName, InvalidObjectKey, InvalidRequest

#: Largest object key, in bytes of UTF-8 (S3's).
MAX_KEY_BYTES = 1024
#: Largest user metadata of an object (names and values together), in bytes (S3's 2 KB).
MAX_METADATA_BYTES = 2048
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_METADATA_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_METADATA_VALUE = re.compile(r"[\x20-\x7e\t]*")


def check_bucket_name(name: Any) -> str:
    """``name`` if it follows S3's bucket naming rules, else ``InvalidBucketName`` saying which."""
    if not isinstance(name, str):
        raise InvalidBucketName(f"a bucket name is a string, got {name!r}")
    problem = None
    if not 3 <= len(name) <= 63:
        problem = f"is {len(name)} characters long; bucket names have 3 to 63"
    elif not _BUCKET_CHARS.fullmatch(name):
        problem = "may hold only lower-case letters, digits, dots and hyphens"
    elif not (name[0].isalnum() and name[-1].isalnum()):
        problem = "must begin and end with a letter or a digit"
    elif ".." in name:
        problem = "must not hold two dots in a row"
    elif _is_ip_address(name):
        problem = "must not look like an IP address"
    elif name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        problem = "must not begin with xn-- or sthree-, nor end with -s3alias or --ol-s3"
    if problem:
        raise InvalidBucketName(f"bucket name {name!r} {problem}")
    return name


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_key(key: Any) -> str:
    """``key`` if it is a valid object key (1 to 1024 bytes of UTF-8, no NUL), else ``InvalidObjectKey``."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey(f"an object key is a non-empty string, got {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidObjectKey(f"object key {key[:80]!r} is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"object key is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise InvalidObjectKey(f"object key {key[:80]!r} holds a NUL character")
    return key


def check_metadata(metadata: Any) -> dict[str, str]:
    """User metadata as stored: names lower-cased (HTTP header tokens), values printable US-ASCII."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"object metadata is an object of names to strings, got {metadata!r}")
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise InvalidRequest(f"metadata name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or not _METADATA_VALUE.fullmatch(value):
            raise InvalidRequest(f"metadata {name!r} must be a string of printable US-ASCII (as S3's), got {value!r}")
        checked[name.lower()] = value
    size = sum(len(k.encode()) + len(v.encode()) for k, v in checked.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(f"object metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}")
    return checked


def check_content_type(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_CONTENT_TYPE
    if not isinstance(value, str) or len(value) > 256 or not _METADATA_VALUE.fullmatch(value):
        raise InvalidRequest(f"content type must be printable US-ASCII, at most 256 characters, got {value!r}")
    return value
