"""Checks on the data directory and the secret files, as ``ssh`` checks its keys (DESIGN §6).

Another local user who can write to the data directory (a ``/tmp`` path, a group share)
could plant a key file of their own and then read every stored API key, swap the
database, or put a FIFO where a file is expected so that start-up blocks for ever. So,
on POSIX, before anything in it is opened:

- the data directory must be a directory owned by this user (or root) and not writable
  by group or others (an existing 0755 directory is fine);
- the key, token and database files, where they exist, must be regular files (symbolic
  links are resolved and their targets checked) owned by this user or root and not
  writable by group or others; secret files (the data key, the token) must not be
  readable by group or others either;
- the directories holding the connection file and the Unix socket, when those are outside
  the data directory, and every directory above them up to the user's home directory
  (as OpenSSH's ``StrictModes`` walks up from ``authorized_keys``) must be owned by this
  user or root and not writable by group or others unless sticky (``/tmp``): whoever can
  rename an entry of one of them could put a connection file or a socket of their own in
  the place clients read or dial.

The checks are pure functions over ``os.stat`` results returning :class:`Finding` s; the
start-up path turns them into one :class:`~bridge.errors.InsecurePathError`, or, with the
explicit opt-out for mounted secrets (Kubernetes mounts secrets 0644 and root-owned by
default), into warnings. A path that is not a regular file or a directory is refused even
then: it is never opened. Files bridge reads itself are opened with ``O_NONBLOCK`` and
checked on the open descriptor (``fstat``), so a FIFO swapped in after the check cannot
block either; files it writes outside the database get an unpredictable temporary name
opened with ``O_EXCL|O_NOFOLLOW`` and are renamed into place.

On other platforms (Windows) the ownership and mode checks do not apply and return no
findings; the non-blocking read and the exclusive temporary file still do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

import structlog

from bridge.errors import InsecurePathError

log = structlog.get_logger(__name__)

POSIX: Final = os.name == "posix"
MAX_SMALL_FILE_BYTES: Final = 64 * 1024
"""Largest token or key file read, in bytes (both are well under 1 KiB)."""

_GROUP_OTHER_WRITE: Final = stat.S_IWGRP | stat.S_IWOTH
_GROUP_OTHER_READ: Final = stat.S_IRGRP | stat.S_IROTH
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_NOCTTY: Final = getattr(os, "O_NOCTTY", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
SKIP_HINT: Final = "--skip-permission-checks"


class Kind(Enum):
    """What a checked path is for, which decides the rules it must meet."""

    DIRECTORY = "directory"
    """The data directory: a directory of this user or root, not writable by group/others."""
    FILE = "file"
    """The database and its companions: a regular file of this user or root, not writable by group/others."""
    SECRET = "secret"  # noqa: S105 - the name of a rule set, not a password
    """The data key and the token: as ``FILE``, and not readable by group/others either."""
    PARENT = "parent"
    """A directory holding the connection file or the socket: as ``DIRECTORY``, except that
    a sticky directory (``/tmp``) may be writable by others (only owners rename there)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check on one path.

    Attributes:
        path: the path as configured.
        problem: what is wrong, in words (``"is writable by group or others (mode 0777)"``).
        resolved: where a symbolic link at ``path`` leads (the target that was checked),
            or None when ``path`` is not a link.
        waivable: False when the path is not a regular file or directory: such a path is
            refused even with the opt-out, because opening it could block or mislead.
    """

    path: Path
    problem: str
    resolved: Path | None = None
    waivable: bool = True

    def describe(self) -> str:
        """The path (and link target) and the problem, for an error line or a log event."""
        where = f"{self.path} (a link to {self.resolved})" if self.resolved is not None else str(self.path)
        return f"{where} {self.problem}"


def _type_name(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def stat_problems(st: os.stat_result, kind: Kind, uid: int) -> list[tuple[str, bool]]:
    """Return what is wrong with a path whose (link-resolved) status is ``st``.

    Pure: looks only at ``st_mode`` and ``st_uid``.

    Args:
        st: ``os.stat`` (or ``os.fstat``) of the path, symbolic links followed.
        kind: the rules to apply (see :class:`Kind`).
        uid: the effective user id of this process; ``0`` (root) is always accepted as owner.

    Returns:
        ``(problem, waivable)`` pairs; empty when the path passes. A path of the wrong
        type yields that one, unwaivable problem.
    """
    mode = st.st_mode
    directory = kind in {Kind.DIRECTORY, Kind.PARENT}
    wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
    if not wanted:
        expected = "a directory" if directory else "a regular file"
        return [(f"is not {expected} (it is {_type_name(mode)})", False)]
    problems: list[tuple[str, bool]] = []
    if st.st_uid not in {uid, 0}:
        problems.append((f"is owned by uid {st.st_uid}, not by this user (uid {uid}) or root", True))
    perms = stat.S_IMODE(mode)
    if kind is Kind.PARENT and perms & _GROUP_OTHER_WRITE and not perms & stat.S_ISVTX:
        problems.append((f"is writable by group or others and not sticky (mode {perms:04o})", True))
    elif kind is not Kind.PARENT and perms & _GROUP_OTHER_WRITE:
        problems.append((f"is writable by group or others (mode {perms:04o})", True))
    if kind is Kind.SECRET and perms & _GROUP_OTHER_READ:
        problems.append((f"is readable by group or others (mode {perms:04o}); it holds a secret", True))
    return problems


def check_path(path: Path, kind: Kind, *, uid: int | None = None) -> list[Finding]:
    """Check ``path`` against the rules of ``kind``; an absent path passes (it will be created).

    Args:
        path: the path as configured; a symbolic link is followed and its target checked.
        kind: the rules to apply.
        uid: the user to check against; None → this process's effective uid.

    Returns:
        The findings, empty when the path passes or does not exist, or off POSIX.
    """
    if not POSIX:  # pragma: no cover - the checks are POSIX's
        return []
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return []
    resolved = Path(os.path.realpath(path)) if link else None
    try:
        st = path.stat()
    except FileNotFoundError:
        return [Finding(path, "is a symbolic link to nothing", resolved, waivable=False)]
    except OSError as exc:
        return [Finding(path, f"cannot be examined ({exc.strerror})", resolved, waivable=False)]
    me = os.geteuid() if uid is None else uid
    return [Finding(path, problem, resolved, waivable) for problem, waivable in stat_problems(st, kind, me)]


def _home_of(uid: int) -> Path | None:
    """The home directory of ``uid`` from the password database (symlinks resolved), if any."""
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        return Path(os.path.realpath(pwd.getpwuid(uid).pw_dir))
    except KeyError:
        return None


def check_parent_dirs(path: Path, *, trusted: Path | None = None, uid: int | None = None) -> list[Finding]:
    """Check the directories holding ``path``, walking up as OpenSSH's ``StrictModes`` does.

    ``path`` is a file bridge creates for clients to find (the connection file, the
    Unix socket). From its directory (symbolic links resolved) upwards, each directory
    must pass :attr:`Kind.PARENT`: owned by this user or root, not writable by group or
    others unless sticky. The walk ends after the user's home directory or ``/``, as
    OpenSSH's ``safe_path`` does, or on reaching ``trusted`` (the data directory, which
    has its own rule). Directories that do not exist yet are skipped (bridge creates them).

    Args:
        path: the file, as configured.
        trusted: a directory checked by other rules; the walk stops there, unchecked.
        uid: the user to check against; None → this process's effective uid.

    Returns:
        The findings, nearest directory first (each names the resolved directory); empty
        when all pass, or off POSIX.
    """
    if not POSIX:  # pragma: no cover - the checks are POSIX's
        return []
    me = os.geteuid() if uid is None else uid
    stop = None if trusted is None else Path(os.path.realpath(trusted))
    home = _home_of(me)
    findings: list[Finding] = []
    directory = Path(os.path.realpath(path.parent))
    while directory != stop:
        findings += check_path(directory, Kind.PARENT, uid=me)
        if directory in {home, directory.parent}:
            break
        directory = directory.parent
    return findings


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and each missing directory above it, one by one, mode 0700.

    Unlike ``Path.mkdir(parents=True)``, whose parents get the umask's mode, every
    component created here is 0700 (less what the umask removes). A component that
    appears meanwhile (another user's, in a sticky directory like ``/tmp``) is left as it
    is: call :func:`check_parent_dirs` after this, so such a directory is refused.

    Raises:
        OSError: a component cannot be created (other than because it exists).
    """
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for component in reversed(missing):
        with contextlib.suppress(FileExistsError):
            component.mkdir(mode=0o700)


DB_COMPANIONS: Final = ("", "-wal", "-shm", "-journal")
"""Suffixes of the SQLite database file and the files SQLite keeps beside it."""


def check_data_dir(
    data_dir: Path,
    *,
    database: Path | None,
    key_file: Path | None,
    secret_files: Iterable[Path] = (),
) -> list[Finding]:
    """Check the data directory and the files bridge is about to open (DESIGN §6).

    Args:
        data_dir: the data directory.
        database: the SQLite database file (its ``-wal``, ``-shm`` and ``-journal`` are
            checked too), or None with another store.
        key_file: the data key file in the data directory, or None when it is not used.
        secret_files: other secret files to check (``--data-key-file``, ``--token-file``).

    Returns:
        Every finding, the directory's first; empty when all pass.
    """
    findings = check_path(data_dir, Kind.DIRECTORY)
    if database is not None:
        for suffix in DB_COMPANIONS:
            findings += check_path(Path(f"{database}{suffix}"), Kind.FILE)
    for secret in ([] if key_file is None else [key_file]) + list(secret_files):
        findings += check_path(secret, Kind.SECRET)
    return findings


def enforce(findings: Iterable[Finding], *, strict: bool) -> None:
    """Refuse on the first finding, or with ``strict=False`` log the waivable ones.

    Args:
        findings: the result of the checks.
        strict: False is the explicit opt-out for mounted secrets: waivable findings are
            logged at warning (``insecure_path_allowed``) instead of refused.

    Raises:
        InsecurePathError: a finding is not waivable, or ``strict`` is True; it names the
            path and the problem.
    """
    findings = list(findings)
    for finding in findings:
        if strict or not finding.waivable:
            raise _error(finding)
    for finding in findings:
        log.warning(
            "insecure_path_allowed",
            path=str(finding.path),
            resolved=None if finding.resolved is None else str(finding.resolved),
            problem=finding.problem,
        )


def _error(finding: Finding) -> InsecurePathError:
    hint = (
        "it is never opened"
        if not finding.waivable
        else f"fix its owner or mode (chown, chmod), or pass {SKIP_HINT} for mounted secrets"
    )
    return InsecurePathError(
        f"refused: {finding.describe()}; {hint}",
        path=str(finding.path),
        problem=finding.problem,
    )


def read_small_file(path: Path, kind: Kind | None = Kind.SECRET, *, strict: bool = True) -> bytes:
    """Read a token or key file without ever blocking, checking it on the open descriptor.

    The file is opened with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for
    a writer) and ``fstat`` decides: anything but a regular file is refused unread; the
    ownership and mode rules of ``kind`` are those of :func:`stat_problems` (warned about
    instead with ``strict=False``). Checking the descriptor, not the name, leaves no gap
    between the check and the read.

    Args:
        path: the file; a symbolic link is followed.
        kind: the rules to apply (``SECRET`` for key and token files); None checks only
            that it is a regular file (for a file whose owner and mode were checked before,
            or that is not a secret).
        strict: False to log ownership/mode problems instead of refusing (the opt-out).

    Returns:
        The file's bytes (at most :data:`MAX_SMALL_FILE_BYTES`).

    Raises:
        InsecurePathError: the file is not a regular file, is too large, or fails a rule.
        OSError: it cannot be opened or read (``FileNotFoundError`` when absent).
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _NOCTTY | _CLOEXEC)
    try:
        st = os.fstat(fd)
        if POSIX and kind is not None:
            problems = stat_problems(st, kind, os.geteuid())
            enforce([Finding(path, problem, None, waivable) for problem, waivable in problems], strict=strict)
        elif not stat.S_ISREG(st.st_mode):
            not_regular = f"is not a regular file (it is {_type_name(st.st_mode)})"
            raise _error(Finding(path, not_regular, None, waivable=False))
        data = b""
        while chunk := os.read(fd, MAX_SMALL_FILE_BYTES + 1 - len(data)):
            data += chunk
            if len(data) > MAX_SMALL_FILE_BYTES:
                too_large = f"is larger than {MAX_SMALL_FILE_BYTES} bytes"
                raise _error(Finding(path, too_large, None, waivable=False))
        return data
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, through an unguessable temporary file.

    The temporary file (``.<name>.<32 random hex digits>.tmp`` beside ``path``) is created
    with ``O_CREAT|O_EXCL|O_NOFOLLOW``: a file or symbolic link planted under any name
    cannot receive the data. It is flushed to disk and renamed over ``path`` (the rename
    replaces a link at ``path`` itself, never its target).

    Raises:
        OSError: the directory is not writable, or ``path`` cannot be replaced (in a sticky
            directory such as ``/tmp``, a file another user planted under that name).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(16)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
