"""API-key encryption at rest and the data key's sources (DESIGN §3).

Tests never touch a real keychain: they choose the file backend, or install a fake
keyring backend object with ``keyring.set_keyring`` (isolation and fault injection).
"""

from __future__ import annotations

import concurrent.futures
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from structlog.testing import capture_logs

from bridge.errors import InsecurePathError, StartupError
from bridge.keystore import (
    KEY_FILE_NAME,
    DataKey,
    DecryptionError,
    KeyCipher,
    SecretBackend,
    generate_data_key_text,
    load_data_key,
    load_shared_data_key,
)
from tests.conftest import ANTHROPIC_KEY, CUSTOM_KEY, GOOGLE_KEY, OPENAI_KEY

ID_A = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
ID_B = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"


class FakeKeyring(KeyringBackend):
    """An in-memory keyring backend; ``hang`` makes every call block until released."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}
        self.hang: threading.Event | None = None

    def _wait(self) -> None:
        if self.hang is not None:
            self.hang.wait(10)

    def get_password(self, service: str, username: str) -> str | None:
        self._wait()
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._wait()
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


@pytest.fixture
def fake_keyring() -> Iterator[FakeKeyring]:
    previous = keyring.get_keyring()
    fake = FakeKeyring()
    keyring.set_keyring(fake)
    try:
        yield fake
    finally:
        if fake.hang is not None:
            fake.hang.set()
        keyring.set_keyring(previous)


@pytest.fixture
def cipher(tmp_path: Path) -> KeyCipher:
    return KeyCipher(load_data_key(tmp_path, SecretBackend.FILE, must_exist=False))


# ---- AES-GCM --------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY])
def test_same_key_sealed_twice_gives_different_ciphertexts_that_both_open(
    cipher: KeyCipher, api_key: str
) -> None:
    first, second = cipher.encrypt(api_key, ID_A), cipher.encrypt(api_key, ID_A)
    assert first != second
    assert api_key.encode() not in first
    assert cipher.decrypt(first, ID_A) == api_key
    assert cipher.decrypt(second, ID_A) == api_key


def test_ciphertext_moved_to_another_row_fails_to_decrypt(cipher: KeyCipher) -> None:
    sealed_a = cipher.encrypt(OPENAI_KEY, ID_A)
    sealed_b = cipher.encrypt(ANTHROPIC_KEY, ID_B)
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed_a, ID_B)
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed_b, ID_A)


def test_tampered_ciphertext_fails_to_decrypt(cipher: KeyCipher) -> None:
    sealed = bytearray(cipher.encrypt(OPENAI_KEY, ID_A))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(sealed), ID_A)


def test_ciphertext_of_another_data_key_fails_to_decrypt(cipher: KeyCipher, tmp_path: Path) -> None:
    other = KeyCipher(load_data_key(tmp_path / "other", SecretBackend.FILE, must_exist=False))
    with pytest.raises(DecryptionError):
        other.decrypt(cipher.encrypt(OPENAI_KEY, ID_A), ID_A)


def test_data_key_repr_hides_the_secret(tmp_path: Path) -> None:
    key = load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)
    assert key.secret.hex() not in repr(key)
    assert len(key.secret) == 32


# ---- the key file ---------------------------------------------------------------------


def test_file_backend_creates_a_0600_key_file_and_reuses_it(tmp_path: Path) -> None:
    first = load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.backend == "file"
    assert load_data_key(tmp_path, SecretBackend.FILE, must_exist=True) == first
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_key_file_with_ciphertexts_refuses_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as caught:
        load_data_key(tmp_path, SecretBackend.FILE, must_exist=True)
    assert "missing" in caught.value.message
    assert str(tmp_path / KEY_FILE_NAME) in caught.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "cause"), [(b"not base64 at all!!", "not base64"), (b"c2hvcnQ=\n", "not 32 bytes"), (b"", "")]
)
def test_corrupt_key_file_refuses_and_is_left_unchanged(tmp_path: Path, content: bytes, cause: str) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(content)
    for must_exist in (True, False):
        with pytest.raises(StartupError) as caught:
            load_data_key(tmp_path, SecretBackend.FILE, must_exist=must_exist)
        assert "corrupt" in caught.value.message
        assert cause in caught.value.message
    assert path.read_bytes() == content


# ---- the keyring ----------------------------------------------------------------------


def test_auto_uses_a_real_keyring_backend(tmp_path: Path, fake_keyring: FakeKeyring) -> None:
    key = load_data_key(tmp_path, SecretBackend.AUTO, must_exist=False)
    assert key.backend == "keyring"
    assert len(fake_keyring.passwords) == 1
    assert not (tmp_path / KEY_FILE_NAME).exists()
    assert load_data_key(tmp_path, SecretBackend.KEYRING, must_exist=True) == key


def test_keyring_that_lost_the_key_refuses_when_ciphertexts_exist(
    tmp_path: Path, fake_keyring: FakeKeyring
) -> None:
    load_data_key(tmp_path, SecretBackend.AUTO, must_exist=False)
    fake_keyring.passwords.clear()
    with pytest.raises(StartupError) as caught:
        load_data_key(tmp_path, SecretBackend.AUTO, must_exist=True)
    assert "keyring" in caught.value.message
    assert fake_keyring.passwords == {}
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_fail_backend_makes_auto_fall_back_to_the_file(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    try:
        assert load_data_key(tmp_path, SecretBackend.AUTO, must_exist=False).backend == "file"
        with pytest.raises(StartupError, match="keyring"):
            load_data_key(tmp_path / "k", SecretBackend.KEYRING, must_exist=False)
    finally:
        keyring.set_keyring(previous)


def test_hanging_keyring_is_bounded_in_time(tmp_path: Path, fake_keyring: FakeKeyring) -> None:
    fake_keyring.hang = threading.Event()
    key = load_data_key(tmp_path, SecretBackend.AUTO, must_exist=False, keyring_timeout_s=0.2)
    assert key.backend == "file"
    with pytest.raises(StartupError):
        load_data_key(tmp_path / "k", SecretBackend.KEYRING, must_exist=False, keyring_timeout_s=0.2)
    with pytest.raises(StartupError, match=r"No usable OS keyring answered within 0\.2 s"):
        load_data_key(tmp_path / "m", SecretBackend.AUTO, must_exist=True, keyring_timeout_s=0.2)
    assert not (tmp_path / "m" / KEY_FILE_NAME).exists()


def test_data_key_equality_is_by_secret_and_backend() -> None:
    assert DataKey(b"x" * 32, "file") == DataKey(b"x" * 32, "file")


def test_concurrent_first_starts_agree_on_one_key_file(tmp_path: Path) -> None:
    # Several processes starting on a fresh data directory must end up with the same key:
    # a key sealed by a loser of the race would never decrypt again.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(
            pool.map(lambda _: load_data_key(tmp_path, SecretBackend.FILE, must_exist=False), range(32))
        )
    assert len({key.secret for key in keys}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.key"]


def test_shared_key_file_is_checked_on_the_descriptor_like_every_secret_file(tmp_path: Path) -> None:
    key_file = tmp_path / "shared.key"
    key_file.write_text(generate_data_key_text())
    key_file.chmod(0o644)  # readable by others: refused, as the token and bridge.key are
    with pytest.raises(InsecurePathError) as refused:
        load_shared_data_key(key_file, None)
    assert refused.value.context is not None
    assert refused.value.context["path"] == str(key_file)
    assert "readable by group or others" in refused.value.context["problem"]
    # --skip-permission-checks (mounted secrets): read, the problem only logged.
    with capture_logs() as logs:
        key = load_shared_data_key(key_file, None, strict=False)
    assert key is not None
    assert [entry["event"] for entry in logs] == ["insecure_path_allowed"]
    key_file.chmod(0o600)
    assert load_shared_data_key(key_file, None) == key
