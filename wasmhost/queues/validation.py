"""What the embedded queues accept: SQS's limits, queue names and attributes, messages
and their attributes. Every check raises an error naming the value and the rule
(``InvalidName``, ``InvalidConfig``, ``InvalidRequest``)."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from ..errors import InvalidConfig, InvalidName, InvalidRequest

#: SQS's limits.
MAX_RECEIVE = 10
MAX_BATCH = 10
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43200
MAX_DELAY_S = 900
MAX_MESSAGE_ATTRIBUTES = 10
#: The settings of a queue: name -> (default, low, high). Redrive: ``max_receive_count`` + ``dead_letter_queue``.
QUEUE_SETTINGS: dict[str, tuple[int, int, int]] = {
    "visibility_timeout_s": (30, 0, MAX_VISIBILITY_S),
    "message_retention_s": (4 * 86400, 60, 14 * 86400),
    "delay_s": (0, 0, MAX_DELAY_S),
    "max_message_bytes": (256 * 1024, 1024, 1024 * 1024),
}
MAX_RECEIVE_COUNT = 1000
SETTING_NAMES = (*QUEUE_SETTINGS, "max_receive_count", "dead_letter_queue")

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
ATTRIBUTE_NAME = re.compile(r"^(?!\.)(?!.*\.\.)[A-Za-z0-9_.-]{1,256}(?<!\.)$")
#: Characters SQS refuses in a message (outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
BAD_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_queue_name(name: Any) -> str:
    """``name`` if it is a valid queue name (1-80 letters, digits, ``-``, ``_``); else ``InvalidName``."""
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidName(f"queue name must be 1-80 characters: letters, digits, hyphens and underscores, got {name!r}")
    return name


def queue_settings(name: str, attributes: Any) -> dict[str, Any]:
    """Queue ``name``'s settings from the ``attributes`` given: checked, completed with the defaults."""
    if not isinstance(attributes, dict):
        raise InvalidConfig(f"queue {name}: attributes must be an object, got {attributes!r}")
    unknown = sorted(set(attributes) - set(SETTING_NAMES))
    if unknown:
        allowed = ", ".join(SETTING_NAMES)
        raise InvalidConfig(f"queue {name}: unknown attribute(s) {', '.join(unknown)} (allowed: {allowed})")
    settings: dict[str, Any] = {}
    for key, (default, low, high) in QUEUE_SETTINGS.items():
        value = attributes.get(key, default)
        if key == "max_message_bytes":
            check_int(f"queue {name}: {key}", value, low, high)
        else:
            check_number(f"queue {name}: {key}", value, low, high)
        settings[key] = value
    count, dead = attributes.get("max_receive_count"), attributes.get("dead_letter_queue")
    if (count is None) != (dead is None):
        raise InvalidConfig(f"queue {name}: a redrive policy needs both max_receive_count and dead_letter_queue")
    if count is not None:
        check_int(f"queue {name}: max_receive_count", count, 1, MAX_RECEIVE_COUNT)
        try:
            check_queue_name(dead)
        except InvalidName as error:
            raise InvalidConfig(f"queue {name}: dead_letter_queue: {error.message}") from None
        if dead == name:
            raise InvalidConfig(f"queue {name}: dead_letter_queue must be another queue")
        settings.update(max_receive_count=count, dead_letter_queue=dead)
    return settings


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} is {old.get(k)!r}, not {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidConfig(f"{name} must be a number of seconds, got {value!r}")
    if not low <= value <= high:
        raise InvalidConfig(f"{name} must be from {low} to {high}, got {value!r}")


def check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidConfig(f"{name} must be an integer from {low} to {high}, got {value!r}")


def check_receive(max_messages: Any, wait_time_s: Any, visibility_timeout_s: Any) -> None:
    check_int("max_messages", max_messages, 1, MAX_RECEIVE)
    check_number("wait_time_s", wait_time_s, 0, MAX_WAIT_S)
    if visibility_timeout_s is not None:
        check_number("visibility_timeout_s", visibility_timeout_s, 0, MAX_VISIBILITY_S)


def check_body(body: Any, where: str) -> str:
    if not isinstance(body, str) or not body:
        raise InvalidRequest(f"{where}: body must be a non-empty string, got {body!r:.80}")
    bad = BAD_CHARACTERS.search(body)
    if bad:
        raise InvalidRequest(
            f"{where}: body holds character {bad.group()!r} at {bad.start()}, which SQS does not allow "
            "(send binary data base64-encoded)"
        )
    return body


def message_attributes(values: Any, where: str) -> dict[str, dict[str, str]]:
    """Message attributes as Lambda's records carry them: ``{name: {"dataType", "stringValue"}}``
    (``binaryValue``, base64, for ``Binary``). Accepts a string (String), a number (Number),
    bytes (Binary), or SQS's ``{"DataType", "StringValue" | "BinaryValue"}`` in either case."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidRequest(f"{where}: message_attributes must be an object, got {values!r:.80}")
    if len(values) > MAX_MESSAGE_ATTRIBUTES:
        raise InvalidRequest(f"{where}: at most {MAX_MESSAGE_ATTRIBUTES} message attributes, got {len(values)}")
    result = {}
    for name, value in values.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name) or name.lower().startswith(("aws.", "amazon.")):
            raise InvalidRequest(
                f"{where}: message attribute name {name!r} is invalid (1-256 letters, digits, '-', '_', '.'; "
                "no leading, trailing or double '.'; not starting with 'AWS.' or 'Amazon.')"
            )
        result[name] = _attribute_value(name, value, where)
    return result


def _attribute_value(name: str, value: Any, where: str) -> dict[str, str]:
    if isinstance(value, str):
        return {"dataType": "String", "stringValue": value}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"dataType": "Number", "stringValue": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"dataType": "Binary", "binaryValue": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        lowered = {str(k)[:1].lower() + str(k)[1:]: v for k, v in value.items()}
        data_type = lowered.get("dataType")
        if not isinstance(data_type, str) or data_type.split(".", 1)[0] not in ("String", "Number", "Binary"):
            raise InvalidRequest(f"{where}: message attribute {name}: dataType must be String, Number or Binary")
        key = "binaryValue" if data_type.startswith("Binary") else "stringValue"
        raw = lowered.get(key)
        if not isinstance(raw, str) or not raw:
            raise InvalidRequest(f"{where}: message attribute {name} ({data_type}) needs a non-empty {key}")
        if data_type.startswith("Number"):
            try:
                float(raw)
            except ValueError:
                raise InvalidRequest(f"{where}: message attribute {name}: {raw!r} is not a number") from None
        if key == "binaryValue":
            try:
                base64.b64decode(raw, validate=True)
            except ValueError:
                raise InvalidRequest(f"{where}: message attribute {name}: binaryValue is not base64") from None
        return {"dataType": data_type, key: raw}
    raise InvalidRequest(
        f"{where}: message attribute {name} must be a string, a number or "
        f'{{"dataType": ..., "stringValue": ...}}, got {value!r:.80}'
    )


def attributes_size(attributes: dict[str, dict[str, str]]) -> int:
    return sum(len(name.encode()) + sum(len(v.encode()) for v in value.values()) for name, value in attributes.items())
