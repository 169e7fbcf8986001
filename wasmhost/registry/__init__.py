"""Where functions live: their records (name, code digest, config) and code blobs."""

from .blobs import BlobStore
from .sqlite import FunctionRecord, SqliteRegistry

__all__ = ["BlobStore", "FunctionRecord", "SqliteRegistry"]
