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
import re
import secrets as _random
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bridge.datadir import Kind, read_small_file, write_private_file
from bridge.errors import StartupError

if TYPE_CHECKING:  # annotations only: AES-GCM is imported on first use (cold start)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def key_id_of(secret: bytes) -> bytes:
    """Return the id of a data key: the first 8 bytes of its SHA-256 (reveals nothing)."""
    return hashlib.sha256(secret).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class DataKey:
    """The data keys of one key source and where they came from.

    A key source holds a small set of 256-bit AES-GCM keys, one per line (``bridge
    rotate-key`` adds one, then retires the old ones): the newest (``secret``, the last
    line) seals, every one opens.

    Attributes:
        secret: the newest key's 32 bytes (never logged: excluded from ``repr``).
        backend: ``"keyring"`` or ``"file"``, reported as ``secretBackend``.
        older: the other keys (32 bytes each), oldest first; they only open.
    """

    secret: bytes = field(repr=False)
    backend: str
    older: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def key_id(self) -> bytes:
        """Id of the sealing key: first 8 bytes of SHA-256 of it."""
        return key_id_of(self.secret)

    @property
    def key_ids(self) -> frozenset[bytes]:
        """Ids of every key of the source (the ones that open)."""
        return frozenset(key_id_of(k) for k in (*self.older, self.secret))

    def secrets(self) -> tuple[bytes, ...]:
        """Every key, oldest first, the sealing key last (the key-source text order)."""
        return (*self.older, self.secret)


class KeyCipher:
    """Encrypts and decrypts API keys with a set of data keys, bound to the config id.

    The newest key seals; a ciphertext opens with the key its first 8 bytes name. The
    AES-GCM implementation (``cryptography``) is imported and keyed on the first
    encryption or decryption: a server whose store holds no API key yet needs none before
    its ready line (issue 17, cold start).
    """

    def __init__(self, key: DataKey) -> None:
        """Build a cipher for the keys of ``key``."""
        self._key_id = key.key_id
        self._secrets = {key_id_of(k): k for k in key.secrets()}
        self._openers: dict[bytes, AESGCM] = {}
        self.backend = key.backend

    def _aead(self, key_id: bytes) -> AESGCM:
        """The AES-GCM instance of the key ``key_id`` names (one of :meth:`knows`), made on first use."""
        aead = self._openers.get(key_id)
        if aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - see the class

            aead = self._openers[key_id] = AESGCM(self._secrets[key_id])
        return aead

    @property
    def key_id(self) -> bytes:
        """Id of the sealing key."""
        return self._key_id

    def knows(self, key_id: bytes) -> bool:
        """True when ``key_id`` names one of this cipher's keys."""
        return key_id in self._secrets

    def encrypt(self, plaintext: str, config_id: str) -> bytes:
        """Return ``key_id || nonce || ciphertext`` for ``plaintext``; a fresh nonce each call."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead(self._key_id).encrypt(nonce, plaintext.encode(), config_id.encode())
        return self._key_id + nonce + sealed

    def decrypt(self, blob: bytes, config_id: str) -> str:
        """Return the plaintext of ``blob`` sealed for ``config_id``.

        Raises:
            DecryptionError: the blob was sealed with an unknown key or for another id,
                or its bytes changed.
        """
        key_id, nonce = blob[:KEY_ID_BYTES], blob[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
        if not self.knows(key_id):
            raise DecryptionError("ciphertext was sealed with another data key")
        aead = self._aead(key_id)
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - loaded with AES-GCM above

        try:
            plain = aead.decrypt(nonce, blob[KEY_ID_BYTES + NONCE_BYTES :], config_id.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise DecryptionError("plaintext is not UTF-8") from None


def _encode(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode()


def encode_key_text(key: DataKey) -> str:
    """Return the key-source text of ``key``: one base64 key per line, the sealing key last."""
    return "".join(_encode(k) + "\n" for k in key.secrets())


def _decode_one(text: str, source: str) -> bytes:
    try:
        secret = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError:
        raise StartupError(f"The data key in {source} is corrupt (not base64)") from None
    if len(secret) != KEY_BYTES:
        raise StartupError(f"The data key in {source} is corrupt (not {KEY_BYTES} bytes)")
    return secret


def _decode_keys(text: str, source: str, backend: str) -> tuple[bytes, DataKey]:
    """Parse a key source: one key per line (or comma-separated), the sealing key last."""
    parts = [p for p in re.split(r"[\s,]+", text) if p]
    if not parts:
        raise StartupError(f"The data key in {source} is corrupt (empty)")
    keys = [_decode_one(p, source) for p in parts]
    return keys[-1], DataKey(keys[-1], backend, tuple(keys[:-1]))


def _load_file_key(path: Path, *, must_exist: bool) -> DataKey:
    if path.exists():
        # Never blocks: a FIFO or device planted here is refused unread (DESIGN §6).
        text = read_small_file(path, None).decode("ascii", errors="replace")
        return _decode_keys(text, str(path), "file")[1]
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
            return _decode_keys(stored, "the OS keyring", "keyring")[1]
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


def _keyring_account(data_dir: Path) -> str:
    return "data-key:" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def new_key_set(current: DataKey) -> DataKey:
    """Return ``current`` with a fresh random key added as the sealing key (rotation)."""
    return DataKey(_random.token_bytes(KEY_BYTES), current.backend, current.secrets())


def write_key_file(path: Path, key: DataKey) -> None:
    """Replace the key file at ``path`` with the keys of ``key``, atomically, mode 0600.

    Written through :func:`bridge.datadir.write_private_file` (an unguessable temporary
    file opened ``O_EXCL|O_NOFOLLOW``, synced, renamed over ``path``): readers see the old
    set or the new one, never a part.

    Raises:
        OSError: the directory is not writable, or ``path`` cannot be replaced.
    """
    write_private_file(path, encode_key_text(key).encode("ascii"))


def write_data_key(data_dir: Path, key: DataKey, *, keyring_timeout_s: float = KEYRING_TIMEOUT_S) -> None:
    """Store the key set ``key`` where :func:`load_data_key` found it (file or OS keyring).

    Raises:
        StartupError: the keyring did not answer in time.
    """
    if key.backend == "file":
        write_key_file(data_dir / KEY_FILE_NAME, key)
        return
    import keyring  # noqa: PLC0415

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyring")
    try:
        pool.submit(
            keyring.set_password, KEYRING_SERVICE, _keyring_account(data_dir), encode_key_text(key)
        ).result(timeout=keyring_timeout_s)
    except concurrent.futures.TimeoutError:
        raise StartupError("The OS keyring did not answer in time; nothing was changed") from None
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
    account = _keyring_account(data_dir)
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


def load_shared_data_key(
    key_file: Path | None, env_value: str | None, *, strict: bool = True
) -> DataKey | None:
    """Return the data key shared by several instances, or None when none is configured.

    Several bridge instances on one database must seal API keys with the same key, so it
    is given to each of them: ``--data-key-file PATH`` (preferred; a 0600 file holding
    URL-safe base64 of 32 bytes) or the ``BRIDGE_DATA_KEY`` environment variable (same
    text). The file wins when both are given. Nothing is ever generated here.

    Args:
        key_file: path of the key file, or None.
        env_value: the value of ``BRIDGE_DATA_KEY``, or None.
        strict: False to log the file's ownership/mode problems instead of refusing it
            (``--skip-permission-checks``); it must be a regular file either way.

    Returns:
        The :class:`DataKey` (``backend`` ``"file"``), or None when neither is given.

    Raises:
        InsecurePathError: the file is not a regular file, or (with ``strict``) is owned
            by another user or readable/writable by group or others; checked on the open
            descriptor, as every secret file is (``bridge.datadir.read_small_file``).
        StartupError: the file is missing or unreadable, or the key is not 32 bytes of
            base64 (the message names the source, never the key).
    """
    if key_file is not None:
        try:
            text = read_small_file(key_file, Kind.SECRET, strict=strict).decode("ascii", errors="replace")
        except OSError as exc:
            raise StartupError(f"The data key file {key_file} cannot be read: {exc.strerror}") from None
        return _decode_keys(text, str(key_file), "file")[1]
    if env_value:
        return _decode_keys(env_value, DATA_KEY_ENV, "file")[1]
    return None
