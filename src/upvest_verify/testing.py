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
signatures, and deterministic (RFC 6979) ECDSA for reproducible fixtures. The
signature base is assembled here independently of the verifier's own code.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ._crypto import KeyType, VerifyingKey
from ._keyset import KeySet

__all__ = [
    "SignedWebhook",
    "SigningKey",
    "generate_key",
    "make_jwks",
    "make_key_set",
    "sample_events",
    "sign_webhook",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm, int]] = {
    "P-521": (ec.SECP521R1(), hashes.SHA512(), 66),
    "P-384": (ec.SECP384R1(), hashes.SHA384(), 48),
    "P-256": (ec.SECP256R1(), hashes.SHA256(), 32),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its ``kid``, for signing test webhooks.

    Attributes:
        kid: The key id (a UUID by default, like Upvest's).
        key_type: ``P-521`` (Upvest), ``P-384``, ``P-256`` or ``Ed25519``.
        private_key: The ``cryptography`` private key.
    """

    kid: str
    key_type: KeyType
    private_key: PrivateKey = field(repr=False)

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, shaped like an entry of Upvest's ``/auth/verify_keys``."""
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return {"kid": self.kid, "kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
        assert isinstance(public, ec.EllipticCurvePublicKey)
        size = _CURVES[self.key_type][2]
        numbers = public.public_numbers()
        return {
            "kid": self.kid,
            "kty": "EC",
            "crv": self.key_type,
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }

    @property
    def verifying_key(self) -> VerifyingKey:
        """The matching public :class:`VerifyingKey`."""
        public = self.private_key.public_key()
        assert isinstance(public, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey))
        return VerifyingKey(kid=self.kid, key_type=self.key_type, public_key=public)

    def sign(
        self,
        message: bytes,
        *,
        encoding: Literal["der", "raw"] = "der",
        deterministic: bool = False,
        hash_algorithm: hashes.HashAlgorithm | None = None,
    ) -> bytes:
        """Sign raw bytes (a signature base).

        Args:
            message: What to sign.
            encoding: ``"der"`` (Upvest tooling) or ``"raw"`` fixed-size r||s (RFC 9421).
            deterministic: Use RFC 6979 deterministic ECDSA (reproducible output).
            hash_algorithm: Override the curve's hash (to build wrong-hash negatives).

        Returns:
            The signature bytes.
        """
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        _, default_hash, size = _CURVES[self.key_type]
        algorithm = ec.ECDSA(hash_algorithm or default_hash, deterministic_signing=deterministic)
        der = self.private_key.sign(message, algorithm)
        if encoding == "der":
            return der
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def generate_key(key_type: KeyType = "P-521", *, kid: str | None = None) -> SigningKey:
    """Generate a fresh signing key.

    Args:
        key_type: ``P-521`` (what Upvest uses), ``P-384``, ``P-256`` or ``Ed25519``.
        kid: The key id; a random UUID by default.

    Returns:
        The key.
    """
    private: PrivateKey
    if key_type == "Ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(_CURVES[key_type][0])
    return SigningKey(kid=kid or str(uuid.uuid4()), key_type=key_type, private_key=private)


def make_jwks(*keys: SigningKey) -> dict[str, list[dict[str, str]]]:
    """Return the JWKS document ``GET /auth/verify_keys`` would serve for these keys."""
    return {"keys": [k.public_jwk for k in keys]}


def make_key_set(*keys: SigningKey) -> KeySet:
    """Return a :class:`KeySet` holding the public halves of these keys (any key type)."""
    return KeySet.from_keys(k.verifying_key for k in keys)


@dataclass(frozen=True, slots=True)
class SignedWebhook:
    """A signed webhook request, ready to send or to pass to ``verify()``.

    Attributes:
        method: The request method.
        url: The absolute URL.
        headers: Header field lines as ``(name, value)`` pairs.
        body: The raw body.
        base: The signature base that was signed (for debugging tests).
    """

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    base: bytes = field(repr=False)

    @property
    def path(self) -> str:
        """The request target in origin form (path and query)."""
        rest = self.url.split("://", 1)[-1]
        slash = rest.find("/")
        return rest[slash:] if slash != -1 else "/"

    def header(self, name: str) -> str | None:
        """Return the first value of a header, or ``None``."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def replace_header(self, name: str, value: str | None) -> SignedWebhook:
        """Return a copy with header ``name`` set to ``value`` (or removed if ``None``)."""
        lower = name.lower()
        headers = [(k, v) for k, v in self.headers if k.lower() != lower]
        if value is not None:
            headers.append((name, value))
        return SignedWebhook(self.method, self.url, headers, self.body, self.base)

    def replace_body(self, body: bytes) -> SignedWebhook:
        """Return a copy with another body and the same headers (a tampered request)."""
        return SignedWebhook(self.method, self.url, list(self.headers), body, self.base)


def _split(url: str) -> tuple[str, str, str, str | None]:
    scheme, _, rest = url.partition("://")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash == -1 else (rest[:slash], rest[slash:])
    path, sep, query = target.partition("?")
    return scheme.lower(), authority.lower(), path or "/", query if sep else None


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        components: Covered component names, replacing the default set.
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
    """
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    now = int(time.time()) if created is None else created
    scheme, authority, path, query = _split(url)
    if digest is None:
        digest = "digest" if dialect == "upvest-v6" else "content-digest"
    fields: list[tuple[str, str]] = [
        ("host", authority),
        ("content-type", "application/json"),
        ("content-length", str(len(raw))),
        ("upvest-client-id", "c3b6a1ab-0f76-4b6b-9b77-b1f4a3a7c2e1"),
        ("date", email.utils.formatdate(now, usegmt=True)),
    ]
    if digest in ("digest", "both"):
        fields.append(
            ("digest", "SHA-256=" + base64.b64encode(hashlib.sha256(raw).digest()).decode())
        )
    if digest in ("content-digest", "both"):
        value = base64.b64encode(hashlib.sha512(raw).digest()).decode()
        fields.append(("content-digest", f"sha-512=:{value}:"))
    fields.extend(headers or ())
    digest_names = {"both": ["digest", "content-digest"], "none": []}.get(digest, [digest])
    if components is not None:
        names = list(components)
    else:
        # What Upvest's signers cover: method, path, query if any, the entity headers
        # and the body digest, and the date.
        names = ["@method", "@path", *(["@query"] if query else []), "content-type"]
        if raw:
            names += ["content-length", *digest_names]
        names.append("date")

    def value_of(name: str) -> str:
        if name == "@method":
            return method
        if name == "@path":
            return path
        if name == "@query":
            return "?" + (query or "")
        if name == "@authority":
            return authority
        if name == "@scheme":
            return scheme
        if name == "@target-uri":
            return url.split("#", 1)[0]
        if name == "@request-target":
            return path if query is None else f"{path}?{query}"
        values = [v.strip() for k, v in fields if k.lower() == name]
        if not values:
            raise ValueError(f"cannot cover {name!r}: no such header")
        return ", ".join(values)

    params: dict[str, str] = {
        "keyid": f"keyid={_sf_string(key.kid)}",
        "created": f"created={now}",
    }
    if expires is not None or ttl is not None:
        params["expires"] = f"expires={expires if expires is not None else now + (ttl or 0)}"
    if with_nonce:
        params["nonce"] = f"nonce={_sf_string(nonce or uuid.uuid4().hex)}"
    if alg is not None:
        params["alg"] = f"alg={_sf_string(alg)}"
    ordered = [params.pop(p) for p in params_order if p in params] + list(params.values())
    signature_params = "(" + " ".join(_sf_string(n) for n in names) + ")"
    signature_params += "".join(";" + p for p in ordered)
    quote = dialect == "rfc9421"
    lines = [f"{_sf_string(n) if quote else n}: {value_of(n)}" for n in names]
    label_line = '"@signature-params"' if quote else "@signature-params"
    lines.append(f"{label_line}: {signature_params}")
    base = "\n".join(lines).encode("ascii")
    signature = key.sign(base, encoding=encoding, deterministic=deterministic)
    out = list(fields)
    out.append(("signature-input", f"{label}={signature_params}"))
    out.append(("signature", f"{label}=:{base64.b64encode(signature).decode()}:"))
    if version_header:
        out.append(("upvest-signature-version", "6" if dialect == "upvest-v6" else "15"))
    return SignedWebhook(method=method, url=url, headers=out, body=raw, base=base)


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
