"""The HTTP server: invoke route, management API, and the uvicorn runner."""

from .app import WasmhostApp, app_from_env, create_app

__all__ = ["WasmhostApp", "app_from_env", "create_app"]
