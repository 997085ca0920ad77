"""SigningKey: a private key with its key id, for signing requests and webhooks.

Public through :mod:`upvest_verify.signing` (and :mod:`upvest_verify.testing`).
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import uuid
from typing import Any, Literal, TypeAlias, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ._crypto import KEY_TYPES, KeyType, VerifyingKey
from .errors import ConfigurationError

__all__ = ["PrivateKey", "SigningKey"]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""A private key :class:`SigningKey` can hold: ECDSA P-521/P-384/P-256 or Ed25519."""

# Curve, hash and scalar size (bytes) per ECDSA key type; the hash is fixed by the curve.
_CURVES: dict[KeyType, tuple[ec.EllipticCurve, hashes.HashAlgorithm, int]] = {
    "P-521": (ec.SECP521R1(), hashes.SHA512(), 66),
    "P-384": (ec.SECP384R1(), hashes.SHA384(), 48),
    "P-256": (ec.SECP256R1(), hashes.SHA256(), 32),
}
_CURVE_TYPES: dict[str, KeyType] = {c[0].name: t for t, c in _CURVES.items()}
_SUPPORTED = "P-521 (Upvest), P-384, P-256 or Ed25519"
_MAX_KEY_ID = 256  # threat-model.md §5 K2, as the verifier's keyid rule


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_type_of(private_key: object) -> KeyType:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        key_type = _CURVE_TYPES.get(private_key.curve.name)
        if key_type is None:
            raise ConfigurationError(
                f"EC curve {private_key.curve.name} is not supported; use {_SUPPORTED}"
            )
        return key_type
    if isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"RSA keys cannot sign Upvest requests; use {_SUPPORTED}")
    raise ConfigurationError(
        f"{type(private_key).__name__} is not a supported private key; use {_SUPPORTED}"
    )


_S = TypeVar("_S", bound="SigningKey")


class SigningKey:
    """A private key with its key id: signs webhooks (emulator) and API requests (client).

    Immutable and compared by value (key id, key type and private key); ``repr`` never
    shows the private key. Picklable, which writes the private key unencrypted.

    Args:
        key_id: The key id (``keyid`` in ``Signature-Input``; the JWKS ``kid``). May be
            given as ``kid=`` too, as in earlier releases.
        key_type: ``"P-521"`` (Upvest), ``"P-384"``, ``"P-256"`` or ``"Ed25519"``;
            defaults to the type of ``private_key``, and must match it when given.
        private_key: The ``cryptography`` private key.
        kid: Alias of ``key_id``.

    Raises:
        ConfigurationError: The key id is missing or unusable, or the key is not an EC
            P-521/P-384/P-256 or Ed25519 private key matching ``key_type``.
    """

    __slots__ = ("_key_id", "_key_type", "_private_key")

    _key_id: str
    _key_type: KeyType
    _private_key: PrivateKey

    def __init__(
        self,
        key_id: str | None = None,
        key_type: KeyType | None = None,
        private_key: PrivateKey | None = None,
        *,
        kid: str | None = None,
    ) -> None:
        if kid is not None:
            if key_id is not None and key_id != kid:
                raise ConfigurationError("give the key id once: key_id or kid, not both")
            key_id = kid
        if not isinstance(key_id, str) or not key_id or len(key_id) > _MAX_KEY_ID:
            raise ConfigurationError(
                f"key_id must be a non-empty str of at most {_MAX_KEY_ID} characters,"
                f" got {key_id!r}"
            )
        if private_key is None:
            raise ConfigurationError("SigningKey needs a private_key")
        actual = _key_type_of(private_key)
        if key_type is not None and key_type != actual:
            if key_type not in KEY_TYPES:
                raise ConfigurationError(f"key_type must be {_SUPPORTED}, got {key_type!r}")
            raise ConfigurationError(f"key_type is {key_type!r} but the private key is {actual}")
        object.__setattr__(self, "_key_id", key_id)
        object.__setattr__(self, "_key_type", actual)
        object.__setattr__(self, "_private_key", private_key)

    @classmethod
    def generate(cls: type[_S], key_type: KeyType = "P-521", *, key_id: str | None = None) -> _S:
        """Generate a fresh key.

        Args:
            key_type: ``"P-521"`` (what Upvest uses), ``"P-384"``, ``"P-256"`` or ``"Ed25519"``.
            key_id: The key id; a random UUID by default.

        Returns:
            The key.

        Raises:
            ConfigurationError: ``key_type`` is not one of those.
        """
        private: PrivateKey
        if key_type == "Ed25519":
            private = ed25519.Ed25519PrivateKey.generate()
        elif key_type in _CURVES:
            private = ec.generate_private_key(_CURVES[key_type][0])
        else:
            raise ConfigurationError(f"key_type must be {_SUPPORTED}, got {key_type!r}")
        return cls(key_id or str(uuid.uuid4()), key_type, private)

    @classmethod
    def from_pem(
        cls: type[_S], data: bytes | str, *, key_id: str, password: bytes | str | None = None
    ) -> _S:
        """Load a PEM private key: PKCS#8 (plain or encrypted) or traditional ``EC PRIVATE KEY``.

        The legacy encrypted traditional form (``Proc-Type: 4,ENCRYPTED`` and
        ``DEK-Info``), which ``openssl ecparam -genkey -name secp521r1 | openssl ec
        -aes256`` writes, is read too (upvest-protocol.md §7).

        Args:
            data: The PEM text.
            key_id: The key id registered with Upvest.
            password: The passphrase of an encrypted key.

        Returns:
            The key.

        Raises:
            ConfigurationError: Not a PEM private key (garbage, a public key or a
                certificate), a missing or wrong password, a password for a plain key,
                or a key type other than EC P-521/P-384/P-256 or Ed25519.
        """
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if b"-----BEGIN " not in raw:
            raise ConfigurationError("not a PEM private key: no '-----BEGIN' line")
        if b"PRIVATE KEY-----" not in raw:
            what = "a public key" if b"PUBLIC KEY-----" in raw else "no private key"
            raise ConfigurationError(f"the PEM holds {what}; signing needs a private key")
        # "-----BEGIN ENCRYPTED PRIVATE KEY-----" (PKCS#8) or "Proc-Type: 4,ENCRYPTED".
        encrypted = b"ENCRYPTED" in raw
        secret = password.encode("utf-8") if isinstance(password, str) else password
        if encrypted != bool(secret):
            raise ConfigurationError(
                "the private key is encrypted: pass its password"
                if encrypted
                else "a password was given but the private key is not encrypted"
            )
        try:
            private = serialization.load_pem_private_key(raw, secret)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            why = "wrong password, or an unsupported cipher" if encrypted else str(e)
            raise ConfigurationError(f"cannot read the PEM private key: {why}") from e
        return cls(key_id, None, _check_private(private))

    def to_pem(self, password: bytes | str | None = None) -> bytes:
        """Write the private key as PKCS#8 PEM.

        Args:
            password: Encrypt with this passphrase (the best cipher ``cryptography``
                offers); unencrypted when ``None``.

        Returns:
            The PEM bytes.
        """
        secret = password.encode("utf-8") if isinstance(password, str) else password
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
        if secret:
            encryption = serialization.BestAvailableEncryption(secret)
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @property
    def key_id(self) -> str:
        """The key id (``keyid`` parameter, JWKS ``kid``)."""
        return self._key_id

    @property
    def kid(self) -> str:
        """Alias of :attr:`key_id`."""
        return self._key_id

    @property
    def key_type(self) -> KeyType:
        """``"P-521"``, ``"P-384"``, ``"P-256"`` or ``"Ed25519"``."""
        return self._key_type

    @property
    def private_key(self) -> PrivateKey:
        """The ``cryptography`` private key."""
        return self._private_key

    def _secret(self) -> bytes:
        key = self._private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        return key.private_numbers().private_value.to_bytes(_CURVES[self._key_type][2], "big")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return (
            self._key_id == other._key_id
            and self._key_type == other._key_type
            and hmac.compare_digest(self._secret(), other._secret())
        )

    def __hash__(self) -> int:
        public = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hash((self._key_id, self._key_type, public))

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self._key_id!r}, key_type={self._key_type!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        der = self._private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return (_unpickle, (self._key_id, self._key_type, der))

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, shaped like an entry of Upvest's ``/auth/verify_keys``."""
        public = self._private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return {"kid": self._key_id, "kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
        size = _CURVES[self._key_type][2]
        numbers = public.public_numbers()
        return {
            "kid": self._key_id,
            "kty": "EC",
            "crv": self._key_type,
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }

    @property
    def verifying_key(self) -> VerifyingKey:
        """The matching public :class:`~upvest_verify.VerifyingKey`."""
        return VerifyingKey(self._key_id, self._key_type, self._private_key.public_key())

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
            encoding: ``"der"`` (Upvest tooling) or ``"raw"`` fixed-size r||s (RFC 9421
                §3.3.4). Ed25519 signatures are always the 64 raw bytes.
            deterministic: Use RFC 6979 deterministic ECDSA (reproducible output).
            hash_algorithm: Override the curve's hash (to build wrong-hash negatives).

        Returns:
            The signature bytes.
        """
        key = self._private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        _, default_hash, size = _CURVES[self._key_type]
        algorithm = ec.ECDSA(hash_algorithm or default_hash, deterministic_signing=deterministic)
        der = key.sign(message, algorithm)
        if encoding == "der":
            return der
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _check_private(key: object) -> PrivateKey:
    _key_type_of(key)  # raises ConfigurationError for RSA, other curves, Ed448...
    assert isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return key


def _unpickle(key_id: str, key_type: KeyType, der: bytes) -> SigningKey:
    private = serialization.load_der_private_key(der, None)
    return SigningKey(key_id, key_type, _check_private(private))


# -- signed requests ----------------------------------------------------------------
