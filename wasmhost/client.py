"""A small HTTP client for a running wasmhost server (used by ``wasmhost --url``)."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from .config import FunctionConfig
from .errors import WasmhostError


class RemoteError(WasmhostError):
    """An error answered by the server, with its type and status carried over."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        detail = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(detail.get("message", f"HTTP {status}"))
        self.type = detail.get("type", "HTTPError")
        self.status = status
        self.body = body


class Client:
    """The management and invoke API of a server at ``url``."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 960.0) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": {"type": "HTTPError", "message": response.text[:500]}}
            raise RemoteError(response.status_code, body)
        return response

    def deploy(self, name: str, code: bytes, config: FunctionConfig) -> dict[str, Any]:
        params: builtins.list[tuple[str, str | int | float | bool | None]] = [
            (key, str(value))
            for key, value in config.to_dict().items()
            if key not in ("env", "secrets") and value is not None
        ]
        params += [("env", f"{k}={v}") for k, v in config.env.items()]
        params += [("secret", f"{k}={v}") for k, v in config.secrets.items()]
        response = self.http.put(f"/functions/{name}", content=code, params=params)
        return self._check(response).json()  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/functions/{name}")).json()  # type: ignore[no-any-return]

    def list(self) -> builtins.list[dict[str, Any]]:
        return self._check(self.http.get("/functions")).json()["functions"]  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        self._check(self.http.delete(f"/functions/{name}"))

    def update_config(self, name: str, **changes: Any) -> dict[str, Any]:
        response = self.http.patch(f"/functions/{name}/config", content=orjson.dumps(changes))
        return self._check(response).json()  # type: ignore[no-any-return]

    def invoke(
        self,
        name: str,
        event: Any,
        *,
        qualifier: str | None = None,
        invocation_type: str | None = None,
        log_tail: bool = False,
    ) -> httpx.Response:
        """The raw answer (status, headers, JSON body) of ``POST /invoke/{name}``."""
        headers = {"content-type": "application/json"}
        if invocation_type:
            headers["x-wasmhost-invocation-type"] = invocation_type
        if log_tail:
            headers["x-wasmhost-log-type"] = "Tail"
        params = {"qualifier": qualifier} if qualifier else None
        return self.http.post(f"/invoke/{name}", content=orjson.dumps(event), headers=headers, params=params)

    # --- versions and aliases ---------------------------------------------------

    def publish(self, name: str, description: str = "") -> dict[str, Any]:
        body = orjson.dumps({"description": description})
        return self._check(self.http.post(f"/functions/{name}/versions", content=body)).json()  # type: ignore[no-any-return]

    def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._check(self.http.get(f"/functions/{name}/versions")).json()["versions"]  # type: ignore[no-any-return]

    def delete_version(self, name: str, version: str) -> None:
        self._check(self.http.delete(f"/functions/{name}/versions/{version}"))

    def put_alias(
        self, name: str, alias: str, version: str, routing: dict[str, float] | None = None, description: str = ""
    ) -> dict[str, Any]:
        body = orjson.dumps({"version": version, "routing": routing or {}, "description": description})
        return self._check(self.http.put(f"/functions/{name}/aliases/{alias}", content=body)).json()  # type: ignore[no-any-return]

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/functions/{name}/aliases/{alias}")).json()  # type: ignore[no-any-return]

    def aliases(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._check(self.http.get(f"/functions/{name}/aliases")).json()["aliases"]  # type: ignore[no-any-return]

    def delete_alias(self, name: str, alias: str) -> None:
        self._check(self.http.delete(f"/functions/{name}/aliases/{alias}"))

    # --- logs, usage, dead letters ------------------------------------------------

    def logs(self, name: str, **params: Any) -> builtins.list[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        return self._check(self.http.get(f"/functions/{name}/logs", params=query)).json()["logs"]  # type: ignore[no-any-return]

    def follow_logs(self, name: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Log lines as the server sends them (server-sent events), until the connection ends."""
        query = {k: v for k, v in params.items() if v is not None}
        query["follow"] = "1"
        with self.http.stream("GET", f"/functions/{name}/logs", params=query, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield orjson.loads(line[6:])

    def usage(self, name: str, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        query = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
        return self._check(self.http.get(f"/functions/{name}/usage", params=query)).json()  # type: ignore[no-any-return]

    def dead_letter_queues(self) -> dict[str, int]:
        return self._check(self.http.get("/dead-letters")).json()["queues"]  # type: ignore[no-any-return]

    def dead_letters(self, queue: str, limit: int = 100, after: int | None = None) -> builtins.list[dict[str, Any]]:
        query: dict[str, Any] = {"limit": limit}
        if after is not None:
            query["after"] = after
        return self._check(self.http.get(f"/dead-letters/{queue}", params=query)).json()["messages"]  # type: ignore[no-any-return]

    def redrive(self, queue: str, ids: builtins.list[int] | None = None) -> int:
        body = orjson.dumps({"ids": ids} if ids is not None else {})
        return self._check(self.http.post(f"/dead-letters/{queue}/redrive", content=body)).json()["redriven"]  # type: ignore[no-any-return]

    # --- triggers -------------------------------------------------------------

    def add_trigger(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self._check(self.http.post(f"/functions/{name}/triggers", json=spec)).json()  # type: ignore[no-any-return]

    def triggers(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        path = f"/functions/{name}/triggers" if name else "/triggers"
        return self._check(self.http.get(path)).json()["triggers"]  # type: ignore[no-any-return]

    def delete_trigger(self, name: str, trigger_id: str) -> None:
        self._check(self.http.delete(f"/functions/{name}/triggers/{trigger_id}"))

    def sync_triggers(self, name: str, specs: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        response = self.http.put(f"/functions/{name}/triggers", json={"triggers": specs})
        return self._check(response).json()["triggers"]  # type: ignore[no-any-return]

    # --- buckets ----------------------------------------------------------------

    def _object_path(self, bucket: str, key: str) -> str:
        from urllib.parse import quote

        return f"/buckets/{bucket}/{quote(key, safe='')}"  # '/' escaped too: no dot segment is ever resolved

    def create_bucket(self, bucket: str) -> dict[str, Any]:
        return self._check(self.http.put(f"/buckets/{bucket}")).json()  # type: ignore[no-any-return]

    def buckets(self) -> builtins.list[dict[str, Any]]:
        return self._check(self.http.get("/buckets")).json()["buckets"]  # type: ignore[no-any-return]

    def delete_bucket(self, bucket: str) -> None:
        self._check(self.http.delete(f"/buckets/{bucket}"))

    def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", max_keys: int | None = None
    ) -> dict[str, Any]:
        """One page: ``objects``, ``is_truncated``, ``next_start_after`` (pass it as ``start_after``)."""
        query: dict[str, Any] = {"prefix": prefix, "start_after": start_after}
        if max_keys is not None:
            query["max_keys"] = max_keys
        return self._check(self.http.get(f"/buckets/{bucket}", params=query)).json()  # type: ignore[no-any-return]

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes | Any,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Write an object; ``body`` is bytes or a binary file (streamed)."""
        headers = {f"x-amz-meta-{name}": value for name, value in (metadata or {}).items()}
        if content_type:
            headers["content-type"] = content_type
        if hasattr(body, "read") and not (hasattr(body, "seekable") and body.seekable()):
            source = body  # a pipe: its length is unknown, so it goes chunked

            def chunks() -> Iterator[bytes]:
                while chunk := source.read(1024 * 1024):
                    yield chunk

            body = chunks()
        response = self.http.put(self._object_path(bucket, key), content=body, headers=headers)
        return self._check(response).json()  # type: ignore[no-any-return]

    def head_object(self, bucket: str, key: str) -> dict[str, str]:
        """The object's headers (``content-type``, ``content-length``, ``etag``, ``last-modified``, ``x-amz-meta-*``)."""
        response = self.http.head(self._object_path(bucket, key))
        if response.status_code >= 400:
            kind = response.headers.get("x-wasmhost-error-type", "HTTPError")
            raise RemoteError(response.status_code, {"error": {"type": kind, "message": f"{kind}: {bucket}/{key}"}})
        return dict(response.headers)

    def get_object(self, bucket: str, key: str, out: Any = None) -> tuple[dict[str, str], bytes | None]:
        """(headers, bytes); with ``out`` (a binary file) the bytes are streamed into it and None is returned."""
        with self.http.stream("GET", self._object_path(bucket, key)) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            if out is None:
                return dict(response.headers), response.read()
            for chunk in response.iter_bytes():
                out.write(chunk)
            return dict(response.headers), None

    def delete_object(self, bucket: str, key: str) -> None:
        self._check(self.http.delete(self._object_path(bucket, key)))

    # --- queues -----------------------------------------------------------------

    def create_queue(self, name: str, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create queue ``name`` (the same attributes again answers the queue; others: 409)."""
        return self._check(self.http.post(f"/queues/{name}", json=attributes or {})).json()  # type: ignore[no-any-return]

    def queues(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        params = {"prefix": prefix} if prefix else None
        return self._check(self.http.get("/queues", params=params)).json()["queues"]  # type: ignore[no-any-return]

    def queue_attributes(self, name: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/queues/{name}")).json()  # type: ignore[no-any-return]

    def delete_queue(self, name: str) -> None:
        self._check(self.http.delete(f"/queues/{name}"))

    def send_message(
        self, name: str, body: str, message_attributes: dict[str, Any] | None = None, delay_s: float | None = None
    ) -> dict[str, Any]:
        """``{"message_id", "md5_of_body"}`` of the message sent."""
        message = {"body": body, "message_attributes": message_attributes, "delay_s": delay_s}
        return self._check(self.http.post(f"/queues/{name}/messages", json=message)).json()  # type: ignore[no-any-return]

    def send_messages(self, name: str, messages: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Send up to 10 ``{"body", "message_attributes", "delay_s"}`` in one batch."""
        response = self.http.post(f"/queues/{name}/messages", json={"messages": messages})
        return self._check(response).json()["messages"]  # type: ignore[no-any-return]

    def receive_messages(
        self, name: str, max_messages: int = 1, wait_time_s: float = 0, visibility_timeout_s: float | None = None
    ) -> builtins.list[dict[str, Any]]:
        options: dict[str, Any] = {"max_messages": max_messages, "wait_time_s": wait_time_s}
        if visibility_timeout_s is not None:
            options["visibility_timeout_s"] = visibility_timeout_s
        response = self.http.post(f"/queues/{name}/receive", json=options)
        return self._check(response).json()["messages"]  # type: ignore[no-any-return]

    def delete_message(self, name: str, receipt_handle: str) -> None:
        self._check(self.http.delete(f"/queues/{name}/messages/{receipt_handle}"))

    def change_visibility(self, name: str, receipt_handle: str, visibility_timeout_s: float) -> None:
        body = {"receipt_handle": receipt_handle, "visibility_timeout_s": visibility_timeout_s}
        self._check(self.http.post(f"/queues/{name}/visibility", json=body))

    def purge_queue(self, name: str) -> int:
        return self._check(self.http.post(f"/queues/{name}/purge")).json()["purged"]  # type: ignore[no-any-return]
