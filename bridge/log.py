"""structlog setup: JSON lines on stderr (console rendering on a TTY), secrets redacted.

Standard-library loggers (``websockets``, ``asyncio``) are routed through the same
processors. Tracebacks are rendered without local variables, and a redaction processor
masks values under secret-looking keys and API-key-shaped strings before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED: Final = "[redacted]"
_SECRET_KEY = re.compile(r"(api[_-]?key|token|authorization|secret|password|cookie)", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|AIza[A-Za-z0-9_\-]{20,}|Bearer\s+[A-Za-z0-9_\-\.=]+|bridge\.v1\.token\.[A-Za-z0-9_\-]+"
    r"|([?&]token=)[^&\s\"']+)"
)


def _scrub_text(text: str) -> str:
    return _SECRET_VALUE.sub(lambda m: (m.group(2) or "") + REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, MutableMapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _SECRET_KEY.search(k) and k != "secret_backend"
                else _scrub(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: mask secret-named keys and API-key/token-shaped substrings."""
    return _scrub(event_dict)  # type: ignore[no-any-return]


_QUIET_LIBRARIES: Final = ("websockets", "httpx", "httpcore")
"""Loggers held at WARNING or above: what they print below it is not bridge's to log."""


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Send structlog and stdlib logging to stderr through one redacting pipeline.

    Args:
        level: minimum level name (``debug``, ``info``, ``warning``, ``error``).
        json: JSON lines when True, console rendering when False; default: JSON unless
            stderr is a TTY.
    """
    if json is None:
        json = not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    # The exception is rendered to data *before* redaction in both modes, so a secret
    # in an exception message is scrubbed like any other value; never with locals.
    renderer: Processor
    exc_processor: Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
        exc_processor = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer()
        exc_processor = structlog.processors.format_exc_info
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exc_processor,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # websockets at DEBUG prints request paths (query tokens), headers and frames; its
    # INFO lines repeat our own connection events. httpx logs each request's URL at INFO
    # and httpcore each response's headers at DEBUG: what a provider sends back is not
    # ours to log (llm_config_tested says what happened).
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def cap_library_loggers() -> None:
    """Cap the ``websockets``, ``httpx`` and ``httpcore`` loggers at WARNING when their level is unset.

    As ``bridge serve`` caps them (:func:`configure_logging`), whoever configured
    structlog: at DEBUG websockets prints request paths and headers, which carry the
    token, and frames; httpx logs each provider request's URL at INFO and httpcore each
    response's headers at DEBUG. Their lines never pass through structlog's redaction.
    """
    for name in _QUIET_LIBRARIES:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(logging.WARNING)


def _library_processors() -> list[Processor]:
    """Bridge's own pipeline as a library: redacted JSON lines handed to stdlib :mod:`logging`."""
    return [
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.JSONRenderer(),
    ]


class _LibraryLogger:
    """A logger that follows structlog's configuration when there is one, else bridge's own pipeline."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._own = structlog.wrap_logger(
            logging.getLogger(name),
            processors=_library_processors(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )

    def __getattr__(self, method: str) -> Any:
        # Looked up at each call: a program may configure structlog after importing bridge.
        target = structlog.get_logger(self._name) if structlog.is_configured() else self._own
        return getattr(target, method)


def library_logger(name: str) -> Any:
    """A logger of the Python client (``bridge.client.*``) that never configures structlog.

    When the program has configured structlog, the client's lines go through that
    configuration, as any library's. When it has not, they are redacted, rendered as one
    JSON object each (tracebacks as text, without local variables) and handed to the
    standard library's logger ``name``: the program's handlers and levels decide what is
    shown (with none configured, Python's last-resort handler prints warnings and errors
    on **stderr**, never stdout), and structlog's global configuration stays the
    program's (its defaults included).
    """
    return _LibraryLogger(name)


def configure_library_logging() -> bool:
    """Make bridge a quiet library when the program embedding it has not configured structlog.

    structlog's own defaults print every line to **stdout**, unredacted, which would mix
    bridge's log into a program's output (a ready line, a CLI's result). Unless structlog
    is configured already (by the program, or by :func:`configure_logging` in ``bridge
    serve``), bridge's lines are redacted, rendered as one JSON object each (tracebacks
    as text, without local variables) and handed to the standard library's :mod:`logging`
    under ``bridge.*`` logger names: the program's handlers and levels decide what is
    shown; with none configured, Python's last-resort handler prints warnings and errors
    on **stderr**. The noisy libraries are capped (:func:`cap_library_loggers`).

    Called by :func:`bridge.start_bridge` (a program that embeds the server). The Python
    client alone never calls it: its loggers are :func:`library_logger`'s. A program
    configuring structlog itself should include :func:`redact_secrets` and render
    tracebacks without locals.

    Returns:
        True when this call configured structlog, False when it was configured already.
    """
    cap_library_loggers()
    if structlog.is_configured():
        return False
    structlog.configure(
        processors=_library_processors(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a program that configures structlog later still takes bridge's lines.
        cache_logger_on_first_use=False,
    )
    return True
