"""The process contract of ``bridge serve`` (DESIGN §7): ready line, connection file, signals.

A desktop app starts bridge as a child process (the sidecar pattern) and relies on this:

- one JSON line on stdout when ready (:func:`emit`, flushed at once even on a pipe), or
  one JSON error line and a non-zero exit when start-up fails (:func:`emit_error`);
- the same object in a 0600 connection file, removed on exit if it still names this
  process (:func:`connection_file_lease`);
- SIGTERM/SIGINT, and with ``--exit-with-parent`` stdin EOF, set one stop event
  (:func:`stop_on_signals`); the embedding API then shuts down gracefully.

It knows nothing of the server: :mod:`bridge.app` drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from bridge.connection_file import (
    ConnectionInfo,
    connection_file_pid,
    remove_connection_file,
    write_connection_file,
)
from bridge.errors import StartupError

EXIT_STARTUP_FAILED: Final = 2
"""Exit code of ``bridge serve`` when it cannot start (after one JSON error line)."""
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
CONSOLE_ONLY_MODULES: Final = ("rich", "better_exceptions", "colorama")
"""Optional modules that ``structlog.dev`` imports when installed; only console logs use them."""


def import_logging_for_json() -> None:
    """Import structlog without the console-only modules it would load (rich: ~35 ms of start-up).

    ``import structlog`` imports ``structlog.dev``, which imports rich (and
    better_exceptions, colorama) whenever they are installed, for its console renderer. A
    sidecar logs JSON lines and never uses them, so while structlog is first imported they
    are made unimportable (a ``None`` entry in ``sys.modules`` makes ``import`` raise
    ImportError, which structlog handles); the entries are removed afterwards, so the
    application can still import them. Does nothing once structlog is imported.
    """
    if "structlog" in sys.modules:
        return
    hidden = [name for name in CONSOLE_ONLY_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401, PLC0415 - the point of this function
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def emit(line: dict[str, Any]) -> None:
    """Write ``line`` as one JSON line on stdout and flush (a pipe is not line-buffered)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def emit_error(code: str, message: str, context: dict[str, Any] | None = None) -> None:
    """Write the start-up error line ``{"event": "error", "error": code, "message": message, ...context}``.

    ``context`` holds non-secret details (e.g. ``path`` and ``problem`` of INSECURE_PATH).
    """
    emit({"event": "error", "error": code, "message": message, **(context or {})})


def describe_startup_failure(exc: BaseException) -> str:
    """A start-up failure for the error line: the OS error and its path, else the type.

    Only an ``OSError``'s own parts are shown (its text and the path involved): other
    exceptions may carry a database URI with its password, so they give their type only.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{type(exc).__name__} ({exc.strerror}){where}"
    return type(exc).__name__


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the event loop factory for ``--loop`` (None: asyncio's default loop).

    ``auto`` picks uvloop when it is installed (the ``uvloop`` extra), else asyncio.

    Raises:
        StartupError: ``uvloop`` was asked for and is not installed.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        if choice == "uvloop":
            raise StartupError(
                "--loop uvloop: uvloop is not installed (pip install 'bridge-ipc[uvloop]')"
            ) from None
        return None
    return uvloop.new_event_loop


def _warn_if_taking_over(path: Path) -> None:
    """Log when the connection file names another running server (a shared data dir).

    The file names the server started last; when that one stops, the file is removed
    even if the other still runs. Servers sharing a data directory should each get their
    own ``--connection-file``.
    """
    pid = connection_file_pid(path)
    if pid is None or pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent; raises when there is no such process
    except (ProcessLookupError, OverflowError):
        return
    except PermissionError:
        pass  # it exists, owned by another user
    import structlog  # noqa: PLC0415 - imported by the server already; kept out of this module's import

    structlog.get_logger(__name__).warning("connection_file_taken_over", path=str(path), previous_pid=pid)


@contextlib.contextmanager
def connection_file_lease(path: Path, info: ConnectionInfo) -> Iterator[None]:
    """Write the connection file for the duration of the block; remove it after if still ours.

    Raises:
        OSError: the file cannot be written.
    """
    _warn_if_taking_over(path)
    try:
        write_connection_file(path, info)
        yield
    finally:
        # Removed before the server closes, so no client re-reads it and dials a server
        # that is going away; and only if it is still ours (another may have replaced it).
        remove_connection_file(path, os.getpid())


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, *, exit_with_parent: bool = False) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT inside the block; with ``exit_with_parent`` also when the parent goes.

    The parent is gone when stdin reaches EOF or when the parent process dies, seen by
    polling the parent pid every :data:`PARENT_POLL_S` seconds and, on Linux, at once
    through ``PR_SET_PDEATHSIG``: a PyInstaller one-file build runs as a bootloader and a
    Python child that inherited the app's stdin, so killing only the bootloader closes no
    pipe. Must run inside the event loop; everything is undone on exit.
    """
    loop = asyncio.get_running_loop()
    signals = list(STOP_SIGNALS)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    parent_watch: asyncio.Task[None] | None = None
    if exit_with_parent:
        _watch_stdin(loop, stop)
        parent = os.getppid()

        def check_parent() -> None:
            if os.getppid() != parent:
                stop.set()

        if _PARENT_DEATH_SIGNAL is not None:
            loop.add_signal_handler(_PARENT_DEATH_SIGNAL, check_parent)
            signals.append(_PARENT_DEATH_SIGNAL)
            _ask_for_signal_on_parent_death(_PARENT_DEATH_SIGNAL)
            check_parent()  # it may have died before the request took effect
        parent_watch = loop.create_task(_watch_parent(parent, stop), name="exit-with-parent")
    try:
        yield
    finally:
        if parent_watch is not None:
            parent_watch.cancel()
        for signum in signals:
            loop.remove_signal_handler(signum)


PARENT_POLL_S: Final = 0.5
"""How often the parent pid is compared with the one at start, in seconds."""
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# The kernel sends it when the *thread* that spawned us exits, not only the process (a
# runtime may spawn from a short-lived pool thread), so it is not SIGTERM: its handler
# stops only if the parent pid really changed.
_PARENT_DEATH_SIGNAL: Final = signal.SIGUSR1 if sys.platform.startswith("linux") else None


def _ask_for_signal_on_parent_death(signum: int) -> None:
    """Ask Linux to send ``signum`` when the parent dies (``prctl(PR_SET_PDEATHSIG)``); best effort.

    ctypes, not a package: the prctl wrappers on PyPI (pyprctl, python-prctl) have had no
    release since 2021 and one needs libcap headers to build, for one system call. If the
    call fails, the pid poll alone notices (within :data:`PARENT_POLL_S`).
    """
    import ctypes  # noqa: PLC0415 - Linux only, sidecar mode only
    import ctypes.util  # noqa: PLC0415

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the parent pid changes (the process was re-parented: its parent died)."""
    # No event exists for "my parent changed" outside Linux' prctl: poll, cheaply.
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing to wait on but time
        await asyncio.sleep(PARENT_POLL_S)
    stop.set()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches EOF: the parent app is gone (sidecar pattern).

    Reads the file descriptor with ``os.read``, not ``sys.stdin``: a daemon thread blocked
    inside a buffered reader holds its lock, and the interpreter aborts (SIGABRT) when it
    exits for another reason (SIGTERM, ``bridge:shutdown``) while the thread waits.
    """
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no stdin at all: nothing to watch
        return

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop already closed: the server is gone
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="exit-with-parent", daemon=True).start()
