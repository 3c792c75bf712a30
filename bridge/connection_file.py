"""The connection file and ready line of ``bridge serve`` (DESIGN §7): one format, read and written here.

``bridge serve`` prints ``{"event": "ready", "url": ..., "token": ..., "pid": N}`` (plus
``"socket"`` with ``--uds``) on stdout and writes the same object, atomically and with
mode 0600, to ``<data dir>/connection.json``. The server side (:mod:`bridge.sidecar`),
the ``bridge call`` command and the Python client all go through this module; it imports
nothing from bridge, so the client can use it without the server's layers.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

CONNECTION_FILE_NAME: Final = "connection.json"
"""The file's name inside the data directory."""


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to reach a server.

    Attributes:
        url: ``ws://127.0.0.1:PORT`` (with ``socket``: the URL sent in the handshake).
        token: the bearer token (never shown by ``repr``).
        socket: path of the server's Unix socket, or None when it serves TCP.
        pid: the server's process id; None when not known (a hand-made info).
    """

    url: str
    token: str = field(repr=False)
    socket: str | None = None
    pid: int | None = None

    def to_ready_line(self) -> dict[str, Any]:
        """The ready line / file object: ``{event: "ready", url, token, pid, socket?}``."""
        line: dict[str, Any] = {"event": "ready", "url": self.url, "token": self.token, "pid": self.pid}
        if self.socket is not None:
            line["socket"] = self.socket
        return line

    @classmethod
    def from_json(cls, data: bytes | str) -> ConnectionInfo:
        """Parse a ready line or connection file's content.

        Raises:
            ValueError: not JSON (``orjson.JSONDecodeError`` is one), or not an object with
                string ``url`` and ``token``.
        """
        obj = orjson.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a bridge connection file")  # noqa: TRY004 - a format error, as JSON's
        if not isinstance(obj.get("url"), str) or not isinstance(obj.get("token"), str):
            raise ValueError("not a bridge connection file")  # noqa: TRY004 - a format error, as JSON's
        socket = obj.get("socket")
        pid = obj.get("pid")
        return cls(
            obj["url"],
            obj["token"],
            socket if isinstance(socket, str) else None,
            pid if type(pid) is int else None,
        )


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    """Read the connection file written by ``bridge serve`` (DESIGN §7).

    Args:
        path: the file, e.g. ``<data dir>/connection.json``.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not a connection file (``orjson.JSONDecodeError`` is one).
    """
    path = Path(path)
    try:
        return ConnectionInfo.from_json(path.read_bytes())
    except orjson.JSONDecodeError:
        raise
    except ValueError:
        raise ValueError(f"{path} is not a bridge connection file") from None


def write_connection_file(path: Path, info: ConnectionInfo) -> None:
    """Write ``info`` atomically to ``path`` with mode 0600 (parent created 0700 if missing).

    Through an unguessable temporary name opened ``O_EXCL|O_NOFOLLOW``: a link planted in
    a shared directory never receives the token (:func:`bridge.datadir.write_private_file`).

    Raises:
        OSError: the directory or file cannot be written.
    """
    from bridge import datadir  # noqa: PLC0415 - server side only; keeps this module light

    datadir.write_private_file(path, orjson.dumps(info.to_ready_line()))


def connection_file_pid(path: Path) -> int | None:
    """The ``pid`` the connection file at ``path`` names; None when absent or unreadable.

    Read without blocking: a FIFO planted under that name is not a connection file.
    """
    from bridge import datadir  # noqa: PLC0415 - server side only; keeps this module light
    from bridge.errors import InsecurePathError  # noqa: PLC0415

    try:
        return ConnectionInfo.from_json(datadir.read_small_file(path, None)).pid
    except (OSError, ValueError, InsecurePathError):
        return None


def remove_connection_file(path: Path, pid: int) -> None:
    """Delete the connection file at ``path`` if it still names process ``pid``."""
    if connection_file_pid(path) == pid:
        with contextlib.suppress(OSError):
            path.unlink()
