"""A private PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` on 127.0.0.1.

Debian's binaries live under ``/usr/lib/postgresql/<version>/bin`` (``.ci/run`` installs
them); ``PG_BINDIR`` overrides. ``initdb`` and ``pg_ctl`` refuse to run as root, so as
root they run as the ``postgres`` user through ``runuser``, on a data directory it owns.
Missing binaries are an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def find_bindir() -> Path:
    """Return the directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first).

    Raises:
        RuntimeError: no PostgreSQL server binaries are installed.
    """
    explicit = os.environ.get("PG_BINDIR")
    candidates = [Path(explicit)] if explicit else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb, pg_ctl): apt-get install postgresql, or set PG_BINDIR"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (PostgreSQL has no port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """One throw-away cluster: superuser ``bridge`` with a random password.

    ``durable=False`` (the tests) turns fsync and synchronous commit off to spare the
    shared disk; the benchmark keeps PostgreSQL's durable defaults.
    """

    bindir: Path = field(default_factory=find_bindir)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bridge-pg-")))
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    user: str = "bridge"
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """initdb (first time) and start the server; returns once it accepts connections."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password + "\n", encoding="ascii")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            )
            pwfile.unlink()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
            + ("" if self.durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"),
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Fast restart on the same port: every client connection is dropped."""
        # -l again: without it the new postmaster writes to (and holds) our stdout pipe.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-m", "fast", "-w", "restart")

    def destroy(self) -> None:
        """Stop the server if running and delete its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        """Return a URI for ``database`` with the password in it (as users give it)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database_name(self) -> str:
        """Return a fresh database name."""
        return "t_" + uuid.uuid4().hex[:16]
