"""What API Gateway does around an invocation, for ``http`` triggers: the request
becomes an HTTP API **payload format 2.0** event, the function's return value
becomes the HTTP answer, and CORS headers are added per route set (whose
``cors`` field is validated here too).

The shapes follow AWS's documentation of HTTP APIs and Lambda function URLs;
where it is silent (which request bodies are base64-encoded) they follow what
API Gateway was observed to do. No Starlette here: this works on ASGI scopes
and bytes, and the ASGI side is in ``http_routes``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..errors import InvalidConfig

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

#: What ``requestContext.accountId`` says (the account of every local ARN).
ACCOUNT_ID = "000000000000"

#: Request bodies of these media types reach the function as text; every other
#: type, and a body without a content type, is base64-encoded (``isBase64Encoded``),
#: as API Gateway HTTP APIs do — form posts (``application/x-www-form-urlencoded``)
#: included. A "text" body that is not UTF-8 is base64-encoded too.
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Headers the host writes itself; a function's values for them are dropped.
_HOST_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})

Headers = list[tuple[bytes, bytes]]


class BadResponse(ValueError):
    """The function's return value has ``statusCode`` but cannot be mapped to HTTP (the caller gets 502)."""


def is_text(content_type: str) -> bool:
    """True if a body of ``content_type`` goes to the function as text (not base64)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in TEXT_MEDIA_TYPES


def request_time(epoch_s: float) -> str:
    """``requestContext.time``: ``12/Mar/2020:19:03:58 +0000`` (English month, whatever the locale)."""
    t = time.gmtime(epoch_s)
    month = _MONTHS[t.tm_mon - 1]
    return f"{t.tm_mday:02d}/{month}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def query_parameters(raw_query: str) -> dict[str, str]:
    """``queryStringParameters``: decoded, repeated keys joined with commas, blank values kept."""
    parameters: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        previous = parameters.get(key)
        parameters[key] = value if previous is None else f"{previous},{value}"
    return parameters


def raw_path(scope: dict[str, Any]) -> str:
    """The path as the client sent it (percent-encoding kept), without the query string."""
    raw = scope.get("raw_path")
    if raw:
        return str(raw.decode("latin-1")).split("?", 1)[0]
    return str(scope["path"])


def _domain(host: str) -> str:
    """``host[:port]`` without the port (``[::1]:80`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1] or host
    return host.rsplit(":", 1)[0] if ":" in host else host


def build_event(
    scope: dict[str, Any],
    body: bytes,
    *,
    route_key: str,
    path_parameters: dict[str, str],
    api_id: str,
    request_id: str,
    now: float,
) -> dict[str, Any]:
    """The payload format 2.0 event of one request.

    Header names are lower-case and repeated headers are joined with commas;
    ``cookie`` headers become the ``cookies`` list (and are not in ``headers``).
    ``cookies``, ``queryStringParameters``, ``pathParameters`` and ``body`` are
    absent when empty, and ``stageVariables`` always is, as in API Gateway.
    """
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous},{value}"
    client = scope.get("client")
    source_ip = str(client[0]) if client else ""
    server = scope.get("server")
    # Like API Gateway, tell the function who called; a proxy in front of the host may have said it already.
    if source_ip:
        forwarded = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    headers.setdefault("x-forwarded-proto", str(scope.get("scheme", "http")))
    if server and server[1] is not None:
        headers.setdefault("x-forwarded-port", str(server[1]))
    path = raw_path(scope)
    raw_query = scope.get("query_string", b"").decode("latin-1")
    domain = _domain(headers.get("host") or (str(server[0]) if server else "localhost"))
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = query_parameters(raw_query) if raw_query else None
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": scope["method"],
            "path": path,
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": request_time(now),
        "timeEpoch": int(now * 1000),
    }
    encoded = False
    if body:
        text = None
        if is_text(headers.get("content-type", "")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text, encoded = base64.b64encode(body).decode("ascii"), True
        event["body"] = text
    if path_parameters:
        event["pathParameters"] = path_parameters
    event["isBase64Encoded"] = encoded
    return event


@dataclass
class Answer:
    """An HTTP answer: status, headers (lower-case names), body."""

    status: int
    headers: Headers
    body: bytes


def _bytes_as_base64(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def map_response(payload: Any) -> Answer:
    """The HTTP answer of a function's return value, as API Gateway 2.0 maps it.

    A dict with ``statusCode`` is a full response (``statusCode``, ``headers``,
    ``cookies``, ``body``, ``isBase64Encoded``; other keys are ignored). Anything
    else is answered 200 ``application/json`` with the value as JSON — a string
    too, quoted. Raises ``BadResponse`` naming what is wrong.
    """
    if isinstance(payload, dict) and "statusCode" in payload:
        return _full_response(payload)
    try:
        body = orjson.dumps(payload, default=_bytes_as_base64, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise BadResponse(f"the return value cannot be encoded as JSON: {exc}") from None
    return Answer(200, [(b"content-type", b"application/json")], body)


def _full_response(payload: dict[str, Any]) -> Answer:
    status = payload["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise BadResponse(f"statusCode must be an integer from 200 to 599, got {status!r}")
    headers: Headers = []
    given = payload.get("headers") or {}
    if not isinstance(given, dict):
        raise BadResponse(f"headers must be an object of header names to strings, got {type(given).__name__}")
    for name, value in given.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise BadResponse(f"header name {name!r} is not a valid HTTP header name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise BadResponse(f"header {name!r}: the value must be a string without control characters, got {value!r}")
        if name.lower() not in _HOST_HEADERS:
            headers.append((name.lower().encode(), _header_bytes(name, value)))
    cookies = payload.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadResponse(f"cookies must be a list of strings, got {type(cookies).__name__}")
    for cookie in cookies:
        if not isinstance(cookie, str) or _BAD_VALUE.search(cookie):
            raise BadResponse(f"cookies must be a list of strings without control characters, got {cookie!r}")
        headers.append((b"set-cookie", _header_bytes("set-cookie", cookie)))
    encoded = payload.get("isBase64Encoded", False)
    if encoded is not None and not isinstance(encoded, bool):
        raise BadResponse(f"isBase64Encoded must be true or false, got {encoded!r}")
    body = payload.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        if encoded:
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise BadResponse("isBase64Encoded is true but body is not valid base64") from None
        else:
            data = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)  # a guest may return raw bytes (msgpack bin): sent as they are
    else:
        raise BadResponse(f"body must be a string, got {type(body).__name__} (serialize it, e.g. json.dumps)")
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    return Answer(status, headers, data)


def _header_bytes(name: str, value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise BadResponse(f"header {name!r}: the value is not Latin-1 text: {value!r}") from None


def message(status: int, text: str, headers: Headers) -> Answer:
    """API Gateway's own answers: ``{"message": text}`` as JSON."""
    return Answer(status, [*headers, (b"content-type", b"application/json")], orjson.dumps({"message": text}))


# --- CORS --------------------------------------------------------------------

CORS_FIELDS = ("allow_origins", "allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credentials")
_ORIGIN = re.compile(r"[a-z][a-z0-9+.\-]*://[^/?#\s]+")


def validate_cors(cors: Any) -> dict[str, Any]:
    """The ``cors`` field of an ``http`` trigger, checked and completed; ``InvalidConfig`` naming the field."""
    if not isinstance(cors, dict):
        raise InvalidConfig(f"http trigger: cors must be an object with {', '.join(CORS_FIELDS)}, got {cors!r}")
    unknown = sorted(set(cors) - set(CORS_FIELDS))
    if unknown:
        raise InvalidConfig(
            f"http trigger: unknown cors field(s) {', '.join(unknown)} (allowed: {', '.join(CORS_FIELDS)})"
        )
    origins = _cors_list(cors, "allow_origins", _ORIGIN, "an origin like https://app.example.com")
    if not origins:
        raise InvalidConfig("http trigger: cors.allow_origins is required: the origins allowed, or ['*']")
    methods = [m.upper() for m in _cors_list(cors, "allow_methods", None, "a method")]
    bad = [m for m in methods if m not in (*METHODS, "*")]
    if bad:
        raise InvalidConfig(f"http trigger: cors.allow_methods: {bad[0]!r} is not one of {', '.join(METHODS)}, *")
    credentials = cors.get("allow_credentials", False)
    if not isinstance(credentials, bool):
        raise InvalidConfig(f"http trigger: cors.allow_credentials must be true or false, got {credentials!r}")
    if credentials and "*" in origins:
        raise InvalidConfig("http trigger: cors.allow_credentials cannot be true when allow_origins holds '*'")
    max_age = cors.get("max_age")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= 86400):
        raise InvalidConfig(f"http trigger: cors.max_age must be seconds from 0 to 86400, got {max_age!r}")
    return {
        "allow_origins": origins,
        "allow_methods": methods,
        "allow_headers": [h.lower() for h in _cors_list(cors, "allow_headers", _TOKEN, "a header name")],
        "expose_headers": [h.lower() for h in _cors_list(cors, "expose_headers", _TOKEN, "a header name")],
        "max_age": max_age,
        "allow_credentials": credentials,
    }


def _cors_list(cors: dict[str, Any], key: str, pattern: re.Pattern[str] | None, what: str) -> list[str]:
    value = cors.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidConfig(f"http trigger: cors.{key} must be a list of strings, got {value!r}")
    for item in value:
        if item != "*" and pattern is not None and not pattern.fullmatch(item):
            raise InvalidConfig(f"http trigger: cors.{key}: {item!r} is not {what} or '*'")
    return list(value)


class Cors:
    """The CORS settings of one route set (a validated ``cors`` field), as headers.

    As API Gateway: preflight requests are answered by the host; on actual
    responses the Access-Control-* headers are the host's, whatever the
    function set; a request whose ``Origin`` is not allowed gets none.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        origins = config.get("allow_origins") or []
        self.any_origin = "*" in origins
        self.origins = frozenset(o.lower() for o in origins if o != "*")
        self.methods = list(config.get("allow_methods") or [])
        self.headers = list(config.get("allow_headers") or [])
        self.expose = list(config.get("expose_headers") or [])
        self.max_age = config.get("max_age")
        self.credentials = bool(config.get("allow_credentials"))

    def allowed_origin(self, origin: bytes) -> bytes | None:
        """The ``access-control-allow-origin`` value for ``origin``, or None if it is not allowed."""
        if self.any_origin and not self.credentials:
            return b"*"
        if self.any_origin or origin.decode("latin-1").lower() in self.origins:
            return origin
        return None

    def preflight(self, origin: bytes, method: bytes, request_headers: bytes) -> Headers:
        """Headers of the answer to a preflight (``OPTIONS`` with ``Access-Control-Request-Method``)."""
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return []
        headers = self._common(allowed)
        methods = _listed(self.methods, method, self.credentials)
        if methods:
            headers.append((b"access-control-allow-methods", methods))
        allow_headers = _listed(self.headers, request_headers, self.credentials)
        if allow_headers:
            headers.append((b"access-control-allow-headers", allow_headers))
        if self.max_age is not None:
            headers.append((b"access-control-max-age", str(self.max_age).encode()))
        return headers

    def actual(self, origin: bytes) -> Headers:
        """Headers added to an actual response to a request from ``origin``."""
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return []
        headers = self._common(allowed)
        if self.expose:
            headers.append((b"access-control-expose-headers", ",".join(self.expose).encode()))
        return headers

    def _common(self, allowed: bytes) -> Headers:
        headers = [(b"access-control-allow-origin", allowed)]
        if allowed != b"*":
            headers.append((b"vary", b"origin"))
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


def _listed(values: Iterable[str], requested: bytes, credentials: bool) -> bytes:
    """A configured list as a header value; ``*`` is echoed as what was asked for when
    credentials are allowed (browsers read ``*`` literally then)."""
    values = list(values)
    if "*" in values:
        return requested if credentials and requested else b"*"
    return ",".join(values).encode()


def without_cors_headers(headers: Headers) -> Headers:
    """A function's headers without Access-Control-* ones (the route set's CORS settings win)."""
    return [(name, value) for name, value in headers if not name.startswith(b"access-control-")]
