"""Content-addressed code blobs: ``<data_dir>/blobs/<sha256>.wasm``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    """Stores each distinct module once, named by the SHA-256 of its bytes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def path(self, digest: str) -> Path:
        return self.directory / f"{digest}.wasm"

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent, atomic) and return its digest."""
        digest = self.digest(data)
        path = self.path(digest)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of ``digest``. Raises ``FileNotFoundError`` if absent."""
        return self.path(digest).read_bytes()
