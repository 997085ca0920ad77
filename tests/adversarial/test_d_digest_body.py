"""Threat model §6 group D: the body digest and the raw body bytes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json

import pytest
from adversarial_helpers import (
    BODY,
    DIALECTS,
    accept,
    b64,
    counting,
    header,
    no_swallowed_errors,
    reason,
    sign,
    with_headers,
)

import upvest_verify._fast as fast_module
from upvest_verify import KeySet, PayloadError
from upvest_verify.errors import VerificationError
from upvest_verify.testing import SignedWebhook, SigningKey

SHA512 = hashlib.sha512(BODY).digest()
SHA256 = hashlib.sha256(BODY).digest()


def _content_digest_webhook(key: SigningKey, value: str, body: bytes = BODY) -> SignedWebhook:
    """An RFC 9421 webhook whose covered Content-Digest is ``value``, signed as is."""
    return sign(
        key,
        "rfc9421",
        body=body,
        digest="none",
        headers=[("content-digest", value)],
        components=["@method", "@path", "content-type", "content-digest"],
    )


def _legacy_digest_webhook(key: SigningKey, value: str, body: bytes = BODY) -> SignedWebhook:
    """An Upvest v6 webhook whose covered Digest is ``value``, signed as is."""
    return sign(
        key,
        "upvest-v6",
        body=body,
        digest="none",
        headers=[("digest", value)],
        components=["@method", "@path", "content-type", "digest"],
    )


# --- D1, D2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "change", ["one-byte", "appended", "truncated", "emptied", "whitespace"], ids=str
)
def test_d1_body_changed(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, change: str
) -> None:
    """A body changed in any way, headers untouched, is digest_mismatch."""
    s = sign(p521_key, dialect)
    body = {
        "one-byte": BODY.replace(b"100.25", b"900.25"),
        "appended": BODY + b"\n",
        "truncated": BODY[:-1],
        "emptied": b"",
        "whitespace": BODY.replace(b",", b", ", 1),
    }[change]
    assert body != BODY
    assert reason(s, key_set, body=body) == "digest_mismatch"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_d2_covered_digest_header_removed(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A covered digest field that was removed is component_unavailable."""
    s = sign(p521_key, dialect)
    headers = with_headers(s, **{digest.replace("-", "_"): None})
    assert reason(s, key_set, headers=headers) == "component_unavailable"


# --- D3-D6: Content-Digest ------------------------------------------------------------------


def _cd(**members: bytes) -> str:
    return ", ".join(f"{k.replace('_', '-')}=:{b64(v)}:" for k, v in members.items())


@pytest.mark.parametrize(
    "value",
    [_cd(md5=hashlib.md5(BODY).digest()), _cd(sha=hashlib.sha1(BODY).digest())],
    ids=["only-md5", "only-sha"],
)
def test_d3_deprecated_algorithms_never_count(
    p521_key: SigningKey, key_set: KeySet, value: str
) -> None:
    """Content-Digest with only md5 or sha (correct values) is digest_mismatch."""
    assert reason(_content_digest_webhook(p521_key, value), key_set) == "digest_mismatch"


def test_d3_sha256_alone_is_not_enough(p521_key: SigningKey, key_set: KeySet) -> None:
    """Content-Digest with only a correct sha-256 is digest_mismatch: the policy wants sha-512."""
    webhook = _content_digest_webhook(p521_key, _cd(sha_256=SHA256))
    assert reason(webhook, key_set) == "digest_mismatch"


@pytest.mark.parametrize(
    "value",
    [
        _cd(sha_512=SHA512, sha_256=bytes(32)),
        _cd(sha_256=bytes(32), sha_512=SHA512),
        _cd(sha_512=bytes(64), sha_256=SHA256),
        _cd(sha_256=SHA256, sha_512=hashlib.sha512(b"other").digest()),
    ],
    ids=["good-512-bad-256", "bad-256-first", "bad-512-good-256", "good-256-other-512"],
)
def test_d4_every_supported_algorithm_must_match(
    p521_key: SigningKey, key_set: KeySet, value: str
) -> None:
    """One wrong supported digest among right ones is digest_mismatch (no downgrade)."""
    assert reason(_content_digest_webhook(p521_key, value), key_set) == "digest_mismatch"


def test_d4_both_right_is_accepted(p521_key: SigningKey, key_set: KeySet) -> None:
    """sha-512 and sha-256 both right (and an md5 ignored) verify."""
    value = _cd(sha_256=SHA256, sha_512=SHA512, md5=bytes(16))
    webhook = _content_digest_webhook(p521_key, value)
    assert accept(webhook, key_set).dialect.digest == "content-digest"


@pytest.mark.parametrize(
    "value",
    [
        f"sha-512=:{b64(SHA512)}:, sha-512=:{b64(bytes(64))}:",
        f"sha-512=:{b64(bytes(64))}:, sha-512=:{b64(SHA512)}:",
        f"sha-512=:{b64(SHA512)}:, sha-512=:{b64(SHA512)}:",
    ],
    ids=["good-then-bad", "bad-then-good", "identical"],
)
def test_d5_duplicate_member(p521_key: SigningKey, key_set: KeySet, value: str) -> None:
    """sha-512 twice in Content-Digest is malformed, never first- or last-wins."""
    assert reason(_content_digest_webhook(p521_key, value), key_set) == "malformed_header"


def test_d5_duplicate_member_across_lines(p521_key: SigningKey, key_set: KeySet) -> None:
    """sha-512 on two Content-Digest lines (combined into one dictionary) is malformed."""
    webhook = _content_digest_webhook(p521_key, f"sha-512=:{b64(SHA512)}:")
    headers = [*webhook.headers, ("content-digest", f"sha-512=:{b64(bytes(64))}:")]
    assert reason(webhook, key_set, headers=headers) == "malformed_header"


_GOOD = b64(SHA512)


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (f'sha-512="{_GOOD}"', "malformed_header"),
        ("sha-512=token", "malformed_header"),
        ("sha-512=42", "malformed_header"),
        (f"sha-512=(:{_GOOD}:)", "malformed_header"),
        (f"sha-512=:{b64(SHA512[:63])}:", "digest_mismatch"),
        (f"sha-512=:{b64(SHA512 + b'x')}:", "digest_mismatch"),
        (f"sha-512=:{_GOOD.replace('+', '-').replace('/', '_')}:", "malformed_header"),
        (f"sha-512=:{_GOOD[:40]} {_GOOD[40:]}:", "malformed_header"),
        (f"sha-512=:={_GOOD[:-2]}=:", "malformed_header"),
        (f"sha-512=:{_GOOD[:40]}={_GOOD[41:]}:", "malformed_header"),
    ],
    ids=[
        "string",
        "token",
        "integer",
        "inner-list",
        "63-bytes",
        "65-bytes",
        "base64url",
        "inner-space",
        "leading-padding",
        "padding-inside",
    ],
)
def test_d6_digest_value_shape(
    p521_key: SigningKey, key_set: KeySet, value: str, verdict: str
) -> None:
    """A digest that is no byte sequence, of the wrong size or non-canonical base64 is refused."""
    if "base64url" in value:
        assert "-" in value or "_" in value
    assert reason(_content_digest_webhook(p521_key, value), key_set) == verdict


def _nonzero_pad_bits(encoded: str) -> str:
    # The last character before "=" padding carries unused bits; set one of them.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data = encoded.rstrip("=")
    last = alphabet.index(data[-1])
    return data[:-1] + alphabet[last | 1] + encoded[len(data) :]


def test_d6_non_canonical_pad_bits(p521_key: SigningKey, key_set: KeySet) -> None:
    """The right sha-512 written with non-zero pad bits decodes to the same bytes: accepted.

    RFC 8941 §4.2.7 says parsers SHOULD NOT fail on non-zero pad bits, and the vector file
    (structured-field-tests binary.json, "non-zero pad bits") lists the decoded value.
    """
    value = f"sha-512=:{_nonzero_pad_bits(_GOOD)}:"
    assert base64.b64decode(value[9:-1]) == SHA512
    assert value != f"sha-512=:{_GOOD}:"
    assert accept(_content_digest_webhook(p521_key, value), key_set).dialect.digest == (
        "content-digest"
    )


# --- D7-D10: bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_d7_empty_body_with_its_digest(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """An empty body with the correct empty-string digest, covered, verifies."""
    s = sign(p521_key, dialect, body=b"", components=["@method", "@path", digest])
    expected = {
        "digest": "SHA-256=" + b64(hashlib.sha256(b"").digest()),
        "content-digest": f"sha-512=:{b64(hashlib.sha512(b'').digest())}:",
    }[digest]
    assert header(s.headers, digest) == expected
    result = accept(s, key_set)
    assert (result.body, result.dialect.digest) == (b"", digest)


_ODD_BODIES = {
    "odd-whitespace": b'{ "payload" :\t[ ] }',
    "reordered-keys": b'{"webhook_id":"w","payload":[]}',
    "escaped-e-acute": b'{"payload":[],"name":"caf\\u00e9"}',
    "utf8-e-acute": '{"payload":[],"name":"café"}'.encode(),
    "duplicate-keys": b'{"payload":[],"payload":[{"id":"x"}]}',
    "bom": b'\xef\xbb\xbf{"payload":[]}',
    "trailing-newline": b'{"payload":[]}\n',
    "crlf": b'{"payload":\r\n[]}\r\n',
}


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("name", sorted(_ODD_BODIES))
def test_d8_raw_bytes_are_verified(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, name: str
) -> None:
    """Odd JSON verifies over its raw bytes, returned identical; a re-serialised body fails."""
    body = _ODD_BODIES[name]
    s = sign(p521_key, dialect, body=body)
    assert accept(s, key_set).body == body
    text = body.decode("utf-8-sig")
    for normalised in {json.dumps(json.loads(text)).encode(), text.encode(), text.strip().encode()}:
        if normalised != body:
            assert reason(s, key_set, body=normalised) == "digest_mismatch"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_d9_gzip_body_with_digest_over_compressed_bytes(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Content-Encoding gzip with the digest over the compressed bytes verifies; decompressed fails."""
    compressed = gzip.compress(BODY, mtime=0)
    s = sign(p521_key, dialect, body=compressed, headers=[("content-encoding", "gzip")])
    assert accept(s, key_set).body == compressed
    # A decompressing middleware placed before the verifier hands it other bytes.
    decompressed = with_headers(s, content_encoding=None)
    assert reason(s, key_set, body=BODY) == "digest_mismatch"
    assert reason(s, key_set, body=BODY, headers=decompressed) == "digest_mismatch"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_d10_chunked_body_without_content_length(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """content-length covered but absent (chunked transfer) is component_unavailable."""
    s = sign(p521_key, dialect)
    assert "content-length" in header(s.headers, "signature-input")
    headers = [*with_headers(s, content_length=None), ("transfer-encoding", "chunked")]
    assert reason(s, key_set, headers=headers) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("extra", [b" trailing", b"\x00" * 4096])
def test_d10_content_length_is_never_trusted_for_the_body(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, extra: bytes
) -> None:
    """Bytes beyond the signed Content-Length are part of the body and fail the digest."""
    s = sign(p521_key, dialect)
    assert header(s.headers, "content-length") == str(len(BODY))
    assert reason(s, key_set, body=BODY + extra) == "digest_mismatch"


# --- D11: constant-time compare ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        _cd(sha_512=hashlib.sha512(b"tampered").digest()),
        _cd(sha_256=SHA256, sha_512=hashlib.sha512(b"tampered").digest()),
        "SHA-256=" + b64(hashlib.sha256(b"tampered").digest()),
    ],
    ids=["content-digest-single", "content-digest-two", "legacy-digest"],
)
def test_d11_digest_compare_is_constant_time(
    p521_key: SigningKey, key_set: KeySet, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The body's digest is compared with hmac.compare_digest, and that compare decides."""
    legacy = value.startswith("SHA-256=")
    webhook = (_legacy_digest_webhook if legacy else _content_digest_webhook)(p521_key, value)
    expected = hashlib.sha256(BODY).digest() if legacy else hashlib.sha512(BODY).digest()
    with counting(
        monkeypatch, [(hmac, "compare_digest"), (fast_module, "compare_digest")]
    ) as calls:
        assert reason(webhook, key_set) == "digest_mismatch"
    assert any(expected in call for call in calls), calls
    # With the compare forced to say "equal", the same (correctly signed) webhook passes.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: True)
    assert accept(webhook, key_set).key_id == p521_key.kid


# --- D12: bodies the signature layer does not judge --------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "body",
    [b'{"foo":1}', b"[]", b'{"payload":"x"}', b'{"payload":[{"id":1}]}', b"not json", b"\xff\xfe"],
    ids=["no-payload", "array", "payload-string", "bad-event", "not-json", "not-utf8"],
)
def test_d12_schema_invalid_body_is_accepted_at_the_signature_layer(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, body: bytes
) -> None:
    """A correctly signed body of the wrong shape verifies; reading events raises PayloadError."""
    result = accept(sign(p521_key, dialect, body=body), key_set)
    assert result.body == body
    with pytest.raises(PayloadError):
        _ = result.events


def _deep(depth: int, open_: bytes, close: bytes) -> bytes:
    return b'{"payload":[' + open_ * depth + close * depth + b"]}"


_HOSTILE = {
    "100k-nested-lists": _deep(100_000, b"[", b"]"),
    "100k-nested-objects": b'{"payload":[' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
    "5000-digit-integer": b'{"payload":[' + b"9" * 5000 + b"]}",
    "month-13": (
        b'{"payload":[{"id":"e","type":"A.B","created_at":"2021-13-01T00:00:00Z",'
        b'"webhook_id":"w","object":{}}]}'
    ),
    "year-0": (
        b'{"payload":[{"id":"e","type":"A.B","created_at":"0000-01-01T00:00:00Z",'
        b'"webhook_id":"w","object":{}}]}'
    ),
    "lone-surrogate": b'{"payload":[{"id":"\\ud800","type":1}]}',
    "nan": b'{"payload":[NaN]}',
}


@pytest.mark.parametrize("name", sorted(_HOSTILE))
def test_d12_hostile_bodies_raise_only_payload_error(
    p521_key: SigningKey, key_set: KeySet, name: str
) -> None:
    """Hostile but correctly signed bodies verify; .events raises PayloadError and nothing else."""
    body = _HOSTILE[name]
    result = accept(sign(p521_key, "rfc9421", body=body), key_set)
    with no_swallowed_errors():
        try:
            _ = result.events
        except PayloadError:
            pass
        except VerificationError as e:  # pragma: no cover - reported by the assertion below
            raise AssertionError(f"events raised {e!r}") from e
        else:
            raise AssertionError("events parsed a hostile body")


# --- D13: the v6 Digest field ------------------------------------------------------------------


def _legacy(*pairs: tuple[str, bytes], sep: str = ",") -> str:
    return sep.join(f"{alg}={b64(value)}" for alg, value in pairs)


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (_legacy(("SHA-256", bytes(32))), "digest_mismatch"),
        (_legacy(("sha-256", SHA256)), "accept"),
        (_legacy(("Sha-256", SHA256)), "accept"),
        (_legacy(("SHA-256", SHA256), ("SHA-512", SHA512)), "accept"),
        (_legacy(("SHA-512", SHA512), ("SHA-256", SHA256), sep=", "), "accept"),
        (_legacy(("SHA-256", SHA256), ("SHA-512", bytes(64))), "digest_mismatch"),
        (_legacy(("SHA-256", bytes(32)), ("SHA-512", SHA512)), "digest_mismatch"),
        (_legacy(("MD5", hashlib.md5(BODY).digest())), "digest_mismatch"),
        (_legacy(("SHA", hashlib.sha1(BODY).digest())), "digest_mismatch"),
        (_legacy(("SHA-256", SHA256), ("SHA-256", bytes(32))), "malformed_header"),
        ("SHA-256=" + b64(SHA256).rstrip("=") + "*", "malformed_header"),
    ],
    ids=[
        "wrong",
        "lower-case",
        "mixed-case",
        "list",
        "list-reversed",
        "list-second-wrong",
        "list-first-wrong",
        "md5-only",
        "sha1-only",
        "conflicting-duplicate",
        "not-base64",
    ],
)
def test_d13_legacy_digest(p521_key: SigningKey, key_set: KeySet, value: str, verdict: str) -> None:
    """v6 Digest: tokens are case-insensitive and every supported entry must match."""
    webhook = _legacy_digest_webhook(p521_key, value)
    if verdict == "accept":
        assert accept(webhook, key_set).dialect.digest == "digest"
    else:
        assert reason(webhook, key_set) == verdict


@pytest.mark.parametrize("wrong_field", ["digest", "content-digest"])
def test_d13_digest_and_content_digest_both_checked(
    p521_key: SigningKey, key_set: KeySet, wrong_field: str
) -> None:
    """Covering Digest and Content-Digest, either one wrong (the other right) is digest_mismatch."""
    values = {
        "digest": _legacy(("SHA-256", SHA256)),
        "content-digest": _cd(sha_512=SHA512),
    }
    good = sign(
        p521_key,
        "upvest-v6",
        digest="none",
        headers=list(values.items()),
        components=["@method", "@path", "digest", "content-digest"],
    )
    assert accept(good, key_set).key_id == p521_key.kid
    values[wrong_field] = {
        "digest": _legacy(("SHA-256", bytes(32))),
        "content-digest": _cd(sha_512=bytes(64)),
    }[wrong_field]
    webhook = sign(
        p521_key,
        "upvest-v6",
        digest="none",
        headers=list(values.items()),
        components=["@method", "@path", "digest", "content-digest"],
    )
    assert reason(webhook, key_set) == "digest_mismatch"
