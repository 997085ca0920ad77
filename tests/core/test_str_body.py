"""A ``str`` body is a programming error: ``TypeError`` on every verification path.

Never a ``VerificationError`` (``malformed_header`` would send a 400 to Upvest and
hide the bug): not for a valid, unsigned, malformed, tampered or expired request,
not through ``verify()``, ``Verifier.verify``/``averify`` with a key set or a key
provider, a replay store or late retries. Bytes-like bodies are accepted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from upvest_verify import KeySet, VerificationError, Verifier, verify
from upvest_verify.jwks import JWKSCache, StaticKeySource
from upvest_verify.ledger import MemoryLedger, MemoryReplayStore
from upvest_verify.testing import (
    SignedWebhook,
    generate_key,
    make_jwks,
    make_key_set,
    sample_events,
    sign_webhook,
)

KEY = generate_key()


def requests() -> dict[str, SignedWebhook]:
    """One request of each kind, all signed by KEY."""
    valid = sign_webhook(sample_events(1), key=KEY)
    return {
        "valid": valid,
        "unsigned": valid.replace_header("signature", "").replace_header("signature-input", ""),
        "malformed": valid.replace_header("signature-input", "sig1=(((("),
        "tampered": valid.replace_body(valid.body.replace(b"EUR", b"USD")),
        "expired": sign_webhook(sample_events(1), key=KEY, created=1_700_000_000),
    }


def verifiers() -> dict[str, Verifier]:
    """Verifiers over a key set, a key provider, with a replay store and with late retries."""
    return {
        "key-set": Verifier(make_key_set(KEY)),
        "provider": Verifier(JWKSCache(StaticKeySource(make_jwks(KEY)))),
        "replay-store": Verifier(make_key_set(KEY), replay_store=MemoryReplayStore()),
        "late-retries": Verifier(make_key_set(KEY), late_retries=MemoryLedger(retention=10**9)),
        "no-keys": Verifier(KeySet()),
    }


@pytest.mark.parametrize("kind", list(requests()))
def test_verify_raises_type_error(kind: str) -> None:
    """``verify()`` with a str body: TypeError whatever the headers say."""
    s = requests()[kind]
    with pytest.raises(TypeError, match="body must be bytes"):
        verify(s.method, s.url, s.headers, s.body.decode(), keys=make_key_set(KEY))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(verifiers()))
def test_verifier_raises_type_error_sync_and_async(name: str) -> None:
    """``Verifier.verify`` and ``averify``: TypeError for every kind of request."""
    verifier = verifiers()[name]
    for kind, s in requests().items():
        body: Any = s.body.decode()
        try:
            verifier.verify(s.method, s.url, s.headers, body)
        except VerificationError as e:  # pragma: no cover - the failure this guards
            pytest.fail(f"{name}/{kind}: {e.reason.value} instead of TypeError")
        except TypeError:
            pass
        else:  # pragma: no cover
            pytest.fail(f"{name}/{kind}: accepted a str body")
        with pytest.raises(TypeError):
            asyncio.run(verifier.averify(s.method, s.url, s.headers, body))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_bytes_like_bodies_verify(wrap: Any) -> None:
    """bytes, bytearray and memoryview are all the raw body."""
    s = requests()["valid"]
    webhook = verify(s.method, s.url, s.headers, wrap(s.body), keys=make_key_set(KEY))
    assert webhook.body == s.body
