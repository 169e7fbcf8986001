"""wasmhost: a serverless function host whose functions are WebAssembly.

The public door: everything a user imports comes from here.
"""

from .config import FunctionConfig, HostConfig
from .errors import (
    AliasNotFound,
    FuelExhausted,
    FunctionError,
    FunctionNotFound,
    InvalidConfig,
    InvalidModule,
    InvalidName,
    InvalidRequest,
    InvalidResponse,
    InvocationError,
    OutOfMemory,
    PayloadTooLarge,
    ResourceConflict,
    SecretsUnavailable,
    Throttled,
    Timeout,
    Trap,
    Unauthorized,
    VersionNotFound,
    WasmhostError,
)
from .host import Host
from .registry import FunctionRecord
from .result import InvocationResult

__version__ = "0.1.0"

__all__ = [
    "AliasNotFound",
    "ResourceConflict",
    "SecretsUnavailable",
    "VersionNotFound",
    "FuelExhausted",
    "FunctionConfig",
    "FunctionError",
    "FunctionNotFound",
    "FunctionRecord",
    "Host",
    "HostConfig",
    "InvalidConfig",
    "InvalidModule",
    "InvalidName",
    "InvalidRequest",
    "InvalidResponse",
    "InvocationError",
    "InvocationResult",
    "OutOfMemory",
    "PayloadTooLarge",
    "Throttled",
    "Timeout",
    "Trap",
    "Unauthorized",
    "WasmhostError",
    "__version__",
]
