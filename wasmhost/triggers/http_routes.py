"""HTTP routes (``http`` triggers): functions mounted on paths of the host, like
API Gateway HTTP APIs and Lambda function URLs.

A trigger is a route set: ``route`` (``"GET /users/{id}"``, ``"ANY /api/{proxy+}"``,
``"$default"``) or ``routes`` (a list of those), with optional ``cors``.
``HttpRoutes`` is the ASGI side: the server hands it every request whose path
is not one of the host's own (``RESERVED_PREFIXES``); it picks the most
specific route, builds the payload format 2.0 event (``http_gateway``), invokes
the function and maps its answer back. Routes are public: no admin token.

Each process keeps its own route table and rebuilds it when the trigger
store's change counter moves, checked on every request (about 4 µs), so a
route added by any process is served by every process from the next request.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..errors import (
    FunctionNotFound,
    InvalidConfig,
    PayloadTooLarge,
    ResourceConflict,
    Throttled,
    Timeout,
    WasmhostError,
)
from ..host import request_id_factory
from .base import TriggerType
from .http_gateway import (
    METHODS,
    Answer,
    BadResponse,
    Cors,
    Headers,
    build_event,
    map_response,
    message,
    validate_cors,
    without_cors_headers,
)
from .store import Trigger, TriggerStore

log = logging.getLogger("wasmhost.triggers.http")

DEFAULT_ROUTE = "$default"

#: First path segments the host serves itself (``server/app.py`` and the Starlette
#: routes of ``server/*.py``); a route under one is refused, and requests to them
#: never reach routes. ``tests/test_trigger_http.py`` checks this against the app.
RESERVED_PREFIXES = frozenset(
    {"invoke", "functions", "triggers", "healthz", "metrics", "dead-letters", "buckets", "queues"}
)

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}")
#: A literal segment: RFC 3986 path characters, no percent-escapes, no braces.
_LITERAL = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]+")

LITERAL, PARAM, GREEDY = 0, 1, 2


# --- routes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A parsed route key: ``method`` (a method, ``ANY`` or ``$default``) and path segments."""

    key: str
    method: str
    #: (kind, text): LITERAL with the segment, PARAM/GREEDY with the parameter name.
    segments: tuple[tuple[int, str], ...] = ()

    @property
    def rank(self) -> tuple[int, ...]:
        """Sorts more specific first: literal < {param} < {greedy+}, segment by segment from the left."""
        return tuple(kind for kind, _ in self.segments)

    @property
    def shape(self) -> tuple[str, str]:
        """What two routes must not share: method and path with parameter names left out."""
        marks = {LITERAL: "", PARAM: "{}", GREEDY: "{+}"}
        return self.method, "/" + "/".join(marks[kind] or text for kind, text in self.segments)

    def match(self, path: list[str]) -> dict[str, str] | None:
        """Path parameters if the (decoded) ``path`` segments match, else None."""
        segments = self.segments
        if segments[-1][0] != GREEDY and len(path) != len(segments):
            return None
        params: dict[str, str] = {}
        for index, (kind, text) in enumerate(segments):
            if kind == GREEDY:
                rest = "/".join(path[index:])
                if not rest:
                    return None
                params[text] = rest
                return params
            if index >= len(path):
                return None
            segment = path[index]
            if kind == LITERAL:
                if segment != text:
                    return None
            elif not segment:
                return None
            else:
                params[text] = segment
        return params


def parse_route(text: Any) -> Route:
    """``"METHOD /path"`` or ``"$default"`` -> ``Route``; ``ValueError`` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('a route is a string like "GET /users/{id}", "ANY /api/{proxy+}" or "$default"')
    text = text.strip()
    if text == DEFAULT_ROUTE:
        return Route(DEFAULT_ROUTE, DEFAULT_ROUTE)
    method, _, path = text.partition(" ")
    method = method.upper()
    if method not in (*METHODS, "ANY"):
        raise ValueError(f"the method must be one of {', '.join(METHODS)}, ANY (or the route $default), got {method!r}")
    path = path.strip()
    if not path.startswith("/"):
        raise ValueError(f"the path must start with '/', got {path!r}")
    if "?" in path or "#" in path or " " in path:
        raise ValueError(f"the path must not hold a query, a fragment or spaces, got {path!r}")
    if path == "/":
        return Route(f"{method} /", method, ((LITERAL, ""),))
    parts = path[1:].split("/")
    segments = []
    names: set[str] = set()
    for index, part in enumerate(parts):
        if not part:
            raise ValueError(f"the path has an empty segment (a '//' or a trailing '/'): {path!r}")
        param = _PARAM.fullmatch(part)
        if param:
            name, greedy = param.group(1), bool(param.group(2))
            if name in names:
                raise ValueError(f"the path parameter {{{name}}} appears twice in {path!r}")
            if greedy and index != len(parts) - 1:
                raise ValueError(f"the greedy parameter {{{name}+}} must be the last segment of {path!r}")
            names.add(name)
            segments.append((GREEDY if greedy else PARAM, name))
        elif _LITERAL.fullmatch(part):
            segments.append((LITERAL, part))
        else:
            raise ValueError(
                f"segment {part!r} of {path!r} must be a whole {{name}} or {{name+}} parameter "
                "(name: letters, digits, _) or literal path characters (no %-escapes)"
            )
    if segments[0][0] == LITERAL and segments[0][1] in RESERVED_PREFIXES:
        reserved = ", ".join(f"/{p}" for p in sorted(RESERVED_PREFIXES))
        raise ValueError(f"/{segments[0][1]} is one of the host's own paths ({reserved})")
    return Route(f"{method} {path}", method, tuple(segments))


def route_keys(config: dict[str, Any]) -> list[str]:
    """The route keys of a validated config (``route`` or ``routes``)."""
    return [config["route"]] if "route" in config else list(config["routes"])


# --- the trigger type -------------------------------------------------------------


class HttpRouteType(TriggerType):
    name = "http"
    fields = ("route", "routes", "cors")

    def validate(self, fields: dict[str, Any]) -> dict[str, Any]:
        config = self.check_fields(fields)
        if ("route" in fields) == ("routes" in fields):
            raise InvalidConfig('http trigger: give route ("GET /users/{id}") or routes (a list of those), one of them')
        if "route" in fields:
            config["route"] = self._route("route", fields["route"]).key
        else:
            given = fields["routes"]
            if not isinstance(given, list) or not given:
                raise InvalidConfig(f"http trigger: routes must be a non-empty list of routes, got {given!r}")
            routes = [self._route(f"routes[{index}]", text) for index, text in enumerate(given)]
            seen: dict[tuple[str, str], str] = {}
            for route in routes:
                if route.shape in seen:
                    raise InvalidConfig(
                        f"http trigger: routes lists {seen[route.shape]!r} and {route.key!r}: the same route"
                    )
                seen[route.shape] = route.key
            config["routes"] = [route.key for route in routes]
        if fields.get("cors") is not None:
            config["cors"] = validate_cors(fields["cors"])
        return config

    def _route(self, key: str, text: Any) -> Route:
        try:
            return parse_route(text)
        except ValueError as error:
            raise InvalidConfig(f"http trigger: {key} {text!r}: {error}") from None

    def check_conflicts(self, config: dict[str, Any], existing: list[Trigger]) -> None:
        wanted = {parse_route(key).shape: key for key in route_keys(config)}
        for trigger in existing:
            for key in route_keys(trigger.config):
                taken = wanted.get(parse_route(key).shape)
                if taken is not None:
                    raise ResourceConflict(
                        f"http trigger: route {taken!r} is taken by {key!r} "
                        f"(trigger {trigger.id} of function {trigger.function!r})"
                    )

    def describe(self, config: dict[str, Any]) -> str:
        return ", ".join(route_keys(config)) + (" (cors)" if config.get("cors") else "")


TYPE = HttpRouteType()


# --- the route table ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a route leads to: the trigger (function, qualifier) and its route set's CORS."""

    route: Route
    trigger: Trigger
    cors: Cors | None


@dataclass
class RouteTable:
    """Every enabled ``http`` route of the host, ready to match (built per process)."""

    #: Routes without parameters: path segments -> method (or ANY) -> target.
    exact: dict[tuple[str, ...], dict[str, Target]] = field(default_factory=dict)
    #: Routes with parameters whose first segment is a literal: that literal -> routes, most specific first.
    by_first: dict[str, list[Target]] = field(default_factory=dict)
    #: Routes with parameters that start with one, most specific first. All of them rank below
    #: every route of ``by_first`` (a literal first segment is more specific), so trying a
    #: request's ``by_first`` list, then this one, keeps the order of specificity.
    wild_first: list[Target] = field(default_factory=list)
    default: Target | None = None

    @classmethod
    def build(cls, triggers: list[Trigger]) -> RouteTable:
        """From the triggers (oldest first): on a clash (two processes adding the same route at
        once) the oldest trigger keeps the route."""
        table = cls()
        for trigger in triggers:
            if not trigger.config.get("enabled", True):
                continue
            cors = Cors(trigger.config["cors"]) if trigger.config.get("cors") else None
            for key in route_keys(trigger.config):
                target = Target(parse_route(key), trigger, cors)
                route = target.route
                if route.method == DEFAULT_ROUTE:
                    table.default = table.default or target
                elif all(kind == LITERAL for kind, _ in route.segments):
                    table.exact.setdefault(tuple(text for _, text in route.segments), {}).setdefault(
                        route.method, target
                    )
                elif route.segments[0][0] == LITERAL:
                    table.by_first.setdefault(route.segments[0][1], []).append(target)
                else:
                    table.wild_first.append(target)
        for targets in (*table.by_first.values(), table.wild_first):
            targets.sort(key=lambda t: (t.route.rank, t.route.method == "ANY"))  # stable: oldest first on a tie
        return table

    def match(self, method: str, path: list[str]) -> tuple[Target, dict[str, str]] | None:
        """The most specific route for ``method`` and the decoded ``path`` segments, with its
        path parameters: a route without parameters, then with, left to right (literal over
        ``{param}`` over ``{greedy+}``), a method over ANY; then ``$default``."""
        methods = self.exact.get(tuple(path))
        if methods is not None:
            target = methods.get(method) or methods.get("ANY")
            if target is not None:
                return target, {}
        for targets in (self.by_first.get(path[0], ()), self.wild_first):
            for target in targets:
                if target.route.method != method and target.route.method != "ANY":
                    continue
                params = target.route.match(path)
                if params is not None:
                    return target, params
        if self.default is not None:
            return self.default, {}
        return None


def path_segments(scope: dict[str, Any]) -> list[str]:
    """The request path split on '/' (as sent, so an encoded %2F stays inside its segment), each decoded."""
    raw = scope.get("raw_path")
    text = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
    return [unquote(part) if "%" in part else part for part in text[1:].split("/")]


# --- the ASGI side ----------------------------------------------------------------------


class HttpRoutes:
    """ASGI app for the requests the server does not handle itself (see ``handles``)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.max_body = host.config.max_payload_bytes
        self._request_ids = request_id_factory()
        self._store: TriggerStore | None = None
        self._generation = -1
        self._table = RouteTable()

    def handles(self, path: str) -> bool:
        """True unless ``path`` is under one of the host's own prefixes (called for every request)."""
        end = path.find("/", 1)
        return (path[1:end] if end > 0 else path[1:]) not in RESERVED_PREFIXES

    def table(self) -> RouteTable:
        """The route table, rebuilt if any process changed the triggers since the last call."""
        if self._store is None:
            # A connection of our own: reads never wait on this process's trigger writes.
            self._store = TriggerStore(Path(self.host.config.data_dir) / "triggers.db")
        generation = self._store.generation()
        if generation != self._generation:
            self._table = RouteTable.build(self._store.list(type_="http"))
            self._generation = generation
        return self._table

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request_id = self._request_ids()
        ids: Headers = [(b"x-wasmhost-request-id", request_id.encode()), (b"apigw-requestid", request_id.encode())]
        origin = preflight_method = preflight_headers = b""
        declared = -1
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight_method = value
            elif name == b"access-control-request-headers":
                preflight_headers = value
            elif name == b"content-length":
                declared = int(value) if value.isdigit() else -1
        method: str = scope["method"]
        path = path_segments(scope)
        table = self.table()
        if method == "OPTIONS" and origin and preflight_method:
            found = table.match(preflight_method.decode("latin-1").upper(), path)
            if found is not None and found[0].cors is not None:
                headers = ids + found[0].cors.preflight(origin, preflight_method, preflight_headers)
                await _respond(send, Answer(204, headers, b""), method)
                return
        found = table.match(method, path)
        if found is None:
            await _respond(send, message(404, "Not Found", ids), method)
            return
        target, params = found
        answer = await self._invoke(scope, receive, target, params, request_id, ids, declared)
        if answer is None:
            return  # the client went away before sending its body
        if target.cors is not None:
            answer.headers = without_cors_headers(answer.headers)
            if origin:
                answer.headers += target.cors.actual(origin)
        await _respond(send, answer, method)

    async def _invoke(
        self,
        scope: dict[str, Any],
        receive: Any,
        target: Target,
        params: dict[str, str],
        request_id: str,
        ids: Headers,
        declared: int,
    ) -> Answer | None:
        trigger = target.trigger
        if declared > self.max_body:
            return message(413, "Request Entity Too Large", ids)
        try:
            body = await _read_body(receive, self.max_body)
        except PayloadTooLarge:
            return message(413, "Request Entity Too Large", ids)
        if body is None:
            return None
        event = build_event(
            scope,
            body,
            route_key=target.route.key,
            path_parameters=params,
            api_id=trigger.id,
            request_id=request_id,
            now=time.time(),
        )
        try:
            result = await self.host.ainvoke(
                trigger.function, event, qualifier=trigger.qualifier, request_id=request_id
            )
        except Throttled:
            return message(429, "Too Many Requests", ids)
        except FunctionNotFound as error:
            if self.table().match(scope["method"], path_segments(scope)) is None:
                return message(404, "Not Found", ids)  # the function and its routes were deleted meanwhile
            log.warning("http trigger %s, request %s: %s", trigger.id, request_id, error.message)
            return message(500, "Internal Server Error", ids)
        except WasmhostError as error:
            log.warning("http trigger %s, request %s: %s: %s", trigger.id, request_id, error.type, error.message)
            return message(500, "Internal Server Error", ids)
        if isinstance(result.error, Timeout):
            return message(504, "Endpoint request timed out", ids)
        if result.error is not None:
            return message(502, "Internal Server Error", ids)
        try:
            answer = map_response(result.payload)
        except BadResponse as error:
            log.warning(
                "http trigger %s (function %s), request %s: the function's response cannot be mapped to HTTP: %s",
                trigger.id,
                trigger.function,
                request_id,
                error,
            )
            return message(502, "Internal Server Error", ids)
        answer.headers = ids + answer.headers
        return answer


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body; None if the client disconnected. ``PayloadTooLarge`` over ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        received = await receive()
        if received["type"] == "http.disconnect":
            return None
        chunk = received.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not received.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Any, answer: Answer, method: str) -> None:
    headers = answer.headers
    body = answer.body
    if answer.status in (204, 304):
        body = b""
    else:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
