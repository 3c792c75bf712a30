"""The ``bridge`` command: ``bridge serve``, ``bridge schemas``, ``bridge call`` (argparse only).

Each ``bridge serve`` flag is built from a field of the option dataclasses of
:mod:`bridge.options` — its name, type, default and help text come from there — and the
parsed flags become those dataclasses; :func:`bridge.app.run_sidecar` does the rest. The
embedding API lives in :mod:`bridge.app`; importing it never imports this module.

At import this module loads only the standard library and :mod:`bridge.sidecar`: ``bridge
serve`` must decide how structlog is first imported (JSON logs: without its console
extras) before anything that imports structlog, the options' modules included.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import json
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bridge import sidecar

if TYPE_CHECKING:  # annotations only: the options are imported after the logging decision
    from bridge.api import Registry
    from bridge.connection_file import ConnectionInfo
    from bridge.options import BridgeOptions, SidecarOptions

_SEP: Final = "__"


def _groups() -> dict[str, type[Any]]:
    """Option groups of ``bridge serve`` by namespace prefix (``bridge``: BridgeOptions' own fields)."""
    from bridge import options  # noqa: PLC0415 - see the module docstring

    return {
        "transport": options.TransportOptions,
        "store": options.StoreOptions,
        "secrets": options.SecretOptions,
        "outbound": options.OutboundOptions,
        "sidecar": options.SidecarOptions,
    }


@dataclasses.dataclass(frozen=True)
class _Flag:
    """One ``bridge serve`` flag made from an options field."""

    flag: str
    dest: str
    field_name: str
    convert: typing.Callable[[Any], Any]


def _flag_of(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.metadata.get("default_text"):
        return str(f.metadata["default_text"])
    value = f.default
    if isinstance(value, enum.Enum):
        return str(value.value)
    return "off" if value is None else str(value)


def _base_type(hint: Any) -> Any:
    """``X`` of ``X | None``; the hint itself otherwise."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return inner
    return hint


def _add_fields(parser: argparse.ArgumentParser, cls: type[Any], prefix: str) -> list[_Flag]:
    """Add a group with a flag for every field of ``cls`` that carries help metadata."""
    group = parser.add_argument_group(prefix, (cls.__doc__ or prefix).splitlines()[0])
    hints = typing.get_type_hints(cls)
    flags = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        flag, dest = _flag_of(f), prefix + _SEP + f.name
        help_text = f"{f.metadata['help']} (default: {_default_text(f)})"
        kind = _base_type(hints[f.name])
        convert: typing.Callable[[Any], Any] = lambda value: value  # noqa: E731 - the identity
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        if kind is bool:  # a flag flips the default: --exit-with-parent, --no-outbound
            kwargs["action"] = "store_false" if f.default else "store_true"
            kwargs["help"] = f.metadata["help"]
        elif f.metadata.get("repeat"):
            kwargs["action"] = "append"
            convert = frozenset
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            kwargs["choices"] = [member.value for member in kind]
            convert = kind
        else:
            kwargs["type"] = kind
        if "choices" not in kwargs and kind is not bool:
            kwargs.setdefault("metavar", flag.removeprefix("--").upper().replace("-", "_"))
        group.add_argument(flag, **kwargs)
        flags.append(_Flag(flag, dest, f.name, convert))
    return flags


def _parser() -> tuple[argparse.ArgumentParser, dict[str, list[_Flag]]]:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Serve LLM provider configs to renderers over JSON-RPC 2.0 / WebSocket "
        "(an Electron/Tauri sidecar, or a local service).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("serve", help="serve renderers over JSON-RPC 2.0 / WebSocket")
    from bridge.options import BridgeOptions  # noqa: PLC0415 - see the module docstring

    flags = {"bridge": _add_fields(srv, BridgeOptions, "bridge")}
    flags.update((prefix, _add_fields(srv, cls, prefix)) for prefix, cls in _groups().items())

    sch = sub.add_parser("schemas", help="write (or --check) the generated schemas")
    sch.add_argument("--out", type=Path, default=Path("schemas"), help="output directory (default schemas/)")
    sch.add_argument("--check", action="store_true", help="exit 1 if the files differ from the code")

    call = sub.add_parser("call", help="invoke a channel on a running server and print the result")
    call.add_argument("channel")
    call.add_argument("params", nargs="?", help="JSON object of params")
    call.add_argument("--connection-file", type=Path, help="connection file of the running server")
    call.add_argument("--data-dir", type=Path, help="data directory holding connection.json")
    call.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    _add_doctor_parser(sub)
    _add_rotate_key_parser(sub)
    return parser, flags


def _add_doctor_parser(sub: Any) -> None:
    from bridge.keystore import DATA_KEY_ENV, SecretBackend  # noqa: PLC0415 - see the module docstring

    doc = sub.add_parser(
        "doctor",
        help="list the rows the server would quarantine or repair at start, and structural findings "
        "of a SQLite store (read-only, no server started; an application's own CLI also checks "
        "its collections' model rules)",
    )
    doc.add_argument("--data-dir", type=Path, help="data directory (default: the platform's user data dir)")
    doc.add_argument(
        "--secret-backend", choices=[b.value for b in SecretBackend], default="auto", help="data key source"
    )
    doc.add_argument(
        "--data-key-file", type=Path, help=f"data key file (else {DATA_KEY_ENV} or the data dir's)"
    )


def _add_rotate_key_parser(sub: Any) -> None:
    from bridge.keystore import DATA_KEY_ENV, SecretBackend  # noqa: PLC0415 - see the module docstring
    from bridge.options import STORE_ENV  # noqa: PLC0415

    rot = sub.add_parser(
        "rotate-key",
        help="add a new data key, re-seal every API key with it in one transaction, retire the old key",
    )
    rot.add_argument("--data-dir", type=Path, help="data directory (default: the platform's user data dir)")
    rot.add_argument(
        "--secret-backend", choices=[b.value for b in SecretBackend], default="auto", help="data key source"
    )
    rot.add_argument(
        "--store", help=f"postgresql://… URI of a shared store (else {STORE_ENV}; default SQLite)"
    )
    rot.add_argument(
        "--data-key-file", type=Path, help=f"data key file shared by the instances (else {DATA_KEY_ENV})"
    )
    rot.add_argument(
        "--stage",
        action="store_true",
        help="only add the new key to the key source (then restart every instance, then rotate)",
    )


def _build(cls: type[Any], flags: list[_Flag], args: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` from the flags that were given (the others keep the dataclass defaults).

    Raises:
        InvalidSettingError: a value out of range, its ``name`` replaced by the flag.
    """
    from bridge.options import InvalidSettingError  # noqa: PLC0415 - see the module docstring

    given = vars(args)
    kwargs = {f.field_name: f.convert(given[f.dest]) for f in flags if f.dest in given}
    try:
        return cls(**kwargs, **extra)
    except InvalidSettingError as exc:
        flag = next((f.flag for f in flags if f.field_name == exc.name), exc.name)
        raise InvalidSettingError(flag, exc.requirement, exc.value) from None


def _serve_options(
    args: argparse.Namespace, flags: dict[str, list[_Flag]]
) -> tuple[BridgeOptions, SidecarOptions]:
    """The options of ``bridge serve``'s flags; a flag not given keeps the dataclass default.

    Raises:
        InvalidSettingError: a value out of range (``name`` is the flag, e.g. ``--port``).
    """
    from bridge.options import BridgeOptions  # noqa: PLC0415 - see the module docstring

    groups = {prefix: _build(cls, flags[prefix], args) for prefix, cls in _groups().items()}
    process = groups.pop("sidecar")
    return _build(BridgeOptions, flags["bridge"], args, **groups), process


def _serve_command(
    args: argparse.Namespace, flags: dict[str, list[_Flag]], registry: Registry | None = None
) -> int:
    from bridge.app import run_sidecar  # noqa: PLC0415 - only this command loads the server
    from bridge.errors import StartupError  # noqa: PLC0415
    from bridge.options import InvalidSettingError  # noqa: PLC0415

    try:
        options, process = _serve_options(args, flags)
    except InvalidSettingError as exc:
        sidecar.emit_error(
            StartupError.code, f"invalid {exc.name}: must be {exc.requirement} (got {exc.value!r})"
        )
        return sidecar.EXIT_STARTUP_FAILED
    return run_sidecar(options, process, registry)


def _schemas_command(args: argparse.Namespace) -> int:
    from bridge.schemas import write_schemas  # noqa: PLC0415 - only this command needs it

    return write_schemas(args.out, check=args.check)


def _load_connection(path: Path) -> ConnectionInfo | dict[str, str]:
    """The connection file at ``path``, or the error (``code``, ``message``) to print."""
    from bridge.connection_file import read_connection_file  # noqa: PLC0415

    try:
        return read_connection_file(path)
    except FileNotFoundError:
        message = f"no connection file at {path} (is bridge serve running with this data directory?)"
        return {"code": "UNREACHABLE", "message": message}
    except OSError as exc:
        return {"code": "UNREACHABLE", "message": f"cannot read {path}: {exc.strerror}"}
    except ValueError:  # not JSON, or not a connection file
        return {"code": "BAD_CONNECTION_FILE", "message": f"{path} is not a bridge connection file"}


def _call_command(args: argparse.Namespace) -> int:
    from bridge.client import ANNOUNCED_SCHEMA, BridgeClient  # noqa: PLC0415
    from bridge.connection_file import CONNECTION_FILE_NAME  # noqa: PLC0415
    from bridge.errors import BridgeError  # noqa: PLC0415
    from bridge.options import default_data_dir  # noqa: PLC0415

    _emit = sidecar.emit  # one JSON line on stdout, flushed

    path = args.connection_file or (args.data_dir or default_data_dir()) / CONNECTION_FILE_NAME
    try:
        params = None if args.params is None else json.loads(args.params)
    except json.JSONDecodeError as exc:
        _emit({"error": {"code": "INVALID_PARAMS_JSON", "message": f"params are not JSON: {exc.msg}"}})
        return 2

    info = _load_connection(path)
    if isinstance(info, dict):
        _emit({"error": info})
        return 1

    async def run() -> Any:
        # Untyped JSON in and out: any server's channels are this client's (no drift to warn of).
        client = BridgeClient(info.url, info.token, unix_socket=info.socket, schema_hash=ANNOUNCED_SCHEMA)
        async with client:
            return await asyncio.wait_for(client.invoke(args.channel, params), args.timeout)

    try:
        result = asyncio.run(run())
    except BridgeError as exc:
        _emit({"error": {"code": exc.rpc_code, "message": exc.message, "data": exc.to_data()}})
        return 1
    except (OSError, TimeoutError) as exc:
        _emit(
            {
                "error": {
                    "code": "UNREACHABLE",
                    "message": f"cannot reach the server: {type(exc).__name__}",
                }
            }
        )
        return 1
    _emit({"result": result})
    return 0


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    """Entry point of the ``bridge`` command; returns the process exit code.

    Args:
        argv: the command's arguments (default ``sys.argv[1:]``).
        registry: an application's own channels and topics, served by ``serve`` beside
            bridge's (an application's own sidecar: ``main(registry=my_registry)`` gives it
            every ``bridge serve`` flag); ``doctor`` checks its collections' rows with their
            model, unique keys and secret fields, as the server loads them.
    """
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["serve"] and not sys.stderr.isatty():  # JSON logs (bridge.log's default)
        sidecar.import_logging_for_json()
    parser, flags = _parser()
    args = parser.parse_args(words)
    if args.command == "serve":
        return _serve_command(args, flags, registry)
    if args.command == "schemas":
        return _schemas_command(args)
    if args.command == "doctor":
        return _doctor_command(args, registry)
    if args.command == "rotate-key":
        return _rotate_key_command(args)
    return _call_command(args)


def _doctor_command(args: argparse.Namespace, registry: Registry | None = None) -> int:
    from bridge.app import run_doctor  # noqa: PLC0415
    from bridge.keystore import SecretBackend  # noqa: PLC0415
    from bridge.options import default_data_dir  # noqa: PLC0415

    return run_doctor(
        args.data_dir or default_data_dir(), SecretBackend(args.secret_backend), args.data_key_file, registry
    )


def _rotate_key_command(args: argparse.Namespace) -> int:
    from bridge.app import run_rotate_key  # noqa: PLC0415
    from bridge.keystore import SecretBackend  # noqa: PLC0415
    from bridge.options import BridgeOptions, SecretOptions, StoreOptions, default_data_dir  # noqa: PLC0415

    options = BridgeOptions(
        data_dir=args.data_dir or default_data_dir(),
        store=StoreOptions(uri=args.store),
        secrets=SecretOptions(backend=SecretBackend(args.secret_backend), data_key_file=args.data_key_file),
    )
    return run_rotate_key(options, stage=args.stage)
