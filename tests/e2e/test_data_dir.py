"""Hostile neighbours and the data directory (issue 15 item 1, DESIGN §6), against ``bridge serve``.

Each test plays one attack by another local user: planting a data directory, a key file,
a world-writable database, a symbolic link where the connection file's temporary name
would be, or a FIFO where a file is expected. The other user's steps run as ``nobody``
(uid 65534) in a sticky, world-writable directory like ``/tmp``; they need root to drop
privileges and are skipped, with that reason, when the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import app
from bridge.app import BridgeOptions, SecretOptions, TransportOptions
from bridge.client import BridgeClient, read_connection_file
from bridge.errors import InsecurePathError
from bridge.keystore import SecretBackend, generate_data_key_text
from bridge.options import SidecarOptions
from tests.conftest import openai_config, serve_command, start_bridge_process

NOBODY = 65534
TIMEOUT_S = 30  # a refusal is immediate; on the old code these cases hang or serve
TOKEN = "T" * 43


def as_nobody(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` as uid/gid 65534 with no supplementary groups (the other local user)."""
    return subprocess.run(
        argv, user=NOBODY, group=NOBODY, extra_groups=[], check=True, capture_output=True, timeout=TIMEOUT_S
    )


def write_as_nobody(path: Path, text: str) -> None:
    """Create ``path`` (mode 0600) holding ``text``, as ``nobody``."""
    as_nobody("sh", "-c", 'umask 077; printf %s "$1" > "$2"', "sh", text, str(path))


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("playing another local user needs root (to drop to uid 65534); not root here")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable directory like ``/tmp`` that ``nobody`` can reach."""
    needs_root()
    path = Path(tempfile.mkdtemp(prefix="bridge-neighbours-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def serve_expecting_refusal(data_dir: Path, *flags: str) -> dict[str, Any]:
    """Run ``bridge serve`` that must refuse at once: exit 2 and one JSON error line on stdout."""
    try:
        proc = subprocess.run(
            [*serve_command(data_dir, "--port", "0", *flags)],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"bridge serve neither refused nor exited within {TIMEOUT_S} s (it blocked, or served)")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 2, (proc.returncode, lines, proc.stderr.decode()[-2000:])
    assert len(lines) == 1, lines
    line: dict[str, Any] = json.loads(lines[0])
    assert line["event"] == "error", line
    return line


def assert_refused(line: dict[str, Any], path: Path, problem: str) -> None:
    assert line["error"] == "INSECURE_PATH", line
    assert line["path"] == str(path), line
    assert problem in line["problem"], line
    assert str(path) in line["message"], line
    assert problem in line["message"], line


def first_run(data_dir: Path) -> None:
    """Start once on ``data_dir`` (creating ``bridge.db`` and ``bridge.key``) and stop."""
    bridge = start_bridge_process(data_dir)
    assert bridge.stop() == 0


# ---- the data directory ---------------------------------------------------------------


def test_data_dir_planted_by_another_user_is_refused(shared: Path) -> None:
    # nobody prepares the directory the victim will be told to use, with a key they know
    # and a database they can write: they would then decrypt every key stored in it.
    data = shared / "data"
    planted_key = generate_data_key_text() + "\n"
    as_nobody("mkdir", "-m", "0755", str(data))
    write_as_nobody(data / "bridge.key", planted_key)
    as_nobody("sh", "-c", f"umask 0; : > {data / 'bridge.db'}")

    line = serve_expecting_refusal(data)

    assert_refused(line, data, f"is owned by uid {NOBODY}")
    assert (data / "bridge.key").read_text() == planted_key  # untouched
    assert (data / "bridge.db").stat().st_size == 0


def test_data_dir_writable_by_others_is_refused_even_when_ours(shared: Path) -> None:
    data = shared / "data"
    first_run(data)
    data.chmod(0o777)  # e.g. a share opened up after the first run
    (data / "bridge.key").unlink()
    write_as_nobody(data / "bridge.key", generate_data_key_text())

    line = serve_expecting_refusal(data)

    assert_refused(line, data, "is writable by group or others (mode 0777)")


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_group_or_other_writable_data_dir_is_refused(tmp_path: Path, mode: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(mode)

    line = serve_expecting_refusal(data)

    assert_refused(line, data, f"is writable by group or others (mode {mode:04o})")


async def test_existing_0755_data_dir_of_an_earlier_version_keeps_working(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_bridge_process(data)
    try:
        async with BridgeClient(first.url, first.token) as client:
            await client.create_config(openai_config("Kept"))
    finally:
        assert first.stop() == 0
    data.chmod(0o755)  # how some earlier versions and hand-made directories look

    again = start_bridge_process(data)
    try:
        async with BridgeClient(again.url, again.token) as client:
            assert [view.custom_name for view in await client.list_configs()] == ["Kept"]
    finally:
        assert again.stop() == 0


# ---- key, token and database files ----------------------------------------------------


def test_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    needs_root()
    data = tmp_path / "data"
    first_run(data)
    os.chown(data / "bridge.key", NOBODY, NOBODY)  # planted while the directory was open

    line = serve_expecting_refusal(data)

    assert_refused(line, data / "bridge.key", f"is owned by uid {NOBODY}")


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first_run(data)
    (data / "bridge.key").chmod(0o644)

    line = serve_expecting_refusal(data)

    assert_refused(line, data / "bridge.key", "is readable by group or others (mode 0644)")


@pytest.mark.parametrize("name", ["bridge.db", "bridge.db-wal"])
def test_database_writable_by_others_is_refused(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    first_run(data)
    target = data / name
    target.touch()
    target.chmod(0o666)

    line = serve_expecting_refusal(data)

    assert_refused(line, target, "is writable by group or others (mode 0666)")


def test_key_file_linked_to_another_users_file_is_refused_naming_the_target(
    shared: Path, tmp_path: Path
) -> None:
    # nobody's key, reached through a link in our directory: the target is what is checked.
    theirs = shared / "their.key"
    write_as_nobody(theirs, generate_data_key_text())
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "bridge.key").symlink_to(theirs)

    line = serve_expecting_refusal(data)

    assert_refused(line, data / "bridge.key", f"is owned by uid {NOBODY}")
    assert str(theirs) in line["message"]


@pytest.mark.parametrize("flags", [(), ("--skip-permission-checks",)])
@pytest.mark.parametrize("name", ["bridge.key", "bridge.db"])
def test_fifo_in_place_of_the_key_file_or_database_is_refused_without_blocking(
    tmp_path: Path, name: str, flags: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.mkfifo(data / name, 0o600)

    line = serve_expecting_refusal(data, *flags)  # the old code blocked here for ever

    assert_refused(line, data / name, "is not a regular file (it is a FIFO)")


@pytest.mark.parametrize("flag", ["--token-file", "--data-key-file"])
def test_fifo_as_token_or_data_key_file_is_refused_without_blocking(tmp_path: Path, flag: str) -> None:
    fifo = tmp_path / "secret"
    os.mkfifo(fifo, 0o600)

    line = serve_expecting_refusal(tmp_path / "data", flag, str(fifo))

    assert_refused(line, fifo, "is not a regular file (it is a FIFO)")


@pytest.mark.parametrize("flag", ["--token-file", "--data-key-file"])
def test_token_or_data_key_file_readable_by_others_is_refused(tmp_path: Path, flag: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text(TOKEN if flag == "--token-file" else generate_data_key_text(), encoding="ascii")
    secret.chmod(0o644)

    line = serve_expecting_refusal(tmp_path / "data", flag, str(secret))

    assert_refused(line, secret, "is readable by group or others (mode 0644)")
    assert TOKEN not in json.dumps(line)


def test_mounted_secrets_are_used_with_the_opt_out_and_logged(tmp_path: Path) -> None:
    # Kubernetes mounts a secret as a root-owned 0644 file behind two links (..data/).
    mount = tmp_path / "mount"
    version = mount / "..2026_01_01"
    version.mkdir(parents=True)
    (version / "token").write_text(TOKEN, encoding="ascii")
    (version / "token").chmod(0o644)
    (mount / "..data").symlink_to(version.name)
    (mount / "token").symlink_to("..data/token")
    token = mount / "token"
    refused = serve_expecting_refusal(tmp_path / "data", "--token-file", str(token))
    assert_refused(refused, token, "is readable by group or others")

    bridge = start_bridge_process(tmp_path / "data", "--token-file", str(token), "--skip-permission-checks")
    try:
        assert bridge.token == TOKEN
    finally:
        assert bridge.stop() == 0
    logged = [json.loads(line) for line in bridge.log_text().splitlines() if line.startswith("{")]
    warnings = {entry["event"]: entry for entry in logged if entry.get("level") == "warning"}
    assert "permission_checks_skipped" in warnings
    assert warnings["insecure_path_allowed"]["path"] == str(token)
    assert "readable by group or others" in warnings["insecure_path_allowed"]["problem"]
    assert TOKEN not in bridge.log_text()


# ---- the connection file ---------------------------------------------------------------


def start_gated(cmd: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``cmd`` held at a gate: the pid is known before it runs; write to the fd to open it.

    A small Python process waits on a pipe, then ``execv``\\ s ``cmd`` (same pid), so the
    other user's link can be planted under the name derived from it before any file is
    written: the attack without a race.
    """
    gate_r, gate_w = os.pipe()
    gate = f"import os; os.read({gate_r}, 1); os.close({gate_r}); os.execv({cmd[0]!r}, {cmd!r})"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", gate], pass_fds=(gate_r,), stdout=subprocess.PIPE, stderr=log
        )
    os.close(gate_r)
    return proc, gate_w


def read_ready(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The first stdout line of ``proc``; fails (and kills it) when none comes in time."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], TIMEOUT_S)
    if not readable:
        proc.kill()
        pytest.fail(f"no ready line within {TIMEOUT_S} s (bridge serve blocked)")
    line: dict[str, Any] = json.loads(proc.stdout.readline())
    return line


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def test_link_planted_at_the_connection_files_temporary_name_never_receives_the_token(
    shared: Path, tmp_path: Path
) -> None:
    loot = shared / "loot"
    as_nobody("sh", "-c", f"umask 022; : > {loot}")
    connection = shared / "connection.json"
    cmd = serve_command(tmp_path / "data", "--port", "0", "--connection-file", str(connection))
    proc, gate = start_gated(cmd, tmp_path / "server.log")
    try:
        # The old code wrote the token through ".connection.json.<pid>.tmp" (O_TRUNC, no
        # O_EXCL, links followed), then renamed that link to connection.json.
        as_nobody("ln", "-s", str(loot), str(shared / f".connection.json.{proc.pid}.tmp"))
        os.write(gate, b"go")
        os.close(gate)
        ready = read_ready(proc)
        assert ready["event"] == "ready", ready

        stolen = as_nobody("cat", str(loot)).stdout.decode()
        assert ready["token"] not in stolen
        st = connection.lstat()
        assert stat.S_ISREG(st.st_mode), "connection.json must be a file of ours, not the planted link"
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert json.loads(connection.read_text())["token"] == ready["token"]
    finally:
        stop(proc)


def test_fifo_planted_as_the_connection_file_does_not_block_start_up(shared: Path, tmp_path: Path) -> None:
    connection = shared / "connection.json"
    as_nobody("mkfifo", "-m", "0666", str(connection))
    cmd = serve_command(tmp_path / "data", "--port", "0", "--connection-file", str(connection))
    proc, gate = start_gated(cmd, tmp_path / "server.log")
    os.write(gate, b"go")
    os.close(gate)
    try:
        ready = read_ready(proc)  # the old code blocked reading the FIFO for a previous pid

        assert ready["event"] == "ready", ready
        assert stat.S_ISREG(connection.lstat().st_mode)
    finally:
        stop(proc)


# ---- the directories holding the connection file and the socket ------------------------

PLACES = {"--connection-file": "connection.json", "--uds": "bridge.sock"}
"""What each flag places in a directory of its own, and the name it is given there."""


@pytest.mark.parametrize("ours", [False, True], ids=["in-theirs", "in-ours-inside-theirs"])
@pytest.mark.parametrize("flag", list(PLACES))
def test_connection_file_or_socket_in_or_below_a_directory_of_another_user_is_refused(
    shared: Path, tmp_path: Path, flag: str, ours: bool
) -> None:
    # nobody offers a directory of theirs: they could later rename our file or socket (or
    # our own 0700 directory inside theirs: OpenSSH's StrictModes walks up for the same
    # reason) away and put theirs where clients read the URL and token, or dial.
    theirs = shared / "theirs"
    as_nobody("mkdir", "-m", "0755", str(theirs))
    place = theirs / "ours" if ours else theirs
    place.mkdir(mode=0o700, exist_ok=True)

    line = serve_expecting_refusal(tmp_path / "data", flag, str(place / PLACES[flag]))

    assert_refused(line, theirs, f"is owned by uid {NOBODY}")
    assert list(place.iterdir()) == []  # nothing written there


@pytest.mark.parametrize("mode", [0o777, 0o775], ids=["0777", "0775"])
@pytest.mark.parametrize("flag", list(PLACES))
def test_connection_file_or_socket_in_a_directory_others_can_write_and_not_sticky_is_refused(
    tmp_path: Path, flag: str, mode: int
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(mode)

    line = serve_expecting_refusal(tmp_path / "data", flag, str(open_dir / PLACES[flag]))

    assert_refused(line, open_dir, f"is writable by group or others and not sticky (mode {mode:04o})")
    assert list(open_dir.iterdir()) == []


async def test_connection_file_and_socket_in_a_sticky_directory_like_tmp_are_served(shared: Path) -> None:
    # In a sticky directory only owners rename or remove entries: as ssh accepts /tmp's.
    connection, sock = shared / "connection.json", shared / "bridge.sock"
    with start_bridge_process(
        shared / "data", "--connection-file", str(connection), "--uds", str(sock)
    ) as bridge:
        info = read_connection_file(connection)
        assert info.token == bridge.token
        async with BridgeClient(info.url, info.token, unix_socket=info.socket) as client:
            assert (await client.hello()).protocol_version == 1
    assert bridge.process.returncode == 0


def test_an_open_connection_file_directory_is_used_with_the_opt_out_and_logged(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    connection = open_dir / "connection.json"
    with start_bridge_process(
        tmp_path / "data", "--connection-file", str(connection), "--skip-permission-checks"
    ) as bridge:
        assert read_connection_file(connection).token == bridge.token
    assert bridge.process.returncode == 0
    logged = [json.loads(line) for line in bridge.log_text().splitlines() if line.startswith("{")]
    allowed = [entry for entry in logged if entry.get("event") == "insecure_path_allowed"]
    assert [(entry["path"], entry["problem"]) for entry in allowed] == [
        (str(open_dir), "is writable by group or others and not sticky (mode 0777)")
    ]


class _ServedError(Exception):
    """Raised by ``on_ready`` to end :func:`bridge.app.serve` once the file is written."""


def _plant_between_check_and_write(monkeypatch: pytest.MonkeyPatch, plant: Any) -> None:
    """Fault injection: run ``plant`` after serve()'s first directory check, before the write."""
    real = app.start_bridge

    async def racing(options: BridgeOptions, registry: Any = None) -> app.Bridge:
        plant()
        return await real(options, registry)

    monkeypatch.setattr(app, "start_bridge", racing)


def _options(data_dir: Path) -> BridgeOptions:
    return BridgeOptions(
        data_dir=data_dir,
        secrets=SecretOptions(backend=SecretBackend.FILE),
        transport=TransportOptions(port=0),
    )


async def test_connection_file_directory_is_ours_before_the_check_so_a_neighbour_cannot_plant_it(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /tmp/app does not exist yet: once skipped by the check and created by the write,
    # nobody could create it in between and receive the URL and token in a directory of theirs.
    place = shared / "app"
    attempt: list[int] = []

    def plant() -> None:
        done = subprocess.run(
            ["mkdir", "-m", "0777", str(place)],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            check=False,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        attempt.append(done.returncode)

    _plant_between_check_and_write(monkeypatch, plant)
    seen: list[tuple[int, int, list[str]]] = []

    def ready(_bridge: app.Bridge) -> None:
        info = place.stat()
        seen.append((info.st_uid, stat.S_IMODE(info.st_mode), sorted(p.name for p in place.iterdir())))
        raise _ServedError

    with pytest.raises(_ServedError):
        await app.serve(
            _options(tmp_path / "data"),
            sidecar_options=SidecarOptions(connection_file=place / "connection.json"),
            on_ready=ready,
        )

    assert attempt != [0]  # nobody's mkdir failed: the directory was already ours
    assert seen == [(os.geteuid(), 0o700, ["connection.json"])]


async def test_connection_file_directory_changed_after_the_check_is_refused_before_the_write(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever happens to the directory between the first check and the write (here it is
    # handed to nobody), the check right before the write fails closed.
    place = shared / "app"

    def plant() -> None:
        if place.exists():
            os.chown(place, NOBODY, NOBODY)
        else:
            as_nobody("mkdir", "-m", "0777", str(place))

    _plant_between_check_and_write(monkeypatch, plant)
    written: list[list[str]] = []

    def ready(_bridge: app.Bridge) -> None:
        written.append(sorted(p.name for p in place.iterdir()))
        raise _ServedError

    with pytest.raises(InsecurePathError, match=f"is owned by uid {NOBODY}"):
        await app.serve(
            _options(tmp_path / "data"),
            sidecar_options=SidecarOptions(connection_file=place / "connection.json"),
            on_ready=ready,
        )

    assert written == []
    assert list(place.iterdir()) == []
