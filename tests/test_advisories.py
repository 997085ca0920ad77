"""Regression tests named after bugs and advisories in comparable libraries (threat model §4).

Each test reproduces the attack or failure of the cited report against this
library and asserts the safe outcome with its exact reason code.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from upvest_verify import KeySet, Policy, Reason, VerificationError, VerifiedWebhook, verify
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

NOW = 1_700_000_000
URL = "https://receiver.example/webhooks/upvest?tenant=1"
BODY = b'{"payload":[]}'


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The Upvest-like signing key."""
    return generate_key()


@pytest.fixture(scope="module")
def keys(key: SigningKey) -> KeySet:
    """The key set the receiver trusts."""
    return make_key_set(key)


def check(
    s: SignedWebhook,
    keys: KeySet,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    url: str | None = None,
    now: float = NOW,
    policy: Policy | None = None,
) -> VerifiedWebhook:
    """Verify with optional replacements."""
    return verify(
        s.method,
        s.url if url is None else url,
        s.headers if headers is None else headers,
        s.body if body is None else body,
        keys=keys,
        now=now,
        policy=policy,
    )


def rejected(s: SignedWebhook, keys: KeySet, **kwargs: object) -> Reason:
    """Return the reason a modified webhook is rejected for."""
    with pytest.raises(VerificationError) as info:
        check(s, keys, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


def replace(s: SignedWebhook, name: str, value: str) -> list[tuple[str, str]]:
    """Headers with one field replaced."""
    return [(n, value if n == name else v) for n, v in s.headers]


def test_web_bot_auth_114_empty_covered_list(key: SigningKey, keys: KeySet) -> None:
    """cloudflare/web-bot-auth#114, GHSA-x9cc-346q-g27m: sig1=() must not verify."""
    s = sign_webhook(b"", key=key, url=URL, components=[], created=NOW)
    assert rejected(s, keys) is Reason.MISSING_COMPONENT


def test_requests_http_signature_9_required_components(key: SigningKey, keys: KeySet) -> None:
    """pyauth/requests-http-signature#9: the policy can require components beyond the defaults."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    policy = Policy(required_components=("@method", "@path", "@authority"))
    assert rejected(s, keys, policy=policy) is Reason.MISSING_COMPONENT


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
def test_digest_covered_but_never_compared(key: SigningKey, keys: KeySet, dialect: str) -> None:
    """requests-http-signature#10, go-fed/httpsig#6, http-message-signatures#9: the digest is checked."""
    s = sign_webhook(BODY, key=key, url=URL, dialect=dialect, created=NOW)  # type: ignore[arg-type]
    assert rejected(s, keys, body=b'{"payload":[1]}') is Reason.DIGEST_MISMATCH


def test_linzer_24_body_signed_by_default(key: SigningKey, keys: KeySet) -> None:
    """nomadium/linzer#24: a body not covered by a digest is rejected by default."""
    s = sign_webhook(BODY, key=key, url=URL, components=["@method", "@path", "@query"], created=NOW)
    assert rejected(s, keys) is Reason.MISSING_COMPONENT


def test_web_bot_auth_125_expires_enforced(key: SigningKey, keys: KeySet) -> None:
    """cloudflare/web-bot-auth#125, node-http-message-signatures#213: past expires is expired."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, ttl=10)
    assert rejected(s, keys, now=NOW + 10 + Policy().skew + 1) is Reason.EXPIRED
    assert check(s, keys, now=NOW + 5).created == NOW


def test_linzer_7_8_created_missing_or_old(key: SigningKey, keys: KeySet) -> None:
    """nomadium/linzer#7/#8: a missing created is an error, an old one is expired; no crash."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, ttl=None)
    assert rejected(s, keys, now=NOW + 3600) is Reason.EXPIRED
    si = (s.header("signature-input") or "").replace(f";created={NOW}", "")
    assert rejected(s, keys, headers=replace(s, "signature-input", si)) is Reason.MALFORMED_HEADER


def test_httpsig_14_parameter_order_from_header(key: SigningKey, keys: KeySet) -> None:
    """common-fate/httpsig#14, jbowes/httpsig#22: parameters are taken in the received order."""
    order = ("nonce", "expires", "keyid", "created")
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, params_order=order)
    assert check(s, keys).key_id == key.kid


def test_signify_ts_230_signature_params_serialisation(key: SigningKey, keys: KeySet) -> None:
    """WebOfTrust/signify-ts#230: @signature-params is the strict inner list with parameters."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, dialect="rfc9421")
    spaced = (s.header("signature-input") or "").replace("(", "( ").replace(");", " );")
    assert check(s, keys, headers=replace(s, "signature-input", spaced)).label == "sig1"


def test_mastodon_28476_query_is_covered(key: SigningKey, keys: KeySet) -> None:
    """mastodon/mastodon#28476: the query is signed; a changed query fails."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    assert rejected(s, keys, url=URL.replace("tenant=1", "tenant=2")) is Reason.BAD_SIGNATURE


def test_hyperbeam_622_duplicate_components(key: SigningKey, keys: KeySet) -> None:
    """permaweb/HyperBEAM#622: duplicate component identifiers are malformed."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    si = (s.header("signature-input") or "").replace('"@path"', '"@path" "@path"')
    assert rejected(s, keys, headers=replace(s, "signature-input", si)) is Reason.MALFORMED_HEADER


def test_node_http_signature_10_names_bound(key: SigningKey) -> None:
    """TritonDataCenter/node-http-signature#10: header names are bound; swapping values fails."""
    keys = make_key_set(key)
    s = sign_webhook(
        BODY,
        key=key,
        url=URL,
        created=NOW,
        components=["@method", "@path", "@query", "digest", "x-a", "x-b"],
        headers=[("x-a", "1"), ("x-b", "2")],
    )
    swapped = [(n, {"x-a": "2", "x-b": "1"}.get(n, v)) for n, v in s.headers]
    assert rejected(s, keys, headers=swapped) is Reason.BAD_SIGNATURE


def test_node_http_signature_82_no_stray_newline(key: SigningKey, keys: KeySet) -> None:
    """TritonDataCenter/node-http-signature#82: a base with a trailing newline does not verify."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    sig = base64.b64encode(key.sign(s.base + b"\n")).decode()
    assert (
        rejected(s, keys, headers=replace(s, "signature", f"sig1=:{sig}:")) is Reason.BAD_SIGNATURE
    )


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
@pytest.mark.parametrize("sent", ["canonical", "other-form"])
def test_linzer_23_constant_time_digest_compare(
    key: SigningKey, keys: KeySet, monkeypatch: pytest.MonkeyPatch, dialect: str, sent: str
) -> None:
    """nomadium/linzer#23: a received digest is compared with the body's through hmac.compare_digest."""
    import hmac

    import upvest_verify._digest
    import upvest_verify._fast

    seen: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: str | bytes, b: str | bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(upvest_verify._fast, "compare_digest", spy)
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, dialect=dialect)  # type: ignore[arg-type]
    tampered = b'{"payload":[1]}'
    if dialect == "upvest-v6":
        digest = hashlib.sha256(BODY).digest()
        name, value = "digest", "SHA-256=" + base64.b64encode(digest).decode()
        if sent == "other-form":
            value = "sha-256=" + base64.b64encode(digest).decode()  # lower-case token
        expected = hashlib.sha256(tampered).digest()
    else:
        digest = hashlib.sha512(BODY).digest()
        name, value = "content-digest", f"sha-512=:{base64.b64encode(digest).decode()}:"
        if sent == "other-form":
            value = f"sha-512=:{base64.b64encode(digest).decode()}:, md5=:AAAA:"
        expected = hashlib.sha512(tampered).digest()
    headers = [(n, value if n == name else v) for n, v in s.headers]
    with pytest.raises(VerificationError) as info:
        verify(s.method, s.url, headers, tampered, keys=keys, now=NOW)
    assert info.value.reason is Reason.DIGEST_MISMATCH
    # The comparison that decided the mismatch saw the received and the computed digest.
    assert (expected, digest) in seen or (digest, expected) in seen


def test_httpsig_go_29_p521_coordinates_66_bytes(key: SigningKey) -> None:
    """remitly-oss/httpsig-go#29: P-521 JWK coordinates are exactly 66 bytes, 65 is refused."""
    jwk = dict(key.public_jwk)
    x = base64.urlsafe_b64decode(jwk["x"] + "==")
    assert len(x) == 66
    jwk["x"] = base64.urlsafe_b64encode(x[1:]).rstrip(b"=").decode()  # 65 bytes
    assert key.kid in KeySet.from_jwks({"keys": [jwk]}).rejected


def test_http_message_signatures_4_components_unquoted(key: SigningKey, keys: KeySet) -> None:
    """pyauth/http-message-signatures#4: covered names are exposed unquoted for policy checks."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    assert "@method" in check(s, keys).component_names


def test_adcp_581_escaped_quote_injection(key: SigningKey, keys: KeySet) -> None:
    """adcontextprotocol/adcp-client#581, GHSA-jj78-73gf-wr5j: no regex SF parsing tricks."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    evil = f'sig1=("@method\\" \\"@path");keyid="{key.kid}";created={NOW}'
    assert rejected(s, keys, headers=replace(s, "signature-input", evil)) is Reason.MALFORMED_HEADER


def test_httpsig_go_18_repeated_fields_combined(key: SigningKey, keys: KeySet) -> None:
    """remitly-oss/httpsig-go#18: repeated covered fields are combined, never first-only."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    assert rejected(s, keys, headers=[*s.headers, ("content-type", "text/html")]) is (
        Reason.BAD_SIGNATURE
    )


def test_web_bot_auth_26_split_signature_lines(key: SigningKey, keys: KeySet) -> None:
    """cloudflare/web-bot-auth#26, http-message-signatures#21: split lines merge; duplicates fail."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, label="sig2")
    other = sign_webhook(BODY, key=generate_key(), url=URL, created=NOW)
    split = [*s.headers]
    split += [(n, v) for n, v in other.headers if n in ("signature", "signature-input")]
    assert check(s, keys, headers=split).label == "sig2"
    dup = [*s.headers, ("signature-input", s.header("signature-input") or "")]
    assert rejected(s, keys, headers=dup) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize("encoding", ["der", "raw"])
def test_node_http_message_signatures_162_der_and_raw(
    key: SigningKey, keys: KeySet, encoding: str
) -> None:
    """dhensby/node-http-message-signatures#162, httpwg#1899: DER and raw r||s both verify."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, encoding=encoding)  # type: ignore[arg-type]
    assert check(s, keys).dialect.encoding == encoding


def test_linzer_9_forwarded_never_consulted(key: SigningKey, keys: KeySet) -> None:
    """nomadium/linzer#9: Forwarded/X-Forwarded-* never override @authority."""
    s = sign_webhook(
        BODY,
        key=key,
        url=URL,
        created=NOW,
        components=["@method", "@path", "@query", "@authority", "digest"],
    )
    forged = [*s.headers, ("forwarded", "host=evil.example"), ("x-forwarded-host", "evil.example")]
    assert check(s, keys, headers=forged).key_id == key.kid


def test_misskey_11_svix_55_extra_signature_no_veto(key: SigningKey, keys: KeySet) -> None:
    """misskey-dev/node-http-message-signatures#11, svix-webhooks#55: a bad extra signature never vetoes."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    extra = [
        (
            "signature-input",
            f'sig9=("@method" "@path" "@query" "digest");keyid="{key.kid}";created={NOW}',
        ),
        ("signature", "sig9=:" + base64.b64encode(b"\x30\x00").decode() + ":"),
    ]
    assert check(s, keys, headers=[*s.headers, *extra]).label == "sig1"


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_pyjwt_cve_2022_29217_alg_confusion(key: SigningKey, keys: KeySet, alg: str) -> None:
    """PyJWT CVE-2022-29217, Authlib CVE-2024-37568: alg never switches the algorithm."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, alg=alg)
    assert rejected(s, keys) is Reason.UNSUPPORTED_ALGORITHM


def test_authlib_cve_2026_27962_no_key_from_message(key: SigningKey, keys: KeySet) -> None:
    """Authlib CVE-2026-27962: a jwk/jku-like parameter in the message is refused, never used."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    si = (s.header("signature-input") or "") + ';jku="https://evil.example/jwks"'
    assert rejected(s, keys, headers=replace(s, "signature-input", si)) is Reason.MALFORMED_HEADER


def test_pyjwt_ghsa_752w_unknown_parameters(key: SigningKey, keys: KeySet) -> None:
    """PyJWT GHSA-752w-5fwx-jx9f, Authlib CVE-2025-59420: unknown parameters are not ignored."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    si = (s.header("signature-input") or "") + ";crit=?1"
    assert rejected(s, keys, headers=replace(s, "signature-input", si)) is Reason.MALFORMED_HEADER


def test_authlib_cve_2025_61920_header_size_capped(key: SigningKey, keys: KeySet) -> None:
    """Authlib CVE-2025-61920: a huge signature header is refused before parsing."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    huge = (s.header("signature") or "") + ", x=:" + "A" * 1_000_000 + ":"
    assert rejected(s, keys, headers=replace(s, "signature", huge)) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(("r", "s_"), [(0, 0), (0, 1)])
def test_cve_2022_21449_psychic_signatures(key: SigningKey, keys: KeySet, r: int, s_: int) -> None:
    """CVE-2022-21449: r = s = 0 (and r = 0) never verify."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW, encoding="raw")
    raw = r.to_bytes(66, "big") + s_.to_bytes(66, "big")
    headers = replace(s, "signature", f"sig1=:{base64.b64encode(raw).decode()}:")
    assert rejected(s, keys, headers=headers) is Reason.BAD_SIGNATURE


def test_python_ecdsa_cve_2019_14853_lenient_der(key: SigningKey, keys: KeySet) -> None:
    """python-ecdsa CVE-2019-14853, elliptic CVE-2024-42459: BER/lenient DER is refused."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    der = base64.b64decode((s.header("signature") or "").removeprefix("sig1=:").removesuffix(":"))
    for bad in (der + b"\x00", b"\x30\x80" + der[2:] + b"\x00\x00"):
        headers = replace(s, "signature", f"sig1=:{base64.b64encode(bad).decode()}:")
        assert rejected(s, keys, headers=headers) is Reason.BAD_SIGNATURE


def test_jsrsasign_627_short_p521_signatures(keys: KeySet, key: SigningKey) -> None:
    """kjur/jsrsasign#627, multipaz#91: valid P-521 signatures of every DER length verify."""
    lengths = set()
    for i in range(60):
        s = sign_webhook(BODY, key=key, url=URL, created=NOW, nonce=f"n{i}")
        lengths.add(len(base64.b64decode((s.header("signature") or "")[6:-1])))
        check(s, keys)
    assert len(lengths) >= 2


def test_stripe_node_396_raw_bytes_not_reserialised(key: SigningKey, keys: KeySet) -> None:
    """stripe-node#396: the raw body is verified; re-serialised JSON would fail."""
    odd = b'{ "payload" : [ ] }\n'
    s = sign_webhook(odd, key=key, url=URL, created=NOW)
    assert check(s, keys).body == odd
    assert rejected(s, keys, body=b'{"payload":[]}') is Reason.DIGEST_MISMATCH


def test_sigstore_447_failure_never_returns_success(key: SigningKey, keys: KeySet) -> None:
    """sigstore/model-transparency#447: a failure raises; verify() never returns on failure."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    with pytest.raises(VerificationError):
        check(s, keys, body=b"x")


def test_webhook_skills_193_verify_returns_typed_result(key: SigningKey, keys: KeySet) -> None:
    """hookdeck/webhook-skills#193: verify() returns a VerifiedWebhook, never None."""
    s = sign_webhook(BODY, key=key, url=URL, created=NOW)
    assert isinstance(check(s, keys), VerifiedWebhook)


def test_d3_deprecated_digest_never_counts(key: SigningKey, keys: KeySet) -> None:
    """RFC 9530 §6 (R24): an md5 Content-Digest alone is digest_mismatch."""
    md5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()
    s = sign_webhook(
        BODY,
        key=key,
        url=URL,
        created=NOW,
        dialect="rfc9421",
        digest="none",
        headers=[("content-digest", f"md5=:{md5}:")],
        components=["@method", "@path", "@query", "content-digest"],
    )
    assert rejected(s, keys) is Reason.DIGEST_MISMATCH
