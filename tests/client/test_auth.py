"""OAuth2 tokens and request signing against the emulator: shape, caching, refresh, secrecy."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")

from upvest_verify import Policy, VerificationError, Verifier
from upvest_verify.client import NotFound, Unauthorised
from upvest_verify.signing import SigningKey
from upvest_verify.testing import make_key_set

from .client_support import (
    Driver,
    FakeClock,
    Recorder,
    Seen,
    async_client,
    sync_client,
)

URL = "https://tenant.example/webhooks/upvest"


def covered(seen: Seen) -> list[str]:
    """The component names of a recorded request's signature-input."""
    inner = seen.signature_params().split(")", 1)[0].lstrip("(")
    return [name.strip('"') for name in inner.split()]


def params(seen: Seen) -> dict[str, str]:
    rest = seen.signature_params().split(")", 1)[1]
    pairs = (item.split("=", 1) for item in rest.split(";") if item)
    return {name: value.strip('"') for name, value in pairs}


def test_token_request_is_a_signed_form_without_authorization(sandbox: Any, tenant: Any) -> None:
    """POST /auth/token: form-encoded, signed, upvest-client-id, no authorization (§6)."""
    recorder = Recorder()
    with sync_client(sandbox.base_url, tenant, recorder) as client:
        client.webhooks.list()
    token, listing = recorder.seen
    assert (token.method, token.path, token.status) == ("POST", "/auth/token", 200)
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token.form == {
        "client_id": [tenant.client_id],
        "client_secret": [tenant.client_secret],
        "grant_type": ["client_credentials"],
        "scope": ["webhooks:read"],
    }
    assert "authorization" not in token.headers
    assert token.headers["upvest-client-id"] == tenant.client_id
    assert covered(token) == [
        "@method",
        "@path",
        "accept",
        "upvest-client-id",
        "upvest-api-version",
        "content-type",
        "date",
        "content-length",
        "content-digest",
    ]
    assert listing.headers["authorization"].startswith("Bearer ")
    assert covered(listing) == [
        "@method",
        "@path",
        "@query",
        "accept",
        "authorization",
        "upvest-client-id",
        "upvest-api-version",
        "date",
    ]


def test_api_request_signature_parameters(sandbox: Any, tenant: Any) -> None:
    """keyid, created, expires = created + window, a fresh UUID nonce; DER; version 15."""
    recorder = Recorder()
    with sync_client(sandbox.base_url, tenant, recorder, signature_ttl=5) as client:
        client.webhooks.create(title="t", url=URL)
        client.webhooks.list()
    nonces = set()
    for seen in recorder.seen:
        found = params(seen)
        assert list(found) == ["keyid", "created", "expires", "nonce"]
        assert found["keyid"] == tenant.signing_key.key_id
        assert int(found["expires"]) - int(found["created"]) == 5
        assert uuid.UUID(found["nonce"]).version == 4
        nonces.add(found["nonce"])
        assert seen.headers["upvest-signature-version"] == "15"
        assert "upvest-signature-version" not in covered(seen)
        assert "user-agent" not in covered(seen)
        assert "host" not in covered(seen)
    assert len(nonces) == len(recorder.seen) == 4
    create = recorder.api_requests()[0]
    assert covered(create) == [
        "@method",
        "@path",
        "accept",
        "authorization",
        "upvest-client-id",
        "upvest-api-version",
        "content-type",
        "date",
        "content-length",
        "content-digest",
    ]


def test_wire_requests_verify_with_the_project_verifier(sandbox: Any, tenant: Any) -> None:
    """What the client sends verifies with upvest_verify's own Verifier (RFC 9421 layout)."""
    recorder = Recorder()
    with sync_client(sandbox.base_url, tenant, recorder) as client:
        client.webhooks.create(title="t", url=URL)
    verifier = Verifier(
        make_key_set(tenant.signing_key),
        policy=Policy(dialect="rfc9421", required_components=("@method", "@path")),
    )
    for seen in recorder.seen:
        url = f"{sandbox.base_url}{seen.path}" + (f"?{seen.query}" if seen.query else "")
        verified = verifier.verify(seen.method, url, list(seen.headers.multi_items()), seen.body)
        assert verified.key_id == tenant.signing_key.key_id
        tampered = seen.body + b" " if seen.body else b"x"
        with pytest.raises(VerificationError):
            verifier.verify(seen.method, url, list(seen.headers.multi_items()), tampered)


def test_tokens_are_cached_per_scope_set(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """Reads share one webhooks:read token, writes one webhooks:admin token."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        driver.run(client.webhooks.list())
        driver.run(client.webhooks.list())
        created = driver.run(client.webhooks.create(title="t", url=URL))
        driver.run(client.webhooks.get(created.id))
        driver.run(client.webhooks.update(created.id, title="u"))
        driver.run(client.verify_keys())
    scopes = [s.form["scope"][0] for s in recorder.token_requests()]
    assert scopes == ["webhooks:read", "webhooks:admin"]
    tokens = {s.method: s.headers["authorization"] for s in recorder.api_requests()}
    assert tokens["GET"] != tokens["POST"]
    assert tokens["POST"] == tokens["PATCH"]


def test_one_configured_scope_set_serves_every_call(
    driver: Driver, sandbox: Any, tenant: Any
) -> None:
    """scopes="webhooks:admin": a single token request, for reads and writes alike."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder, scopes=["webhooks:admin"]) as client:
        driver.run(client.webhooks.create(title="t", url=URL))
        driver.run(client.webhooks.list())
    assert [s.form["scope"] for s in recorder.token_requests()] == [["webhooks:admin"]]


def test_concurrent_first_calls_share_one_token_request_threads(sandbox: Any, tenant: Any) -> None:
    """Eight threads calling at once on a cold client: one token request, eight answers."""
    recorder = Recorder()
    barrier = threading.Barrier(8)
    results: list[int] = []
    errors: list[BaseException] = []
    with sync_client(sandbox.base_url, tenant, recorder) as client:

        def call() -> None:
            try:
                barrier.wait(timeout=10)
                results.append(len(client.webhooks.list()))
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert results == [0] * 8
    assert len(recorder.token_requests()) == 1
    assert len(recorder.api_requests()) == 8


def test_concurrent_first_calls_share_one_token_request_tasks(sandbox: Any, tenant: Any) -> None:
    """Eight asyncio tasks calling at once on a cold client: one token request."""
    recorder = Recorder()

    async def main() -> list[int]:
        async with async_client(sandbox.base_url, tenant, recorder) as client:
            pages = await asyncio.gather(*(client.webhooks.list() for _ in range(8)))
            return [len(page) for page in pages]

    assert asyncio.run(main()) == [0] * 8
    assert len(recorder.token_requests()) == 1
    assert len(recorder.api_requests()) == 8


def test_token_expiring_mid_run_is_refreshed_before_use(
    driver: Driver, sandbox: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token past its lifetime (both clocks moved on) is replaced before the next call."""
    monkeypatch.setattr(sandbox, "token_ttl", 60.0)
    shift = [0.0]
    monkeypatch.setattr(sandbox, "monotonic", lambda: time.monotonic() + shift[0])
    clock = FakeClock()
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder, monotonic=clock) as client:
        driver.run(client.webhooks.list())
        clock.advance(30)  # well inside the lifetime: no new token
        shift[0] = 30
        driver.run(client.webhooks.list())
        clock.advance(31)  # 61 s: expired on both sides
        shift[0] = 61
        driver.run(client.webhooks.list())
    assert [s.path for s in recorder.seen] == [
        "/auth/token",
        "/webhooks",
        "/webhooks",
        "/auth/token",
        "/webhooks",
    ]
    assert all(s.status == 200 for s in recorder.seen)
    first, second = (s.headers["authorization"] for s in recorder.api_requests()[1:])
    assert first != second


def test_token_refreshed_early_by_the_margin(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """A token is replaced refresh-margin seconds before it expires (here 10 s of 60)."""
    clock = FakeClock()
    recorder = Recorder()
    with driver.client(
        sandbox.base_url, tenant, recorder, monotonic=clock, token_refresh_margin=10
    ) as client:
        driver.run(client.webhooks.list())
        clock.advance(sandbox.token_ttl - 11)
        driver.run(client.webhooks.list())
        clock.advance(2)  # 9 s before expiry: inside the margin
        driver.run(client.webhooks.list())
    assert len(recorder.token_requests()) == 2


def test_401_refreshes_the_token_once_then_succeeds(
    driver: Driver, sandbox: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upvest expires the token early: 401, one new token, the call retried and answered."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        driver.run(client.webhooks.list())
        monkeypatch.setattr(sandbox, "monotonic", lambda: time.monotonic() + 100_000)
        page = driver.run(client.webhooks.list())
    assert len(page) == 0
    assert [(s.path, s.status) for s in recorder.seen] == [
        ("/auth/token", 200),
        ("/webhooks", 200),
        ("/webhooks", 401),
        ("/auth/token", 200),
        ("/webhooks", 200),
    ]
    retried, again = recorder.seen[2], recorder.seen[4]
    assert params(retried)["nonce"] != params(again)["nonce"]
    assert retried.headers["authorization"] != again.headers["authorization"]


def test_persistent_401_is_raised_after_one_refresh(
    driver: Driver, sandbox: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every token already expired when used: one refresh and retry, then Unauthorised."""
    jumps = itertools.count()
    monkeypatch.setattr(sandbox, "monotonic", lambda: time.monotonic() + 10**6 * next(jumps))
    recorder = Recorder()
    with (
        driver.client(sandbox.base_url, tenant, recorder) as client,
        pytest.raises(Unauthorised) as info,
    ):
        driver.run(client.webhooks.list())
    assert info.value.status == 401
    assert [(s.path, s.status) for s in recorder.seen] == [
        ("/auth/token", 200),
        ("/webhooks", 401),
        ("/auth/token", 200),
        ("/webhooks", 401),
    ]


def test_wrong_signing_key_gets_signature_is_incorrect(
    driver: Driver, sandbox: Any, tenant: Any
) -> None:
    """A key Upvest does not know: the signed token request is refused (401)."""
    impostor = SigningKey.generate(key_id=tenant.signing_key.key_id)
    recorder = Recorder()
    with (
        driver.client(sandbox.base_url, tenant, recorder, signing_key=impostor) as client,
        pytest.raises(Unauthorised) as info,
    ):
        driver.run(client.webhooks.list())
    assert info.value.detail == "Signature is incorrect"
    assert info.value.path == "/auth/token"
    assert len(recorder.seen) == 1


def test_secrets_never_in_repr_logs_or_errors(
    driver: Driver, sandbox: Any, tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The secret, tokens and signatures appear in no repr, log record or exception text."""
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    messages: list[str] = []
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        driver.run(client.webhooks.list())
        messages += [repr(client), str(client.auth), repr(client.webhooks)]
        with pytest.raises(NotFound) as missing:
            driver.run(client.webhooks.get(str(uuid.uuid4())))
        messages += [str(missing.value), repr(missing.value)]
    with driver.client(
        sandbox.base_url, tenant, recorder, client_secret=tenant.client_secret + "x"
    ) as client:
        with pytest.raises(Unauthorised) as bad:
            driver.run(client.webhooks.list())
        messages += [str(bad.value), repr(bad.value), repr(client)]
    assert bad.value.detail == "Invalid client credentials"
    secrets = [tenant.client_secret]
    for seen in recorder.seen:
        if "authorization" in seen.headers:
            secrets.append(seen.headers["authorization"].split(" ", 1)[1])
        secrets.append(seen.headers["signature"].split(":")[1])
    text = "\n".join([*messages, caplog.text])
    assert "Webhook not found" in text
    for secret in secrets:
        assert secret not in text
