"""Secret environment variables, encrypted at rest in the data directory.

Values a function marks secret (``FunctionConfig.secrets``) are stored as
Fernet tokens (AES-128-CBC with an HMAC-SHA256, from ``cryptography``). The key
comes from ``WASMHOST_SECRET_KEY`` when set (a Fernet key, or any passphrase,
which is stretched with SHA-256), else from ``<data_dir>/secret.key``, created
with mode 0600 on first use. Every process on a data directory reads the same
key, so ``--workers N`` agree.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import SecretsUnavailable

KEY_FILE = "secret.key"
KEY_ENV = "WASMHOST_SECRET_KEY"
#: Stored values carry this prefix, so plain values from an older data directory are told apart.
PREFIX = "enc:"


class SecretBox:
    """Encrypts and decrypts secret values with the data directory's key."""

    def __init__(self, data_dir: Path, key: str | None = None) -> None:
        self._fernet = Fernet(_fernet_key(key if key is not None else os.environ.get(KEY_ENV), data_dir))

    def encrypt(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, stored: str, what: str) -> str:
        """The plain value of ``stored``. Raises ``SecretsUnavailable`` naming ``what`` when the key differs."""
        if not stored.startswith(PREFIX):
            raise SecretsUnavailable(f"{what} is not an encrypted value")
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                f"cannot decrypt {what}: the secret key ({KEY_ENV} or {KEY_FILE} in the data directory) "
                "is not the one it was stored with"
            ) from None


def _fernet_key(configured: str | None, data_dir: Path) -> bytes:
    if configured:
        try:
            key = configured.encode()
            Fernet(key)
            return key
        except ValueError:  # not a Fernet key: a passphrase
            return base64.urlsafe_b64encode(hashlib.sha256(configured.encode()).digest())
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    # Written to a private temporary file, then linked into place: another process
    # either sees no key file or a complete one, and a race leaves one winner.
    tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_bytes().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return key
