"""Errors of bridge, each carrying its JSON-RPC 2.0 error code and string code.

The tree (DESIGN §5)::

    BridgeError                      -32603  INTERNAL_ERROR
    ├── ParseError                   -32700  PARSE_ERROR
    ├── InvalidRequestError          -32600  INVALID_REQUEST
    ├── MethodNotFoundError          -32601  METHOD_NOT_FOUND
    ├── ValidationError              -32602  VALIDATION_ERROR
    ├── OutboundDisabledError          4003  OUTBOUND_DISABLED
    ├── ConfigNotFoundError            4004  CONFIG_NOT_FOUND
    │   └── ItemNotFoundError          4004  ITEM_NOT_FOUND         (a collection's item)
    ├── DuplicateConfigNameError       4009  DUPLICATE_CONFIG_NAME
    │   └── DuplicateItemError         4009  DUPLICATE_ITEM         (a collection's unique key)
    ├── VersionConflictError           4012  VERSION_CONFLICT       (configs and items)
    ├── ResponseTooLargeError          4013  RESPONSE_TOO_LARGE
    ├── RateLimitedError               4029  RATE_LIMITED
    ├── RequestCancelledError        -32800  REQUEST_CANCELLED
    ├── ConfigOperationFailedError     5000  CONFIG_OPERATION_FAILED
    ├── ServiceUnavailableError        5003  SERVICE_UNAVAILABLE
    ├── StartupError                         cannot start safely (never on the wire)
    │   ├── AddressUnavailableError           the requested address or port is taken
    │   ├── SchemaTooNewError                 the database comes from a newer bridge
    │   └── InsecurePathError                 a data-directory path fails the ssh-like checks
    └── (client side only)
        ├── ConnectionLostError               pending call failed: the socket dropped
        ├── AuthenticationError               handshake refused with 401/403 (terminal)
        └── ProtocolMismatchError             the server speaks another protocolVersion

Messages are built from structured fields and never echo submitted values or secrets.
``to_data()`` gives the JSON-RPC ``error.data`` object: ``{code, name}`` plus optional
``context`` and ``errors``. The Python client rebuilds these classes from ``data.code``
with :func:`error_from_wire`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failed rule on one field.

    Attributes:
        field: dotted path from the params root in wire names (``config.customName``).
        code: field code (``REQUIRED``, ``INVALID_FORMAT``, ``INVALID_LENGTH``,
            ``INVALID_ENUM``, ``INVALID_URL``, ``API_KEY_FORMAT``,
            ``PROVIDER_SPECIFIC``, ``UNKNOWN_FIELD``).
        message: human-readable text that never repeats the submitted value.
    """

    field: str
    code: str
    message: str

    def to_wire(self) -> dict[str, str]:
        """Return ``{field, code, message}`` for ``error.data.errors``."""
        return {"field": self.field, "code": self.code, "message": self.message}


class BridgeError(Exception):
    """Root of every bridge error; also the generic internal error (-32603).

    Attributes:
        rpc_code: JSON-RPC 2.0 ``error.code`` (JSON-RPC 2.0 §5.1 or the 4xxx/5xxx range).
        code: string code sent as ``error.data.code``.
        context: optional non-secret details sent as ``error.data.context``.
    """

    rpc_code: ClassVar[int] = -32603
    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, *, context: dict[str, Any] | None = None) -> None:
        """Build the error; ``message`` defaults to the class's fixed text."""
        self.message = message or self.default_message
        self.context = context
        super().__init__(self.message)

    @property
    def name(self) -> str:
        """The class name, sent as ``error.data.name``."""
        return type(self).__name__

    def to_data(self) -> dict[str, Any]:
        """Return the ``error.data`` object: ``{code, name, context?}``."""
        data: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.context:
            data["context"] = self.context
        return data


class ParseError(BridgeError):
    """The frame is not JSON (RFC 8259), holds NaN/Infinity, is too deep, or is binary."""

    rpc_code = -32700
    code = "PARSE_ERROR"
    default_message = "Parse error"


class InvalidRequestError(BridgeError):
    """The JSON is not a valid JSON-RPC 2.0 request (JSON-RPC 2.0 §4, §6)."""

    rpc_code = -32600
    code = "INVALID_REQUEST"
    default_message = "Invalid request"


class MethodNotFoundError(BridgeError):
    """No channel has this name."""

    rpc_code = -32601
    code = "METHOD_NOT_FOUND"
    default_message = "Method not found"


class ValidationError(BridgeError):
    """Params fail the schema or a domain rule; ``errors`` lists every failure.

    Args:
        errors: field errors in model field order.
    """

    rpc_code = -32602
    code = "VALIDATION_ERROR"
    default_message = "Invalid params"

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        """Build from the list of field errors (at least one)."""
        self.errors = list(errors)
        fields = ", ".join(dict.fromkeys(e.field for e in self.errors))
        super().__init__(message or f"Invalid params: {fields}")

    def to_data(self) -> dict[str, Any]:
        """Return ``{code, name, errors: [{field, code, message}]}``."""
        data = super().to_data()
        data["errors"] = [e.to_wire() for e in self.errors]
        return data


class OutboundDisabledError(BridgeError):
    """Outbound calls are disabled on this server (``bridge serve --no-outbound``).

    Answered by channels that would contact a third party, e.g. ``llm-config:test``.
    """

    rpc_code = 4003
    code = "OUTBOUND_DISABLED"
    default_message = "Outbound calls are disabled on this server"


class ConfigNotFoundError(BridgeError):
    """No config has the given id (update of an unknown id)."""

    rpc_code = 4004
    code = "CONFIG_NOT_FOUND"
    default_message = "Config not found"

    def __init__(self, config_id: str) -> None:
        """Build for ``config_id`` (a UUID: not a secret)."""
        self.config_id = config_id
        super().__init__(f"Config {config_id} not found", context={"id": config_id})


class ItemNotFoundError(ConfigNotFoundError):
    """No item of a collection has the given id (4004, ``ITEM_NOT_FOUND``).

    ``context``: ``{id}`` (as for a config).
    """

    code = "ITEM_NOT_FOUND"
    default_message = "Item not found"

    def __init__(self, collection: str, item_id: str) -> None:
        """Build for ``item_id`` (a UUID: not a secret) of ``collection``."""
        self.config_id = item_id
        self.collection = collection
        BridgeError.__init__(self, f"Item {item_id} of {collection} not found", context={"id": item_id})


class DuplicateConfigNameError(BridgeError):
    """Another config already uses this name (compared by ``name_key``)."""

    rpc_code = 4009
    code = "DUPLICATE_CONFIG_NAME"
    default_message = "A config with this name already exists"


class DuplicateItemError(DuplicateConfigNameError):
    """Another item of the collection holds this unique key (4009, ``DUPLICATE_ITEM``).

    ``context``: ``{field}`` (the unique field's Python name; never its value).
    """

    code = "DUPLICATE_ITEM"
    default_message = "Another item has this unique value"


class VersionConflictError(BridgeError):
    """``expectedVersion`` does not match the stored version."""

    rpc_code = 4012
    code = "VERSION_CONFLICT"
    default_message = "Version conflict"

    def __init__(
        self, config_id: str, expected: int, actual: int | None, *, collection: str | None = None
    ) -> None:
        """Build with the expected and the stored version (None: the stored one is no integer).

        ``collection`` names a collection's item ("Item <id> of <collection> …"); None for
        an LLM config ("Config <id> …"). ``context``: ``{id, expectedVersion, actualVersion}``.
        """
        self.expected = expected
        self.actual = actual
        at = "has no valid version" if actual is None else f"is at version {actual}"
        subject = f"Config {config_id}" if collection is None else f"Item {config_id} of {collection}"
        self.collection = collection
        super().__init__(
            f"{subject} {at}, not {expected}",
            context={"id": config_id, "expectedVersion": expected, "actualVersion": actual},
        )


class ResponseTooLargeError(BridgeError):
    """A reply would pass the reply frame's byte budget (``context.limit``, in bytes).

    A batch element past the budget is answered with this and not run; a single
    result larger than the budget is answered with this instead of the result.
    """

    rpc_code = 4013
    code = "RESPONSE_TOO_LARGE"
    default_message = "Response too large"

    def __init__(self, limit: int) -> None:
        """Build for a budget of ``limit`` bytes."""
        self.limit = limit
        super().__init__(f"The reply would pass its budget of {limit} bytes", context={"limit": limit})


class RateLimitedError(BridgeError):
    """The connection exceeded its optional request rate limit."""

    rpc_code = 4029
    code = "RATE_LIMITED"
    default_message = "Rate limit exceeded"


class RequestCancelledError(BridgeError):
    """A long-running request cancelled by ``$/cancelRequest`` (LSP, -32800)."""

    rpc_code = -32800
    code = "REQUEST_CANCELLED"
    default_message = "Request cancelled"


class ConfigOperationFailedError(BridgeError):
    """The store failed; the cache is unchanged."""

    rpc_code = 5000
    code = "CONFIG_OPERATION_FAILED"
    default_message = "The config store failed; nothing was changed"


class ServiceUnavailableError(BridgeError):
    """The server is shutting down."""

    rpc_code = 5003
    code = "SERVICE_UNAVAILABLE"
    default_message = "Service unavailable: shutting down"


class ConnectionLostError(BridgeError):
    """Client side: the connection dropped before the call's response arrived.

    A write that fails this way may or may not have been applied; it is never retried
    automatically.
    """

    code = "CONNECTION_LOST"
    default_message = "Connection lost before the response arrived"


class AuthenticationError(BridgeError):
    """Client side: the handshake was refused (HTTP 401/403 or close 1008); terminal."""

    code = "AUTHENTICATION_FAILED"
    default_message = "The server refused the handshake"


class ProtocolMismatchError(BridgeError):
    """Client side: the server speaks another ``protocolVersion``; terminal."""

    code = "PROTOCOL_MISMATCH"
    default_message = "The server speaks another protocol version"


class StartupError(BridgeError):
    """The server cannot start safely (data key lost, port busy); the message names why."""

    code = "STARTUP_FAILED"
    default_message = "The server cannot start"


class AddressUnavailableError(StartupError):
    """The requested address cannot be listened on (port busy, no permission)."""

    code = "ADDRESS_UNAVAILABLE"
    default_message = "Cannot listen on the requested address"


class SchemaTooNewError(StartupError):
    """The database was written by a newer bridge (its ``PRAGMA user_version`` is higher).

    Never treated as corruption: the file is left untouched.
    """

    def __init__(self, path: object, found: int) -> None:
        """Build for the database at ``path`` whose schema version is ``found``."""
        self.found = found
        super().__init__(
            f"{path} has schema version {found}, newer than this bridge understands; upgrade bridge"
        )


class InsecurePathError(StartupError):
    """The data directory or a key, token or database file fails the checks of DESIGN §6.

    ``context`` holds ``path`` (as configured) and ``problem`` (in words); the message
    names both. Never on the wire: ``bridge serve`` prints it as its one error line.
    """

    code = "INSECURE_PATH"
    default_message = "A data-directory path is not safe to use"

    def __init__(self, message: str, *, path: str, problem: str) -> None:
        """Build for ``path`` failing with ``problem``; ``message`` says both and the remedy."""
        super().__init__(message, context={"path": path, "problem": problem})


WIRE_ERRORS: dict[str, type[BridgeError]] = {
    cls.code: cls
    for cls in (
        BridgeError,
        ParseError,
        InvalidRequestError,
        MethodNotFoundError,
        ValidationError,
        OutboundDisabledError,
        ConfigNotFoundError,
        ItemNotFoundError,
        DuplicateConfigNameError,
        DuplicateItemError,
        VersionConflictError,
        ResponseTooLargeError,
        RateLimitedError,
        RequestCancelledError,
        ConfigOperationFailedError,
        ServiceUnavailableError,
    )
}
"""Every error that may travel on the wire, by ``data.code``."""


def error_from_wire(error: dict[str, Any]) -> BridgeError:
    """Rebuild the server's exception from a JSON-RPC ``error`` object.

    Args:
        error: ``{code, message, data?}`` as received.

    Returns:
        An instance of the class named by ``data.code`` (``BridgeError`` when unknown),
        with ``message``, ``context`` and, for ``ValidationError``, ``errors`` restored.
    """
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    assert isinstance(data, dict)
    cls = WIRE_ERRORS.get(str(data.get("code")), BridgeError)
    message = str(error.get("message", cls.default_message))
    exc: BridgeError
    if cls is ValidationError:
        raw = data.get("errors") or []
        exc = ValidationError(
            [FieldError(str(e.get("field")), str(e.get("code")), str(e.get("message"))) for e in raw],
            message,
        )
    else:
        exc = BridgeError.__new__(cls)
        BridgeError.__init__(exc, message, context=data.get("context"))
    return exc
