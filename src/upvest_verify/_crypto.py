"""The hazmat seam: every call into ``cryptography`` lives here.

Three jobs, all small and all strict:

* :func:`jwk_to_key` turns one JWK (RFC 7517) into a :class:`VerifyingKey`, after
  checking the rules of ``threat-model.md`` §5 K2 ourselves: key type and curve on
  the allow-list, unpadded base64url coordinates of exactly the curve's size, a point
  on the curve, no private part, and ``use``/``key_ops``/``alg``/``kid`` that fit.
* :func:`decode_signature` turns the bytes of a ``Signature`` member into what
  ``cryptography`` verifies: strict ASN.1 DER ``SEQUENCE {r, s}`` as is, or raw
  ``r || s`` (IEEE P1363, RFC 9421 §3.3.4) converted to DER. It runs on every request,
  so it costs a few microseconds.
* :func:`verify_signature` runs the real verify primitive (RFC 9421 §7.3.5: never
  re-sign and compare) and answers ``True``/``False``; it never raises.

No ``cryptography`` exception leaves this module: key problems become
:class:`UnusableKey`, signature problems ``VerificationError(Reason.BAD_SIGNATURE)``
or ``False``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import Reason, VerificationError

__all__ = [
    "ALGORITHMS",
    "KEY_TYPES",
    "REGISTERED_ALGORITHMS",
    "KeyType",
    "SignatureEncoding",
    "UnusableKey",
    "VerifyingKey",
    "decode_signature",
    "jwk_to_key",
    "verify_signature",
]

KeyType = Literal["P-521", "P-384", "P-256", "Ed25519"]
"""A key type the verifier can use: an ECDSA curve (with its matching hash) or Ed25519."""

SignatureEncoding = Literal["der", "raw"]
"""How signature bytes arrived: ASN.1 DER ``SEQUENCE {r, s}`` or raw ``r || s``."""

KEY_TYPES: Final[frozenset[KeyType]] = frozenset({"P-521", "P-384", "P-256", "Ed25519"})
"""Every key type this module knows. Policies choose a subset (default: P-521 only)."""

ALGORITHMS: Final[dict[KeyType, str]] = {
    "P-521": "ecdsa-p521-sha512",
    "P-384": "ecdsa-p384-sha384",
    "P-256": "ecdsa-p256-sha256",
    "Ed25519": "ed25519",
}
"""HTTP Message Signature algorithm name per key type (RFC 9421 §6.2.2; P-521 unregistered)."""

REGISTERED_ALGORITHMS: Final[frozenset[str]] = frozenset(
    {"ecdsa-p384-sha384", "ecdsa-p256-sha256", "ed25519"}
)
"""The names of :data:`ALGORITHMS` in the IANA registry (RFC 9421 §6.2.2)."""

# Bytes per scalar / coordinate (RFC 7518 §6.2.1.2: "the full coordinate size").
_SIZES: Final[dict[str, int]] = {"P-521": 66, "P-384": 48, "P-256": 32}
_ED25519_SIZE: Final = 32  # RFC 8037 §2: 32-byte public key; RFC 8032 §5.1.6: 64-byte signature

# The longest strict DER ``SEQUENCE {r, s}`` with 0 < r, s < n for each curve. An INTEGER
# needs a leading 0x00 when its top bit is set, which a 256- or 384-bit n allows, while
# P-521's top byte is at most 0x01. Anything longer can never verify, so it is rejected
# before parsing (P-521 DER signatures are 137-139 bytes in practice).
_DER_MAX: Final[dict[str, int]] = {
    "P-256": 2 + 2 * (2 + 33),  # 72
    "P-384": 2 + 2 * (2 + 49),  # 104
    "P-521": 3 + 2 * (2 + 66),  # 139
}

# The hash each ECDSA key type is used with.
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "P-521": hashes.SHA512,
    "P-384": hashes.SHA384,
    "P-256": hashes.SHA256,
}
# key type -> its ECDSA algorithm object, created with the first key of that type
# and kept: building one costs about 2 µs per request otherwise, and the first one
# imports OpenSSL's backend module (~5 ms), which loading a key set pays for rather
# than importing this module or the first verification.
_ECDSA: Final[dict[str, ec.ECDSA]] = {}


def _ecdsa(key_type: str) -> ec.ECDSA | None:
    """The ECDSA algorithm object for ``key_type``, or ``None`` for Ed25519."""
    algorithm = _ECDSA.get(key_type)
    if algorithm is None:
        hash_type = _HASHES.get(key_type)
        if hash_type is None:
            return None
        algorithm = _ECDSA.setdefault(key_type, ec.ECDSA(hash_type()))
    return algorithm


_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "P-521": ec.SECP521R1(),
    "P-384": ec.SECP384R1(),
    "P-256": ec.SECP256R1(),
}
_CURVE_NAMES: Final[dict[str, str]] = {crv: curve.name for crv, curve in _CURVES.items()}

# Field primes (SEC 2 §2.4.2, §2.5.1, §2.6.1). ``cryptography`` accepts x + p for P-521
# (it still fits in 66 bytes and reduces to the same point), so coordinates are
# range-checked here to keep one canonical encoding per key.
_FIELD_PRIMES: Final[dict[str, int]] = {
    "P-256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "P-384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "P-521": 2**521 - 1,
}

# JWS "alg" values a JWK may name for each key type (RFC 7518 §3.1, RFC 8037 §3.1,
# RFC 9864 §2.2 for the fully specified "Ed25519").
_JWK_ALGS: Final[dict[str, frozenset[str]]] = {
    "P-521": frozenset({"ES512"}),
    "P-384": frozenset({"ES384"}),
    "P-256": frozenset({"ES256"}),
    "Ed25519": frozenset({"EdDSA", "Ed25519"}),
}

MAX_KID_LENGTH: Final = 256
"""Longest accepted ``kid`` (characters), threat-model.md §5 K2."""

# RFC 7515 §2 / RFC 4648 §5: base64url "with all trailing '=' characters omitted".
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class UnusableKey(ValueError):
    """A JWK cannot be used for verification; ``str(exc)`` says why.

    Args:
        why: Human-readable reason, e.g. ``"x is 65 bytes, expected 66"``.
        kid: The JWK's ``kid`` when it is a usable identifier, else ``None``.

    Attributes:
        why: The reason.
        kid: The ``kid``, or ``None``.
    """

    def __init__(self, why: str, *, kid: str | None = None) -> None:
        self.why = why
        self.kid = kid
        super().__init__(why)


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A public key bound to its ``kid`` and key type; the only key the verifier uses.

    The key type fixes the algorithm (P-521 means ECDSA with SHA-512, and so on), so a
    signature's ``alg`` parameter can only confirm it, never change it (RFC 9421 §7.3.6).

    Args:
        kid: The key identifier (non-empty, at most 256 characters).
        key_type: ``"P-521"``, ``"P-384"``, ``"P-256"`` or ``"Ed25519"``.
        public_key: The ``cryptography`` public key; its curve must match ``key_type``.

    Raises:
        ValueError: If ``kid`` is not a usable identifier or ``public_key`` does not
            match ``key_type``.
    """

    kid: str
    key_type: KeyType
    public_key: ec.EllipticCurvePublicKey | Ed25519PublicKey

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if self.key_type == "Ed25519":
            if not isinstance(self.public_key, Ed25519PublicKey):
                raise ValueError("key_type 'Ed25519' needs an Ed25519PublicKey")
        elif self.key_type in _CURVE_NAMES:
            if not (
                isinstance(self.public_key, ec.EllipticCurvePublicKey)
                and self.public_key.curve.name == _CURVE_NAMES[self.key_type]
            ):
                raise ValueError(f"key_type {self.key_type!r} needs an EC key on that curve")
            _ecdsa(self.key_type)  # ready before the first verification with this key
        else:
            raise ValueError(f"unknown key_type {self.key_type!r}")

    @property
    def algorithm(self) -> str:
        """The HTTP Message Signatures algorithm name, e.g. ``"ecdsa-p521-sha512"``."""
        return ALGORITHMS[self.key_type]

    def __hash__(self) -> int:
        # ``cryptography`` public keys compare by value but are unhashable; hash the
        # SubjectPublicKeyInfo so equal keys hash equally.
        return hash((self.kid, self.key_type, _spki(self.public_key)))


def _spki(public_key: ec.EllipticCurvePublicKey | Ed25519PublicKey) -> bytes:
    # Imported here: the serialization package costs more to import than all the
    # rest of cryptography this module needs, and only hashing a key uses it.
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _bad_signature(message: str) -> VerificationError:
    return VerificationError(Reason.BAD_SIGNATURE, message)


def _is_strict_der(signature: bytes) -> bool:
    # X.690 §10 (DER): definite short-form-when-possible lengths, minimal INTEGER
    # encodings, nothing after the SEQUENCE. ``decode_dss_signature`` already parses
    # strict DER; re-encoding and comparing makes any BER leniency (long-form lengths,
    # leading zeros, trailing bytes, indefinite length) fail here regardless (~2.5 µs).
    try:
        r, s = decode_dss_signature(signature)
        return encode_dss_signature(r, s) == signature
    except (ValueError, OverflowError):
        return False


def decode_signature(
    key_type: KeyType,
    signature: bytes,
    encoding: Literal["auto", "der", "raw"],
) -> tuple[bytes, SignatureEncoding]:
    """Turn received signature bytes into the form :func:`verify_signature` takes.

    ECDSA: ``"der"`` accepts only strict DER ``SEQUENCE {r, s}``; ``"raw"`` accepts
    only ``r || s`` of exactly twice the scalar size (132 bytes for P-521, 96 for
    P-384, 64 for P-256), converted to DER; ``"auto"`` tries strict DER, then raw.
    The two forms cannot be confused for P-521: a raw signature starts with 0x00 or
    0x01 (r < n < 2**521), DER with 0x30. Ed25519 signatures are 64 raw bytes
    (RFC 8032 §5.1.6) and have no DER form.

    Args:
        key_type: The key type the signature is checked against.
        signature: The decoded bytes of the ``Signature`` member.
        encoding: ``"auto"``, ``"der"`` or ``"raw"`` (policy ``signature_encoding``).

    Returns:
        ``(signature bytes for verify_signature, encoding it arrived in)``: DER for
        ECDSA, the 64 raw bytes for Ed25519.

    Raises:
        VerificationError: ``Reason.BAD_SIGNATURE`` if the bytes fit no allowed form.
    """
    size = _SIZES.get(key_type)
    if size is None:
        if key_type == "Ed25519" and encoding != "der" and len(signature) == 64:
            return signature, "raw"
        raise _bad_signature(
            f"{key_type} signature must be 64 raw bytes, got {len(signature)} bytes"
            f" ({encoding!r} encoding)"
        )
    if encoding != "raw":
        if (
            signature[:1] == b"\x30"
            and len(signature) <= _DER_MAX[key_type]
            # A P-521 r||s cannot start with 0x30 (r < n < 2**521), so such bytes are
            # DER or nothing, and OpenSSL's verify rejects any non-strict DER itself: it
            # re-encodes what it parsed and compares (ecdsa_ossl.c, since CVE-2014-8275).
            # The Wycheproof BER cases in tests/core/test_crypto.py hold it to that.
            # Other curves need the check here to tell DER from r||s.
            and (key_type == "P-521" or _is_strict_der(signature))
        ):
            return signature, "der"
        if encoding == "der":
            raise _bad_signature(f"not a strict DER {key_type} ECDSA signature")
    # RFC 9421 §3.3.4: "the signature is the concatenation of r and s, each encoded
    # as a big-endian unsigned integer of the curve's scalar size"; any other length
    # is an error (Wycheproof SignatureSize vectors).
    if len(signature) == 2 * size:
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        return encode_dss_signature(r, s), "raw"
    if encoding == "raw":
        raise _bad_signature(
            f"raw {key_type} signature must be {2 * size} bytes, got {len(signature)}"
        )
    raise _bad_signature(
        f"{key_type} signature is neither strict DER nor {2 * size} raw bytes"
        f" ({len(signature)} bytes)"
    )


def verify_signature(key: VerifyingKey, signature: bytes, message: bytes) -> bool:
    """Check ``signature`` over ``message`` with ``key``; never raises.

    ECDSA uses the hash fixed by the key type (P-521 with SHA-512, P-384 with SHA-384,
    P-256 with SHA-256); ``signature`` is DER as returned by :func:`decode_signature`.
    Ed25519 takes the 64 raw bytes.

    Args:
        key: The key named by the signature's ``keyid``.
        signature: Output of :func:`decode_signature` for ``key.key_type``.
        message: The signature base, exactly as built (no trailing newline).

    Returns:
        ``True`` if the signature is valid; ``False`` otherwise, including for
        malformed input (fail closed).
    """
    algorithm = _ECDSA.get(key.key_type)
    if algorithm is None and key.key_type != "Ed25519":
        algorithm = _ecdsa(key.key_type)  # a key built without __post_init__
    # Any, not cast(): cast() is a function call, and this runs once per request.
    public_key: Any = key.public_key
    try:
        if algorithm is None:
            public_key.verify(signature, message)  # Ed25519PublicKey
        else:
            public_key.verify(signature, message, algorithm)  # EllipticCurvePublicKey
    except (_CryptoInvalidSignature, ValueError, OverflowError, TypeError):
        return False
    return True


def _check_kid(kid: object) -> str:
    # threat-model.md §5 K2: "kid is a non-empty string of at most 256 characters".
    if not isinstance(kid, str):
        raise UnusableKey(f"kid must be a string, not {type(kid).__name__}")
    if not kid:
        raise UnusableKey("kid is empty")
    if len(kid) > MAX_KID_LENGTH:
        raise UnusableKey(f"kid is {len(kid)} characters, at most {MAX_KID_LENGTH} allowed")
    return kid


def _coordinate(jwk: Mapping[str, object], name: str, key_type: str, size: int) -> bytes:
    """Decode one coordinate: unpadded base64url of exactly ``size`` bytes (RFC 7518 §6.2.1.2)."""
    value = jwk.get(name)
    if value is None:
        raise UnusableKey(f"{name} is missing")
    if not isinstance(value, str):
        raise UnusableKey(f"{name} must be a string, not {type(value).__name__}")
    if "=" in value:
        raise UnusableKey(f"{name} is padded; JWK values are unpadded base64url")
    if "+" in value or "/" in value:
        raise UnusableKey(f"{name} uses the standard base64 alphabet, not base64url")
    if _BASE64URL.fullmatch(value) is None:
        raise UnusableKey(f"{name} contains characters outside base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise UnusableKey(f"{name} is not valid base64url: {e}") from e
    if len(raw) != size:
        # RFC 7518 §6.2.1.2: "MUST be the full size of a coordinate for the curve".
        # A 65-byte P-521 coordinate (leading zero trimmed) is a known interop bug.
        raise UnusableKey(f"{name} is {len(raw)} bytes, expected {size} for {key_type}")
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != value.encode("ascii"):
        raise UnusableKey(f"{name} is not canonical base64url (non-zero trailing bits)")
    return raw


def _key_type_of(jwk: Mapping[str, object], key_types: frozenset[KeyType]) -> KeyType:
    kty = jwk.get("kty")
    crv = jwk.get("crv")
    if not isinstance(kty, str):
        raise UnusableKey("kty is missing or not a string")
    if kty == "EC":
        if crv not in ("P-521", "P-384", "P-256"):
            raise UnusableKey(f"unsupported EC curve {crv!r}")
    elif kty == "OKP":
        if crv != "Ed25519":
            raise UnusableKey(f"unsupported OKP curve {crv!r}")
    else:
        raise UnusableKey(f"unsupported key type kty={kty!r}")
    key_type: KeyType = crv
    if key_type not in key_types:
        allowed = ", ".join(sorted(key_types)) or "none"
        raise UnusableKey(f"key type {key_type} is not allowed (allowed: {allowed})")
    return key_type


def _check_usage(jwk: Mapping[str, object], key_type: KeyType) -> None:
    # RFC 7517 §4.2: "use" -- "sig" for signature keys.
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"use is {use!r}, expected 'sig'")
    # RFC 7517 §4.3: "key_ops" -- an array of strings; "verify" is needed here.
    key_ops = jwk.get("key_ops")
    if key_ops is not None:
        if not isinstance(key_ops, list) or not all(isinstance(op, str) for op in key_ops):
            raise UnusableKey("key_ops must be an array of strings")
        if "verify" not in key_ops:
            raise UnusableKey(f"key_ops {key_ops!r} does not include 'verify'")
    # RFC 7517 §4.4: "alg" -- must name the algorithm this key type implies.
    alg = jwk.get("alg")
    if alg is not None and alg not in _JWK_ALGS[key_type]:
        expected = " or ".join(sorted(_JWK_ALGS[key_type]))
        raise UnusableKey(f"alg {alg!r} does not match a {key_type} key (expected {expected})")


def jwk_to_key(jwk: Mapping[str, object], *, key_types: frozenset[KeyType]) -> VerifyingKey:
    """Import one JWK after the strict checks of threat-model.md §5 K2.

    Accepted: ``kty`` ``EC`` with ``crv`` ``P-521`` (``P-384``/``P-256`` only when in
    ``key_types``), or ``kty`` ``OKP`` with ``crv`` ``Ed25519`` when allowed;
    coordinates in unpadded, canonical base64url of exactly the curve's size (66 bytes
    for P-521, 48, 32; 32 for an Ed25519 ``x``), each below the field prime, forming a
    point on the curve; no ``d``; ``use`` (if present) ``"sig"``; ``key_ops`` (if
    present) including ``"verify"``; ``alg`` (if present) ``ES512``/``ES384``/
    ``ES256``/``EdDSA``/``Ed25519`` to match; ``kid`` a non-empty string of at most
    256 characters. Unknown members are ignored (RFC 7517 §4).

    Args:
        jwk: One member of a JWKS ``keys`` array.
        key_types: The key types the policy allows (``frozenset({"P-521"})`` for Upvest).

    Returns:
        The :class:`VerifyingKey`.

    Raises:
        UnusableKey: The key fails a check; ``str(exc)`` says which.
    """
    if not isinstance(jwk, Mapping):
        raise UnusableKey(f"a JWK must be a JSON object, not {type(jwk).__name__}")
    kid = _check_kid(jwk.get("kid"))
    try:
        key_type = _key_type_of(jwk, key_types)
        # A verification key set holds public keys only; a private part means the
        # publisher leaked it or the set was mixed up (Wycheproof "MixedKeySet").
        if "d" in jwk:
            raise UnusableKey("the JWK contains a private key ('d')")
        _check_usage(jwk, key_type)
        y: bytes | None = None
        if key_type == "Ed25519":
            x = _coordinate(jwk, "x", key_type, _ED25519_SIZE)
        else:
            size = _SIZES[key_type]
            x = _coordinate(jwk, "x", key_type, size)
            y = _coordinate(jwk, "y", key_type, size)
            prime = _FIELD_PRIMES[key_type]
            if int.from_bytes(x, "big") >= prime or int.from_bytes(y, "big") >= prime:
                raise UnusableKey("a coordinate is not below the field prime")
        public_key = _import(key_type, x, y)
    except UnusableKey as e:
        e.kid = kid
        raise
    return VerifyingKey(kid=kid, key_type=key_type, public_key=public_key)


def _import(
    key_type: KeyType, x: bytes, y: bytes | None
) -> ec.EllipticCurvePublicKey | Ed25519PublicKey:
    """Build the key object from the validated coordinates, with ``cryptography``.

    The JWK's members were checked above; what is left is the point itself, which
    ``cryptography`` (OpenSSL) refuses unless it lies on the curve (SEC 1 §3.2.2.1).
    No JOSE library is involved: importing one costs a cold process about three times
    the floor's own imports (``benchmarks/bench_cold.py``), for this one call.
    """
    try:
        if key_type == "Ed25519":
            return Ed25519PublicKey.from_public_bytes(x)
        assert y is not None
        point = b"\x04" + x + y  # SEC 1 §2.3.3, uncompressed
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[key_type], point)
    except (ValueError, TypeError) as e:
        reason = "the point is not on the curve" if key_type != "Ed25519" else "bad key"
        raise UnusableKey(f"{reason}: {e}") from e
