"""A small HTTP client for a running wasmhost server (used by ``wasmhost --url``)."""

from __future__ import annotations

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
        params: list[tuple[str, str | int | float | bool | None]] = [
            (key, str(value)) for key, value in config.to_dict().items() if key != "env" and value is not None
        ]
        params += [("env", f"{k}={v}") for k, v in config.env.items()]
        response = self.http.put(f"/functions/{name}", content=code, params=params)
        return self._check(response).json()  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/functions/{name}")).json()  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        return self._check(self.http.get("/functions")).json()["functions"]  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        self._check(self.http.delete(f"/functions/{name}"))

    def update_config(self, name: str, **changes: Any) -> dict[str, Any]:
        response = self.http.patch(f"/functions/{name}/config", content=orjson.dumps(changes))
        return self._check(response).json()  # type: ignore[no-any-return]

    def invoke(self, name: str, event: Any) -> httpx.Response:
        """The raw answer (status, headers, JSON body) of ``POST /invoke/{name}``."""
        return self.http.post(
            f"/invoke/{name}", content=orjson.dumps(event), headers={"content-type": "application/json"}
        )
