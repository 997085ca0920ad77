"""Pure parts of delivery: back-off, packing, dialect parsing, delivery signing, tampering."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from upvest_verify import KeySet, Reason, VerificationError, Verifier
from upvest_verify.sandbox import WebhookDialect, backoff
from upvest_verify.sandbox._deliver import body_of, pack, sign_delivery, tamper
from upvest_verify.signing import SigningKey

URL = "https://receiver.example/hooks?tenant=1"


def test_backoff_schedule() -> None:
    """Upvest's back-off: 1, 2, 3, 5, 8 ... seconds, capped at 600."""
    assert [backoff(n) for n in range(1, 11)] == [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    assert backoff(14) == 600
    assert backoff(1000) == 600


def _event(i: int, stamp: str, pad: int = 0) -> dict[str, object]:
    return {
        "id": f"e{i}",
        "created_at": stamp,
        "type": "ORDER.NEW",
        "object": {"p": "x" * pad},
        "webhook_id": "w",
    }


def test_pack_sorts_and_splits() -> None:
    """Packages are sorted by created_at, at most max_size bytes, oversized events alone."""
    events = [_event(i, f"2024-01-01T00:00:0{9 - i}Z") for i in range(5)]
    two = len(body_of(events[:2]))
    packages = pack(events, two)
    assert [[e["id"] for e in p] for p in packages] == [["e4", "e3"], ["e2", "e1"], ["e0"]]
    assert all(len(body_of(p)) <= two for p in packages)
    big = _event(9, "2024-01-01T00:00:05Z", pad=two)
    assert [[e["id"] for e in p] for p in pack([*events[:2], big], two)] == [["e9"], ["e1", "e0"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("upvest-v6", WebhookDialect()),
        ("rfc9421", WebhookDialect("rfc9421")),
        ("rfc9421/raw", WebhookDialect("rfc9421", "raw")),
        ("upvest-v6/der/both", WebhookDialect("upvest-v6", "der", "both")),
    ],
)
def test_dialect_parse(text: str, expected: WebhookDialect) -> None:
    """Dialects are written as layout[/encoding[/digest]]."""
    assert WebhookDialect.parse(text) == expected


@pytest.mark.parametrize("text", ["v6", "rfc9421/pem", "rfc9421/der/md5", "a/b/c/d"])
def test_dialect_parse_rejects(text: str) -> None:
    """Unknown layouts, encodings and digests are refused."""
    with pytest.raises(ValueError, match="dialect"):
        WebhookDialect.parse(text)


def test_signed_delivery_covers_query_and_body() -> None:
    """A delivery covers method, path, query, entity fields, digest and date, and verifies."""
    key = SigningKey.generate()
    body = body_of([_event(1, "2024-01-01T00:00:00Z")])
    signed = sign_delivery(
        URL, body, key=key, dialect=WebhookDialect(), client_id="c", created=1_700_000_000
    )
    covered = (signed.header("signature-input") or "").split(";")[0]
    assert covered == (
        'sig1=("@method" "@path" "@query" "content-type" "content-length" "digest" "date")'
    )
    verifier = Verifier(KeySet.from_keys([key.verifying_key]), clock=lambda: 1_700_000_000)
    assert verifier.verify("POST", URL, signed.headers, signed.body).key_id == key.key_id


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("body", Reason.DIGEST_MISMATCH),
        ("digest", Reason.BAD_SIGNATURE),
        ("signature", Reason.BAD_SIGNATURE),
        ("key", Reason.UNKNOWN_KEY),
        ("expired", Reason.EXPIRED),
    ],
)
@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421/raw/both"])
def test_tamper_kinds(kind: str, reason: Reason, dialect: str) -> None:
    """Each tamper kind keeps the body valid JSON of the same length and fails as stated."""
    key = SigningKey.generate()
    events = [_event(1, "2024-01-01T00:00:00Z")]
    body = body_of(events)
    now = 1_700_000_000

    def sign(**changes: object) -> object:
        return sign_delivery(
            URL,
            changes.get("body", body),  # type: ignore[arg-type]
            key=changes.get("key") or key,  # type: ignore[arg-type]
            dialect=WebhookDialect.parse(dialect),
            client_id="c",
            created=now + int(changes.get("created_offset", 0)),
        )  # type: ignore[call-overload]

    clean = sign()
    spoiled = tamper(clean, kind, events, sign)  # type: ignore[arg-type]
    assert len(spoiled.body) == len(body)
    json.loads(spoiled.body)
    verifier = Verifier(KeySet.from_keys([key.verifying_key]), clock=lambda: now)
    verifier.verify("POST", URL, clean.headers, clean.body)  # type: ignore[attr-defined]
    with pytest.raises(VerificationError) as caught:
        verifier.verify("POST", URL, spoiled.headers, spoiled.body)
    assert caught.value.reason is reason
