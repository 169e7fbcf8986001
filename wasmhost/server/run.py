"""``wasmhost serve``: run the app under uvicorn, one or more worker processes.

Each worker builds its own Host (wasmtime engines and threads do not survive a
fork) from ``WASMHOST_*`` environment variables; all share one data directory.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from dataclasses import dataclass

import uvicorn
import uvicorn.config

from ..errors import WasmhostError


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    """Address to bind. Anything but loopback requires an admin token."""
    port: int = 8080
    workers: int = 1
    """Worker processes sharing the data directory."""
    data_dir: str = "./.wasmhost"
    admin_token: str | None = None
    """Bearer token for management routes; required to bind a non-loopback address."""
    log_level: str = "info"


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_bind(options: ServeOptions) -> None:
    """Refuse a non-loopback bind without an admin token (raises ``WasmhostError``)."""
    if not is_loopback(options.host) and not options.admin_token:
        error = WasmhostError(
            f"refusing to listen on {options.host} without an admin token: set --admin-token or "
            "WASMHOST_ADMIN_TOKEN (management routes are open otherwise)"
        )
        error.type = "InsecureBind"
        raise error


def log_config(level: str) -> dict:
    """uvicorn's logging config plus our invocation logger, printed like Lambda's logs."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["invocation"] = {"format": "%(message)s"}
    config["handlers"]["invocation"] = {
        "formatter": "invocation",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["wasmhost"] = {"handlers": ["invocation"], "level": level.upper(), "propagate": False}
    return config


def serve(options: ServeOptions) -> None:
    """Run the server until interrupted. Raises ``WasmhostError`` on an insecure bind."""
    check_bind(options)
    os.environ["WASMHOST_DATA_DIR"] = os.path.abspath(options.data_dir)
    if options.admin_token:
        os.environ["WASMHOST_ADMIN_TOKEN"] = options.admin_token
    else:
        os.environ.pop("WASMHOST_ADMIN_TOKEN", None)
    uvicorn.run(
        "wasmhost.server.app:app_from_env",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers if options.workers > 1 else None,
        log_config=log_config(options.log_level),
        log_level=options.log_level,
        access_log=False,
        server_header=False,
    )
