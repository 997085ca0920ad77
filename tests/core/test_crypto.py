"""Tests for the hazmat seam: Wycheproof P-521 vectors, signature decoding and verification.

Covers threat-model.md §6 C1-C7, C16 and C17 at the crypto layer. The Wycheproof files are
read from ``<project root>/../shared/vectors/wycheproof`` and never copied into the repo.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import load_der_public_key

from upvest_verify._crypto import (
    ALGORITHMS,
    KEY_TYPES,
    KeyType,
    UnusableKey,
    VerifyingKey,
    decode_signature,
    jwk_to_key,
    verify_signature,
)
from upvest_verify.errors import InvalidSignature, Reason, VerificationError

WYCHEPROOF = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "wycheproof"
DER_FILE = "ecdsa_secp521r1_sha512_test.json"
P1363_FILE = "ecdsa_secp521r1_sha512_p1363_test.json"

P521_ONLY: frozenset[KeyType] = frozenset({"P-521"})
# SEC 2 §2.6.1: the P-521 group order n and field prime p.
N521 = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
P521_PRIME = 2**521 - 1

MESSAGE = b'"@method": POST\n"@signature-params": ("@method");keyid="k1"'


# --------------------------------------------------------------------------- helpers


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_CRV = {"secp521r1": "P-521", "secp384r1": "P-384", "secp256r1": "P-256"}
_HASH: dict[str, hashes.HashAlgorithm] = {
    "P-521": hashes.SHA512(),
    "P-384": hashes.SHA384(),
    "P-256": hashes.SHA256(),
}
_CURVE: dict[str, ec.EllipticCurve] = {
    "P-521": ec.SECP521R1(),
    "P-384": ec.SECP384R1(),
    "P-256": ec.SECP256R1(),
}


def _ec_jwk(private_key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    numbers = private_key.public_key().public_numbers()
    size = (private_key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": _CRV[private_key.curve.name],
        "kid": kid,
        "x": _b64u(numbers.x.to_bytes(size, "big")),
        "y": _b64u(numbers.y.to_bytes(size, "big")),
    }


def _p521_key(kid: str = "k1") -> tuple[ec.EllipticCurvePrivateKey, VerifyingKey]:
    private_key = ec.generate_private_key(ec.SECP521R1())
    return private_key, jwk_to_key(_ec_jwk(private_key, kid), key_types=P521_ONLY)


def _raw(der: bytes, size: int = 66) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _int_tlv(value: int, *, extra_zero: bool = False, long_length: bool = False) -> bytes:
    # X.690 §8.3: two's complement, minimal octets (a leading 0x00 only before a set top bit).
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    if extra_zero:
        body = b"\x00" + body
    length = bytes([0x81, len(body)]) if long_length else bytes([len(body)])
    return b"\x02" + length + body


def _der(r: bytes, s: bytes, *, seq_length: bytes | None = None, tag: int = 0x30) -> bytes:
    content = r + s
    if seq_length is None:
        n = len(content)
        seq_length = bytes([n]) if n < 128 else bytes([0x81, n])
    return bytes([tag]) + seq_length + content


def _is_bad_signature(key_type: KeyType, signature: bytes, encoding: Any) -> bool:
    try:
        decode_signature(key_type, signature, encoding)
    except VerificationError as e:
        return e.reason is Reason.BAD_SIGNATURE
    return False


@pytest.fixture(scope="module")
def p521() -> tuple[ec.EllipticCurvePrivateKey, VerifyingKey]:
    """A fresh P-521 key pair and its VerifyingKey, shared by this module."""
    return _p521_key()


# --------------------------------------------------------------------------- Wycheproof


@functools.cache
def _load(name: str) -> dict[str, Any] | None:
    path = WYCHEPROOF / name
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _cases(name: str, prefix: str) -> list[Any]:
    data = _load(name)
    if data is None:
        return [
            pytest.param(
                0,
                {},
                id=f"{prefix}-missing",
                marks=pytest.mark.skip(reason=f"Wycheproof vectors absent: {WYCHEPROOF / name}"),
            )
        ]
    return [
        pytest.param(index, case, id=f"{prefix}-tc{case['tcId']}")
        for index, group in enumerate(data["testGroups"])
        for case in group["tests"]
    ]


def _jwk_from_point(uncompressed_hex: str) -> dict[str, Any]:
    point = bytes.fromhex(uncompressed_hex)
    assert point[0] == 4
    assert len(point) == 133
    return {
        "kty": "EC",
        "crv": "P-521",
        "kid": "wycheproof",
        "x": _b64u(point[1:67]),
        "y": _b64u(point[67:]),
    }


@functools.cache
def _group_key(name: str, index: int) -> VerifyingKey:
    data = _load(name)
    assert data is not None
    group = data["testGroups"][index]
    jwk = group.get("publicKeyJwk") or _jwk_from_point(group["publicKey"]["uncompressed"])
    return jwk_to_key(jwk, key_types=P521_ONLY)


def _verdict(key: VerifyingKey, case: dict[str, Any], encoding: Any) -> str:
    """Run one vector through decode_signature + verify_signature: "valid" or the reason."""
    try:
        signature, _ = decode_signature("P-521", bytes.fromhex(case["sig"]), encoding)
    except VerificationError as e:
        return e.reason.value
    if verify_signature(key, signature, bytes.fromhex(case["msg"])):
        return "valid"
    return Reason.BAD_SIGNATURE.value


def _expected(case: dict[str, Any]) -> str:
    assert case["result"] in {"valid", "invalid"}
    return "valid" if case["result"] == "valid" else Reason.BAD_SIGNATURE.value


DER_CASES = _cases(DER_FILE, "der")
P1363_CASES = _cases(P1363_FILE, "raw")


@pytest.mark.parametrize(("group_index", "case"), DER_CASES)
def test_wycheproof_der(group_index: int, case: dict[str, Any]) -> None:
    """Each Wycheproof DER vector gets its expected verdict with encoding="der" (C1)."""
    key = _group_key(DER_FILE, group_index)
    assert _verdict(key, case, "der") == _expected(case)


@pytest.mark.parametrize(("group_index", "case"), DER_CASES)
def test_wycheproof_der_in_auto_mode(group_index: int, case: dict[str, Any]) -> None:
    """Each Wycheproof DER vector gets its expected verdict with encoding="auto"."""
    key = _group_key(DER_FILE, group_index)
    assert _verdict(key, case, "auto") == _expected(case)


@pytest.mark.parametrize(("group_index", "case"), P1363_CASES)
def test_wycheproof_p1363(group_index: int, case: dict[str, Any]) -> None:
    """Each Wycheproof raw r||s vector, SignatureSize cases included, gets its verdict (C2)."""
    key = _group_key(P1363_FILE, group_index)
    assert _verdict(key, case, "raw") == _expected(case)


@pytest.mark.parametrize(("group_index", "case"), P1363_CASES)
def test_wycheproof_p1363_in_auto_mode(group_index: int, case: dict[str, Any]) -> None:
    """Each Wycheproof raw r||s vector gets its expected verdict with encoding="auto"."""
    key = _group_key(P1363_FILE, group_index)
    assert _verdict(key, case, "auto") == _expected(case)


def test_wycheproof_files_are_complete() -> None:
    """The pinned Wycheproof files hold the expected numbers of valid and invalid vectors."""
    for name, total, valid in ((DER_FILE, 542, 232), (P1363_FILE, 318, 231)):
        data = _load(name)
        if data is None:
            pytest.skip(f"Wycheproof vectors absent: {WYCHEPROOF / name}")
        results = [case["result"] for group in data["testGroups"] for case in group["tests"]]
        assert data["numberOfTests"] == len(results) == total
        assert results.count("valid") == valid
        assert results.count("invalid") == total - valid


def test_wycheproof_group_keys_match_der_encoding() -> None:
    """Every group key imported through jwk_to_key equals the group's DER public key."""
    checked = 0
    for name in (DER_FILE, P1363_FILE):
        data = _load(name)
        if data is None:
            pytest.skip(f"Wycheproof vectors absent: {WYCHEPROOF / name}")
        for index, group in enumerate(data["testGroups"]):
            expected = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
            assert _group_key(name, index).public_key == expected
            checked += 1
    assert checked == 108 + 107


def test_wycheproof_signature_size_vectors_fail_at_decode() -> None:
    """The ten P1363 SignatureSize vectors are rejected by the strict length check."""
    data = _load(P1363_FILE)
    if data is None:
        pytest.skip(f"Wycheproof vectors absent: {WYCHEPROOF / P1363_FILE}")
    short = [
        bytes.fromhex(case["sig"])
        for group in data["testGroups"]
        for case in group["tests"]
        if "SignatureSize" in case["flags"]
    ]
    assert len(short) == 10
    for signature in short:
        assert _is_bad_signature("P-521", signature, "raw")
        assert _is_bad_signature("P-521", signature, "auto")


@pytest.mark.parametrize("tc_id", range(11, 20), ids=lambda tc: f"raw-tc{tc}")
def test_wycheproof_special_case_r_s_rejected(tc_id: int) -> None:
    """Raw vectors with r or s in {0, 1, n, p, ...} decode but never verify (C3, CVE-2022-21449)."""
    data = _load(P1363_FILE)
    if data is None:
        pytest.skip(f"Wycheproof vectors absent: {WYCHEPROOF / P1363_FILE}")
    for index, group in enumerate(data["testGroups"]):
        for case in group["tests"]:
            if case["tcId"] == tc_id:
                assert "InvalidSignature" in case["flags"]
                signature, encoding = decode_signature("P-521", bytes.fromhex(case["sig"]), "raw")
                assert encoding == "raw"
                key = _group_key(P1363_FILE, index)
                assert verify_signature(key, signature, bytes.fromhex(case["msg"])) is False
                return
    pytest.fail(f"tcId {tc_id} not found")


# --------------------------------------------------------------------------- C3 with own key


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0), (0, N521), (N521, 1), (1, P521_PRIME), (N521 - 1, N521)],
    ids=["r0-s0", "r0-s1", "r1-s0", "r0-sn", "rn-s1", "r1-sp", "rn-1-sn"],
)
def test_special_case_signatures_never_verify(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey], r: int, s: int
) -> None:
    """Out-of-range r or s fails as DER and as raw, without an exception (C3)."""
    _, key = p521
    der = encode_dss_signature(r, s)
    assert verify_signature(key, der, MESSAGE) is False
    raw = r.to_bytes(66, "big") + s.to_bytes(66, "big")
    decoded, _ = decode_signature("P-521", raw, "raw")
    assert verify_signature(key, decoded, MESSAGE) is False


# --------------------------------------------------------------------------- C4-C7


def test_valid_der_and_raw_signatures_verify(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """A genuine P-521/SHA-512 signature verifies as DER and as raw, in explicit and auto mode."""
    private_key, key = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    raw = _raw(der)
    assert decode_signature("P-521", der, "der") == (der, "der")
    assert decode_signature("P-521", der, "auto") == (der, "der")
    assert decode_signature("P-521", raw, "raw") == (der, "raw")
    assert decode_signature("P-521", raw, "auto") == (der, "raw")
    assert verify_signature(key, der, MESSAGE) is True
    assert verify_signature(key, decode_signature("P-521", raw, "auto")[0], MESSAGE) is True


def test_malleated_signature_is_valid(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """The malleated twin (r, n - s) of a valid signature also verifies (C4: no replay on bytes)."""
    private_key, key = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    r, s = decode_dss_signature(der)
    twin = encode_dss_signature(r, N521 - s)
    assert twin != der
    assert verify_signature(key, twin, MESSAGE) is True


def _ber_variants(der: bytes) -> dict[str, bytes]:
    r, s = decode_dss_signature(der)
    strict = _der(_int_tlv(r), _int_tlv(s))
    assert strict == der  # the builder reproduces the strict encoding exactly
    content_len = len(_int_tlv(r)) + len(_int_tlv(s))
    return {
        "seq-length-non-minimal": _der(
            _int_tlv(r), _int_tlv(s), seq_length=bytes([0x82, 0x00, content_len])
        ),
        "int-length-long-form": _der(_int_tlv(r, long_length=True), _int_tlv(s)),
        "int-leading-zero": _der(_int_tlv(r), _int_tlv(s, extra_zero=True)),
        "trailing-garbage": der + b"\x00",
        "trailing-null": der + b"\x05\x00",
        "indefinite-length": _der(_int_tlv(r), _int_tlv(s), seq_length=b"\x80") + b"\x00\x00",
        "wrong-sequence-tag": _der(_int_tlv(r), _int_tlv(s), tag=0x31),
        "wrong-integer-tag": _der(b"\x03" + _int_tlv(r)[1:], _int_tlv(s)),
        "length-too-long": der[:2] + bytes([der[2] + 1]) + der[3:],
        "length-too-short": der[:2] + bytes([der[2] - 1]) + der[3:],
        "truncated": der[:-1],
        "r-only": _der(_int_tlv(r), b""),
        "three-integers": _der(_int_tlv(r), _int_tlv(s) + _int_tlv(1)),
    }


def _seam_rejects(key: VerifyingKey, signature: bytes, encoding: Any) -> bool:
    """decode_signature refuses the bytes, or verify_signature fails on what it returned."""
    try:
        decoded, _ = decode_signature(key.key_type, signature, encoding)
    except VerificationError as e:
        return e.reason is Reason.BAD_SIGNATURE
    return verify_signature(key, decoded, MESSAGE) is False


def test_ber_forms_are_rejected(p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey]) -> None:
    """Long-form lengths, leading zeros, trailing bytes, indefinite length and wrong tags fail (C5).

    For P-521 the strictness check is OpenSSL's (decode_signature passes 0x30... on):
    this is the test that holds the seam to it, for a signature whose r and s are valid.
    """
    private_key, key = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    assert verify_signature(key, der, MESSAGE) is True  # control: the strict form is good
    variants = _ber_variants(der)
    for name, variant in variants.items():
        assert variant != der, name
        assert _seam_rejects(key, variant, "der"), name
        assert _seam_rejects(key, variant, "auto"), name


@pytest.mark.parametrize("key_type", ["P-256", "P-384"])
def test_ber_forms_are_rejected_at_decode_on_other_curves(key_type: KeyType) -> None:
    """On curves whose r||s may start with 0x30, decode_signature itself checks strict DER."""
    curve, algorithm = {
        "P-256": (ec.SECP256R1(), hashes.SHA256()),
        "P-384": (ec.SECP384R1(), hashes.SHA384()),
    }[key_type]
    der = ec.generate_private_key(curve).sign(MESSAGE, ec.ECDSA(algorithm))
    for name, variant in _ber_variants(der).items():
        assert _is_bad_signature(key_type, variant, "der"), name


@pytest.mark.parametrize("length", [0, 1, 64, 130, 131, 133, 134, 264])
@pytest.mark.parametrize("encoding", ["raw", "auto"])
def test_raw_signature_of_wrong_length_is_rejected(length: int, encoding: str) -> None:
    """Raw P-521 signatures must be exactly 132 bytes (C6)."""
    assert _is_bad_signature("P-521", b"\x01" * length, encoding)


def test_encodings_do_not_cross(p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey]) -> None:
    """Raw bytes fail in DER-only mode and DER bytes fail in raw-only mode (C6)."""
    private_key, _ = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    assert _is_bad_signature("P-521", _raw(der), "der")
    assert _is_bad_signature("P-521", der, "raw")


def test_der_must_start_with_sequence_tag(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """A DER-length signature whose first byte is not 0x30 is rejected in der and auto mode (C6)."""
    private_key, _ = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    for first in (0x00, 0x31, 0x10, 0xB0):
        mutated = bytes([first]) + der[1:]
        assert _is_bad_signature("P-521", mutated, "der")
        assert _is_bad_signature("P-521", mutated, "auto")


def test_oversized_der_is_rejected_before_parsing() -> None:
    """A well-formed DER SEQUENCE longer than any P-521 signature can be is rejected at decode."""
    huge = encode_dss_signature(2**1100, 2**1100)
    assert len(huge) > 139
    assert _is_bad_signature("P-521", huge, "der")
    assert _is_bad_signature("P-521", huge, "auto")


def test_132_bytes_starting_with_0x30_are_der_for_p521(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """A P-521 r||s cannot start with 0x30 (r < n < 2**521): such bytes are DER or nothing."""
    _, key = p521
    garbage = b"\x30" + b"\x81" * 131
    decoded, encoding = decode_signature("P-521", garbage, "auto")
    assert encoding == "der"
    assert verify_signature(key, decoded, MESSAGE) is False


def test_raw_p384_starting_with_0x30_falls_back_to_raw() -> None:
    """On P-384 an r||s may start with 0x30; non-DER bytes of that length are read as raw."""
    garbage = b"\x30" + b"\x81" * 95
    _, encoding = decode_signature("P-384", garbage, "auto")
    assert encoding == "raw"


def test_signature_from_another_curve_or_hash_fails(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """Signatures by a P-256 or Ed25519 key, or over SHA-256/SHA-384, fail under the P-521 key (C7, C16)."""
    private_key, key = p521
    p256 = ec.generate_private_key(ec.SECP256R1()).sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    assert verify_signature(key, p256, MESSAGE) is False
    ed = ed25519.Ed25519PrivateKey.generate().sign(MESSAGE)
    # Refused as undecodable, or (one time in 256 it starts with 0x30, the DER tag, and
    # may parse as DER) decoded and then not verified.
    if not _is_bad_signature("P-521", ed, "auto"):
        assert verify_signature(key, decode_signature("P-521", ed, "auto")[0], MESSAGE) is False
    for digest in (hashes.SHA256(), hashes.SHA384()):
        wrong_hash = private_key.sign(MESSAGE, ec.ECDSA(digest))
        assert verify_signature(key, wrong_hash, MESSAGE) is False


def test_signature_over_altered_base_fails(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """A trailing newline, CRLF line endings or one flipped byte in the base fail (C17)."""
    private_key, key = p521
    der = private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    for message in (MESSAGE + b"\n", MESSAGE.replace(b"\n", b"\r\n"), b"X" + MESSAGE[1:]):
        assert verify_signature(key, der, message) is False


def test_key_substitution_fails() -> None:
    """A signature by key B never verifies under key A, even when both are valid P-521 keys (C14)."""
    _, key_a = _p521_key("a")
    private_b, key_b = _p521_key("b")
    der = private_b.sign(MESSAGE, ec.ECDSA(hashes.SHA512()))
    assert verify_signature(key_b, der, MESSAGE) is True
    assert verify_signature(key_a, der, MESSAGE) is False


def test_verify_signature_never_raises(
    p521: tuple[ec.EllipticCurvePrivateKey, VerifyingKey],
) -> None:
    """Garbage, empty and huge signature bytes give False instead of an exception."""
    _, key = p521
    ed_key = VerifyingKey("ed", "Ed25519", ed25519.Ed25519PrivateKey.generate().public_key())
    for signature in (b"", b"\x30", b"\x30\x00", b"\x00" * 132, b"\xff" * 5000):
        assert verify_signature(key, signature, MESSAGE) is False
        assert verify_signature(ed_key, signature, MESSAGE) is False


# --------------------------------------------------------------------------- other key types


@pytest.mark.parametrize("key_type", ["P-256", "P-384", "P-521"])
def test_ecdsa_round_trip_per_curve(key_type: KeyType) -> None:
    """Each curve verifies its own hash in DER and raw form; raw is 2 * scalar size bytes."""
    private_key = ec.generate_private_key(_CURVE[key_type])
    key = jwk_to_key(_ec_jwk(private_key, "k"), key_types=KEY_TYPES)
    assert key.key_type == key_type
    size = (private_key.curve.key_size + 7) // 8
    der = private_key.sign(MESSAGE, ec.ECDSA(_HASH[key_type]))
    raw = _raw(der, size)
    assert len(raw) == 2 * size
    for signature, encoding in ((der, "der"), (raw, "raw"), (der, "auto"), (raw, "auto")):
        decoded, _ = decode_signature(key_type, signature, encoding)  # type: ignore[arg-type]
        assert verify_signature(key, decoded, MESSAGE) is True
        assert verify_signature(key, decoded, MESSAGE + b"x") is False
    for bad_length in (2 * size - 1, 2 * size + 1):
        assert _is_bad_signature(key_type, b"\x01" * bad_length, "raw")


def test_ed25519_signatures() -> None:
    """Ed25519 takes exactly 64 raw bytes, has no DER form, and verifies genuine signatures."""
    private_key = ed25519.Ed25519PrivateKey.generate()
    key = VerifyingKey("ed", "Ed25519", private_key.public_key())
    signature = private_key.sign(MESSAGE)
    assert decode_signature("Ed25519", signature, "raw") == (signature, "raw")
    assert decode_signature("Ed25519", signature, "auto") == (signature, "raw")
    assert verify_signature(key, signature, MESSAGE) is True
    assert verify_signature(key, signature, MESSAGE + b"x") is False
    assert _is_bad_signature("Ed25519", signature, "der")
    for length in (0, 63, 65, 132):
        assert _is_bad_signature("Ed25519", b"\x01" * length, "auto")


def test_bad_signature_error_type() -> None:
    """decode_signature raises the package's InvalidSignature carrying Reason.BAD_SIGNATURE."""
    with pytest.raises(InvalidSignature) as excinfo:
        decode_signature("P-521", b"\x00" * 10, "auto")
    assert excinfo.value.reason is Reason.BAD_SIGNATURE
    assert excinfo.value.status_code == 401


# --------------------------------------------------------------------------- VerifyingKey


def test_algorithm_names() -> None:
    """Each key type maps to its HTTP Message Signatures algorithm name."""
    assert ALGORITHMS == {
        "P-521": "ecdsa-p521-sha512",
        "P-384": "ecdsa-p384-sha384",
        "P-256": "ecdsa-p256-sha256",
        "Ed25519": "ed25519",
    }
    assert set(ALGORITHMS) == KEY_TYPES
    _, key = _p521_key()
    assert key.algorithm == "ecdsa-p521-sha512"


def test_verifying_key_rejects_mismatched_curve() -> None:
    """A VerifyingKey whose public key does not match its key type cannot be built."""
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ValueError, match="P-521"):
        VerifyingKey("k", "P-521", p256)
    with pytest.raises(ValueError, match="Ed25519"):
        VerifyingKey("k", "Ed25519", p256)
    with pytest.raises(ValueError, match="unknown key_type"):
        VerifyingKey("k", "RSA", p256)  # type: ignore[arg-type]


@pytest.mark.parametrize("kid", ["", "k" * 257, None, 7], ids=["empty", "257", "none", "int"])
def test_verifying_key_rejects_bad_kid(kid: Any) -> None:
    """A VerifyingKey needs a non-empty string kid of at most 256 characters."""
    public_key = ec.generate_private_key(ec.SECP521R1()).public_key()
    with pytest.raises(ValueError, match="kid"):
        VerifyingKey(kid, "P-521", public_key)


def test_verifying_key_equality_and_hash() -> None:
    """VerifyingKeys compare and hash by kid, key type and key material, and are frozen."""
    private_key, key = _p521_key("same")
    again = jwk_to_key(_ec_jwk(private_key, "same"), key_types=P521_ONLY)
    assert key == again
    assert hash(key) == hash(again)
    assert len({key, again}) == 1
    assert key != jwk_to_key(_ec_jwk(private_key, "other"), key_types=P521_ONLY)
    _, different = _p521_key("same")
    assert key != different
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.kid = "changed"  # type: ignore[misc]


def test_unusable_key_is_a_value_error() -> None:
    """UnusableKey subclasses ValueError and carries the kid of the rejected JWK."""
    with pytest.raises(ValueError, match="unsupported key type") as excinfo:
        jwk_to_key({"kty": "RSA", "kid": "r1"}, key_types=P521_ONLY)
    assert isinstance(excinfo.value, UnusableKey)
    assert excinfo.value.kid == "r1"
