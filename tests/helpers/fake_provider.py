"""A fake LLM provider: a local HTTP server on 127.0.0.1 (port 0) answering model-list requests.

It speaks the three shapes ``llm-config:test`` reads, checks the key where the real
provider does, and records what it received, so tests point ``baseUrl`` at it and never
reach the internet:

- ``openai`` (and OpenAI-compatible ``custom``): ``GET {prefix}/models`` with
  ``Authorization: Bearer <key>`` → ``{"object": "list", "data": [{"id"}...]}``; a wrong
  key → 401 (OpenAI's ``invalid_api_key`` body);
- ``anthropic``: ``GET /v1/models`` with ``x-api-key`` and ``anthropic-version`` →
  ``{"data": [{"type": "model", "id"}...], "has_more": false}``; a wrong key → 401
  (``authentication_error``), no version header → 400;
- ``google``: ``GET /v1beta/models`` with ``x-goog-api-key`` →
  ``{"models": [{"name": "models/<id>"}...]}``; a wrong key → 400 ``API_KEY_INVALID``
  (what Google answers), or 401 with ``google_bad_key_status=401``.

Behaviours for fault tests (attributes, set before the request): ``stall`` (hold the
request until :meth:`release` or until the client drops the connection, which sets
:attr:`dropped`), ``redirects`` (path → Location, answered 302), ``body_bytes`` (an
oversized 200 body of that many bytes, streamed; with or without Content-Length),
``gzip_bomb_bytes`` (a gzip body that inflates to that many bytes), ``status`` (answer
this status for every request), ``raw_body`` (answer 200 with these bytes), ``echo_key``
(list the received key as a model id), ``tls`` (serve https with this server context).
Standard library only (``http.server`` in a thread).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

NO_PROXY_ENV = {"NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1"}
"""Environment that keeps a proxy configured on the machine away from the fake provider."""
OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "o3-mini"]
ANTHROPIC_MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5"]
GOOGLE_MODELS = ["gemini-2.5-pro", "gemini-2.5-flash"]
_STALL_LIMIT_S = 60.0
_CHUNK = 64 * 1024


@dataclass
class ReceivedRequest:
    """One request as the fake provider saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeProvider:
    """A model-list server for one provider shape; use as a context manager.

    Attributes:
        provider: ``openai``, ``custom``, ``anthropic`` or ``google``.
        key: the only key it accepts.
        prefix: path prefix of the OpenAI-style endpoint (``/v1`` → ``/v1/models``).
    """

    provider: str
    key: str
    prefix: str = "/v1"
    stall: bool = False
    redirects: dict[str, str] = field(default_factory=dict)
    body_bytes: int | None = None
    body_content_length: bool = True
    gzip_bomb_bytes: int | None = None
    status: int | None = None
    echo_key: bool = False
    google_bad_key_status: int = 400
    raw_body: bytes | None = None
    tls: ssl.SSLContext | None = None
    requests: list[ReceivedRequest] = field(default_factory=list)
    bytes_sent: int = 0
    received: threading.Event = field(default_factory=threading.Event)
    dropped: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass  # quiet: tests read `requests` instead

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client refusing the certificate is what TLS tests expect

        self._server = Server(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            # The handshake happens on the handler thread's first read, not in accept().
            self._server.socket = self.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def release(self) -> None:
        """End every stall now (the stalled request is then answered normally)."""
        self._release.set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with ``tls``; no path)."""
        return f"{'http' if self.tls is None else 'https'}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``baseUrl`` a config uses for this provider (OpenAI-style includes the prefix)."""
        return self.origin + self.prefix if self.provider in {"openai", "custom"} else self.origin

    # ---- requests -----------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        headers = {name.lower(): value for name, value in handler.headers.items()}
        self.requests.append(ReceivedRequest(handler.command, handler.path, headers))
        self.received.set()
        try:
            self._respond(handler, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.dropped.set()
        finally:
            self.finished.set()

    def _respond(self, handler: BaseHTTPRequestHandler, headers: dict[str, str]) -> None:  # noqa: PLR0911 - one branch per behaviour
        if self.stall and not self._hold(handler.connection):
            return
        path = handler.path
        if path in self.redirects:
            self._send(handler, 302, b"", extra={"Location": self.redirects[path]})
            return
        if self.status is not None:
            self._send_json(handler, self.status, {"error": {"message": "fake failure"}})
            return
        expected = {"google": "/v1beta/models", "anthropic": "/v1/models"}.get(self.provider)
        if path.split("?", 1)[0] != (expected or self.prefix + "/models"):
            self._send_json(handler, 404, {"error": {"message": "not found"}})
            return
        refusal = self._refusal(headers)
        if refusal is not None:
            self._send_json(handler, *refusal)
            return
        if self.body_bytes is not None:
            self._send_oversized(handler)
            return
        if self.raw_body is not None:
            self._send(handler, 200, self.raw_body)
            return
        if self.gzip_bomb_bytes is not None:
            body = gzip.compress(b'{"data": [' + b" " * self.gzip_bomb_bytes + b"]}")
            self._send(handler, 200, body, extra={"Content-Encoding": "gzip"})
            return
        self._send_json(handler, 200, self._models())

    def _hold(self, conn: socket.socket) -> bool:
        """Wait for :meth:`release`; False (and :attr:`dropped` set) if the client hangs up first."""
        waited = 0.0
        while not self._release.is_set() and waited < _STALL_LIMIT_S:
            readable, _, _ = select.select([conn], [], [], 0.02)
            waited += 0.02
            if readable:
                try:
                    data = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    self.dropped.set()
                    return False
        return True

    def _refusal(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:  # noqa: PLR0911 - one per provider rule
        """The provider's own answer to a missing or wrong key, or None when it is right."""
        if self.provider == "google":
            if headers.get("x-goog-api-key") == self.key:
                return None
            return self.google_bad_key_status, {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                }
            }
        if self.provider == "anthropic":
            if headers.get("anthropic-version") != "2023-06-01":
                return 400, {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "version"},
                }
            if headers.get("x-api-key") == self.key:
                return None
            return 401, {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
        if headers.get("authorization") == f"Bearer {self.key}":
            return None
        return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}

    def _models(self) -> dict[str, Any]:
        if self.provider == "google":
            return {"models": [{"name": f"models/{m}", "displayName": m} for m in GOOGLE_MODELS]}
        if self.provider == "anthropic":
            ids = ANTHROPIC_MODELS
            return {"data": [{"type": "model", "id": m} for m in ids], "has_more": False}
        ids = [*OPENAI_MODELS, self.key] if self.echo_key else OPENAI_MODELS
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in ids]}

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        self._send(handler, status, json.dumps(payload).encode(), content_type="application/json")

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        self.bytes_sent += len(body)

    def _send_oversized(self, handler: BaseHTTPRequestHandler) -> None:
        """A 200 whose body is ``body_bytes`` long, written in chunks until the client leaves."""
        assert self.body_bytes is not None
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if self.body_content_length:
            handler.send_header("Content-Length", str(self.body_bytes))
        handler.end_headers()
        handler.wfile.flush()
        chunk = b" " * _CHUNK
        remaining = self.body_bytes
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while remaining > 0:
                piece = chunk[: min(_CHUNK, remaining)]
                handler.wfile.write(piece)
                self.bytes_sent += len(piece)
                remaining -= len(piece)
            return
        self.dropped.set()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
