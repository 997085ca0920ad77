"""Test utilities: make keys and sign webhooks exactly as Upvest would.

Use these to test your own webhook handlers without an Upvest account::

    from upvest_verify import Verifier
    from upvest_verify.testing import generate_key, make_key_set, sign_webhook

    key = generate_key()
    verifier = Verifier(make_key_set(key))
    signed = sign_webhook({"payload": []}, key=key, url="https://example.com/webhooks/upvest")
    webhook = verifier.verify(signed.method, signed.url, signed.headers, signed.body)

:func:`sign_webhook` writes every dialect the verifier accepts: Upvest's v6
layout with ``Digest`` or RFC 9421 with ``Content-Digest``, DER or raw r||s
signatures, and deterministic (RFC 6979) ECDSA for reproducible fixtures. It adds
the header fields an Upvest webhook carries and leaves the signing to
:func:`upvest_verify.signing.sign_request`; :class:`SigningKey` is
:class:`upvest_verify.signing.SigningKey`.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._crypto import KeyType
from ._keyset import KeySet
from ._message import split_url
from .errors import VerificationError
from .signing import SignedRequest, SigningKey, digest_fields, sign_request

__all__ = [
    "ManualClock",
    "SignedWebhook",
    "SigningKey",
    "generate_key",
    "make_jwks",
    "make_key_set",
    "sample_events",
    "sign_webhook",
]


class ManualClock:
    """A clock your test moves by hand, for every ``clock``/``monotonic`` argument.

    ``JWKSCache(..., monotonic=clock)``, ``Verifier(..., clock=clock)`` and the ledgers'
    ``clock=`` take it, so TTLs, cooldowns, leases and time windows never need sleeping.
    Thread-safe.

    Example::

        clock = ManualClock(1_700_000_000)
        verifier = Verifier(make_key_set(key), clock=clock)
        clock.advance(301)  # five minutes later

    Args:
        start: The first time it reads, in seconds.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        """The time it reads; settable."""
        with self._lock:
            return self._now

    @now.setter
    def now(self, value: float) -> None:
        with self._lock:
            self._now = float(value)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._now += seconds


# The emulator's tenant: every signed webhook names the same client.
_CLIENT_ID = "c3b6a1ab-0f76-4b6b-9b77-b1f4a3a7c2e1"


def generate_key(key_type: KeyType = "P-521", *, kid: str | None = None) -> SigningKey:
    """Generate a fresh signing key.

    Args:
        key_type: ``P-521`` (what Upvest uses), ``P-384``, ``P-256`` or ``Ed25519``.
        kid: The key id; a random UUID by default.

    Returns:
        The key.
    """
    return SigningKey.generate(key_type, key_id=kid or None)


def make_jwks(*keys: SigningKey) -> dict[str, list[dict[str, str]]]:
    """Return the JWKS document ``GET /auth/verify_keys`` would serve for these keys."""
    return {"keys": [k.public_jwk for k in keys]}


def make_key_set(*keys: SigningKey) -> KeySet:
    """Return a :class:`KeySet` holding the public halves of these keys (any key type)."""
    return KeySet.from_keys(k.verifying_key for k in keys)


@dataclass(frozen=True, slots=True)
class SignedWebhook(SignedRequest):
    """A signed webhook request, ready to send or to pass to ``verify()``.

    A :class:`~upvest_verify.signing.SignedRequest`, with its ``path`` and ``header()``;
    ``replace_header()`` and ``replace_body()`` return a :class:`SignedWebhook`.

    Attributes:
        method: The request method.
        url: The absolute URL.
        headers: Header field lines as ``(name, value)`` pairs.
        body: The raw body.
        base: The signature base that was signed (for debugging tests).
    """


def _has_query(url: str) -> bool:
    try:
        return bool(split_url(url)[3])
    except VerificationError:
        return False  # sign_request explains what is wrong with the URL


def _authority(url: str) -> str:
    # The Host field Upvest sends: the URL's authority as written, lower-cased.
    rest = url.partition("://")[2]
    slash = rest.find("/")
    return (rest if slash == -1 else rest[:slash]).lower()


def sign_webhook(
    body: bytes | Mapping[str, Any] | Sequence[Any],
    *,
    key: SigningKey,
    url: str = "https://receiver.example/webhooks/upvest",
    method: str = "POST",
    dialect: Literal["upvest-v6", "rfc9421"] = "upvest-v6",
    encoding: Literal["der", "raw"] = "der",
    digest: Literal["digest", "content-digest", "both", "none"] | None = None,
    components: Iterable[str] | None = None,
    created: int | None = None,
    expires: int | None = None,
    ttl: int | None = 60,
    nonce: str | None = None,
    with_nonce: bool = True,
    label: str = "sig1",
    headers: Iterable[tuple[str, str]] | None = None,
    alg: str | None = None,
    version_header: bool = False,
    deterministic: bool = False,
    params_order: Sequence[str] = ("keyid", "created", "expires", "nonce", "alg"),
) -> SignedWebhook:
    """Sign a webhook the way Upvest does.

    Args:
        body: Raw bytes, or a JSON-serialisable object (compact JSON is used).
        key: The signing key.
        url: The absolute receiver URL.
        method: The request method.
        dialect: ``"upvest-v6"`` (unquoted base names, ``Digest: SHA-256=``) or
            ``"rfc9421"`` (quoted names, ``Content-Digest: sha-512=``).
        encoding: ``"der"`` or ``"raw"`` r||s.
        digest: The digest field to add and cover: ``None`` picks the dialect's
            (``digest`` for v6, ``content-digest`` for RFC 9421), ``"both"`` adds
            both, ``"none"`` adds neither.
        components: Covered components, replacing the default set, written as
            :func:`~upvest_verify.signing.sign_request` takes them (``"@method"``,
            ``'@query-param;name="a"'``, ``"content-digest;sf"``).
        created: ``created``; defaults to now.
        expires: ``expires``; defaults to ``created + ttl``.
        ttl: Validity when ``expires`` is not given; ``None`` omits ``expires``.
        nonce: ``nonce``; random by default.
        with_nonce: Whether to send a nonce at all.
        label: The signature label.
        headers: Extra header fields (added before signing).
        alg: An ``alg`` parameter to include.
        version_header: Add ``upvest-signature-version`` (``6`` or ``15``), uncovered.
        deterministic: RFC 6979 deterministic ECDSA.
        params_order: Order of the signature parameters.

    Returns:
        The signed request.

    Raises:
        ValueError: A component cannot be covered (e.g. a header that is absent).
    """
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    now = int(time.time()) if created is None else created
    if digest is None:
        digest = "digest" if dialect == "upvest-v6" else "content-digest"
    fields: list[tuple[str, str]] = [
        ("host", _authority(url)),
        ("content-type", "application/json"),
        ("content-length", str(len(raw))),
        ("upvest-client-id", _CLIENT_ID),
        ("date", email.utils.formatdate(now, usegmt=True)),
        *digest_fields(raw, digest),
        *(headers or ()),
    ]
    if components is None:
        # What Upvest's signers cover: method, path, query if any, the entity headers
        # and the body digest, and the date.
        digest_names = {"both": ["digest", "content-digest"], "none": []}.get(digest, [digest])
        components = ["@method", "@path", *(["@query"] if _has_query(url) else [])]
        components.append("content-type")
        if raw:
            components += ["content-length", *digest_names]
        components.append("date")
    signed = sign_request(
        method,
        url,
        fields,
        raw,
        key=key,
        components=components,
        layout=dialect,
        encoding=encoding,
        digest="none",  # already among the fields, before the caller's extra headers
        created=now,
        expires=expires,
        ttl=ttl,
        nonce=nonce,
        with_nonce=with_nonce,
        label=label,
        alg=alg,
        version_header=version_header,
        deterministic=deterministic,
        params_order=params_order,
    )
    return SignedWebhook(signed.method, signed.url, signed.headers, signed.body, signed.base)


def sample_events(
    n: int = 1,
    *,
    types: Sequence[str] = ("ORDER.FILLED", "CASH_BALANCE.UPDATED", "POSITION.UPDATED"),
    webhook_id: str = "9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b",
    start: _dt.datetime | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Return a realistic ``{"payload": [...]}`` envelope of ``n`` events.

    Events are ordered by ``created_at`` like Upvest bundles; ids are fresh UUIDs.

    Args:
        n: Number of events.
        types: Event types, cycled.
        webhook_id: The subscription id.
        start: Timestamp of the first event (default: now, UTC).

    Returns:
        The envelope, ready for :func:`sign_webhook`.
    """
    t0 = start or _dt.datetime.now(_dt.timezone.utc)
    payload = []
    for i in range(n):
        kind = types[i % len(types)]
        when = (t0 + _dt.timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload.append(
            {
                "id": str(uuid.uuid4()),
                "created_at": when,
                "type": kind,
                "object": {
                    "id": str(uuid.uuid4()),
                    "currency": "EUR",
                    "balance": f"{100 + i}.25",
                    "status": kind.partition(".")[2],
                },
                "webhook_id": webhook_id,
            }
        )
    return {"payload": payload}
