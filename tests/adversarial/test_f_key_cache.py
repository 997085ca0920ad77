"""Adversarial plan, group F (threat-model.md §6): key cache faults, end to end.

Every case verifies webhooks signed with :mod:`upvest_verify.testing` through
``Verifier`` + ``JWKSCache`` + ``URLKeySource`` against a real JWKS server on
127.0.0.1 (ephemeral port), with the cache on a fake monotonic clock, and asserts
the reason codes byte for byte, the fetches the server saw and the log lines.
The unit-level versions live in ``tests/jwks``; speed (F3's p99) is measured by
``benchmarks/bench_rotation.py``, never asserted here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jwks.jwks_support import (
    BOUND,
    FakeClock,
    JWKSServer,
    b64url,
    running_server,
    self_signed_tls,
    wait_until,
)
from upvest_verify import (
    ConfigurationError,
    KeyNotFound,
    KeySetUnavailable,
    VerificationError,
    VerifiedWebhook,
    Verifier,
)
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_jwks,
    sample_events,
    sign_webhook,
)

SRC = Path(__file__).resolve().parents[2] / "src"


# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def upvest() -> SigningKey:
    """The key Upvest signs with."""
    return generate_key(kid="upvest-key-1")


@pytest.fixture(scope="module")
def rotated() -> SigningKey:
    """The key Upvest rotates to."""
    return generate_key(kid="upvest-key-2")


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    """A JWKS server on 127.0.0.1 with an ephemeral port."""
    with running_server() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    """The cache's monotonic clock, moved by hand."""
    return FakeClock()


@pytest.fixture
def caches() -> Iterator[list[JWKSCache]]:
    """Caches to close after the test."""
    made: list[JWKSCache] = []
    yield made
    for cache in made:
        cache.close()


@pytest.fixture(autouse=True)
def _library_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="upvest_verify")


def publish(server: JWKSServer, *keys: SigningKey) -> None:
    """Serve exactly these keys at /auth/verify_keys."""
    server.raw = None
    server.document = make_jwks(*keys)


def receiver(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    *,
    timeout: float = 5.0,
    **kw: Any,
) -> tuple[JWKSCache, Verifier]:
    """A cache in front of the server and a verifier using it."""
    source = URLKeySource(server.url, allow_insecure_loopback=True, timeout=timeout)
    cache = JWKSCache(source, monotonic=clock, **kw)
    caches.append(cache)
    return cache, Verifier(cache)


def signed(key: SigningKey) -> SignedWebhook:
    """A webhook Upvest signed just now with ``key``."""
    return sign_webhook(sample_events(1), key=key)


def forge(template: SignedWebhook, kid: str) -> SignedWebhook:
    """``template`` claiming the keyid ``kid``."""
    value = next(v for k, v in template.headers if k.lower() == "signature-input")
    start = value.index('keyid="') + len('keyid="')
    original = value[start : value.index('"', start)]
    headers = [
        (k, v.replace(original, kid) if k.lower() == "signature-input" else v)
        for k, v in template.headers
    ]
    return SignedWebhook(template.method, template.url, headers, template.body, template.base)


def accept(verifier: Verifier, webhook: SignedWebhook) -> VerifiedWebhook:
    """Verify synchronously."""
    return verifier.verify(webhook.method, webhook.url, webhook.headers, webhook.body)


async def aaccept(verifier: Verifier, webhook: SignedWebhook) -> VerifiedWebhook:
    """Verify from async code."""
    return await verifier.averify(webhook.method, webhook.url, webhook.headers, webhook.body)


def reject(verifier: Verifier, webhook: SignedWebhook) -> VerificationError:
    """The error a webhook is rejected with."""
    with pytest.raises(VerificationError) as info:
        accept(verifier, webhook)
    return info.value


def settle(cache: JWKSCache, caplog: pytest.LogCaptureFixture) -> None:
    """Wait (bounded) until every fetch the cache started has logged how it ended."""
    ends = ("JWKS fetched (", "JWKS fetch failed (", "JWKS fetch (")

    def ended() -> int:
        return sum(1 for m in caplog.messages if m.startswith(ends))

    assert wait_until(lambda: ended() >= cache.stats.fetches), "fetch still in flight"


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    """The library's log lines at ``level`` containing ``text``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("upvest_verify") and r.levelno == level and text in r.getMessage()
    ]


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    """Like :func:`messages`, waiting (bounded) for a line a detached refresh logs as it ends."""
    wait_until(lambda: bool(messages(caplog, level, text)))
    return messages(caplog, level, text)


# ---- F1 -----------------------------------------------------------------------------------------


def test_f1_cold_start_one_fetch_accept_no_refetch_until_ttl(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """F1: the first webhook on a cold cache costs exactly one fetch; none follows until the TTL."""
    publish(server, upvest)
    cache, verifier = receiver(server, clock, caches)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    assert server.requests == 1
    for _ in range(10):
        clock.advance(29.9)  # 299 s < ttl = 300 s
        assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    assert server.requests == 1
    assert cache.stats.fetches == 1
    clock.advance(1.1)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"  # served, refresh detached
    settle(cache, caplog)
    assert server.requests == 2


# ---- F2 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["sync", "async"])
def test_f2_new_kid_one_refresh_then_accept(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    rotated: SigningKey,
    caplog: pytest.LogCaptureFixture,
    runtime: str,
) -> None:
    """F2: a key published 2 s after the last fetch is fetched once and accepted on first use."""
    publish(server, upvest)
    cache, verifier = receiver(server, clock, caches)

    async def main() -> list[str]:
        await aaccept(verifier, signed(upvest))
        publish(server, upvest, rotated)
        clock.advance(2)
        first = await aaccept(verifier, signed(rotated))
        again = await aaccept(verifier, signed(rotated))
        return [first.key_id, again.key_id]

    if runtime == "sync":
        accept(verifier, signed(upvest))
        publish(server, upvest, rotated)
        clock.advance(2)
        kids = [accept(verifier, signed(rotated)).key_id for _ in range(2)]
    else:
        kids = asyncio.run(main())
    assert kids == ["upvest-key-2", "upvest-key-2"]
    assert server.requests == 2
    assert cache.stats.kid_refreshes == 1
    assert cache.stats.unknown_kid_refusals == 0
    assert messages(caplog, logging.INFO, "JWKS fetched (unknown kid)") == [
        "JWKS fetched (unknown kid): 2 keys, 0 rejected, fresh for 300 s; "
        "added ['upvest-key-2'], removed []"
    ]


# ---- F3 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["threads", "tasks"])
def test_f3_random_unknown_kids_one_fetch_per_cooldown(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    runtime: str,
) -> None:
    """F3: 1,000 random unknown kids over 100 s: all unknown_key, at most one fetch per 30 s.

    Half the requests repeat an earlier kid (as Upvest retries), so the negative
    cache answers them. Refusals are WARNINGs naming the kid, never the signature, and
    bounded: at most a few distinct kids per cooldown, the others counted in the next line.
    """
    publish(server, upvest)
    cache, verifier = receiver(server, clock, caches)
    accept(verifier, signed(upvest))
    template = signed(generate_key())
    rng = random.Random(3)
    kids: list[str] = []
    for i in range(1000):
        fresh = i % 2 == 0 or not kids
        kids.append(f"forged-{rng.getrandbits(64):016x}" if fresh else rng.choice(kids))
    reasons: list[str] = []
    lock = threading.Lock()

    def one(kid: str) -> None:
        with pytest.raises(KeyNotFound) as info:
            accept(verifier, forge(template, kid))
        with lock:
            reasons.append(info.value.reason)

    async def aone(kid: str) -> None:
        with pytest.raises(KeyNotFound) as info:
            await aaccept(verifier, forge(template, kid))
        reasons.append(info.value.reason)

    async def abatch(batch: list[str]) -> None:
        await asyncio.gather(*(aone(kid) for kid in batch))

    def work(share: list[str]) -> None:
        for kid in share:
            one(kid)

    for start in range(0, 1000, 100):  # 10 batches, 10 s apart: 100 s of attack
        clock.advance(10)
        batch = kids[start : start + 100]
        if runtime == "threads":
            threads = [threading.Thread(target=work, args=(batch[i::8],)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(BOUND)
            assert not any(t.is_alive() for t in threads)
        else:
            asyncio.run(abatch(batch))
    assert reasons == ["unknown_key"] * 1000
    refreshes = server.requests - 1
    assert 1 <= refreshes <= math.ceil(100 / 30)
    assert cache.stats.kid_refreshes == refreshes
    refused = messages(caplog, logging.WARNING, "JWKS refresh for unknown kid")
    assert cache.stats.unknown_kid_refusals >= 1000 - 100 * refreshes
    windows = math.ceil(100 / 30) + 1
    assert 1 <= len(refused) <= 3 * windows  # at most 3 distinct kids logged per cooldown
    assert any("more refusals not logged" in line for line in refused)
    signature = next(v for k, v in template.headers if k.lower() == "signature")
    token = signature.split(":")[1]
    assert not any(token[:20] in line for line in caplog.messages)
    assert all("s of cooldown left" in line for line in refused)


# ---- F4 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500", "timeout", "refused"])
def test_f4_refresh_failure_serves_stale_keys_until_max_stale(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    """F4: a failing refresh keeps serving the cached keys up to max_stale, with a log and a metric."""
    publish(server, upvest)
    server.hang_seconds = BOUND
    cache, verifier = receiver(server, clock, caches, timeout=0.3, max_stale=600)
    accept(verifier, signed(upvest))
    if failure == "500":
        server.mode = "error"
    elif failure == "timeout":
        server.mode = "hang"
    else:
        server.stop()
    clock.advance(301)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    settle(cache, caplog)
    [line] = logged(caplog, logging.WARNING, "JWKS fetch failed (expired)")
    assert cache.stats.failures == 1
    assert cache.stats.stale_serves >= 1
    assert line.endswith("; serving the cached key set")
    expected = {"500": "HTTP 500", "timeout": "timed out", "refused": "failed"}[failure]
    assert expected in line
    clock.advance(598)  # 899 s: TTL 300 + max_stale 600 not yet over
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    settle(cache, caplog)
    clock.advance(1)
    error = reject(verifier, signed(upvest))
    assert isinstance(error, KeySetUnavailable)
    assert (error.reason, error.status_code) == ("keys_unavailable", 503)


# ---- F5 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500", "refused"])
def test_f5_cold_start_endpoint_down_is_503_with_failure_cooldown(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    failure: str,
) -> None:
    """F5: cold and down -> keys_unavailable (503) after one attempt; no fetch per request."""
    publish(server, upvest)
    if failure == "500":
        server.mode = "error"
    else:
        server.stop()
    cache, verifier = receiver(server, clock, caches, failure_cooldown=10)
    for _ in range(50):
        error = reject(verifier, signed(upvest))
        assert (error.reason, error.status_code) == ("keys_unavailable", 503)
        clock.advance(0.19)  # 9.5 s in all: still inside the failure cooldown
    assert cache.stats.fetches == 1
    clock.advance(0.5)
    assert reject(verifier, signed(upvest)).reason == "keys_unavailable"
    assert cache.stats.fetches == 2
    if failure == "500":
        assert server.requests == 2
        server.mode = "ok"
        clock.advance(10)
        assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
        assert server.requests == 3


# ---- F6 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["threads", "tasks"])
def test_f6_stalled_endpoint_is_abandoned_at_the_timeout_and_shared(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    runtime: str,
) -> None:
    """F6: an endpoint that stalls is abandoned at the fetch timeout; waiters share that one attempt.

    The server stalls for BOUND seconds (cut short when the test ends); every caller
    is answered keys_unavailable while it still stalls, so nobody waited for it.
    """
    publish(server, upvest)
    server.mode = "hang"
    server.hang_seconds = BOUND
    _, verifier = receiver(server, clock, caches, timeout=0.3)
    reasons: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        error = reject(verifier, signed(upvest))
        with lock:
            reasons.append(error.reason)

    async def many() -> None:
        results = await asyncio.gather(
            *(aaccept(verifier, signed(upvest)) for _ in range(20)), return_exceptions=True
        )
        reasons.extend(r.reason for r in results if isinstance(r, VerificationError))

    if runtime == "threads":
        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND)
        assert not any(t.is_alive() for t in threads)
    else:
        asyncio.run(many())
    assert reasons == ["keys_unavailable"] * 20
    assert server.requests == 1
    assert server.answered == 0  # the stall still runs: every caller returned before it
    [line] = messages(caplog, logging.WARNING, "JWKS fetch failed (cold start)")
    assert "timed out after 0.3 s" in line


# ---- F7 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["10 MB declared", "endless chunked"])
def test_f7_oversized_jwks_is_aborted_and_the_old_cache_kept(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    size: str,
) -> None:
    """F7: a 10 MB document or an endless chunked stream fails at the 64 KiB cap; old keys stay."""
    publish(server, upvest)
    cache, verifier = receiver(server, clock, caches)
    accept(verifier, signed(upvest))
    if size == "10 MB declared":
        server.mode = "oversized"
        server.oversize = 10 * 1024 * 1024
    else:
        server.mode = "endless"
    clock.advance(301)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    settle(cache, caplog)
    [line] = logged(caplog, logging.WARNING, "JWKS fetch failed (expired)")
    assert "JWKSError" in line
    assert ("declares 10485771 bytes" if size == "10 MB declared" else "larger than") in line
    assert "max_bytes=65536; serving the cached key set" in line
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    assert cache.stats.failures == 1


# ---- F8 -----------------------------------------------------------------------------------------


def _documents(upvest: SigningKey, rotated: SigningKey) -> dict[str, bytes]:
    keys = json.dumps(make_jwks(upvest))[len('{"keys": ') : -1]
    twin = dict(generate_key().public_jwk, kid=rotated.kid)  # same kid, another point
    return {
        "not JSON": b"<html>this is not JSON</html>",
        "keys not a list": b'{"keys": {"kid": "upvest-key-1"}}',
        "10,000 keys": json.dumps({"keys": [{}] * 10_000}).encode(),
        "two keys members": ('{"keys": [], "keys": ' + keys + "}").encode(),
        "duplicate kid": json.dumps(
            {"keys": [upvest.public_jwk, rotated.public_jwk, twin]}
        ).encode(),
    }


@pytest.mark.parametrize(
    "document",
    ["not JSON", "keys not a list", "10,000 keys", "two keys members", "duplicate kid"],
)
def test_f8_malformed_documents_are_rejected_whole_or_per_kid(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    rotated: SigningKey,
    caplog: pytest.LogCaptureFixture,
    document: str,
) -> None:
    """F8: a broken document is a failed refresh (old keys kept); a duplicate kid is unusable."""
    publish(server, upvest)
    cache, verifier = receiver(server, clock, caches)
    accept(verifier, signed(upvest))
    server.raw = _documents(upvest, rotated)[document]
    clock.advance(301)
    accept(verifier, signed(upvest))
    settle(cache, caplog)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    if document == "duplicate kid":
        assert cache.stats.failures == 0
        error = reject(verifier, signed(rotated))
        assert isinstance(error, KeyNotFound)
        assert error.reason == "unsupported_key"
        assert logged(
            caplog,
            logging.WARNING,
            "kid 'upvest-key-2' is unusable: duplicate kid with different key material",
        )
        assert server.requests == 2  # answered from the snapshot: no refresh for it
        return
    assert cache.stats.failures == 1
    [line] = logged(caplog, logging.WARNING, "JWKS fetch failed (expired): JWKSError")
    why = {
        "not JSON": "not valid UTF-8 JSON",
        "keys not a list": '"keys" must be an array',
        "10,000 keys": "holds 10000 keys, at most 32 allowed",
        "two keys members": 'repeats the "keys" member',
    }[document]
    assert why in line
    assert line.endswith("serving the cached key set")


# ---- F9 -----------------------------------------------------------------------------------------


def test_f9_mixed_set_only_the_good_key_is_usable(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """F9: RSA, P-256, off-curve and private keys beside a good P-521 key are skipped with warnings."""
    p256 = generate_key("P-256", kid="p256")
    off_curve = generate_key(kid="off-curve")
    y = int.from_bytes(base64.urlsafe_b64decode(off_curve.public_jwk["y"] + "=="), "big")
    private = generate_key(kid="private")
    server.document = {
        "keys": [
            upvest.public_jwk,
            {"kty": "RSA", "kid": "rsa", "n": b64url(b"\xc3" * 256), "e": "AQAB"},
            p256.public_jwk,
            dict(off_curve.public_jwk, y=b64url((y + 1).to_bytes(66, "big"))),
            dict(private.public_jwk, d=b64url(b"\x01" * 66)),
        ]
    }
    _, verifier = receiver(server, clock, caches)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    clock.advance(2)
    for key in (p256, off_curve, private, generate_key(kid="rsa")):
        error = reject(verifier, signed(key))
        assert isinstance(error, KeyNotFound)
        assert error.reason == "unsupported_key"
    assert server.requests == 1
    skipped = messages(caplog, logging.WARNING, "skipping JWK kid")
    assert sorted(line.split("'")[1] for line in skipped) == ["off-curve", "p256", "private", "rsa"]


# ---- F10 ----------------------------------------------------------------------------------------


def test_f10_removed_kid_is_unknown_after_a_successful_refresh_and_never_revived(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    rotated: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """F10: a kid missing from a successful refresh is unknown_key; failed refreshes never revive it."""
    publish(server, upvest, rotated)
    cache, verifier = receiver(server, clock, caches)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
    publish(server, rotated)
    clock.advance(301)
    accept(verifier, signed(rotated))  # stale serve; the refresh drops upvest-key-1
    settle(cache, caplog)
    assert reject(verifier, signed(upvest)).reason == "unknown_key"
    server.mode = "error"
    clock.advance(301)
    assert accept(verifier, signed(rotated)).key_id == "upvest-key-2"  # stale, refresh fails
    settle(cache, caplog)
    clock.advance(31)
    assert reject(verifier, signed(upvest)).reason == "unknown_key"  # its refresh fails too
    assert cache.stats.failures == 2
    # No per-kid memo outlives the set: published again, it is accepted after the cooldown.
    server.mode = "ok"
    publish(server, upvest, rotated)
    clock.advance(30)
    assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"


# ---- F11 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.upvest.co/auth/verify_keys",
        "file:///etc/passwd",
        "ftp://127.0.0.1/auth/verify_keys",
        "http://10.0.0.1/auth/verify_keys",
    ],
)
def test_f11_insecure_source_is_refused_at_configuration(url: str) -> None:
    """F11: http:// (off loopback), file:// and other schemes are refused when configured."""
    with pytest.raises(ConfigurationError):
        URLKeySource(url, allow_insecure_loopback=True)


@pytest.mark.parametrize("runtime", ["sync", "async"])
@pytest.mark.parametrize("target", ["another host", "another port", "file"])
def test_f11_redirect_off_the_origin_is_refused(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    target: str,
    runtime: str,
) -> None:
    """F11: a redirect to another host, port or scheme fails the fetch; the target is never asked."""
    with running_server() as elsewhere:
        publish(elsewhere, upvest)
        server.mode = "redirect"
        server.redirect_to = {
            "another host": f"http://localhost:{elsewhere.port}/auth/verify_keys",
            "another port": elsewhere.url,
            "file": "file:///etc/passwd",
        }[target]
        _, verifier = receiver(server, clock, caches)
        if runtime == "sync":
            error = reject(verifier, signed(upvest))
        else:
            with pytest.raises(KeySetUnavailable) as info:
                asyncio.run(aaccept(verifier, signed(upvest)))
            error = info.value
        assert (error.reason, error.status_code) == ("keys_unavailable", 503)
        assert elsewhere.requests == 0
    [line] = messages(caplog, logging.WARNING, "JWKS fetch failed (cold start)")
    # urllib itself refuses a redirect to file: (HTTP 302 then fails the fetch).
    assert "another origin refused" in line or (target == "file" and "HTTP 302" in line)


# ---- F12 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["self-signed", "wrong host"])
def test_f12_tls_error_is_a_fetch_failure(
    tmp_path: Path,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    problem: str,
) -> None:
    """F12: an untrusted certificate or a host-name mismatch is keys_unavailable, never unverified keys."""
    server_tls, client_tls = self_signed_tls(tmp_path)
    with running_server(server_tls) as tls_server:
        publish(tls_server, upvest)
        if problem == "self-signed":  # the system trust store: the certificate is unknown
            source = URLKeySource(tls_server.url)
        else:  # trusted, but issued for 127.0.0.1, not localhost
            url = f"https://localhost:{tls_server.port}/auth/verify_keys"
            source = URLKeySource(url, ssl_context=client_tls)
        cache = JWKSCache(source, monotonic=clock)
        caches.append(cache)
        verifier = Verifier(cache)
        for _ in range(3):
            error = reject(verifier, signed(upvest))
            assert (error.reason, error.status_code) == ("keys_unavailable", 503)
        assert cache.stats.fetches == 1  # the failure cooldown holds
    [line] = messages(caplog, logging.WARNING, "JWKS fetch failed (cold start)")
    assert "CERTIFICATE_VERIFY_FAILED" in line or "certificate" in line.lower()


# ---- F13 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["sync", "async"])
def test_f13_persistent_401_is_keys_unavailable_without_credentials_in_logs(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    runtime: str,
) -> None:
    """F13: a key endpoint that keeps answering 401 gives keys_unavailable; one request per attempt."""
    publish(server, upvest)
    server.mode = "unauthorized"
    _, verifier = receiver(server, clock, caches)
    if runtime == "sync":
        error = reject(verifier, signed(upvest))
    else:
        with pytest.raises(KeySetUnavailable) as info:
            asyncio.run(aaccept(verifier, signed(upvest)))
        error = info.value
    assert (error.reason, error.status_code) == ("keys_unavailable", 503)
    assert server.requests == 1
    [line] = messages(caplog, logging.WARNING, "JWKS fetch failed (cold start)")
    assert "HTTP 401" in line
    assert not any(
        word in message.lower()
        for message in caplog.messages
        for word in ("bearer", "authorization", "invalid_token")
    )


class _OAuthKeyServer:
    """A loopback stand-in for Upvest's ``POST /auth/token`` and ``GET /auth/verify_keys``.

    Tokens are ``token-1``, ``token-2``, ...; ``verify_keys`` answers 401 to every
    token in ``refused`` and the JWKS to the others.
    """

    def __init__(self, jwks: dict[str, Any]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.tokens = 0
        self.key_requests: list[str] = []
        self.refused: set[str] = set()
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    owner.tokens += 1
                    token = f"token-{owner.tokens}"
                self._answer(
                    200, {"access_token": token, "token_type": "bearer", "expires_in": 3600}
                )

            def do_GET(self) -> None:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                with lock:
                    owner.key_requests.append(token)
                    refused = token in owner.refused or not token
                if refused:
                    self._answer(401, {"error": "invalid_token"})
                else:
                    self._answer(200, jwks)

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(BOUND)


@pytest.mark.parametrize("answer", ["401 then 200", "persistent 401"])
def test_f13_401_refreshes_the_token_once(
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    """F13: a 401 from /auth/verify_keys costs one token refresh and one retry; no credentials logged."""
    client_module = pytest.importorskip(
        "upvest_verify.client",
        reason="F13 needs the management client's key source (the client extra: httpx)",
        exc_type=ImportError,  # the client re-raises a missing httpx with an install hint
    )
    caplog.set_level(logging.DEBUG, logger="upvest_verify")
    oauth = _OAuthKeyServer(make_jwks(upvest))
    oauth.refused = {"token-1"} if answer == "401 then 200" else {"token-1", "token-2"}
    client = client_module.UpvestClient(
        base_url=oauth.base_url,
        client_id="tenant-client-id",
        client_secret="tenant-client-secret-0123456789",
        signing_key=generate_key(kid="tenant-request-key"),
        retry=None,
    )
    try:
        cache = JWKSCache(client.key_source(), monotonic=clock)
        caches.append(cache)
        verifier = Verifier(cache)
        if answer == "401 then 200":
            assert accept(verifier, signed(upvest)).key_id == "upvest-key-1"
            assert cache.stats.failures == 0
        else:
            error = reject(verifier, signed(upvest))
            assert (error.reason, error.status_code) == ("keys_unavailable", 503)
            [line] = messages(caplog, logging.WARNING, "JWKS fetch failed (cold start)")
            assert "401" in line
        assert oauth.tokens == 2  # one token, one refresh after the 401
        assert oauth.key_requests == ["token-1", "token-2"]  # one retry, no loop
        assert cache.stats.fetches == 1
    finally:
        client.close()
        oauth.close()
    for secret in ("tenant-client-secret-0123456789", "token-1", "token-2"):
        assert not any(secret in message for message in caplog.messages)


# ---- F14 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [("max-age=15", 60), ("public, max-age=31536000", 3600)],
    ids=["below-min", "above-max"],
)
def test_f14_max_age_is_clamped(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    upvest: SigningKey,
    caplog: pytest.LogCaptureFixture,
    cache_control: str,
    ttl: int,
) -> None:
    """F14: Cache-Control max-age is clamped to [min_ttl, max_ttl] = [60, 3600] s."""
    publish(server, upvest)
    server.cache_control = cache_control
    cache, verifier = receiver(server, clock, caches)
    accept(verifier, signed(upvest))
    assert messages(caplog, logging.INFO, f"fresh for {ttl} s")
    clock.advance(ttl - 0.5)
    accept(verifier, signed(upvest))
    assert server.requests == 1
    clock.advance(1)
    accept(verifier, signed(upvest))
    settle(cache, caplog)
    assert server.requests == 2


# ---- F15 ----------------------------------------------------------------------------------------

_F15_APP = '''
"""A receiver whose cache warms in gunicorn's master (--preload), then forks."""

import base64
import json
import os
import threading
import time

from upvest_verify import VerificationError, Verifier
from upvest_verify.jwks import JWKSCache, URLKeySource

source = URLKeySource(os.environ["F15_JWKS_URL"], allow_insecure_loopback=True, timeout=5)
cache = JWKSCache(source, background_refresh=True, wait_timeout=5)
verifier = Verifier(cache)
cache.current()  # warm, in the master
# A refresh still in flight when the worker is forked: the server holds it.
threading.Thread(target=cache.refresh, daemon=True).start()
time.sleep(0.3)
MASTER = os.getpid()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/ready":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    given = json.loads(environ["wsgi.input"].read(size))
    body = base64.b64decode(given["body"])
    try:
        webhook = verifier.verify("POST", given["url"], given["headers"], body)
        status, out = "200 OK", {"key_id": webhook.key_id}
    except VerificationError as e:
        status, out = "401 Unauthorized", {"reason": e.reason.value}
    out.update(pid=os.getpid(), master=MASTER)
    data = json.dumps(out).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]
'''


def _post(port: int, path: str, payload: bytes | None = None) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
    try:
        conn.request("POST" if payload is not None else "GET", path, body=payload)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _send(port: int, webhook: SignedWebhook) -> dict[str, Any]:
    payload = {
        "url": webhook.url,
        "headers": webhook.headers,
        "body": base64.b64encode(webhook.body).decode(),
    }
    status, body = _post(port, "/verify", json.dumps(payload).encode())
    result: dict[str, Any] = json.loads(body)
    result["status"] = status
    return result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="F15 needs fork()")
def test_f15_gunicorn_preload_fork_after_warm_cache(
    server: JWKSServer, tmp_path: Path, upvest: SigningKey, rotated: SigningKey
) -> None:
    """F15: a worker forked (gunicorn --preload) from a warm cache with a fetch in flight still works."""
    pytest.importorskip(
        "gunicorn", reason="F15 needs gunicorn (tests-servers group; not in the core env)"
    )
    publish(server, upvest)
    held = threading.Event()
    server.on_request = lambda n: held.wait(BOUND) if n == 2 else None
    (tmp_path / "f15_app.py").write_text(_F15_APP)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    env = {
        **os.environ,
        "F15_JWKS_URL": server.url,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]),
    }
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "1"]
    command += ["--bind", f"fd://{sock.fileno()}", "--log-level", "warning", "f15_app:app"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 3 * BOUND
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            try:
                if _post(port, "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.05)
        # The master's warm-up and its refresh, held by the server while the worker forks.
        assert wait_until(lambda: server.requests == 2)
        first = _send(port, signed(upvest))
        assert first["status"] == 200
        assert first["key_id"] == "upvest-key-1"
        assert first["pid"] != first["master"]
        assert server.requests == 2  # the inherited warm snapshot served it
        publish(server, upvest, rotated)
        time.sleep(1.1)  # past the 1 s gap after the master's refresh started
        second = _send(port, signed(rotated))
        assert second["status"] == 200, second
        assert second["key_id"] == "upvest-key-2"
        assert server.requests == 3  # the worker fetched itself, not waiting on the master's
    finally:
        held.set()
        process.terminate()
        try:
            process.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.communicate()
        sock.close()
