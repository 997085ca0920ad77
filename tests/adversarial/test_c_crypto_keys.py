"""Threat model §6 group C: signature bytes, ECDSA and the key material behind a keyid."""

from __future__ import annotations

import base64
import builtins
import functools
import json
import logging
import socket
import urllib.request
from typing import Any

import pytest
from adversarial_helpers import (
    DIALECTS,
    REFERENCE_NOW,
    accept,
    b64,
    ecdsa_verifies,
    header,
    no_swallowed_errors,
    reason,
    shared_vectors,
    sign,
    signature_params_of,
    with_headers,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import load_der_public_key

import upvest_verify._verify as verify_module
from upvest_verify import KeySet, Policy, VerificationError, Verifier, VerifyingKey, verify
from upvest_verify.testing import SignedWebhook, SigningKey, generate_key, make_jwks

# SEC 2 §2.6.1: the P-521 group order n and field prime p.
N521 = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
P521 = 2**521 - 1
DER_FILE = "ecdsa_secp521r1_sha512_test.json"
P1363_FILE = "ecdsa_secp521r1_sha512_p1363_test.json"


def _signature(s: SignedWebhook) -> bytes:
    encoded = header(s.headers, "signature").removeprefix("sig1=:").removesuffix(":")
    return base64.b64decode(encoded)


def _with_signature(s: SignedWebhook, signature: bytes) -> list[tuple[str, str]]:
    return with_headers(s, signature=f"sig1=:{b64(signature)}:")


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(66, "big") + s.to_bytes(66, "big")


# --- C1, C2: Wycheproof through verify() -----------------------------------------------------


@functools.cache
def _wycheproof(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(shared_vectors("wycheproof", name).read_text("utf-8"))
    return data


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.cache
def _group_keys(name: str, index: int) -> KeySet:
    """The group's key: from its JWK (or one built from the point), else from its DER."""
    group = _wycheproof(name)["testGroups"][index]
    if index % 2:
        der = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
        return KeySet.from_keys([VerifyingKey("wycheproof", "P-521", der)])  # type: ignore[arg-type]
    jwk = dict(group.get("publicKeyJwk") or {})
    if not jwk:
        point = bytes.fromhex(group["publicKey"]["uncompressed"])
        jwk = {"kty": "EC", "crv": "P-521", "x": _b64url(point[1:67]), "y": _b64url(point[67:])}
    jwk["kid"] = "wycheproof"
    return KeySet.from_jwks({"keys": [jwk]})


def _cases(name: str, prefix: str) -> list[Any]:
    try:
        data = _wycheproof(name)
    except pytest.skip.Exception as skipped:
        mark = pytest.mark.skip(reason=str(skipped))
        return [pytest.param(0, {}, marks=mark, id=f"{prefix}-vectors-absent")]
    return [
        pytest.param(index, case, id=f"{prefix}-tc{case['tcId']}")
        for index, group in enumerate(data["testGroups"])
        for case in group["tests"]
    ]


def _wycheproof_verdict(
    monkeypatch: pytest.MonkeyPatch, keys: KeySet, case: dict[str, Any], encoding: str
) -> str:
    """verify() a webhook whose Signature holds the vector's bytes and whose base is its msg.

    Everything but the base builder is real: header parsing, base64, the key from a
    JWK or DER, signature decoding and the ECDSA verify. The base is the vector's
    message, because a Wycheproof message cannot be spelled as HTTP components.
    """
    import upvest_verify._fast as fast_module

    monkeypatch.setattr(fast_module, "ENABLED", False)
    msg = bytes.fromhex(case["msg"])
    monkeypatch.setattr(verify_module, "signature_base", lambda *args: msg)
    params = f'("@method" "@path");keyid="wycheproof";created={REFERENCE_NOW}'
    headers = [
        ("signature-input", f"sig1={params}"),
        ("signature", f"sig1=:{b64(bytes.fromhex(case['sig']))}:"),
    ]
    policy = Policy(dialect="rfc9421", signature_encoding=encoding)  # type: ignore[arg-type]
    with no_swallowed_errors():
        try:
            verify("POST", "/hooks", headers, b"", keys=keys, now=REFERENCE_NOW, policy=policy)
        except VerificationError as e:
            return e.reason.value
    return "valid"


def _expected(case: dict[str, Any]) -> str:
    return "valid" if case["result"] == "valid" else "bad_signature"


@pytest.mark.parametrize(("index", "case"), _cases(DER_FILE, "C1"))
def test_c1_wycheproof_der(
    monkeypatch: pytest.MonkeyPatch, index: int, case: dict[str, Any]
) -> None:
    """Each Wycheproof DER vector, in the Signature header, gets its verdict (auto encoding)."""
    keys = _group_keys(DER_FILE, index)
    assert _wycheproof_verdict(monkeypatch, keys, case, "auto") == _expected(case)


@pytest.mark.parametrize(("index", "case"), _cases(P1363_FILE, "C2"))
def test_c2_wycheproof_p1363(
    monkeypatch: pytest.MonkeyPatch, index: int, case: dict[str, Any]
) -> None:
    """Each Wycheproof raw r||s vector gets its verdict (auto encoding), SignatureSize included."""
    keys = _group_keys(P1363_FILE, index)
    assert _wycheproof_verdict(monkeypatch, keys, case, "auto") == _expected(case)


@pytest.mark.parametrize(
    ("name", "encoding", "valid", "invalid"),
    [(DER_FILE, "der", 232, 310), (P1363_FILE, "raw", 231, 87)],
    ids=["C1-der-mode", "C2-raw-mode"],
)
def test_c1_c2_wycheproof_totals_in_strict_mode(
    monkeypatch: pytest.MonkeyPatch, name: str, encoding: str, valid: int, invalid: int
) -> None:
    """With the encoding pinned, every vector still matches: 232/310 (DER) and 231/87 (raw)."""
    data = _wycheproof(name)
    verdicts = {"valid": 0, "bad_signature": 0}
    size_cases = 0
    for index, group in enumerate(data["testGroups"]):
        keys = _group_keys(name, index)
        for case in group["tests"]:
            verdict = _wycheproof_verdict(monkeypatch, keys, case, encoding)
            assert verdict == _expected(case), case["tcId"]
            verdicts[verdict] += 1
            size_cases += "SignatureSize" in case["flags"]
    assert verdicts == {"valid": valid, "bad_signature": invalid}
    assert size_cases == (10 if name == P1363_FILE else 0)


# --- C3-C6: signature bytes of a real webhook -------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0), (0, N521), (N521, 1), (1, N521), (1, P521), (N521 - 1, N521)],
    ids=["r0-s0", "r0-s1", "r1-s0", "r0-sn", "rn-s1", "r1-sn", "r1-sp", "rn-1-sn"],
)
@pytest.mark.parametrize("encoding", ["raw", "der"])
def test_c3_special_scalars(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    r: int,
    s: int,
    encoding: str,
) -> None:
    """r or s of 0, n or p ("psychic signatures") never verify: bad_signature."""
    webhook = sign(p521_key, dialect)
    signature = _raw(r, s) if encoding == "raw" else encode_dss_signature(r, s)
    headers = _with_signature(webhook, signature)
    assert reason(webhook, key_set, headers=headers) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("encoding", ["der", "raw"])
def test_c4_malleated_signature_is_valid(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, encoding: str
) -> None:
    """(r, n - s) verifies too, with the same (keyid, nonce): replay state never keys on bytes."""
    webhook = sign(p521_key, dialect, encoding=encoding)
    original = accept(webhook, key_set)
    sig = _signature(webhook)
    if encoding == "der":
        r, s = decode_dss_signature(sig)
    else:
        r, s = int.from_bytes(sig[:66], "big"), int.from_bytes(sig[66:], "big")
    twin = encode_dss_signature(r, N521 - s) if encoding == "der" else _raw(r, N521 - s)
    assert twin != sig
    result = accept(webhook, key_set, headers=_with_signature(webhook, twin))
    assert (result.key_id, result.nonce) == (original.key_id, original.nonce)


def _int_tlv(value: int, *, extra_zero: bool = False, long_length: bool = False) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    if extra_zero:
        body = b"\x00" + body
    length = bytes([0x81, len(body)]) if long_length else bytes([len(body)])
    return b"\x02" + length + body


def _sequence(content: bytes, *, length: bytes | None = None, tag: int = 0x30) -> bytes:
    if length is None:
        n = len(content)
        length = bytes([n]) if n < 128 else bytes([0x81, n])
    return bytes([tag]) + length + content


def _ber_variant(der: bytes, variant: str) -> bytes:
    r, s = decode_dss_signature(der)
    ri, si = _int_tlv(r), _int_tlv(s)
    assert _sequence(ri + si) == der
    return {
        "seq-long-form-length": _sequence(ri + si, length=bytes([0x82, 0, len(ri + si)])),
        "int-long-form-length": _sequence(_int_tlv(r, long_length=True) + si),
        "int-leading-zero": _sequence(ri + _int_tlv(s, extra_zero=True)),
        "trailing-garbage": der + b"\x00",
        "trailing-null": der + b"\x05\x00",
        "indefinite-length": _sequence(ri + si, length=b"\x80") + b"\x00\x00",
        "wrong-sequence-tag": _sequence(ri + si, tag=0x31),
        "wrong-integer-tag": _sequence(b"\x03" + ri[1:] + si),
        "truncated": der[:-1],
        "three-integers": _sequence(ri + si + _int_tlv(1)),
    }[variant]


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "variant",
    [
        "seq-long-form-length",
        "int-long-form-length",
        "int-leading-zero",
        "trailing-garbage",
        "trailing-null",
        "indefinite-length",
        "wrong-sequence-tag",
        "wrong-integer-tag",
        "truncated",
        "three-integers",
    ],
)
@pytest.mark.parametrize("mode", ["auto", "der"])
def test_c5_lenient_der_is_rejected(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    variant: str,
    mode: str,
) -> None:
    """BER forms of a valid signature (long lengths, leading zeros, trailing bytes...) fail."""
    webhook = sign(p521_key, dialect)
    policy = Policy(signature_encoding=mode)  # type: ignore[arg-type]
    assert accept(webhook, key_set, policy=policy).dialect.encoding == "der"
    headers = _with_signature(webhook, _ber_variant(_signature(webhook), variant))
    assert reason(webhook, key_set, headers=headers, policy=policy) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("sent", "mode", "verdict"),
    [
        ("raw", "der", "bad_signature"),
        ("der", "raw", "bad_signature"),
        ("raw", "raw", "accept"),
        ("der", "der", "accept"),
        ("raw", "auto", "accept"),
        ("der", "auto", "accept"),
    ],
)
def test_c6_encoding_modes(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    sent: str,
    mode: str,
    verdict: str,
) -> None:
    """Raw in DER-only mode and DER in raw-only mode fail; each verifies in its own mode."""
    webhook = sign(p521_key, dialect, encoding=sent)
    policy = Policy(signature_encoding=mode)  # type: ignore[arg-type]
    if verdict == "accept":
        assert accept(webhook, key_set, policy=policy).dialect.encoding == sent
    else:
        assert reason(webhook, key_set, policy=policy) == verdict


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "change", ["raw-130", "raw-131", "raw-133", "der-first-byte-0x31", "der-first-byte-0x00"]
)
def test_c6_wrong_lengths_in_auto_mode(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, change: str
) -> None:
    """In auto mode, 130/131/133 raw bytes, or DER not starting with 0x30, fail."""
    kind, _, detail = change.partition("-")
    webhook = sign(p521_key, dialect, encoding=kind)
    sig = _signature(webhook)
    if kind == "raw":
        length = int(detail)
        sig = sig[:length] if length < len(sig) else sig + b"\x00"
    else:
        sig = bytes([int(detail.rpartition("0x")[2], 16)]) + sig[1:]
    assert reason(webhook, key_set, headers=_with_signature(webhook, sig)) == "bad_signature"


# --- C7, C14, C16, C17: the right key, hash and base -----------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("key_type", "encoding"),
    [("P-256", "der"), ("P-256", "raw"), ("P-384", "der"), ("Ed25519", "raw")],
)
def test_c7_signed_by_another_key_type_under_the_p521_kid(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    key_type: str,
    encoding: str,
) -> None:
    """The kid names the P-521 key; a P-256, P-384 or Ed25519 signature is bad_signature."""
    impostor = generate_key(key_type, kid=p521_key.kid)  # type: ignore[arg-type]
    webhook = sign(impostor, dialect, encoding=encoding)
    assert reason(webhook, key_set) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "hash_algorithm",
    [hashes.SHA256(), hashes.SHA384(), hashes.SHA3_512(), hashes.SHA512_256()],
    ids=["sha256", "sha384", "sha3-512", "sha512-256"],
)
@pytest.mark.parametrize("encoding", ["der", "raw"])
def test_c7_c16_wrong_hash(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    hash_algorithm: hashes.HashAlgorithm,
    encoding: str,
) -> None:
    """The correct base signed by the P-521 key with another hash is bad_signature."""
    webhook = sign(p521_key, dialect)
    sig = p521_key.sign(webhook.base, encoding=encoding, hash_algorithm=hash_algorithm)  # type: ignore[arg-type]
    assert reason(webhook, key_set, headers=_with_signature(webhook, sig)) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_c14_rotation_signed_with_b_named_a(
    p521_key: SigningKey,
    second_key: SigningKey,
    dialect: str,
    digest: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signed with key B but keyid A is bad_signature, and only key A is ever tried."""
    keys = KeySet.from_jwks(make_jwks(p521_key, second_key))
    webhook = sign(second_key, dialect)
    assert accept(webhook, keys).key_id == second_key.kid
    headers = with_headers(
        webhook,
        signature_input="sig1="
        + signature_params_of(webhook).replace(second_key.kid, p521_key.kid),
    )
    with ecdsa_verifies(monkeypatch) as calls:
        assert reason(webhook, keys, headers=headers) == "bad_signature"
    assert calls
    assert {call[0].kid for call in calls} == {p521_key.kid}


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("change", ["trailing-lf", "crlf", "leading-lf", "trailing-crlf"])
def test_c17_stray_newlines_in_the_base(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, change: str
) -> None:
    """A base with a trailing LF, CRLF line ends or other stray newlines does not verify."""
    webhook = sign(p521_key, dialect)
    base = {
        "trailing-lf": webhook.base + b"\n",
        "crlf": webhook.base.replace(b"\n", b"\r\n"),
        "leading-lf": b"\n" + webhook.base,
        "trailing-crlf": webhook.base + b"\r\n",
    }[change]
    sig = p521_key.sign(base)
    assert reason(webhook, key_set, headers=_with_signature(webhook, sig)) == "bad_signature"


# --- C8-C12: what a JWK may be ----------------------------------------------------------------


def _jwk_variant(key: SigningKey, change: str) -> dict[str, Any]:
    jwk: dict[str, Any] = dict(key.public_jwk)
    x = base64.urlsafe_b64decode(jwk["x"] + "==")
    y = base64.urlsafe_b64decode(jwk["y"] + "==")
    if change == "off-curve":
        jwk["y"] = _b64url(((int.from_bytes(y, "big") + 1) % P521).to_bytes(66, "big"))
    elif change == "x-65-bytes":
        jwk["x"] = _b64url(x[1:])
    elif change == "y-67-bytes":
        jwk["y"] = _b64url(b"\x00" + y)
    elif change == "x-padded":
        # 66 bytes need no padding: a lenient decoder ignores the "==", a strict one refuses it.
        jwk["x"] += "=="
    elif change == "standard-alphabet":
        jwk["x"] = base64.b64encode(x).decode().rstrip("=")
        jwk["y"] = base64.b64encode(y).decode().rstrip("=")
        assert jwk["x"] != key.public_jwk["x"] or jwk["y"] != key.public_jwk["y"]
    elif change == "private-d":
        jwk["d"] = _b64url(bytes(66))
    elif change == "use-enc":
        jwk["use"] = "enc"
    elif change == "key-ops-sign":
        jwk["key_ops"] = ["sign"]
    elif change == "alg-es256":
        jwk["alg"] = "ES256"
    elif change == "crv-p256":
        jwk["crv"] = "P-256"
    elif change == "crv-p384":
        jwk["crv"] = "P-384"
    elif change == "crv-secp256k1":
        jwk["crv"] = "secp256k1"
    elif change == "kty-rsa":
        jwk = {"kid": jwk["kid"], "kty": "RSA", "n": _b64url(b"\xc1" * 256), "e": "AQAB"}
    elif change == "kty-oct":
        jwk = {"kid": jwk["kid"], "kty": "oct", "k": _b64url(b"secret" * 6)}
    elif change == "kty-okp":
        jwk = dict(generate_key("Ed25519", kid=jwk["kid"]).public_jwk)
    else:  # pragma: no cover - the parametrisation lists every change
        raise AssertionError(change)
    return jwk


def _standard_alphabet_key() -> SigningKey:
    # A key whose coordinates use "-" or "_", so the standard alphabet spells them differently.
    while True:
        key = generate_key(kid="c10-standard-alphabet")
        if any(c in key.public_jwk["x"] + key.public_jwk["y"] for c in "-_"):
            return key


_JWK_CASES = [
    ("C8", "off-curve"),
    ("C9", "crv-p256"),
    ("C9", "crv-p384"),
    ("C9", "crv-secp256k1"),
    ("C9", "kty-rsa"),
    ("C9", "kty-oct"),
    ("C9", "kty-okp"),
    ("C10", "x-65-bytes"),
    ("C10", "y-67-bytes"),
    ("C10", "x-padded"),
    ("C10", "standard-alphabet"),
    ("C11", "private-d"),
    ("C12", "use-enc"),
    ("C12", "key-ops-sign"),
    ("C12", "alg-es256"),
]


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "change", [c for _, c in _JWK_CASES], ids=[f"{i}-{c}" for i, c in _JWK_CASES]
)
def test_c8_c12_unusable_jwk(
    p521_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    digest: str,
    change: str,
) -> None:
    """An unusable JWK is skipped with a warning; its kid is unsupported_key, the others still work."""
    bad_key = _standard_alphabet_key() if change == "standard-alphabet" else generate_key(kid="bad")
    jwks = {"keys": [_jwk_variant(bad_key, change), p521_key.public_jwk]}
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        keys = KeySet.from_jwks(jwks)
    assert any(
        bad_key.kid in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )
    assert accept(sign(p521_key, dialect), keys).key_id == p521_key.kid
    assert reason(sign(bad_key, dialect), keys) == "unsupported_key"


@pytest.mark.parametrize("tc_id", range(19, 27), ids=lambda tc: f"C9-wycheproof-jwk-tc{tc}")
def test_c9_wycheproof_json_web_keys(p521_key: SigningKey, tc_id: int) -> None:
    """The keys of Wycheproof json_web_key_test.json tc 19-26 are unsupported_key."""
    data = json.loads(shared_vectors("wycheproof", "json_web_key_test.json").read_text("utf-8"))
    group = next(g for g in data["testGroups"] if any(t["tcId"] == tc_id for t in g["tests"]))
    document = group.get("public") or group["private"]
    keys = KeySet.from_jwks({"keys": [*document["keys"], p521_key.public_jwk]})
    for kid in {k["kid"] for k in document["keys"]}:
        impostor = SigningKey(kid, private_key=p521_key.private_key)
        assert reason(sign(impostor), keys) == "unsupported_key"
    assert accept(sign(p521_key), keys).key_id == p521_key.kid


# --- C13: alg --------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "alg",
    ["hmac-sha256", "rsa-pss-sha512", "ed25519", "ecdsa-p256-sha256", "ecdsa-p384-sha384", "ES512"],
)
def test_c13_alg_contradicting_the_key(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, alg: str
) -> None:
    """An alg other than the P-521 key's is unsupported_algorithm, even correctly signed."""
    assert reason(sign(p521_key, dialect, alg=alg), key_set) == "unsupported_algorithm"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_c13_unregistered_p521_alias_needs_a_switch(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """alg=ecdsa-p521-sha512 (no such registered name) is unsupported_algorithm by default."""
    webhook = sign(p521_key, dialect, alg="ecdsa-p521-sha512")
    assert reason(webhook, key_set) == "unsupported_algorithm"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_c13_absent_alg_is_fine(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Without alg the algorithm comes from the key: accepted."""
    webhook = sign(p521_key, dialect)
    assert "alg=" not in header(webhook.headers, "signature-input")
    assert accept(webhook, key_set).key_id == p521_key.kid


# --- C15: hostile keyids -----------------------------------------------------------------------


class _CountingProvider:
    """A key provider that counts refreshes and never finds new keys."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.refreshes: list[str] = []

    def current(self) -> KeySet:
        return self.keys

    def refresh_for(self, kid: str) -> KeySet | None:
        self.refreshes.append(kid)
        return None


def _no_io(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"unexpected I/O: {args!r}")


@pytest.mark.parametrize(
    ("keyid", "verdict"),
    [
        ('"../../etc/passwd"', "unknown_key"),
        ('"https://evil.example/jwks.json"', "unknown_key"),
        ('"file:///etc/passwd"', "unknown_key"),
        ('"' + "k" * 256 + '"', "unknown_key"),
        ('"' + "k" * 257 + '"', "malformed_header"),
        ('"' + "k" * 10_000 + '"', "malformed_header"),
        ('"k\u00e9y"', "malformed_header"),
        ('""', "malformed_header"),
        ("token", "malformed_header"),
        ("42", "malformed_header"),
        (":AAAA:", "malformed_header"),
    ],
    ids=[
        "path-traversal",
        "url",
        "file-url",
        "256-chars",
        "257-chars",
        "10k",
        "non-ascii",
        "empty",
        "token",
        "integer",
        "bytes",
    ],
)
def test_c15_hostile_keyids(
    p521_key: SigningKey,
    key_set: KeySet,
    monkeypatch: pytest.MonkeyPatch,
    keyid: str,
    verdict: str,
) -> None:
    """Odd keyids are unknown_key or malformed_header, with no I/O and at most one refresh."""
    webhook = sign(p521_key)
    si = signature_params_of(webhook).replace(f'keyid="{p521_key.kid}"', f"keyid={keyid}")
    headers = with_headers(webhook, signature_input=f"sig1={si}")
    assert reason(webhook, key_set, headers=headers) == verdict
    provider = _CountingProvider(key_set)
    verifier = Verifier(provider, clock=lambda: REFERENCE_NOW)
    monkeypatch.setattr(builtins, "open", _no_io)
    monkeypatch.setattr(socket.socket, "connect", _no_io)
    monkeypatch.setattr(socket, "create_connection", _no_io)
    monkeypatch.setattr(urllib.request, "urlopen", _no_io)
    with no_swallowed_errors(), pytest.raises(VerificationError) as info:
        verifier.verify(webhook.method, webhook.url, headers, webhook.body)
    monkeypatch.undo()
    assert info.value.reason.value == verdict
    assert len(provider.refreshes) == (1 if verdict == "unknown_key" else 0)
