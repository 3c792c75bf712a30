"""llm-config:test through the service: a real SQLite store, real HTTP to a fake provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.errors import ConfigNotFoundError, OutboundDisabledError, ValidationError
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigInput, LlmConfigPatch, LlmConfigTestResult, Provider
from bridge.service import LlmConfigService
from bridge.service.provider_check import MESSAGES, check_provider
from bridge.service.tester import LlmConfigTester
from bridge.storage import SqliteConfigStore
from tests.conftest import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY
from tests.helpers.fake_provider import (
    ANTHROPIC_MODELS,
    GOOGLE_MODELS,
    NO_PROXY_ENV,
    OPENAI_MODELS,
    FakeProvider,
    closed_port,
)
from tests.helpers.tls import self_signed_tls

CANARY = "canary-4f1c9e7b2d5a8c3e6f0b1a9d"  # custom provider: no key shape the log scrubber knows
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "google": GOOGLE_KEY, "custom": CANARY}
MODELS = {
    "openai": OPENAI_MODELS,
    "anthropic": ANTHROPIC_MODELS,
    "google": GOOGLE_MODELS,
    "custom": OPENAI_MODELS,
}


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours the environment's proxies: the fake provider is reached directly."""
    for name, value in NO_PROXY_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LlmConfigService]:
    store = SqliteConfigStore(tmp_path / "bridge.db")
    await store.open()
    key = load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)
    svc = LlmConfigService(store, KeyCipher(key), watch=False)
    yield svc
    await svc.close()
    await store.close()


@pytest.fixture
def tester(service: LlmConfigService) -> LlmConfigTester:
    return LlmConfigTester(service)


def fake(provider: str, key: str | None = None, **behaviour: Any) -> FakeProvider:
    return FakeProvider(provider, KEYS[provider] if key is None else key, **behaviour)


def draft(provider: str, base_url: str, key: str | None = None, **extra: Any) -> LlmConfigInput:
    return LlmConfigInput.model_validate(
        {
            "customName": f"Draft {provider}",
            "provider": provider,
            "apiKey": KEYS[provider] if key is None else key,
            "baseUrl": base_url,
            **extra,
        }
    )


async def wait_for(event: Any, timeout_s: float = 10.0) -> bool:
    """Wait on a threading.Event of the fake provider without blocking the loop."""
    return bool(await asyncio.to_thread(event.wait, timeout_s))


def failure(result: LlmConfigTestResult) -> tuple[str, int | None]:
    assert result.ok is False
    assert result.models is None
    assert result.error is not None
    return result.error.kind, result.error.status


# ---- right key, wrong key ------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "custom"])
async def test_right_key_lists_the_models_of_each_provider_shape(
    tester: LlmConfigTester, provider: str
) -> None:
    with fake(provider) as server:
        result = await tester.test(draft=draft(provider, server.base_url))
    assert result.ok is True
    assert result.error is None
    assert result.models == MODELS[provider]
    assert result.latency_ms >= 0
    [request] = server.requests
    key = KEYS[provider]
    expected = {
        "openai": ("/v1/models", {"authorization": f"Bearer {key}"}),
        "custom": ("/v1/models", {"authorization": f"Bearer {key}"}),
        "anthropic": (
            "/v1/models",
            {"x-api-key": key, "anthropic-version": "2023-06-01", "authorization": f"Bearer {key}"},
        ),
        "google": ("/v1beta/models", {"x-goog-api-key": key}),
    }[provider]
    assert (request.method, request.path) == ("GET", expected[0])
    assert {name: request.headers.get(name) for name in expected[1]} == expected[1]
    # The key travels in the provider's own header only.
    others = {name: value for name, value in request.headers.items() if name not in expected[1]}
    assert key not in str(others)


@pytest.mark.parametrize(
    ("provider", "status"), [("openai", 401), ("anthropic", 401), ("google", 400), ("custom", 401)]
)
async def test_wrong_key_is_auth_with_the_providers_status(
    tester: LlmConfigTester, provider: str, status: int
) -> None:
    with fake(provider, key="the-right-one") as server:
        result = await tester.test(draft=draft(provider, server.base_url))
    assert failure(result) == ("auth", status)
    assert result.error is not None
    assert result.error.message == MESSAGES["auth"]


async def test_google_401_is_auth_too(tester: LlmConfigTester) -> None:
    with fake("google", key="x" * 39, google_bad_key_status=401) as server:
        result = await tester.test(draft=draft("google", server.base_url))
    assert failure(result) == ("auth", 401)


async def test_without_use_auth_header_no_authorization_is_sent(tester: LlmConfigTester) -> None:
    with fake("custom") as server:
        result = await tester.test(draft=draft("custom", server.base_url, useAuthHeader=False))
    assert failure(result) == ("auth", 401)
    [request] = server.requests
    assert "authorization" not in request.headers
    assert CANARY not in str(request.headers)


async def test_anthropic_without_use_auth_header_sends_only_x_api_key(tester: LlmConfigTester) -> None:
    with fake("anthropic") as server:
        result = await tester.test(draft=draft("anthropic", server.base_url, useAuthHeader=False))
    assert result.ok is True
    [request] = server.requests
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in request.headers


async def test_saved_config_is_tested_with_its_stored_key(
    service: LlmConfigService, tester: LlmConfigTester
) -> None:
    with fake("custom") as server:
        view = await service.create(draft("custom", server.base_url))
        assert CANARY not in view.model_dump_json()
        result = await tester.test(config_id=view.id)
    assert result.ok is True
    assert result.models == OPENAI_MODELS
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"


async def test_saved_config_follows_an_update_of_its_destination_and_key(
    service: LlmConfigService, tester: LlmConfigTester
) -> None:
    with fake("custom") as old, fake("custom", key="second-key-0123456789") as new:
        view = await service.create(draft("custom", old.base_url))
        await service.update(view.id, LlmConfigPatch(base_url=new.base_url, api_key="second-key-0123456789"))
        result = await tester.test(config_id=view.id)
    assert result.ok is True
    assert old.requests == []
    assert new.requests[0].headers["authorization"] == "Bearer second-key-0123456789"


async def test_unknown_id_raises_not_found_and_contacts_nobody(tester: LlmConfigTester) -> None:
    with pytest.raises(ConfigNotFoundError):
        await tester.test(config_id="9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d")


async def test_draft_is_never_saved(
    service: LlmConfigService, tester: LlmConfigTester, tmp_path: Path
) -> None:
    with fake("custom") as server:
        result = await tester.test(draft=draft("custom", server.base_url))
    assert result.ok is True
    assert await service.list() == []
    assert service.cache_info().revision == 0
    reopened = SqliteConfigStore(tmp_path / "bridge.db")
    await reopened.open()
    try:
        state = await reopened.load()
    finally:
        await reopened.close()
    assert state.configs == []
    assert state.revision == 0


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({}, "id", "REQUIRED"),
        ({"config_id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d", "draft": "draft"}, "config", "INVALID_FORMAT"),
        (
            {"config_id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d", "timeout_ms": 60_001},
            "timeoutMs",
            "INVALID_FORMAT",
        ),
        (
            {"config_id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d", "timeout_ms": 0},
            "timeoutMs",
            "INVALID_FORMAT",
        ),
    ],
)
async def test_in_process_arguments_are_checked_like_the_params(
    tester: LlmConfigTester, kwargs: dict[str, Any], field: str, code: str
) -> None:
    if kwargs.get("draft") == "draft":
        kwargs["draft"] = draft("custom", "http://127.0.0.1:9")
    with pytest.raises(ValidationError) as info:
        await tester.test(**kwargs)
    assert [(e.field, e.code) for e in info.value.errors] == [(field, code)]


# ---- transport failures -------------------------------------------------------------------


async def test_closed_port_is_network(tester: LlmConfigTester) -> None:
    result = await tester.test(draft=draft("custom", f"http://127.0.0.1:{closed_port()}/v1"))
    assert failure(result) == ("network", None)
    assert result.error is not None
    assert result.error.message == MESSAGES["network"]


@pytest.mark.parametrize(
    "proxy", ["socks5://user:proxy-secret@127.0.0.1:1", "ftp://user:proxy-secret@127.0.0.1:1"]
)
async def test_an_unusable_proxy_in_the_environment_is_network(
    tester: LlmConfigTester, monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    # httpx builds proxy transports in its constructor: without the socks extra, or for a
    # scheme it does not know, it raises there. The proxy's credentials are not echoed.
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    result = await tester.test(draft=draft("custom", f"http://127.0.0.1:{closed_port()}/v1"))
    assert failure(result) == ("network", None)
    assert result.error is not None
    assert result.error.message == MESSAGES["proxy"]
    assert "proxy-secret" not in result.model_dump_json()


async def test_stalled_provider_times_out_near_timeout_ms_and_the_request_is_dropped(
    tester: LlmConfigTester,
) -> None:
    timeout_ms = 500
    with fake("custom", stall=True) as server:
        started = time.monotonic()
        result = await tester.test(draft=draft("custom", server.base_url), timeout_ms=timeout_ms)
        elapsed_ms = (time.monotonic() - started) * 1000
        assert await wait_for(server.dropped)
    assert failure(result) == ("timeout", None)
    assert timeout_ms <= elapsed_ms < timeout_ms + 2000
    assert timeout_ms <= result.latency_ms < timeout_ms + 2000


async def test_cancelling_a_stalled_test_aborts_the_outbound_request(tester: LlmConfigTester) -> None:
    with fake("custom", stall=True) as server:
        task = asyncio.create_task(tester.test(draft=draft("custom", server.base_url), timeout_ms=60_000))
        assert await wait_for(server.received)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The provider sees the connection closed while it still stalls: the request was
        # aborted, not left to run to its 60 s timeout.
        assert await wait_for(server.dropped, 10)
        assert len(server.requests) == 1


@pytest.fixture
def tls_provider(tmp_path: Path) -> Iterator[tuple[FakeProvider, Path]]:
    """An https fake provider whose self-signed certificate nobody trusts, and its PEM."""
    context, cert_path = self_signed_tls(tmp_path)
    with fake("custom", tls=context) as server:
        yield server, cert_path


async def test_untrusted_certificate_is_tls(
    tester: LlmConfigTester, tls_provider: tuple[FakeProvider, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server, _ = tls_provider
    result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("tls", None)
    assert server.requests == []  # no request (and no key) was sent


async def test_ca_bundle_from_the_environment_is_trusted(
    tester: LlmConfigTester, tls_provider: tuple[FakeProvider, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert_path = tls_provider
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    result = await tester.test(draft=draft("custom", server.base_url))
    assert result.ok is True
    assert result.models == OPENAI_MODELS


# ---- what the provider answers -------------------------------------------------------------


async def test_redirect_to_another_host_is_not_followed(tester: LlmConfigTester) -> None:
    with fake("custom") as first, fake("custom") as elsewhere:
        first.redirects = {"/v1/models": f"http://localhost:{elsewhere.port}/v1/models"}
        result = await tester.test(draft=draft("custom", first.base_url))
    assert failure(result) == ("http", 302)
    assert result.error is not None
    assert result.error.message == MESSAGES["redirect"]
    assert elsewhere.requests == []


async def test_redirect_to_another_port_is_not_followed(tester: LlmConfigTester) -> None:
    with fake("custom") as first, fake("custom") as elsewhere:
        first.redirects = {"/v1/models": f"{elsewhere.origin}/v1/models"}
        result = await tester.test(draft=draft("custom", first.base_url))
    assert failure(result) == ("http", 302)
    assert elsewhere.requests == []


async def test_same_host_redirect_is_followed(tester: LlmConfigTester) -> None:
    with fake("custom") as server:
        server.redirects = {"/old/models": "/v1/models"}
        result = await tester.test(draft=draft("custom", server.origin + "/old"))
    assert result.ok is True
    assert [r.path for r in server.requests] == ["/old/models", "/v1/models"]


async def test_a_redirect_loop_stops(tester: LlmConfigTester) -> None:
    with fake("custom") as server:
        server.redirects = {"/v1/models": "/v1/models"}
        result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("http", 302)
    assert result.error is not None
    assert result.error.message == MESSAGES["redirects"]
    assert len(server.requests) == 4  # the request and three redirects


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
async def test_oversized_body_is_protocol_without_reading_it_all(
    tester: LlmConfigTester, content_length: bool
) -> None:
    size = 64 * 1024 * 1024
    with fake("custom", body_bytes=size, body_content_length=content_length) as server:
        result = await tester.test(draft=draft("custom", server.base_url))
        assert await wait_for(server.finished)
    assert failure(result) == ("protocol", None)
    assert result.error is not None
    assert result.error.message == MESSAGES["too_large"]
    assert server.dropped.is_set()
    assert server.bytes_sent < size // 2


async def test_gzip_bomb_is_protocol(tester: LlmConfigTester) -> None:
    with fake("custom", gzip_bomb_bytes=32 * 1024 * 1024) as server:
        result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("protocol", None)
    assert result.error is not None
    assert result.error.message == MESSAGES["too_large"]


async def test_server_error_is_http_with_its_status(tester: LlmConfigTester) -> None:
    with fake("custom", status=503) as server:
        result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("http", 503)


async def test_base_url_without_the_version_is_http_404(tester: LlmConfigTester) -> None:
    with fake("custom", prefix="/v1") as server:
        result = await tester.test(draft=draft("custom", server.origin))
    assert failure(result) == ("http", 404)
    assert server.requests[0].path == "/models"


@pytest.mark.parametrize(
    "body", [b"<html>welcome</html>", b'{"data": "none"}', b'{"data": [{"name": "x"}]}', b"[]"]
)
async def test_an_answer_that_is_not_a_model_list_is_protocol(tester: LlmConfigTester, body: bytes) -> None:
    with fake("custom", raw_body=body) as server:
        result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("protocol", None)
    assert result.error is not None
    assert result.error.message == MESSAGES["protocol"]


async def test_answer_echoing_the_key_is_discarded(tester: LlmConfigTester) -> None:
    with fake("custom", echo_key=True) as server:
        result = await tester.test(draft=draft("custom", server.base_url))
    assert failure(result) == ("protocol", None)
    assert CANARY not in result.model_dump_json()


# ---- progress, limits, the off switch -------------------------------------------------------


async def test_progress_reports_connecting_then_listing(tester: LlmConfigTester) -> None:
    seen: list[tuple[str, int]] = []
    with fake("custom") as server:
        result = await tester.test(
            draft=draft("custom", server.base_url), progress=lambda m, p: seen.append((m, p))
        )
    assert result.ok is True
    assert seen == [("connecting", 0), ("listing", 50)]


async def test_a_refused_key_reports_no_listing(tester: LlmConfigTester) -> None:
    seen: list[tuple[str, int]] = []
    with fake("custom", key="other") as server:
        await tester.test(draft=draft("custom", server.base_url), progress=lambda m, p: seen.append((m, p)))
    assert seen == [("connecting", 0)]


async def test_process_wide_bound_makes_a_second_test_wait(service: LlmConfigService) -> None:
    tester = LlmConfigTester(service, max_concurrent=1)
    with fake("custom", stall=True) as server:
        first = asyncio.create_task(tester.test(draft=draft("custom", server.base_url), timeout_ms=60_000))
        assert await wait_for(server.received)
        second = await tester.test(draft=draft("custom", server.base_url), timeout_ms=300)
        assert failure(second) == ("timeout", None)
        assert len(server.requests) == 1  # the second never got a slot
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


async def test_outbound_disabled_raises_and_contacts_nobody(service: LlmConfigService) -> None:
    tester = LlmConfigTester(service, enabled=False)
    with fake("custom") as server:
        with pytest.raises(OutboundDisabledError) as info:
            await tester.test(draft=draft("custom", server.base_url))
        assert server.requests == []
    assert info.value.rpc_code == 4003
    assert info.value.code == "OUTBOUND_DISABLED"


async def test_canary_key_is_in_no_result_error_log_or_progress(
    service: LlmConfigService, tester: LlmConfigTester, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    progress: list[tuple[str, int]] = []
    results: list[LlmConfigTestResult] = []
    errors: list[BaseException] = []

    def record(message: str, percentage: int) -> None:
        progress.append((message, percentage))

    async def run(base_url: str, key: str = CANARY, **kwargs: Any) -> None:
        try:
            results.append(await tester.test(draft=draft("custom", base_url, key), progress=record, **kwargs))
        except Exception as exc:
            errors.append(exc)

    with capture_logs() as logs:
        with (
            fake("custom") as ok,
            fake("custom", key="other") as wrong,
            fake("custom", echo_key=True) as echo,
        ):
            await run(ok.base_url)
            await run(wrong.base_url)
            await run(echo.base_url)
            wrong.redirects = {"/v1/models": f"http://localhost:{ok.port}/v1/models"}
            await run(wrong.base_url)
        with fake("custom", status=500) as broken, fake("custom", stall=True) as stalled:
            await run(broken.base_url)
            await run(stalled.base_url, timeout_ms=200)
        with fake("custom", body_bytes=4 * 1024 * 1024, body_content_length=False) as big:
            await run(big.base_url)
        await run(f"http://127.0.0.1:{closed_port()}/v1")
        await run(ok.base_url, key=CANARY + "é")  # not sendable in a header
        view = await service.create(draft("custom", f"http://127.0.0.1:{closed_port()}"))
        results.append(await tester.test(config_id=view.id, progress=record))
        await service.delete(view.id)
        try:
            await tester.test(config_id=view.id)
        except ConfigNotFoundError as exc:
            errors.append(exc)
    kinds = sorted({r.error.kind for r in results if r.error is not None})
    assert kinds == ["auth", "http", "network", "protocol", "timeout"]
    assert [r.ok for r in results].count(True) == 1
    assert len(errors) == 1
    assert len(logs) >= len(results)
    wire = [r.model_dump_json() for r in results]
    texts = [*wire, *(repr(e) + str(getattr(e, "to_data", dict)()) for e in errors), *map(str, progress)]
    texts += [str(entry) for entry in logs] + [caplog.text]
    for text in texts:
        assert CANARY not in text


async def test_check_provider_asks_for_an_uncompressed_answer() -> None:
    with fake("google") as server:
        result = await check_provider(Provider.GOOGLE, server.base_url, GOOGLE_KEY)
    assert result.models == GOOGLE_MODELS  # "models/" removed
    assert server.requests[0].headers["accept-encoding"] == "identity"
