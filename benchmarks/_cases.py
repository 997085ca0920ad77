"""The signed webhooks the benchmarks verify, and the floor they are measured against.

One webhook per body size and dialect (``build_case``): RFC 9421 (quoted base, DER
signature, ``Content-Digest``) and Upvest v6 (unquoted base, ``Digest``), both over
``@method @path content-type content-length <digest> date`` with a P-521 key, plus the
uncovered fields a proxy adds; the floor (``floor_fn``: one body hash and one P-521
verify of the precomputed base) and the peer library's verifier (``peer_verifier``).
``bench_verify.py`` times them; the other benchmarks build their requests here too.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from upvest_verify import KeySet
from upvest_verify.testing import SigningKey, make_key_set, sign_webhook

__all__ = [
    "COMPONENTS",
    "EXTRA_HEADERS",
    "HAVE_PEER",
    "SIZES",
    "URL",
    "V6",
    "V6_COMPONENTS",
    "Case",
    "PeerRequest",
    "build_case",
    "floor_fn",
    "make_body",
    "peer_verifier",
]

COMPONENTS = ("@method", "@path", "content-type", "content-length", "content-digest", "date")
"""The covered components of the RFC 9421 webhook."""

V6_COMPONENTS = ("@method", "@path", "content-type", "content-length", "digest", "date")
"""The covered components of the Upvest v6 webhook."""

SIZES = (1024, 10 * 1024, 1024 * 1024)
"""Body sizes in bytes."""

URL = "https://hooks.example.com/webhooks/upvest"
TTL = 3000  # seconds: the signatures must stay valid for the whole run
# Uncovered fields a webhook picks up on its way through a proxy; every verifier
# walks all header lines, so they belong in a realistic request.
EXTRA_HEADERS = (
    ("user-agent", "Upvest-Webhooks/1.0"),
    ("accept-encoding", "gzip"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
)
_ECDSA_SHA512 = ec.ECDSA(hashes.SHA512())
V6 = "upvest-v6"
HAVE_PEER = importlib.util.find_spec("http_message_signatures") is not None
"""Whether the peer library is installed (its column is left out otherwise)."""


# ---------------------------------------------------------------------------
# The peer: http-message-signatures with a P-521 algorithm
# ---------------------------------------------------------------------------


@dataclass
class PeerRequest:
    """The minimal request object ``http-message-signatures`` resolves components from.

    Attributes:
        method: Upper-case method.
        url: Absolute URL.
        headers: Field name to value (``items()`` is all the peer reads).
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def peer_verifier(kid: str, public_key: ec.EllipticCurvePublicKey) -> Any:
    """Build an ``HTTPMessageVerifier`` for ECDSA P-521/SHA-512 with one key.

    ``http-message-signatures`` ships P-256 and P-384 only; its ECDSA base class
    takes the curve, hash and scalar size from class attributes, so P-521 is a
    three-line subclass. It expects raw ``r||s`` signatures (RFC 9421 §3.3.4).

    Args:
        kid: The key id.
        public_key: The P-521 public key.

    Returns:
        The configured verifier.
    """
    from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
    from http_message_signatures._algorithms import _ECDSA

    class ECDSA_P521_SHA512(_ECDSA):
        algorithm_id = "ecdsa-p521-sha512"
        _curve = ec.SECP521R1
        _hash = hashes.SHA512
        _coordinate_size = 66

    return HTTPMessageVerifier(
        signature_algorithm=ECDSA_P521_SHA512,
        key_resolver=MappingKeyResolver(public_keys={kid: public_key}, private_keys={}),
    )


# ---------------------------------------------------------------------------
# Requests and contenders
# ---------------------------------------------------------------------------


def make_body(size: int) -> bytes:
    """Return a ``{"payload": [...]}`` JSON body of exactly ``size`` bytes.

    Args:
        size: Length in bytes (at least 64).

    Returns:
        The body.
    """
    event = {
        "id": "6b8b3f5e-7f0d-4f7a-9a53-0c1e7c2f6a11",
        "created_at": "2024-05-06T07:08:09.123456789Z",
        "type": "ORDER.FILLED",
        "object": {"id": "1f0e3c0a-2b5d-4c1e-8f7a-3d9b6e4c2a10", "status": "FILLED"},
        "webhook_id": "9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b",
    }
    one = len(json.dumps(event, separators=(",", ":"))) + 1
    events = [event] * max(0, (size - 64) // one)
    head = json.dumps({"payload": events}, separators=(",", ":"))[:-1]
    pad = size - len(head) - len(',"pad":""}')
    if pad < 0:
        raise ValueError(f"size {size} is too small")
    body = (head + ',"pad":"' + "x" * pad + '"}').encode()
    assert len(body) == size
    return body


@dataclass
class Case:
    """One body size: the signed requests and the floor's precomputed inputs.

    Attributes:
        size: Body size in bytes.
        body: The body.
        key: The signing key.
        keys: The key set holding its public half.
        rfc_headers: Field lines of the RFC 9421 request (DER signature).
        rfc_base: Its signature base.
        rfc_der: The DER signature over ``rfc_base`` the floor verifies.
        peer_request: The same request with a raw ``r||s`` signature, for the peer.
        v6_headers: Field lines of the Upvest v6 request (DER signature).
        v6_base: Its signature base.
        v6_der: The DER signature over ``v6_base``.
    """

    size: int
    body: bytes
    key: SigningKey
    keys: KeySet
    rfc_headers: list[tuple[str, str]]
    rfc_base: bytes
    rfc_der: bytes
    peer_request: PeerRequest
    v6_headers: list[tuple[str, str]]
    v6_base: bytes
    v6_der: bytes


def _signature_bytes(headers: Sequence[tuple[str, str]]) -> bytes:
    value = next(v for k, v in headers if k == "signature")
    return base64.b64decode(value.split(":")[1])


def build_case(size: int, key: SigningKey) -> Case:
    """Sign the RFC 9421, peer and v6 requests for one body size.

    Args:
        size: Body size in bytes.
        key: A P-521 signing key.

    Returns:
        The case.
    """
    body = make_body(size)
    created = int(time.time())
    common: dict[str, Any] = {
        "key": key,
        "url": URL,
        "created": created,
        "ttl": TTL,
        "nonce": "b3f0c2d1e4a5968778695a4b3c2d1e0f",
        "headers": EXTRA_HEADERS,
    }
    rfc = sign_webhook(body, dialect="rfc9421", components=COMPONENTS, encoding="der", **common)
    raw = sign_webhook(body, dialect="rfc9421", components=COMPONENTS, encoding="raw", **common)
    v6 = sign_webhook(body, dialect="upvest-v6", components=V6_COMPONENTS, encoding="der", **common)
    assert raw.base == rfc.base, "the peer must verify the same base"
    return Case(
        size=size,
        body=body,
        key=key,
        keys=make_key_set(key),
        rfc_headers=list(rfc.headers),
        rfc_base=rfc.base,
        rfc_der=_signature_bytes(rfc.headers),
        peer_request=PeerRequest("POST", raw.url, dict(raw.headers)),
        v6_headers=list(v6.headers),
        v6_base=v6.base,
        v6_der=_signature_bytes(v6.headers),
    )


def floor_fn(
    body: bytes, base: bytes, der: bytes, public_key: ec.EllipticCurvePublicKey, sha: str
) -> Callable[[], None]:
    """Return the floor: one body hash plus one ECDSA P-521/SHA-512 verify.

    Args:
        body: The body to hash.
        base: The precomputed signature base.
        der: The precomputed DER signature.
        public_key: The key.
        sha: ``"sha512"`` (RFC 9421 ``Content-Digest``) or ``"sha256"`` (v6 ``Digest``).

    Returns:
        A zero-argument callable.
    """
    hasher = hashlib.sha512 if sha == "sha512" else hashlib.sha256
    verify_ecdsa = public_key.verify
    algorithm = _ECDSA_SHA512

    def floor() -> None:
        hasher(body).digest()
        verify_ecdsa(der, base, algorithm)

    return floor
