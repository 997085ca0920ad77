"""Tests for JWK import (``jwk_to_key``) and the immutable ``KeySet``.

Covers threat-model.md §5 K2 and §6 C8-C12, C15, F8 and F9, plus the Upvest example key
and the applicable Wycheproof ``json_web_key_test.json`` cases (read from
``<project root>/../shared/vectors/wycheproof``, never copied into the repo).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from upvest_verify._crypto import (
    KEY_TYPES,
    KeyType,
    UnusableKey,
    decode_signature,
    jwk_to_key,
    verify_signature,
)
from upvest_verify._keyset import MAX_JWKS_BYTES, MAX_KEYS, KeySet
from upvest_verify.errors import (
    ConfigurationError,
    JWKSError,
    KeyNotFound,
    Reason,
    VerificationError,
)

WYCHEPROOF = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "wycheproof"
JWK_FILE = "json_web_key_test.json"

P521_ONLY: frozenset[KeyType] = frozenset({"P-521"})
P521_PRIME = 2**521 - 1

# The example response of GET /auth/verify_keys in Upvest's API reference (also in the
# generated Upvest SDK docs, "Get Jwks" example): a real P-521 point.
UPVEST_KID = "9ed77463-c18e-4794-ab5c-17423f9b801a"
UPVEST_JWKS_TEXT = """{
  "keys": [
    {
      "kid": "9ed77463-c18e-4794-ab5c-17423f9b801a",
      "kty": "EC",
      "crv": "P-521",
      "x": "AcYAf5Ou0UvtehpeRvyhnvvrUQvjI4B3VCxfSmxK4gqKJGxO_jTB-nTdrHbBfmZpwmwYR86DppMg43E579K5MQ54",
      "y": "ALkrId77iD0Ye2vBS5bTkLqPH-bo8urTpTXiNc6Ub-VOFbXfJrR0tQ8COvVXXu58BTu8jWV-1mtbjfJpDl3ISbcK"
    }
  ]
}"""


# --------------------------------------------------------------------------- helpers


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_CRV = {"secp521r1": "P-521", "secp384r1": "P-384", "secp256r1": "P-256"}


def _ec_jwk(private_key: ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = private_key.public_key().public_numbers()
    size = (private_key.curve.key_size + 7) // 8
    jwk: dict[str, Any] = {
        "kty": "EC",
        "crv": _CRV[private_key.curve.name],
        "kid": kid,
        "x": _b64u(numbers.x.to_bytes(size, "big")),
        "y": _b64u(numbers.y.to_bytes(size, "big")),
    }
    jwk.update(extra)
    return jwk


def _p521_jwk(kid: str = "good", **extra: Any) -> dict[str, Any]:
    return _ec_jwk(ec.generate_private_key(ec.SECP521R1()), kid, **extra)


def _ed25519_jwk(kid: str = "ed", **extra: Any) -> dict[str, Any]:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": _b64u(raw), **extra}


def _p521_jwk_where(predicate: Any, kid: str = "bad") -> tuple[dict[str, Any], int, int]:
    """A P-521 JWK whose (x, y) integers satisfy ``predicate``; bounded retries."""
    for _ in range(500):
        private_key = ec.generate_private_key(ec.SECP521R1())
        numbers = private_key.public_key().public_numbers()
        if predicate(numbers.x, numbers.y, _ec_jwk(private_key, kid)):
            return _ec_jwk(private_key, kid), numbers.x, numbers.y
    pytest.fail("no suitable key found in 500 tries")


def _assert_rejected_in_set(
    bad: dict[str, Any],
    why: str,
    caplog: pytest.LogCaptureFixture,
    key_types: frozenset[KeyType] = P521_ONLY,
) -> None:
    """``bad`` is rejected alone and, inside a set, leaves the good key usable."""
    with pytest.raises(UnusableKey, match=re.escape(why)):
        jwk_to_key(bad, key_types=key_types)
    good = _p521_jwk("good")
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        keys = KeySet.from_jwks({"keys": [bad, good]}, key_types=key_types | P521_ONLY)
    assert list(keys) == ["good"]
    assert keys.lookup("good").kid == "good"
    kid = bad["kid"]
    assert kid in keys.rejected
    assert why in keys.rejected[kid]
    with pytest.raises(KeyNotFound) as excinfo:
        keys.lookup(kid)
    assert excinfo.value.reason is Reason.UNSUPPORTED_KEY
    assert excinfo.value.key_id == kid
    assert any(r.name == "upvest_verify" and kid in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- Upvest example


def test_upvest_example_key_loads() -> None:
    """The example JWKS from Upvest's API reference loads as one usable P-521 key."""
    keys = KeySet.from_jwks(UPVEST_JWKS_TEXT)
    assert list(keys) == [UPVEST_KID]
    assert keys.rejected == {}
    key = keys.lookup(UPVEST_KID)
    assert key.key_type == "P-521"
    assert key.algorithm == "ecdsa-p521-sha512"
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
    assert key.public_key.curve.name == "secp521r1"
    jwk = json.loads(UPVEST_JWKS_TEXT)["keys"][0]
    assert key.public_key.public_numbers().x == int.from_bytes(_b64u_decode(jwk["x"]), "big")


def test_upvest_example_key_from_bytes_and_mapping_agree() -> None:
    """Loading the example from bytes, str and a parsed mapping gives equal key sets."""
    from_text = KeySet.from_jwks(UPVEST_JWKS_TEXT)
    assert KeySet.from_jwks(UPVEST_JWKS_TEXT.encode()) == from_text
    assert KeySet.from_jwks(json.loads(UPVEST_JWKS_TEXT)) == from_text


# --------------------------------------------------------------------------- accepted shapes


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"use": "sig"},
        {"key_ops": ["verify"]},
        {"key_ops": ["sign", "verify"]},
        {"alg": "ES512"},
        {"use": "sig", "alg": "ES512", "key_ops": ["verify"], "x5t": "ignored", "ext": True},
    ],
    ids=["bare", "use-sig", "key-ops-verify", "key-ops-sign-verify", "alg-es512", "all"],
)
def test_p521_jwk_accepted(extra: dict[str, Any]) -> None:
    """A P-521 JWK with matching optional use/key_ops/alg (and unknown members) is accepted."""
    jwk = _p521_jwk("k", **extra)
    key = jwk_to_key(jwk, key_types=P521_ONLY)
    assert key.kid == "k"
    assert key.key_type == "P-521"


@pytest.mark.parametrize(
    ("curve", "key_type", "alg"),
    [(ec.SECP256R1, "P-256", "ES256"), (ec.SECP384R1, "P-384", "ES384")],
    ids=["p256", "p384"],
)
def test_other_curves_only_when_allowed(
    curve: type[ec.EllipticCurve], key_type: KeyType, alg: str
) -> None:
    """P-256/P-384 keys load only when the policy allows them, with their own alg."""
    jwk = _ec_jwk(ec.generate_private_key(curve()), "k", alg=alg)
    with pytest.raises(UnusableKey, match="not allowed"):
        jwk_to_key(jwk, key_types=P521_ONLY)
    assert jwk_to_key(jwk, key_types=frozenset({key_type})).key_type == key_type
    with pytest.raises(UnusableKey, match="alg"):
        jwk_to_key({**jwk, "alg": "ES512"}, key_types=KEY_TYPES)


@pytest.mark.parametrize("alg", [None, "EdDSA", "Ed25519"])
def test_ed25519_jwk_only_when_allowed(alg: str | None) -> None:
    """An OKP Ed25519 key loads when allowed, with alg absent, EdDSA or Ed25519."""
    jwk = _ed25519_jwk() if alg is None else _ed25519_jwk(alg=alg)
    with pytest.raises(UnusableKey, match="not allowed"):
        jwk_to_key(jwk, key_types=P521_ONLY)
    key = jwk_to_key(jwk, key_types=frozenset({"Ed25519"}))
    assert key.key_type == "Ed25519"
    assert key.algorithm == "ed25519"


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        ({"crv": "X25519"}, "unsupported OKP curve"),
        ({"crv": "Ed448"}, "unsupported OKP curve"),
        ({"alg": "ES512"}, "alg"),
        ({"d": "AAAA"}, "private"),
        ({"x": "AAAA"}, "3 bytes, expected 32"),
    ],
    ids=["x25519", "ed448", "alg-es512", "private", "short-x"],
)
def test_ed25519_jwk_rejections(mutation: dict[str, Any], why: str) -> None:
    """OKP keys other than a public Ed25519 key of 32 bytes with a fitting alg are rejected."""
    with pytest.raises(UnusableKey, match=why):
        jwk_to_key({**_ed25519_jwk(), **mutation}, key_types=KEY_TYPES)


# --------------------------------------------------------------------------- C8-C12


def test_off_curve_point_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A JWK whose y is moved by one is off the curve: skipped, logged, unsupported_key (C8)."""
    jwk = _p521_jwk("offcurve")
    y = int.from_bytes(_b64u_decode(jwk["y"]), "big")
    jwk["y"] = _b64u(((y + 1) % P521_PRIME).to_bytes(66, "big"))
    _assert_rejected_in_set(jwk, "not on the curve", caplog)


def test_coordinate_above_field_prime_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """x + p still fits in 66 bytes but is a non-canonical coordinate and is rejected."""
    jwk = _p521_jwk("xplusp")
    x = int.from_bytes(_b64u_decode(jwk["x"]), "big")
    jwk["x"] = _b64u((x + P521_PRIME).to_bytes(66, "big"))
    _assert_rejected_in_set(jwk, "field prime", caplog)


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        ({"crv": "P-256"}, "not allowed"),
        ({"crv": "P-384"}, "not allowed"),
        ({"crv": "secp256k1"}, "unsupported EC curve"),
        ({"crv": None}, "unsupported EC curve"),
        ({"kty": "RSA"}, "kty='RSA'"),
        ({"kty": "oct"}, "kty='oct'"),
        ({"kty": "OKP"}, "unsupported OKP curve"),
        ({"kty": "ec"}, "kty='ec'"),
        ({"kty": None}, "kty is missing"),
        ({"kty": ["EC"]}, "kty is missing or not a string"),
    ],
    ids=[
        "p256",
        "p384",
        "secp256k1",
        "no-crv",
        "rsa",
        "oct",
        "okp",
        "lowercase-ec",
        "no-kty",
        "kty-list",
    ],
)
def test_wrong_key_type_or_curve_rejected(
    mutation: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys that are not EC P-521 under the default policy are unsupported_key (C9)."""
    jwk = {k: v for k, v in {**_p521_jwk("wrongtype"), **mutation}.items() if v is not None}
    _assert_rejected_in_set(jwk, why, caplog)


def _with_length(coordinate: str, length: int) -> str:
    raw = _b64u_decode(coordinate)
    if length < len(raw):
        assert raw[: len(raw) - length] == b"\x00" * (len(raw) - length)
        return _b64u(raw[len(raw) - length :])
    return _b64u(b"\x00" * (length - len(raw)) + raw)


def test_65_byte_coordinate_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A P-521 x with its leading zero byte trimmed (65 bytes) is rejected (C10)."""
    jwk, _, _ = _p521_jwk_where(lambda x, y, j: x < 2**520, kid="short")
    assert jwk_to_key(jwk, key_types=P521_ONLY).kid == "short"  # control: 66 bytes is fine
    jwk["x"] = _with_length(jwk["x"], 65)
    _assert_rejected_in_set(jwk, "x is 65 bytes, expected 66", caplog)


@pytest.mark.parametrize("coordinate", ["x", "y"])
def test_67_byte_coordinate_rejected(coordinate: str, caplog: pytest.LogCaptureFixture) -> None:
    """A P-521 coordinate with an extra leading zero (67 bytes) is rejected (C10)."""
    jwk = _p521_jwk("long")
    jwk[coordinate] = _with_length(jwk[coordinate], 67)
    _assert_rejected_in_set(jwk, f"{coordinate} is 67 bytes, expected 66", caplog)


def test_padded_coordinate_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A base64url coordinate with '=' padding is rejected (C10)."""
    jwk = _ec_jwk(ec.generate_private_key(ec.SECP256R1()), "padded")
    assert len(jwk["x"]) == 43
    jwk["x"] += "="
    _assert_rejected_in_set(jwk, "padded", caplog, frozenset({"P-256"}))
    p521 = _p521_jwk("padded")
    p521["y"] += "=="
    _assert_rejected_in_set(p521, "padded", caplog)


def test_standard_alphabet_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A coordinate in the standard base64 alphabet ('+', '/') is rejected (C10)."""
    jwk, _, _ = _p521_jwk_where(lambda x, y, j: "-" in j["x"] or "_" in j["x"], kid="std")
    jwk["x"] = jwk["x"].replace("-", "+").replace("_", "/")
    _assert_rejected_in_set(jwk, "standard base64 alphabet", caplog)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (" ", "outside base64url"),
        ("\n", "outside base64url"),
        ("!", "outside base64url"),
        ("é", "outside base64url"),
    ],
    ids=["space", "newline", "bang", "non-ascii"],
)
def test_foreign_characters_rejected(value: str, why: str) -> None:
    """A coordinate containing whitespace or non-base64url characters is rejected."""
    jwk = _p521_jwk("odd")
    jwk["x"] = jwk["x"][:40] + value + jwk["x"][40:]
    with pytest.raises(UnusableKey, match=why):
        jwk_to_key(jwk, key_types=P521_ONLY)


def test_non_canonical_trailing_bits_rejected() -> None:
    """A 43-character P-256 coordinate with non-zero padding bits is not canonical and rejected."""
    jwk = _ec_jwk(ec.generate_private_key(ec.SECP256R1()), "bits")
    canonical = jwk["x"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(canonical[-1])
    assert last & 0b11 == 0  # 43 characters carry 258 bits: the last 2 must be zero
    jwk["x"] = canonical[:-1] + alphabet[last | 0b01]
    assert _b64u_decode(jwk["x"]) == _b64u_decode(canonical)  # a lenient decoder can't tell
    with pytest.raises(UnusableKey, match="canonical"):
        jwk_to_key(jwk, key_types=frozenset({"P-256"}))


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        ({"x": None}, "x is missing"),
        ({"y": None}, "y is missing"),
        ({"x": 12345}, "x must be a string"),
        ({"y": ["a"]}, "y must be a string"),
        ({"x": ""}, "x is 0 bytes"),
    ],
    ids=["no-x", "no-y", "int-x", "list-y", "empty-x"],
)
def test_missing_or_mistyped_coordinates_rejected(mutation: dict[str, Any], why: str) -> None:
    """Missing, non-string or empty coordinates are rejected with a clear reason."""
    jwk = {k: v for k, v in {**_p521_jwk("k"), **mutation}.items() if v is not None}
    with pytest.raises(UnusableKey, match=why):
        jwk_to_key(jwk, key_types=P521_ONLY)


def test_private_key_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A JWK carrying the private scalar 'd' is rejected, even in a mixed set (C11)."""
    private_key = ec.generate_private_key(ec.SECP521R1())
    d = private_key.private_numbers().private_value.to_bytes(66, "big")
    _assert_rejected_in_set(_ec_jwk(private_key, "private", d=_b64u(d)), "private key", caplog)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"use": "enc"}, "use is 'enc'"),
        ({"use": "SIG"}, "use is 'SIG'"),
        ({"use": 1}, "use is 1"),
        ({"key_ops": ["sign"]}, "does not include 'verify'"),
        ({"key_ops": []}, "does not include 'verify'"),
        ({"key_ops": "verify"}, "array of strings"),
        ({"key_ops": ["verify", 1]}, "array of strings"),
        ({"alg": "ES256"}, "alg 'ES256'"),
        ({"alg": "ES384"}, "alg 'ES384'"),
        ({"alg": "HS512"}, "alg 'HS512'"),
        ({"alg": "ecdsa-p521-sha512"}, "alg 'ecdsa-p521-sha512'"),
        ({"alg": "ES521"}, "alg 'ES521'"),
    ],
    ids=[
        "use-enc",
        "use-upper",
        "use-int",
        "ops-sign",
        "ops-empty",
        "ops-str",
        "ops-mixed",
        "alg-es256",
        "alg-es384",
        "alg-hs512",
        "alg-http-name",
        "alg-es521",
    ],
)
def test_wrong_use_key_ops_or_alg_rejected(
    extra: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A JWK meant for encryption, signing only, or another algorithm is rejected (C12)."""
    _assert_rejected_in_set(_p521_jwk("misused", **extra), why, caplog)


@pytest.mark.parametrize(
    ("kid", "why"),
    [
        (None, "kid must be a string"),
        ("", "kid is empty"),
        ("k" * 257, "257 characters"),
        (42, "kid must be a string"),
    ],
    ids=["missing", "empty", "257-chars", "int"],
)
def test_bad_kid_rejected_and_not_recorded(
    kid: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key without a usable kid is rejected, logged, and left out of 'rejected'."""
    jwk = {k: v for k, v in _p521_jwk().items() if k != "kid"}
    if kid is not None:
        jwk["kid"] = kid
    with pytest.raises(UnusableKey, match=why):
        jwk_to_key(jwk, key_types=P521_ONLY)
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        keys = KeySet.from_jwks({"keys": [jwk, _p521_jwk("good")]})
    assert list(keys) == ["good"]
    assert keys.rejected == {}
    assert any("without a usable kid" in r.getMessage() for r in caplog.records)


def test_kid_of_256_characters_accepted() -> None:
    """A kid of exactly 256 characters is the longest one accepted."""
    assert jwk_to_key(_p521_jwk("k" * 256), key_types=P521_ONLY).kid == "k" * 256


def test_non_object_jwk_rejected() -> None:
    """jwk_to_key rejects anything that is not a JSON object."""
    for value in (["kty", "EC"], "EC", 5, None):
        with pytest.raises(UnusableKey, match="JSON object"):
            jwk_to_key(value, key_types=P521_ONLY)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- KeySet documents


def test_mixed_set_keeps_only_the_good_key(caplog: pytest.LogCaptureFixture) -> None:
    """One good P-521 key among RSA, P-256, off-curve and private keys is the only usable one (F9)."""
    off_curve = _p521_jwk("offcurve")
    y = int.from_bytes(_b64u_decode(off_curve["y"]), "big")
    off_curve["y"] = _b64u(((y + 1) % P521_PRIME).to_bytes(66, "big"))
    private_key = ec.generate_private_key(ec.SECP521R1())
    private = _ec_jwk(private_key, "private", d=_b64u(b"\x01" * 66))
    document = {
        "keys": [
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            _ec_jwk(ec.generate_private_key(ec.SECP256R1()), "p256"),
            off_curve,
            private,
            _p521_jwk("good"),
            "not an object",
        ]
    }
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        keys = KeySet.from_jwks(document)
    assert list(keys) == ["good"]
    assert sorted(keys.rejected) == ["offcurve", "p256", "private", "rsa"]
    assert len([r for r in caplog.records if r.name == "upvest_verify"]) == 5
    for kid in keys.rejected:
        with pytest.raises(KeyNotFound) as excinfo:
            keys.lookup(kid)
        assert excinfo.value.reason is Reason.UNSUPPORTED_KEY


def test_exact_duplicate_is_harmless() -> None:
    """The same key listed twice under one kid stays usable, even with different optional members."""
    jwk = _p521_jwk("dup")
    keys = KeySet.from_jwks({"keys": [jwk, dict(jwk), {**jwk, "use": "sig", "alg": "ES512"}]})
    assert list(keys) == ["dup"]
    assert keys.rejected == {}


def test_duplicate_kid_with_different_material_is_unusable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two different keys under one kid make that kid unusable; other keys stay usable (F8)."""
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        keys = KeySet.from_jwks(
            {"keys": [_p521_jwk("dup"), _p521_jwk("other"), _p521_jwk("dup"), _p521_jwk("dup")]}
        )
    assert list(keys) == ["other"]
    assert "duplicate kid" in keys.rejected["dup"]
    with pytest.raises(KeyNotFound) as excinfo:
        keys.lookup("dup")
    assert excinfo.value.reason is Reason.UNSUPPORTED_KEY
    assert excinfo.value.key_id == "dup"
    assert any("duplicate kid" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad_first", [True, False], ids=["bad-first", "good-first"])
def test_duplicate_kid_with_one_unusable_entry_is_unusable(bad_first: bool) -> None:
    """A kid listed once validly and once invalidly is unusable, whatever the order."""
    good = _p521_jwk("dup")
    bad = {**good, "use": "enc"}
    entries = [bad, good] if bad_first else [good, bad]
    keys = KeySet.from_jwks({"keys": entries})
    assert "dup" not in keys
    assert "duplicate kid" in keys.rejected["dup"]
    assert "use is 'enc'" in keys.rejected["dup"]


def test_duplicate_member_inside_a_jwk_makes_it_unusable() -> None:
    """A JWK repeating a member (two different "x") is rejected instead of last-wins."""
    jwk = _p521_jwk("twice")
    other = _p521_jwk("other")
    text = json.dumps({"keys": [jwk, other]})
    text = text.replace(
        '"kty": "EC", "crv": "P-521", "kid": "twice",',
        f'"kty": "EC", "crv": "P-521", "kid": "twice", "x": "{other["x"]}",',
    )
    assert text.count('"x"') == 3
    keys = KeySet.from_jwks(text)
    assert list(keys) == ["other"]
    assert "repeats members ['x']" in keys.rejected["twice"]


def test_duplicate_keys_member_rejects_document() -> None:
    """A JWKS text with two "keys" members is unusable as a whole (F8)."""
    good = json.dumps([_p521_jwk("a")])
    evil = json.dumps([_p521_jwk("b")])
    with pytest.raises(JWKSError, match='repeats the "keys" member'):
        KeySet.from_jwks(f'{{"keys": {good}, "keys": {evil}}}')


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b'{"keys": [}', "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b'\xef\xbb\xbf{"keys": []}', "not valid UTF-8 JSON"),
        ("[]", "must be a JSON object"),
        ('"keys"', "must be a JSON object"),
        ("{}", 'no "keys" member'),
        ('{"keys": null}', 'no "keys" member'),
        ('{"keys": {}}', "must be an array"),
        ('{"keys": "abc"}', "must be an array"),
        ("[" * 30_000 + "]" * 30_000, "not valid UTF-8 JSON"),
        ('{"keys": [], "n": ' + "9" * 5000 + "}", "not valid UTF-8 JSON"),
        ('{"keys": [], "s": "\\ud800"}'.replace("\\ud800", "\ud800"), "not valid UTF-8"),
    ],
    ids=[
        "garbage",
        "truncated",
        "utf16",
        "bom",
        "array",
        "string",
        "no-keys",
        "null-keys",
        "keys-object",
        "keys-string",
        "deep-nesting",
        "huge-int",
        "lone-surrogate",
    ],
)
def test_unusable_documents_raise_jwks_error(document: str | bytes, why: str) -> None:
    """Documents that are not a JSON object with a "keys" array raise JWKSError (F8)."""
    with pytest.raises(JWKSError, match=why) as excinfo:
        KeySet.from_jwks(document)
    assert isinstance(excinfo.value, ValueError)


def test_non_mapping_document_raises() -> None:
    """A parsed document that is not a mapping raises JWKSError."""
    with pytest.raises(JWKSError, match="must be a JSON object"):
        KeySet.from_jwks([_p521_jwk()])  # type: ignore[arg-type]


def test_key_count_cap() -> None:
    """32 keys are accepted; 33 entries (usable or not) reject the document (F8)."""
    jwks = [_p521_jwk(f"k{i}") for i in range(MAX_KEYS)]
    assert MAX_KEYS == 32
    assert len(KeySet.from_jwks({"keys": jwks})) == 32
    with pytest.raises(JWKSError, match="33 keys"):
        KeySet.from_jwks({"keys": [*jwks, {"kty": "RSA"}]})
    with pytest.raises(JWKSError, match="at most 32"):
        KeySet.from_jwks(json.dumps({"keys": [{}] * 10_000}))


def test_size_cap() -> None:
    """A document of exactly 64 KiB parses; one byte more is rejected before parsing (F7)."""
    assert MAX_JWKS_BYTES == 64 * 1024
    body = json.dumps({"keys": [_p521_jwk("k")]})
    at_cap = body[:-1] + " " * (MAX_JWKS_BYTES - len(body)) + "}"
    assert len(at_cap.encode()) == MAX_JWKS_BYTES
    assert list(KeySet.from_jwks(at_cap)) == ["k"]
    assert list(KeySet.from_jwks(at_cap.encode())) == ["k"]
    over = at_cap[:-1] + " }"
    with pytest.raises(JWKSError, match="larger than"):
        KeySet.from_jwks(over)
    with pytest.raises(JWKSError, match="larger than"):
        KeySet.from_jwks(over.encode())
    with pytest.raises(JWKSError, match="larger than"):
        KeySet.from_jwks(b" " * (10 * 1024 * 1024))


def test_size_cap_counts_utf8_bytes() -> None:
    """A str under 64 Ki characters but over 64 KiB in UTF-8 is rejected."""
    text = '{"keys": [], "pad": "' + "é" * (MAX_JWKS_BYTES // 2) + '"}'
    assert len(text) < MAX_JWKS_BYTES < len(text.encode())
    with pytest.raises(JWKSError, match="larger than"):
        KeySet.from_jwks(text)


def test_empty_key_list_gives_empty_set() -> None:
    """A JWKS with an empty "keys" array is a valid, empty key set."""
    keys = KeySet.from_jwks('{"keys": []}')
    assert len(keys) == 0
    assert keys == KeySet()


@pytest.mark.parametrize(
    "key_types", ["P-521", ["P-521", "RSA"], ["ES512"]], ids=["bare-str", "rsa", "jose-name"]
)
def test_bad_key_types_are_configuration_errors(key_types: Any) -> None:
    """Unknown key types, or a bare string instead of a collection, are configuration errors."""
    with pytest.raises(ConfigurationError):
        KeySet.from_jwks({"keys": []}, key_types=key_types)


def test_key_types_select_usable_keys() -> None:
    """from_jwks(key_types=...) admits exactly the allowed key types."""
    document = {
        "keys": [
            _p521_jwk("p521"),
            _ec_jwk(ec.generate_private_key(ec.SECP256R1()), "p256"),
            _ed25519_jwk("ed"),
        ]
    }
    assert list(KeySet.from_jwks(document)) == ["p521"]
    both = KeySet.from_jwks(document, key_types=["P-521", "Ed25519"])
    assert list(both) == ["p521", "ed"]
    assert "not allowed" in both.rejected["p256"]
    assert len(KeySet.from_jwks(document, key_types=KEY_TYPES)) == 3


# --------------------------------------------------------------------------- KeySet behaviour


def test_lookup_hit_and_misses() -> None:
    """lookup returns usable keys and raises KeyNotFound(unknown_key) for absent kids (C15)."""
    keys = KeySet.from_jwks({"keys": [_p521_jwk("good")]})
    assert keys.lookup("good") is keys["good"]
    for kid in (
        "../../etc/passwd",
        "https://evil.example/jwks",
        "x" * 10_000,
        "ключ",
        "",
        "GOOD",
        "good ",
    ):
        with pytest.raises(KeyNotFound) as excinfo:
            keys.lookup(kid)
        assert excinfo.value.reason is Reason.UNKNOWN_KEY
        assert excinfo.value.key_id == kid
        assert excinfo.value.status_code == 401
        assert len(excinfo.value.message) < 200


def test_lookup_errors_are_verification_errors() -> None:
    """KeyNotFound from lookup is a VerificationError, so callers catch one family."""
    with pytest.raises(VerificationError):
        KeySet().lookup("missing")


def test_mapping_protocol() -> None:
    """KeySet behaves as a read-only Mapping of usable kids in document order."""
    a, b = _p521_jwk("a"), _p521_jwk("b")
    keys = KeySet.from_jwks({"keys": [b, a, {"kty": "RSA", "kid": "r"}]})
    assert list(keys) == ["b", "a"]
    assert len(keys) == 2
    assert "a" in keys
    assert "r" not in keys
    not_a_str: object = 5
    assert not_a_str not in keys
    assert keys.get("r") is None
    assert keys.get("r", "fallback") == "fallback"
    assert keys.get("a") is keys["a"]
    with pytest.raises(KeyError):
        keys["r"]
    assert dict(keys.items()) == {"b": keys["b"], "a": keys["a"]}
    assert keys.rejected == {"r": "unsupported key type kty='RSA'"}


def test_key_set_is_immutable() -> None:
    """Neither the KeySet nor its rejected view can be modified."""
    keys = KeySet.from_jwks({"keys": [_p521_jwk("a"), {"kty": "RSA", "kid": "r"}]})
    with pytest.raises(AttributeError):
        keys._keys = {}
    with pytest.raises(AttributeError):
        del keys._rejected
    with pytest.raises(TypeError):
        keys["b"] = keys["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        keys.rejected["x"] = "y"  # type: ignore[index]
    assert list(keys) == ["a"]


def test_equality_and_hash() -> None:
    """KeySets compare by keys and rejections, never equal a plain dict, and are unhashable."""
    jwks = {"keys": [_p521_jwk("a"), {"kty": "RSA", "kid": "r"}]}
    first = KeySet.from_jwks(jwks)
    assert first == KeySet.from_jwks(json.dumps(jwks))
    assert first != KeySet.from_jwks({"keys": jwks["keys"][:1]})
    assert first != KeySet.from_jwks({"keys": [_p521_jwk("a")]})
    assert first != dict(first)
    with pytest.raises(TypeError):
        hash(first)


def test_repr_lists_kids() -> None:
    """repr shows usable kids and, when any, rejected kids."""
    keys = KeySet.from_jwks({"keys": [_p521_jwk("a"), _p521_jwk("b")]})
    assert repr(keys) == "KeySet(kids=['a', 'b'])"
    mixed = KeySet.from_jwks({"keys": [_p521_jwk("a"), {"kty": "RSA", "kid": "r"}]})
    assert repr(mixed) == "KeySet(kids=['a'], rejected=['r'])"
    assert repr(KeySet()) == "KeySet(kids=[])"


def test_from_keys() -> None:
    """from_keys builds the same set as from_jwks and applies the duplicate-kid rule."""
    jwk_a, jwk_b = _p521_jwk("a"), _p521_jwk("b")
    key_a = jwk_to_key(jwk_a, key_types=P521_ONLY)
    key_b = jwk_to_key(jwk_b, key_types=P521_ONLY)
    assert KeySet.from_keys([key_a, key_b]) == KeySet.from_jwks({"keys": [jwk_a, jwk_b]})
    assert list(KeySet.from_keys([key_a, key_a])) == ["a"]
    clash = jwk_to_key({**jwk_b, "kid": "a"}, key_types=P521_ONLY)
    mixed = KeySet.from_keys([key_a, clash, key_b])
    assert list(mixed) == ["b"]
    assert "duplicate kid" in mixed.rejected["a"]
    with pytest.raises(TypeError, match="VerifyingKey"):
        KeySet.from_keys([jwk_a])  # type: ignore[list-item]


def test_constructor_with_rejected() -> None:
    """KeySet(keys, rejected=...) keeps rejected kids out of the usable keys."""
    key_a = jwk_to_key(_p521_jwk("a"), key_types=P521_ONLY)
    keys = KeySet([key_a], rejected={"a": "revoked by configuration", "z": "test"})
    assert len(keys) == 0
    with pytest.raises(KeyNotFound) as excinfo:
        keys.lookup("a")
    assert excinfo.value.reason is Reason.UNSUPPORTED_KEY
    assert "revoked by configuration" in excinfo.value.message


def test_signature_verifies_with_looked_up_key() -> None:
    """A key found via lookup verifies a signature made by its private key."""
    private_key = ec.generate_private_key(ec.SECP521R1())
    keys = KeySet.from_jwks({"keys": [_ec_jwk(private_key, "live")]})
    der = private_key.sign(b"base", ec.ECDSA(hashes.SHA512()))
    assert verify_signature(keys.lookup("live"), der, b"base") is True


# --------------------------------------------------------------------------- Wycheproof JWK


def _wycheproof_jwk_cases() -> list[Any]:
    path = WYCHEPROOF / JWK_FILE
    if not path.is_file():
        return [
            pytest.param(
                {},
                {},
                id="jwk-missing",
                marks=pytest.mark.skip(reason=f"Wycheproof vectors absent: {path}"),
            )
        ]
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        pytest.param(group, case, id=f"jwk-tc{case['tcId']}")
        for group in data["testGroups"]
        for case in group["tests"]
    ]


_JWS_ALGS = {
    "P-521": {"ES512"},
    "P-384": {"ES384"},
    "P-256": {"ES256"},
    "Ed25519": {"EdDSA", "Ed25519"},
}


def _jws_verdict(keys: KeySet, jws: str) -> tuple[bool, Reason | None]:
    """Verify a compact JWS through KeySet.lookup + the crypto seam; (accepted, reason)."""
    header_b64, payload_b64, signature_b64 = jws.split(".")
    header = json.loads(_b64u_decode(header_b64))
    try:
        key = keys.lookup(header["kid"])
    except KeyNotFound as e:
        return False, e.reason
    if header.get("alg") not in _JWS_ALGS[key.key_type]:
        return False, Reason.UNSUPPORTED_ALGORITHM
    try:
        # RFC 7518 §3.4: JWS ECDSA signatures are raw r || s.
        signature, _ = decode_signature(key.key_type, _b64u_decode(signature_b64), "raw")
    except VerificationError as e:
        return False, e.reason
    ok = verify_signature(key, signature, f"{header_b64}.{payload_b64}".encode())
    return ok, None if ok else Reason.BAD_SIGNATURE


# Why each EC key in the file is unusable (tcId -> fragment of the rejection reason).
_EC_REJECTIONS = {
    19: "alg 'ES521'",
    20: "alg 'ES224'",
    21: "use is 'enc'",
    22: "not on the curve",
    23: "alg 'ES256' does not match a P-384 key",
    24: "kty='RSA'",
}


@pytest.mark.parametrize(("group", "case"), _wycheproof_jwk_cases())
def test_wycheproof_json_web_keys(group: dict[str, Any], case: dict[str, Any]) -> None:
    """Every Wycheproof JWK-set case is rejected: invalid ones as vectors say, HMAC/RSA ones as unsupported_key (C9)."""
    document = group.get("public") or group["private"]
    keys = KeySet.from_jwks(document, key_types=KEY_TYPES)
    accepted, reason = _jws_verdict(keys, case["jws"])
    assert accepted is False
    assert reason is Reason.UNSUPPORTED_KEY
    kid = json.loads(_b64u_decode(case["jws"].split(".")[0]))["kid"]
    if case["result"] == "valid":
        # HS*/RS* keys verify in a JOSE library; here only EC/OKP keys exist by design.
        key_kinds = {jwk["kty"] for jwk in document["keys"] if jwk["kid"] == kid}
        assert key_kinds
        assert key_kinds <= {"oct", "RSA"}
    if case["tcId"] in _EC_REJECTIONS:
        assert _EC_REJECTIONS[case["tcId"]] in keys.rejected[kid]


@pytest.mark.parametrize(("group", "case"), _wycheproof_jwk_cases())
def test_wycheproof_private_key_sets_rejected(group: dict[str, Any], case: dict[str, Any]) -> None:
    """Every key of every Wycheproof "private" key set is unusable for verification (C11)."""
    keys = KeySet.from_jwks(group["private"], key_types=KEY_TYPES)
    assert len(keys) == (1 if case["tcId"] == 1 else 0)  # tc1 mixes an oct and a public EC key
    assert _jws_verdict(keys, case["jws"])[0] is False


def test_wycheproof_rejections_are_due_to_the_key() -> None:
    """The tc21 JWS verifies once its key's wrong "use" is fixed, so the rejection is the key's."""
    path = WYCHEPROOF / JWK_FILE
    if not path.is_file():
        pytest.skip(f"Wycheproof vectors absent: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    [(group, case)] = [(g, c) for g in data["testGroups"] for c in g["tests"] if c["tcId"] == 21]
    fixed = {"keys": [{**jwk, "use": "sig"} for jwk in group["public"]["keys"]]}
    assert _jws_verdict(KeySet.from_jwks(group["public"], key_types=KEY_TYPES), case["jws"]) == (
        False,
        Reason.UNSUPPORTED_KEY,
    )
    assert _jws_verdict(KeySet.from_jwks(fixed, key_types=KEY_TYPES), case["jws"]) == (True, None)
