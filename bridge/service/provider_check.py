"""``llm-config:test``: check an API key against its provider's model list, keeping the key in.

:func:`check_provider` lists a provider's models with ``httpx`` (proxies and CA bundles
from the environment, as httpx does by default: ``HTTP(S)_PROXY``, ``NO_PROXY``,
``SSL_CERT_FILE``, ``SSL_CERT_DIR``)::

    openai, custom  GET {baseUrl}/models          Authorization: Bearer <key> (when useAuthHeader)
                    (baseUrl includes the version, as in OpenAI's SDK; default https://api.openai.com/v1)
    anthropic       GET {baseUrl}/v1/models       x-api-key, anthropic-version: 2023-06-01
                    (+ Authorization: Bearer when useAuthHeader; default https://api.anthropic.com)
    google          GET {baseUrl}/v1beta/models   x-goog-api-key
                    (default https://generativelanguage.googleapis.com)

What it guarantees, whatever the provider (or whoever answers in its place) does:

- the key is sent in the headers above and nowhere else; it never appears in the result,
  an error message, a log line or a progress message (messages are fixed texts per kind,
  never the provider's body, which is never echoed);
- the response body is read as a stream and given up past ``max_body_bytes`` (1 MiB),
  compressed or not; a declared ``Content-Length`` over the bound is refused unread;
- redirects are followed only on the same host (same scheme and port, or an
  ``http`` → ``https`` upgrade), at most :data:`MAX_REDIRECTS`; another host would
  receive the key (httpx strips ``Authorization`` across origins, but not ``x-api-key``
  or ``x-goog-api-key``), so such a redirect ends the test as ``http`` with its status;
- the whole test, connection included, is bounded by ``timeout_ms``;
- cancelling the awaiting task aborts the outbound request (the connection is closed).

:class:`~bridge.service.tester.LlmConfigTester` is the service behind the channel; it
imports this module on the first test (httpx costs start-up time a sidecar never needs
when nobody presses "Test connection").
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import structlog

from bridge.models import (
    TEST_TIMEOUT_MS_DEFAULT,
    LlmConfigTestFailure,
    LlmConfigTestResult,
    Provider,
    TestFailureKind,
)
from bridge.service.probe import MAX_BODY_BYTES, PROGRESS_CONNECTING, PROGRESS_LISTING, ProgressCallback

log = structlog.get_logger(__name__)

MAX_REDIRECTS: Final = 3
"""Most same-host redirects followed; one more → ``http``."""
ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_BASE_URLS: Final = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.ANTHROPIC: "https://api.anthropic.com",
    Provider.GOOGLE: "https://generativelanguage.googleapis.com",
}
"""Base URL used when a config has none (``custom`` always has one)."""
_MODELS_PATHS: Final = {
    Provider.OPENAI: "/models",
    Provider.CUSTOM: "/models",
    Provider.ANTHROPIC: "/v1/models",
    Provider.GOOGLE: "/v1beta/models",
}
_GOOGLE_PREFIX: Final = "models/"
_ERROR_BODY_BYTES: Final = 64 * 1024
"""Most bytes of an error body read (Google reports a bad key as 400 with a reason)."""
_HTTP_UNAUTHORIZED: Final = 401
_HTTP_FORBIDDEN: Final = 403
_HTTP_BAD_REQUEST: Final = 400

# Fixed texts, one per failure: never built from the provider's answer or the key.
MESSAGES: Final[dict[str, str]] = {
    "auth": "The provider refused the API key",
    "auth_header": "The API key has characters that cannot be sent in an HTTP header",
    "network": "Could not connect to the provider",
    "proxy": "The proxy set in the environment cannot be used",
    "timeout": "The provider did not answer in time",
    "tls": "The TLS connection to the provider failed (certificate or protocol)",
    "http": "The provider answered with an unexpected HTTP status",
    "redirect": "The provider redirected to another host; the redirect was not followed",
    "redirects": "The provider redirected too many times",
    "protocol": "The provider's answer is not a model list",
    "too_large": "The provider's answer is larger than the size limit; reading stopped",
    "bad_http": "The provider's answer is not valid HTTP",
    "echoed_key": "The provider's answer contains the API key; it was discarded",
}


class _Failure(Exception):  # noqa: N818 - internal control flow, never raised to callers
    """Ends a test with ``kind`` and the fixed message ``MESSAGES[text]``."""

    def __init__(self, kind: TestFailureKind, text: str | None = None, status: int | None = None) -> None:
        super().__init__(kind)
        self.failure = LlmConfigTestFailure(kind=kind, status=status, message=MESSAGES[text or kind])


def models_url(provider: Provider, base_url: str | None) -> httpx.URL:
    """Return the model-list URL of ``provider`` under ``base_url`` (its default when None).

    The endpoint path is appended to the base's path (a trailing ``/`` is dropped); the
    base's query is kept and its fragment dropped.

    Raises:
        httpx.InvalidURL: ``base_url`` is not a URL httpx can send to.
    """
    base = httpx.URL(base_url or DEFAULT_BASE_URLS.get(provider, ""))
    return base.copy_with(path=base.path.rstrip("/") + _MODELS_PATHS[provider], fragment=None)


def _headers(provider: Provider, api_key: str, use_auth_header: bool) -> dict[str, str]:
    # identity: the body bound is enforced on what arrives; a server that compresses
    # anyway is decoded with the same bound (see _BoundedBody).
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if provider is Provider.GOOGLE:
        headers["x-goog-api-key"] = api_key
        return headers
    if provider is Provider.ANTHROPIC:
        headers["x-api-key"] = api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
    if use_auth_header:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _sendable(api_key: str) -> bool:
    """True when ``api_key`` is visible ASCII (US-ASCII 0x21–0x7E).

    Anything else fails inside the HTTP library, whose error text repeats the value.
    """
    return all("!" <= ch <= "~" for ch in api_key)


def _same_host(current: httpx.URL, target: httpx.URL) -> bool:
    """A redirect that keeps the key on the host it was meant for (no downgrade to http)."""
    if target.host != current.host:
        return False
    if target.scheme == current.scheme:
        return target.port == current.port
    return current.scheme == "http" and target.scheme == "https"


def _tls_cause(exc: BaseException) -> bool:
    """True when an ``ssl.SSLError`` is in ``exc``'s chain (httpx wraps it in ConnectError)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _translate(exc: httpx.HTTPError) -> _Failure:
    """The one place where httpx's exceptions become failure kinds."""
    if isinstance(exc, httpx.TimeoutException):
        return _Failure("timeout")
    if _tls_cause(exc):
        return _Failure("tls")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return _Failure("protocol", "bad_http")
    return _Failure("network")


class _BoundedBody:
    """Collects a body of at most ``limit`` bytes, raw and decoded (gzip/deflate too).

    A decompression bomb is stopped at the bound: zlib is asked for at most one byte more
    than the room left, so nothing larger than ``limit + 1`` is ever held.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        self._limit = limit
        self._raw = 0
        self._parts: list[bytes] = []
        self._size = 0
        encoding = content_encoding.strip().lower()
        self._inflate: Any
        if encoding in {"", "identity"}:
            self._inflate = None
        elif encoding in {"gzip", "x-gzip"}:
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:  # br, zstd, stacked encodings: not asked for, not decoded
            raise _Failure("protocol")

    def feed(self, chunk: bytes) -> None:
        self._raw += len(chunk)
        if self._raw > self._limit:
            raise _Failure("protocol", "too_large")
        if self._inflate is None:
            self._add(chunk)
            return
        try:
            while chunk:
                self._add(self._inflate.decompress(chunk, self._limit - self._size + 1))
                chunk = self._inflate.unconsumed_tail
        except zlib.error:
            raise _Failure("protocol", "bad_http") from None

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise _Failure("protocol", "too_large")
        self._parts.append(data)

    def body(self) -> bytes:
        return b"".join(self._parts)


async def _read_body(response: httpx.Response, limit: int) -> bytes:
    """Stream ``response``'s body, giving up (unread) past ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Failure("protocol", "too_large")
    collector = _BoundedBody(encoding, limit)
    async for chunk in response.aiter_raw():
        collector.feed(chunk)
    return collector.body()


def _google_key_invalid(body: bytes) -> bool:
    """Google answers a bad key with 400 and reason ``API_KEY_INVALID`` (google.rpc.ErrorInfo)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return False
    return any(isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID" for d in details)


async def _google_auth_failure(response: httpx.Response) -> None:
    """Raise ``auth`` when Google's 400 says the key is invalid; return otherwise."""
    try:
        body = await _read_body(response, _ERROR_BODY_BYTES)
    except _Failure:  # an error body too large or undecodable: just the HTTP status
        return
    if _google_key_invalid(body):
        raise _Failure("auth", status=response.status_code)


def _model_ids(provider: Provider, body: bytes) -> list[str]:
    """Model ids from a list body: ``{data: [{id}]}``, or Google's ``{models: [{name}]}``.

    Raises:
        _Failure: ``protocol`` when the body is not JSON of that shape.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Failure("protocol") from None
    google = provider is Provider.GOOGLE
    items = data.get("models" if google else "data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _Failure("protocol")
    ids: list[str] = []
    for item in items:
        value = item.get("name" if google else "id") if isinstance(item, dict) else None
        if not isinstance(value, str):
            raise _Failure("protocol")
        ids.append(value.removeprefix(_GOOGLE_PREFIX) if google else value)
    return ids


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One test's request: what is sent, and how much of the answer is read."""

    provider: Provider
    headers: dict[str, str]
    timeout_s: float
    progress: ProgressCallback | None
    max_body_bytes: int


async def _answer(exchange: _Exchange, url: httpx.URL, response: httpx.Response) -> list[str] | httpx.URL:
    """The model ids of ``response``, or the URL of a same-host redirect to follow."""
    status = response.status_code
    if response.is_redirect:
        target = url.join(response.headers["location"])
        if not _same_host(url, target):
            raise _Failure("http", "redirect", status)
        return target
    if status in {_HTTP_UNAUTHORIZED, _HTTP_FORBIDDEN}:
        raise _Failure("auth", status=status)
    if not response.is_success:
        if exchange.provider is Provider.GOOGLE and status == _HTTP_BAD_REQUEST:
            await _google_auth_failure(response)
        raise _Failure("http", status=status)
    if exchange.progress is not None:
        exchange.progress(*PROGRESS_LISTING)
    return _model_ids(exchange.provider, await _read_body(response, exchange.max_body_bytes))


def _client(timeout_s: float) -> httpx.AsyncClient:
    """A client honouring the environment's proxy settings, or a ``network`` failure.

    httpx builds the proxy transports in the constructor: a SOCKS proxy without the
    ``socksio`` extra (ImportError) or a proxy URL it cannot use (ValueError, InvalidURL)
    fails there, before any request. The message is fixed: the proxy URL can hold
    credentials, so it is never echoed.
    """
    try:
        return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=True)
    except (ImportError, ValueError, httpx.InvalidURL):
        raise _Failure("network", "proxy") from None


async def _list_models(exchange: _Exchange, url: httpx.URL) -> list[str]:
    """GET the model list, following same-host redirects; the client is closed on exit."""
    if exchange.progress is not None:
        exchange.progress(*PROGRESS_CONNECTING)
    # A client per test: no connection outlives the test, and cancelling the task closes
    # the socket at once (no pooled connection left half-read).
    async with _client(exchange.timeout_s) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with client.stream("GET", url, headers=exchange.headers) as response:
                    outcome = await _answer(exchange, url, response)
            except httpx.HTTPError as exc:
                raise _translate(exc) from None
            except httpx.InvalidURL:  # a Location httpx cannot parse
                raise _Failure("protocol", "bad_http") from None
            if isinstance(outcome, list):
                return outcome
            url = outcome
        raise _Failure("http", "redirects", response.status_code)


def _prepare(
    provider: Provider, base_url: str | None, api_key: str, use_auth_header: bool
) -> tuple[httpx.URL, dict[str, str]]:
    """The model-list URL and the headers, or a failure before anything is sent."""
    if not _sendable(api_key):
        raise _Failure("auth", "auth_header")
    try:
        url = models_url(provider, base_url)
    except httpx.InvalidURL:
        raise _Failure("network") from None
    return url, _headers(provider, api_key, use_auth_header)


def _without_key(models: list[str], api_key: str) -> list[str]:
    """``models``, unless one of them holds the key (an answer reflecting the request)."""
    if any(api_key in model for model in models):
        raise _Failure("protocol", "echoed_key")
    return models


async def check_provider(
    provider: Provider,
    base_url: str | None,
    api_key: str,
    *,
    use_auth_header: bool = True,
    timeout_ms: int = TEST_TIMEOUT_MS_DEFAULT,
    progress: ProgressCallback | None = None,
    limiter: asyncio.Semaphore | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> LlmConfigTestResult:
    """List ``provider``'s models with ``api_key``; every failure is a result, not an error.

    Args:
        provider: decides the endpoint and the headers (see the module docstring).
        base_url: the config's base URL; None → the provider's default.
        api_key: sent only in the provider's headers; never in the result.
        use_auth_header: also send ``Authorization: Bearer`` (openai, custom, anthropic).
        timeout_ms: bound of the whole test in milliseconds (waiting for ``limiter``,
            connecting, TLS, redirects and reading included).
        progress: receives ``("connecting", 0)`` and ``("listing", 50)``.
        limiter: acquired for the duration of the request (a bound on concurrent tests).
        max_body_bytes: largest body read, in bytes.

    Returns:
        ``LlmConfigTestResult``: ``ok`` with ``models`` (the first page's ids), or not ok
        with ``error.kind`` ``auth`` (401/403, Google's 400 ``API_KEY_INVALID``, or a key
        that cannot be sent), ``network``, ``timeout``, ``tls``, ``http`` (another status,
        a redirect to another host, too many redirects) or ``protocol`` (not HTTP, not a
        model list, too large, or containing the key). ``latencyMs`` runs from the call
        to the outcome.

    Raises:
        asyncio.CancelledError: the task was cancelled; the request was aborted.
    """
    started = time.monotonic()
    models: list[str] | None = None
    failure: LlmConfigTestFailure | None = None
    try:
        url, headers = _prepare(provider, base_url, api_key, use_auth_header)
        exchange = _Exchange(provider, headers, timeout_ms / 1000, progress, max_body_bytes)
        async with asyncio.timeout(exchange.timeout_s):
            if limiter is None:
                models = await _list_models(exchange, url)
            else:
                async with limiter:
                    models = await _list_models(exchange, url)
        models = _without_key(models, api_key)
    except _Failure as exc:
        models, failure = None, exc.failure
    except TimeoutError:
        models, failure = None, _Failure("timeout").failure
    latency_ms = round((time.monotonic() - started) * 1000)
    return LlmConfigTestResult(ok=failure is None, latency_ms=latency_ms, models=models, error=failure)
