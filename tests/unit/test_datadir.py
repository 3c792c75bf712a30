"""The ssh-like checks of ``bridge.datadir`` (DESIGN §6): pure rules, non-blocking reads, safe writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge import datadir
from bridge.datadir import (
    Finding,
    Kind,
    check_data_dir,
    check_parent_dirs,
    check_path,
    enforce,
    read_small_file,
    stat_problems,
    write_private_file,
)
from bridge.errors import InsecurePathError, StartupError

ME = 1000


def fake_stat(mode: int, uid: int = ME) -> os.stat_result:
    """An ``os.stat_result`` with ``st_mode`` and ``st_uid`` set (the only fields read)."""
    return os.stat_result((mode, 0, 0, 1, uid, uid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "kind"),
    [
        (stat.S_IFDIR | 0o700, ME, Kind.DIRECTORY),
        (stat.S_IFDIR | 0o755, ME, Kind.DIRECTORY),  # what earlier versions may have left
        (stat.S_IFDIR | 0o755, 0, Kind.DIRECTORY),  # root's
        (stat.S_IFREG | 0o644, ME, Kind.FILE),  # a database others may read
        (stat.S_IFREG | 0o600, ME, Kind.SECRET),
        (stat.S_IFREG | 0o400, 0, Kind.SECRET),  # a root-owned mounted secret
    ],
)
def test_paths_of_the_user_or_root_that_others_cannot_change_pass(mode: int, uid: int, kind: Kind) -> None:
    assert stat_problems(fake_stat(mode, uid), kind, ME) == []


@pytest.mark.parametrize(
    ("mode", "uid", "kind", "problems"),
    [
        (
            stat.S_IFDIR | 0o700,
            1001,
            Kind.DIRECTORY,
            ["is owned by uid 1001, not by this user (uid 1000) or root"],
        ),
        (stat.S_IFDIR | 0o775, ME, Kind.DIRECTORY, ["is writable by group or others (mode 0775)"]),
        (
            stat.S_IFDIR | 0o1777,
            0,
            Kind.DIRECTORY,
            ["is writable by group or others (mode 1777)"],
        ),  # /tmp itself
        (stat.S_IFREG | 0o666, ME, Kind.FILE, ["is writable by group or others (mode 0666)"]),
        (
            stat.S_IFREG | 0o640,
            ME,
            Kind.SECRET,
            ["is readable by group or others (mode 0640); it holds a secret"],
        ),
        (
            stat.S_IFREG | 0o604,
            1001,
            Kind.SECRET,
            [
                "is owned by uid 1001, not by this user (uid 1000) or root",
                "is readable by group or others (mode 0604); it holds a secret",
            ],
        ),
    ],
)
def test_foreign_or_open_paths_fail_with_every_problem_named(
    mode: int, uid: int, kind: Kind, problems: list[str]
) -> None:
    assert stat_problems(fake_stat(mode, uid), kind, ME) == [(problem, True) for problem in problems]


@pytest.mark.parametrize(
    ("mode", "kind", "problem"),
    [
        (stat.S_IFIFO | 0o600, Kind.SECRET, "is not a regular file (it is a FIFO)"),
        (stat.S_IFCHR | 0o600, Kind.FILE, "is not a regular file (it is a character device)"),
        (stat.S_IFSOCK | 0o600, Kind.FILE, "is not a regular file (it is a socket)"),
        (stat.S_IFDIR | 0o700, Kind.SECRET, "is not a regular file (it is a directory)"),
        (stat.S_IFREG | 0o600, Kind.DIRECTORY, "is not a directory (it is a regular file)"),
    ],
)
def test_a_path_of_the_wrong_type_is_an_unwaivable_problem(mode: int, kind: Kind, problem: str) -> None:
    assert stat_problems(fake_stat(mode), kind, ME) == [(problem, False)]


def test_absent_paths_pass_and_links_are_followed_to_their_target(tmp_path: Path) -> None:
    assert check_path(tmp_path / "absent", Kind.SECRET) == []
    target = tmp_path / "target"
    target.write_text("x")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert check_path(link, Kind.SECRET) == [
        Finding(link, "is readable by group or others (mode 0644); it holds a secret", target)
    ]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert check_path(dangling, Kind.SECRET) == [
        Finding(dangling, "is a symbolic link to nothing", tmp_path / "nowhere", waivable=False)
    ]


@pytest.mark.parametrize(
    ("mode", "uid", "problems"),
    [
        (stat.S_IFDIR | 0o755, ME, []),
        (stat.S_IFDIR | 0o700, 0, []),
        (stat.S_IFDIR | 0o1777, 0, []),  # /tmp: only owners rename or remove entries
        (stat.S_IFDIR | 0o1770, ME, []),  # a sticky group share of ours
        (stat.S_IFDIR | 0o777, ME, ["is writable by group or others and not sticky (mode 0777)"]),
        (stat.S_IFDIR | 0o775, 0, ["is writable by group or others and not sticky (mode 0775)"]),
        (
            stat.S_IFDIR | 0o1777,
            1001,
            ["is owned by uid 1001, not by this user (uid 1000) or root"],
        ),  # sticky, but its owner may rename anything in it
    ],
)
def test_a_directory_holding_the_connection_file_or_socket_may_be_sticky_but_not_open(
    mode: int, uid: int, problems: list[str]
) -> None:
    assert stat_problems(fake_stat(mode, uid), Kind.PARENT, ME) == [(problem, True) for problem in problems]


def test_check_parent_dirs_walks_up_from_the_resolved_directory_and_stops_at_the_trusted_one(
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    shared = tmp_path / "shared"
    deep = shared / "ours" / "deeper"
    deep.mkdir(parents=True)
    shared.chmod(0o777)  # anyone can rename "ours" away and put theirs in its place
    (shared / "sticky").mkdir(mode=0o700)
    (shared / "sticky").chmod(0o1777)
    me = os.geteuid()
    expected = [Finding(shared, "is writable by group or others and not sticky (mode 0777)")]
    assert check_parent_dirs(deep / "connection.json", uid=me) == expected
    # Reached through a link, the real directories are the ones checked.
    link = tmp_path / "link"
    link.symlink_to(deep)
    assert check_parent_dirs(link / "bridge.sock", uid=me) == expected
    # Directories still to be created are skipped; their existing ancestors are not.
    assert check_parent_dirs(deep / "absent" / "bridge.sock", uid=me) == expected
    # The data directory has its own rule: the walk ends there.
    assert check_parent_dirs(deep / "connection.json", trusted=shared / "ours", uid=me) == []
    assert check_parent_dirs(shared / "connection.json", trusted=shared, uid=me) == []
    # A sticky directory and a private one below the open one: only the open one is named.
    assert check_parent_dirs(shared / "sticky" / "connection.json", uid=me) == expected
    shared.chmod(0o755)
    assert check_parent_dirs(shared / "sticky" / "connection.json", uid=me) == []


def test_check_parent_dirs_stops_after_the_home_directory_as_openssh_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path.chmod(0o777)  # above the home directory: not the user's to fix
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    me = os.geteuid()
    monkeypatch.setattr(datadir, "_home_of", lambda uid: home if uid == me else None)
    assert check_parent_dirs(home / "run" / "bridge.sock", uid=me) == []
    home.chmod(0o770)  # the home directory itself is checked
    assert check_parent_dirs(home / "run" / "bridge.sock", uid=me) == [
        Finding(home, "is writable by group or others and not sticky (mode 0770)")
    ]


def test_check_data_dir_covers_the_database_companions_and_the_key(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    for name in ("bridge.db", "bridge.db-wal", "bridge.key"):
        (tmp_path / name).write_text("x")
        (tmp_path / name).chmod(0o600)
    (tmp_path / "bridge.db-shm").write_text("x")
    (tmp_path / "bridge.db-shm").chmod(0o662)
    (tmp_path / "bridge.key").chmod(0o604)
    findings = check_data_dir(tmp_path, database=tmp_path / "bridge.db", key_file=tmp_path / "bridge.key")
    assert [(f.path.name, f.problem) for f in findings] == [
        ("bridge.db-shm", "is writable by group or others (mode 0662)"),
        ("bridge.key", "is readable by group or others (mode 0604); it holds a secret"),
    ]


def test_enforce_refuses_naming_the_path_or_with_the_opt_out_logs_a_warning(tmp_path: Path) -> None:
    finding = Finding(
        tmp_path / "bridge.key", "is readable by group or others (mode 0644); it holds a secret"
    )
    with pytest.raises(InsecurePathError) as caught:
        enforce([finding], strict=True)
    assert isinstance(caught.value, StartupError)
    assert caught.value.code == "INSECURE_PATH"
    assert caught.value.context == {"path": str(finding.path), "problem": finding.problem}
    assert str(finding.path) in caught.value.message
    assert "--skip-permission-checks" in caught.value.message

    with capture_logs() as logs:
        enforce([finding], strict=False)
    assert logs == [
        {
            "event": "insecure_path_allowed",
            "log_level": "warning",
            "path": str(finding.path),
            "resolved": None,
            "problem": finding.problem,
        }
    ]

    fifo = Finding(tmp_path / "bridge.key", "is not a regular file (it is a FIFO)", waivable=False)
    with pytest.raises(InsecurePathError):
        enforce([fifo], strict=False)


def test_read_small_file_refuses_a_fifo_at_once_and_reads_a_private_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(InsecurePathError) as caught:
        read_small_file(fifo)  # no writer: a blocking open would never return
    assert caught.value.context == {"path": str(fifo), "problem": "is not a regular file (it is a FIFO)"}
    with pytest.raises(InsecurePathError):
        read_small_file(fifo, None)

    secret = tmp_path / "secret"
    secret.write_bytes(b"token\n")
    secret.chmod(0o600)
    assert read_small_file(secret) == b"token\n"
    secret.chmod(0o644)
    with pytest.raises(InsecurePathError):
        read_small_file(secret)
    assert read_small_file(secret, strict=False) == b"token\n"
    assert read_small_file(secret, None) == b"token\n"


def test_read_small_file_refuses_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    big.chmod(0o600)
    with pytest.raises(InsecurePathError) as caught:
        read_small_file(big)
    assert "larger than" in caught.value.message


def test_write_private_file_is_0600_replaces_a_link_and_never_writes_through_one(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    target = tmp_path / "connection.json"
    target.symlink_to(victim)

    write_private_file(target, b"{}")

    assert victim.read_bytes() == b"untouched"
    st = target.lstat()
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert target.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["connection.json", "victim"]  # no temporary left
