"""API-key encryption at rest: AES-GCM with a 256-bit data key (DESIGN §3).

The data key comes from the OS keyring (``keyring``) when a real backend exists, else
from a 0600 key file ``bridge.key`` in the data directory. Each ciphertext is
``key_id (8 bytes) || nonce (12 bytes) || AES-GCM(ciphertext + tag)`` with the config id
as associated data, so a ciphertext copied to another row fails to decrypt.

If the data key for existing ciphertexts cannot be obtained, :func:`load_data_key`
raises :class:`~bridge.errors.StartupError` naming the cause; it never writes a new key
in that case.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import secrets as _random
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.datadir import read_small_file
from bridge.errors import StartupError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_ID_BYTES: Final = 8
KEY_FILE_NAME: Final = "bridge.key"
KEYRING_SERVICE: Final = "bridge"
KEYRING_TIMEOUT_S: Final = 5.0


class SecretBackend(StrEnum):
    """Where the data key lives: ``auto`` prefers the keyring, else the file."""

    AUTO = "auto"
    KEYRING = "keyring"
    FILE = "file"


class DecryptionError(Exception):
    """A ciphertext failed authentication (wrong key, wrong row, or tampered bytes)."""


@dataclass(frozen=True)
class DataKey:
    """A 256-bit AES-GCM data key and where it came from.

    Attributes:
        secret: the 32 key bytes (never logged: excluded from ``repr``).
        backend: ``"keyring"`` or ``"file"``, reported as ``secretBackend``.
    """

    secret: bytes = field(repr=False)
    backend: str

    @property
    def key_id(self) -> bytes:
        """First 8 bytes of SHA-256 of the key: names the key without revealing it."""
        return hashlib.sha256(self.secret).digest()[:KEY_ID_BYTES]


class KeyCipher:
    """Encrypts and decrypts API keys with one data key, bound to the config id."""

    def __init__(self, key: DataKey) -> None:
        """Build a cipher for ``key``."""
        self._aead = AESGCM(key.secret)
        self._key_id = key.key_id
        self.backend = key.backend

    def encrypt(self, plaintext: str, config_id: str) -> bytes:
        """Return ``key_id || nonce || ciphertext`` for ``plaintext``; a fresh nonce each call."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), config_id.encode())
        return self._key_id + nonce + sealed

    def decrypt(self, blob: bytes, config_id: str) -> str:
        """Return the plaintext of ``blob`` sealed for ``config_id``.

        Raises:
            DecryptionError: the blob was sealed with another key or for another id, or
                its bytes changed.
        """
        key_id, nonce = blob[:KEY_ID_BYTES], blob[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
        if key_id != self._key_id:
            raise DecryptionError("ciphertext was sealed with another data key")
        try:
            plain = self._aead.decrypt(nonce, blob[KEY_ID_BYTES + NONCE_BYTES :], config_id.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None
        return plain.decode()


def _encode(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode()


def _decode(text: str, source: str) -> bytes:
    try:
        secret = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError:
        raise StartupError(f"The data key in {source} is corrupt (not base64)") from None
    if len(secret) != KEY_BYTES:
        raise StartupError(f"The data key in {source} is corrupt (not {KEY_BYTES} bytes)")
    return secret


def _load_file_key(path: Path, *, must_exist: bool) -> DataKey:
    if path.exists():
        # Never blocks: a FIFO or device planted here is refused unread (DESIGN §6).
        text = read_small_file(path, None).decode("ascii", errors="replace")
        return DataKey(_decode(text, str(path)), "file")
    if must_exist:
        raise StartupError(
            f"The data key file {path} is missing but the store holds encrypted API keys; "
            "restore the file (nothing was changed)"
        )
    secret = _random.token_bytes(KEY_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A temporary file of our own (mkstemp: unique name, mode 0600), then link(): the key
    # file appears complete or not at all, and never replaces a key another process
    # starting on the same data directory has just written.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(_encode(secret) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load_file_key(path, must_exist=True)
    finally:
        tmp.unlink()
    return DataKey(secret, "file")


def _keyring_usable() -> bool:
    import keyring  # noqa: PLC0415 - imported lazily: importing it probes D-Bus backends
    from keyring.backends import fail, null  # noqa: PLC0415

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    return float(getattr(backend, "priority", 0)) > 0


def _keyring_key(account: str, *, must_exist: bool, timeout_s: float) -> DataKey | None:
    """Return the keyring's key, create it, or None when no usable keyring answers in time."""
    import keyring  # noqa: PLC0415

    def work() -> DataKey | None:
        if not _keyring_usable():
            return None
        stored = keyring.get_password(KEYRING_SERVICE, account)
        if stored is not None:
            return DataKey(_decode(stored, "the OS keyring"), "keyring")
        if must_exist:
            raise StartupError(
                "The OS keyring holds no data key for this data directory but the store "
                "holds encrypted API keys (nothing was changed)"
            )
        secret = _random.token_bytes(KEY_BYTES)
        keyring.set_password(KEYRING_SERVICE, account, _encode(secret))
        return DataKey(secret, "keyring")

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyring")
    try:
        return pool.submit(work).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def load_data_key(
    data_dir: Path,
    backend: SecretBackend = SecretBackend.AUTO,
    *,
    must_exist: bool,
    keyring_timeout_s: float = KEYRING_TIMEOUT_S,
) -> DataKey:
    """Return the data key for ``data_dir``, creating one only when nothing needs the old one.

    Args:
        data_dir: the data directory (holds ``bridge.key`` for the file backend).
        backend: ``keyring``, ``file``, or ``auto`` (keyring when a real backend answers
            within ``keyring_timeout_s`` seconds, else file).
        must_exist: True when the store holds ciphertexts: a missing key is then an error,
            never replaced.
        keyring_timeout_s: bound on keyring calls, in seconds.

    Returns:
        The :class:`DataKey`; its ``backend`` says which source was used.

    Raises:
        StartupError: the key is missing or corrupt while ciphertexts exist, or the
            keyring was demanded and is unavailable.
    """
    key_file = data_dir / KEY_FILE_NAME
    if backend is SecretBackend.FILE:
        return _load_file_key(key_file, must_exist=must_exist)
    account = "data-key:" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if backend is SecretBackend.AUTO and key_file.exists():
        # A key file from an earlier launch keeps working even if a keyring appeared since.
        return _load_file_key(key_file, must_exist=True)
    try:
        key = _keyring_key(account, must_exist=must_exist, timeout_s=keyring_timeout_s)
    except StartupError:
        raise
    except Exception as exc:
        if backend is SecretBackend.KEYRING:
            raise StartupError(f"The OS keyring failed: {type(exc).__name__}") from None
        key = None
    if key is not None:
        return key
    if backend is SecretBackend.KEYRING:
        raise StartupError("No usable OS keyring answered (--secret-backend keyring)")
    if must_exist and not key_file.exists():
        raise StartupError(
            f"No usable OS keyring answered within {keyring_timeout_s:g} s and the data key file "
            f"{key_file} is missing, but the store holds encrypted API keys; unlock the keyring "
            "or restore the file (nothing was changed)"
        )
    return _load_file_key(key_file, must_exist=must_exist)


DATA_KEY_ENV: Final = "BRIDGE_DATA_KEY"
"""Environment variable holding a shared data key (URL-safe base64 of 32 bytes)."""


def generate_data_key_text() -> str:
    """Return a fresh data key as URL-safe base64 text, for a ``--data-key-file``."""
    return _encode(_random.token_bytes(KEY_BYTES))


def load_shared_data_key(key_file: Path | None, env_value: str | None) -> DataKey | None:
    """Return the data key shared by several instances, or None when none is configured.

    Several bridge instances on one database must seal API keys with the same key, so it
    is given to each of them: ``--data-key-file PATH`` (preferred; a 0600 file holding
    URL-safe base64 of 32 bytes) or the ``BRIDGE_DATA_KEY`` environment variable (same
    text). The file wins when both are given. Nothing is ever generated here.

    Args:
        key_file: path of the key file, or None.
        env_value: the value of ``BRIDGE_DATA_KEY``, or None.

    Returns:
        The :class:`DataKey` (``backend`` ``"file"``), or None when neither is given.

    Raises:
        StartupError: the file is missing or unreadable, or the key is not 32 bytes of
            base64 (the message names the source, never the key).
    """
    if key_file is not None:
        try:
            text = read_small_file(key_file, None).decode("ascii", errors="replace")
        except OSError as exc:
            raise StartupError(f"The data key file {key_file} cannot be read: {exc.strerror}") from None
        return DataKey(_decode(text, str(key_file)), "file")
    if env_value:
        return DataKey(_decode(env_value, DATA_KEY_ENV), "file")
    return None
