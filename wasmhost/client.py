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
