"""RFC 9421 Appendix B.2 and draft-06 Appendix B.2 vectors: bases byte for byte, signatures for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from upvest_verify import KeySet, Policy, Reason, VerificationError
from upvest_verify._message import Message, normalise_fields, request_message
from upvest_verify._verify import parse_signature_input, signature_base, verify_message

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FILES = sorted([*VECTORS.glob("rfc9421_*.json"), *VECTORS.glob("draft06_*.json")])
# Signatures we can verify for real: the asymmetric algorithms our seam supports.
VERIFIABLE = {"ecdsa-p256-sha256": "P-256", "ed25519": "Ed25519"}


def load(path: Path) -> dict[str, Any]:
    """Read one vector file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def message_of(vec: dict[str, Any], *, content_digest: str | None = None) -> Message:
    """Build the verifier's view of a vector's message, with its signature headers."""
    headers = [tuple(h) for h in vec["headers"]]
    if content_digest is not None:
        headers = [h for h in headers if h[0].lower() != "content-digest"]
        headers.append(("Content-Digest", content_digest))
    headers += [
        ("Signature-Input", vec["signature_input_header"]),
        ("Signature", vec["signature_header"]),
    ]
    fields = normalise_fields(headers)
    if vec["message_type"] == "request":
        return request_message(vec["method"], vec["url"], fields)
    return Message(None, None, None, "/", None, vec["status"], fields)


def lenient_policy(vec: dict[str, Any]) -> Policy:
    """A policy that admits the vector's key type and coverage (these are not webhooks)."""
    return Policy(
        labels=(vec["label"],),
        required_components=(),
        require_digest=False,
        require_query=False,
        key_types=frozenset({VERIFIABLE.get(vec["alg"], "P-521")}),  # type: ignore[arg-type]
        max_window=None,
    )


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_signature_base_byte_for_byte(path: Path) -> None:
    """The base rebuilt from the received message equals the published one exactly."""
    vec = load(path)
    message = message_of(vec)
    sig = parse_signature_input(message, vec["label"], lenient_policy(vec))
    assert signature_base(message, sig, "rfc9421") == vec["expected_base"].encode("ascii")
    assert sig.signature_params == vec["signature_input"]


@pytest.mark.parametrize(
    "path",
    [p for p in FILES if load(p)["alg"] in VERIFIABLE],
    ids=[p.stem for p in FILES if load(p)["alg"] in VERIFIABLE],
)
def test_signature_verifies_for_real(path: Path) -> None:
    """The published signature verifies through the full pipeline, digest included."""
    vec = load(path)
    policy = lenient_policy(vec)
    keys = KeySet.from_jwks({"keys": [vec["key"]]}, key_types=policy.key_types)
    created = vec["signature_params"]["created"]
    result = verify_message(
        message_of(vec),
        vec["body"].encode(),
        keys=keys,
        now=created,
        policy=policy,
        layouts=("rfc9421",),
    )
    assert result.key_id == vec["key_id"]
    assert result.label == vec["label"]
    assert result.dialect.layout == "rfc9421"
    assert result.dialect.encoding == "raw"


def test_b24_listed_content_digest_is_a_digest_mismatch() -> None:
    """The Content-Digest listed with B.2.4's message (not the signed one) fails the digest check."""
    vec = load(VECTORS / "rfc9421_B.2.4.json")
    policy = lenient_policy(vec)
    keys = KeySet.from_jwks({"keys": [vec["key"]]}, key_types=policy.key_types)
    message = message_of(vec, content_digest=vec["listed_content_digest_mismatch"])
    with pytest.raises(VerificationError) as info:
        verify_message(
            message,
            vec["body"].encode(),
            keys=keys,
            now=vec["signature_params"]["created"],
            policy=policy,
        )
    assert info.value.reason is Reason.DIGEST_MISMATCH


def test_b24_signature_fails_over_a_changed_status() -> None:
    """Changing the response status breaks the ECDSA signature: the check can fail."""
    vec = load(VECTORS / "rfc9421_B.2.4.json")
    policy = lenient_policy(vec)
    keys = KeySet.from_jwks({"keys": [vec["key"]]}, key_types=policy.key_types)
    vec["status"] = 201
    with pytest.raises(VerificationError) as info:
        verify_message(
            message_of(vec),
            vec["body"].encode(),
            keys=keys,
            now=vec["signature_params"]["created"],
            policy=policy,
        )
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_b26_needs_ed25519_allowed_by_policy() -> None:
    """An Ed25519 key verifies only when the policy admits Ed25519 (default is P-521 only)."""
    vec = load(VECTORS / "rfc9421_B.2.6.json")
    keys = KeySet.from_jwks({"keys": [vec["key"]]}, key_types=("Ed25519",))
    policy = Policy(
        labels=(vec["label"],), required_components=(), require_digest=False, require_query=False
    )
    with pytest.raises(VerificationError) as info:
        verify_message(
            message_of(vec),
            vec["body"].encode(),
            keys=keys,
            now=vec["signature_params"]["created"],
            policy=policy,
        )
    assert info.value.reason is Reason.UNSUPPORTED_KEY
