"""Where functions live: their records (name, code digest, config) and code blobs."""

from .blobs import BlobStore
from .sqlite import LATEST, AliasRecord, FunctionRecord, SqliteRegistry

__all__ = ["LATEST", "AliasRecord", "BlobStore", "FunctionRecord", "SqliteRegistry"]
