"""End-to-end behaviour of verify(): dialects, policy, time window, and one negative test per reason."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc

import pytest
from core_helpers import REFERENCE_NOW, no_swallowed_errors, signature_headers, with_headers
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

import upvest_verify._fast as fast_module
import upvest_verify._verify as verify_module
from upvest_verify import (
    InvalidSignature,
    KeyNotFound,
    KeySet,
    Policy,
    Reason,
    RequestTooLarge,
    VerificationError,
    VerifiedWebhook,
    Verifier,
    verify,
)
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_jwks,
    sample_events,
    sign_webhook,
)

URL = "https://receiver.example/webhooks/upvest"
BODY = b'{"payload":[{"id":"e1","created_at":"2021-07-21T14:10:00.980159529Z","type":"ORDER.FILLED","object":{"amount":"1.5"},"webhook_id":"w1"}]}'
P521_N = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)


def signed(key: SigningKey, body: bytes = BODY, **kwargs: object) -> SignedWebhook:
    """Sign a webhook created at REFERENCE_NOW."""
    kwargs.setdefault("created", REFERENCE_NOW)
    kwargs.setdefault("url", URL)
    return sign_webhook(body, key=key, **kwargs)  # type: ignore[arg-type]


def run(
    s: SignedWebhook,
    keys: KeySet,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    method: str | None = None,
    url: str | None = None,
    now: float = REFERENCE_NOW,
    policy: Policy | None = None,
) -> VerifiedWebhook:
    """Verify a signed webhook, optionally with parts replaced."""
    return verify(
        method or s.method,
        s.url if url is None else url,
        s.headers if headers is None else headers,
        s.body if body is None else body,
        keys=keys,
        now=now,
        policy=policy,
    )


def reason_of(s: SignedWebhook, keys: KeySet, **kwargs: object) -> Reason:
    """Run and return the rejection reason, failing if the webhook was accepted."""
    with pytest.raises(VerificationError) as info:
        run(s, keys, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


# --- positive: every dialect and encoding ------------------------------------------------


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
@pytest.mark.parametrize("encoding", ["der", "raw"])
@pytest.mark.parametrize("version_header", [False, True])
def test_every_dialect_verifies_and_is_reported(
    p521_key: SigningKey, key_set: KeySet, dialect: str, encoding: str, version_header: bool
) -> None:
    """Each base layout and signature encoding verifies and is reported in ``dialect``."""
    s = signed(p521_key, dialect=dialect, encoding=encoding, version_header=version_header)
    result = run(s, key_set)
    assert result.dialect.layout == dialect
    assert result.dialect.encoding == encoding
    assert result.dialect.digest == ("digest" if dialect == "upvest-v6" else "content-digest")
    assert result.key_id == p521_key.kid
    assert result.label == "sig1"
    assert result.created == REFERENCE_NOW
    assert result.expires == REFERENCE_NOW + 60
    assert result.body == BODY
    assert result.component_names[:2] == ("@method", "@path")


def test_result_carries_parsed_events(p521_key: SigningKey, key_set: KeySet) -> None:
    """The envelope is parsed lazily into typed events, nanosecond timestamps included."""
    result = run(signed(p521_key), key_set)
    (event,) = result.events
    assert event.id == "e1"
    assert event.type == "ORDER.FILLED"
    assert event.category == "ORDER"
    assert event.created_at.microsecond == 980159
    assert event.created_at.utcoffset() is not None
    assert event.object == {"amount": "1.5"}
    assert result.events is result.events


def test_both_digest_fields_are_checked(p521_key: SigningKey, key_set: KeySet) -> None:
    """A webhook covering Digest and Content-Digest verifies only if both match."""
    s = signed(p521_key, digest="both")
    assert run(s, key_set).dialect.digest == "digest"
    bad = with_headers(s, digest="SHA-256=" + base64.b64encode(b"x" * 32).decode())
    assert reason_of(s, key_set, headers=bad) is Reason.DIGEST_MISMATCH


def _count_verifies(mp: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = verify_module.verify_signature

    def counting(*args: object) -> bool:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    mp.setattr(verify_module, "verify_signature", counting)
    mp.setattr(fast_module, "verify_signature", counting)
    return calls


def test_verifier_learns_the_layout_that_matched(p521_key: SigningKey, key_set: KeySet) -> None:
    """After one v6 webhook the verifier tries the v6 layout first: one ECDSA verify, not two."""
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW)
    # v6 layout with Content-Digest: the digest field suggests RFC 9421 first, wrongly.
    s = signed(p521_key, dialect="upvest-v6", digest="content-digest")
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_verifies(mp)
        verifier.verify(s.method, s.url, s.headers, s.body)
        assert len(calls) == 2
        verifier.verify(s.method, s.url, s.headers, s.body)
        assert len(calls) == 3


@pytest.mark.parametrize(
    ("dialect", "digest"), [("upvest-v6", "digest"), ("rfc9421", "content-digest")]
)
def test_covered_digest_field_orders_the_layouts(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A webhook covering its dialect's own digest field costs one ECDSA verify, even cold."""
    s = signed(p521_key, dialect=dialect, digest=digest)
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_verifies(mp)
        assert run(s, key_set).dialect.layout == dialect
        assert len(calls) == 1


# --- A. header parsing --------------------------------------------------------------------


def test_a1_no_signature_headers(p521_key: SigningKey, key_set: KeySet) -> None:
    """Without Signature and Signature-Input the reason is missing_signature."""
    s = signed(p521_key)
    headers = with_headers(s, signature=None, signature_input=None)
    assert reason_of(s, key_set, headers=headers) is Reason.MISSING_SIGNATURE


@pytest.mark.parametrize("drop", ["signature", "signature_input"])
def test_a2_only_one_signature_header(p521_key: SigningKey, key_set: KeySet, drop: str) -> None:
    """With only one of the two headers the reason is missing_signature."""
    s = signed(p521_key)
    assert (
        reason_of(s, key_set, headers=with_headers(s, **{drop: None})) is Reason.MISSING_SIGNATURE
    )


def test_a3_labels_do_not_pair(p521_key: SigningKey, key_set: KeySet) -> None:
    """sig1 in Signature but only sig2 in Signature-Input is label_mismatch."""
    s = signed(p521_key)
    si = s.header("signature-input")
    assert si is not None
    headers = with_headers(s, signature_input=si.replace("sig1=", "sig2=", 1))
    assert reason_of(s, key_set, headers=headers) is Reason.LABEL_MISMATCH


def test_a4_same_label_on_two_lines(p521_key: SigningKey, key_set: KeySet) -> None:
    """The same label on two Signature-Input lines is malformed, not last-wins."""
    s = signed(p521_key)
    si = s.header("signature-input")
    assert si is not None
    headers = [*s.headers, ("Signature-Input", 'sig1=("@method");keyid="evil";created=1')]
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER


def test_a5_same_label_twice_in_signature(p521_key: SigningKey, key_set: KeySet) -> None:
    """A label repeated inside one Signature line is malformed."""
    s = signed(p521_key)
    sig = s.header("signature")
    headers = with_headers(s, signature=f"{sig}, {sig}")
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize("value", ['sig1="abc"', "sig1=abc", "sig1=42", "sig1=(:AAAA:)"])
def test_a6_signature_member_of_wrong_type(
    p521_key: SigningKey, key_set: KeySet, value: str
) -> None:
    """A Signature member that is not a byte sequence is malformed."""
    s = signed(p521_key)
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature=value)) is Reason.MALFORMED_HEADER
    )


@pytest.mark.parametrize("value", ["sig1=:ab-_:", "sig1=:ab cd:", "sig1=:=abc=:", "sig1=:a=bc:"])
def test_a7_bad_byte_sequence(p521_key: SigningKey, key_set: KeySet, value: str) -> None:
    """URL-safe characters, inner spaces or misplaced padding in Signature are malformed."""
    s = signed(p521_key)
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature=value)) is Reason.MALFORMED_HEADER
    )


@pytest.mark.parametrize(
    "value",
    [
        'sig1="@method";keyid="k";created=1700000000',
        'sig1=(@method @path);keyid="k";created=1700000000',
        'sig1=(1 2);keyid="k";created=1700000000',
        'sig1=("@method\\" \\"x\\": y");keyid="k";created=1700000000',
    ],
    ids=["a8-item", "a9-tokens", "a9-integers", "a10-escaped-quote"],
)
def test_a8_a10_signature_input_shape(p521_key: SigningKey, key_set: KeySet, value: str) -> None:
    """Signature-Input members must be inner lists of plain component strings."""
    s = signed(p521_key)
    headers = with_headers(s, signature_input=value)
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(
    "value",
    [
        "sig1=(" + " ".join(f'"x-h{i}"' for i in range(6000)) + ');keyid="k";created=1',
        ", ".join(f'sig{i}=("@method");keyid="k";created=1' for i in range(1000)),
        'sig1=("@method");keyid="k";created=' + "1" * 100_000,
    ],
    ids=["10k-components", "1000-labels", "100k-digit-integer"],
)
def test_a11_size_caps(p521_key: SigningKey, key_set: KeySet, value: str) -> None:
    """Oversized signature headers are rejected as malformed before parsing."""
    s = signed(p521_key)
    headers = with_headers(s, signature_input=value)
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER


def test_a11_label_and_component_caps_below_byte_cap(p521_key: SigningKey, key_set: KeySet) -> None:
    """Too many labels or components within the byte cap are still malformed."""
    s = signed(p521_key)
    many_labels = ", ".join(f"s{i}=()" for i in range(100))
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=many_labels))
        is Reason.MALFORMED_HEADER
    )
    comps = " ".join(f'"h{i}"' for i in range(40))
    many = f'sig1=({comps});keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=many))
        is Reason.MALFORMED_HEADER
    )


def test_a12_header_names_in_odd_case(p521_key: SigningKey, key_set: KeySet) -> None:
    """Header names are case-insensitive: SIGNATURE-INPUT and Content-DIGEST work."""
    s = signed(p521_key, dialect="rfc9421")
    headers = [(k.upper() if i % 2 else k.title(), v) for i, (k, v) in enumerate(s.headers)]
    assert run(s, key_set, headers=headers).key_id == p521_key.kid


def test_a13_non_ascii_signature_input(p521_key: SigningKey, key_set: KeySet) -> None:
    """A non-ASCII byte in Signature-Input is malformed."""
    s = signed(p521_key)
    si = s.header("signature-input")
    assert si is not None
    headers = with_headers(s, signature_input=si.replace('"@path"', '"@pa\u00e9th"'))
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers]
    with pytest.raises(VerificationError) as info:
        verify(s.method, s.url, raw, s.body, keys=key_set, now=REFERENCE_NOW)
    assert info.value.reason is Reason.MALFORMED_HEADER


def _attacker_sig2(kid: str) -> tuple[str, str]:
    return (
        f'sig2=("@method" "@path" "digest");keyid="{kid}";created={REFERENCE_NOW}',
        "sig2=:" + base64.b64encode(b"\x30" + b"\x00" * 137).decode() + ":",
    )


@pytest.mark.parametrize("attacker_kid", ["unknown-kid", "9ed77463-c18e-4794-ab5c-17423f9b801a"])
def test_a14_extra_attacker_signature_never_vetoes(
    p521_key: SigningKey, key_set: KeySet, attacker_kid: str
) -> None:
    """A valid sig1 plus an attacker's sig2 (unknown kid or garbage) is accepted on sig1."""
    s = signed(p521_key)
    si2, sig2 = _attacker_sig2(attacker_kid)
    headers = [*s.headers, ("Signature-Input", si2), ("Signature", sig2)]
    assert run(s, key_set, headers=headers).label == "sig1"
    # Order in the header does not matter either.
    swapped = with_headers(
        s,
        signature_input=f"{si2}, {s.header('signature-input')}",
        signature=f"{sig2}, {s.header('signature')}",
    )
    assert run(s, key_set, headers=swapped).label == "sig1"


def test_a14_attacker_signature_alone(p521_key: SigningKey, key_set: KeySet) -> None:
    """The attacker's sig2 alone, with an unknown kid, is unknown_key."""
    s = signed(p521_key)
    si2, sig2 = _attacker_sig2("attacker")
    headers = with_headers(s, signature_input=si2, signature=sig2)
    with pytest.raises(KeyNotFound) as info:
        run(s, key_set, headers=headers)
    assert info.value.reason is Reason.UNKNOWN_KEY
    assert info.value.key_id == "attacker"


def test_a15_many_labels_bound_the_ecdsa_work(p521_key: SigningKey, key_set: KeySet) -> None:
    """20 labels with the real kid and random bytes cost at most cap x layouts verifies."""
    s = signed(p521_key, body=b"")
    si = (s.header("signature-input") or "").removeprefix("sig1=")
    inputs = ", ".join(f"s{i}={si}" for i in range(20))
    sigs = ", ".join(
        f"s{i}=:" + base64.b64encode(p521_key.sign(b"other %d" % i)).decode() + ":"
        for i in range(20)
    )
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_verifies(mp)
        headers = with_headers(s, signature_input=inputs, signature=sigs)
        assert reason_of(s, key_set, headers=headers) is Reason.BAD_SIGNATURE
    assert 0 < len(calls) <= Policy().max_signatures * 2


# --- B. components and base ---------------------------------------------------------------


def test_b1_empty_covered_list(p521_key: SigningKey, key_set: KeySet) -> None:
    """A correctly signed sig1=() is missing_component: it would replay anywhere."""
    s = signed(p521_key, body=b"", components=[])
    assert reason_of(s, key_set) is Reason.MISSING_COMPONENT


@pytest.mark.parametrize(
    ("components", "body"),
    [(["@method"], b""), (["@method", "@path", "content-type"], BODY)],
    ids=["only-method", "body-without-digest"],
)
def test_b2_too_little_covered(
    p521_key: SigningKey, key_set: KeySet, components: list[str], body: bytes
) -> None:
    """Covering only @method, or a body without a digest, is missing_component."""
    s = signed(p521_key, body=body, components=components)
    assert reason_of(s, key_set) is Reason.MISSING_COMPONENT


def test_b2_required_components_are_configurable(p521_key: SigningKey, key_set: KeySet) -> None:
    """A policy can require more components, e.g. @authority."""
    s = signed(p521_key)
    policy = Policy(required_components=("@method", "@path", "@authority"))
    assert reason_of(s, key_set, policy=policy) is Reason.MISSING_COMPONENT


@pytest.mark.parametrize(
    "inner",
    [
        '"@method" "@method" "@path"',
        '"@method" "@path" "content-type" "content-type"',
        '"@method" "@path" "Content-Digest"',
        '"@method" "@path" "@signature-params"',
        '"@method" "@path" "@query-param"',
        '"@method" "@path" "content-type";xyz',
        '"@method" "@path" "content-digest";bs;sf',
        '"@method" "@path" "content-type";sf=1',
    ],
    ids=[
        "b3-dup-derived",
        "b3-dup-field",
        "b4-upper-case",
        "b5-signature-params",
        "b6-query-param-no-name",
        "b7-unknown-param",
        "b7-bs-sf",
        "ill-typed-param",
    ],
)
def test_b3_b7_malformed_component_lists(p521_key: SigningKey, key_set: KeySet, inner: str) -> None:
    """Duplicate, upper-case, unknown or badly parametrised components are malformed."""
    s = signed(p521_key)
    si = f'sig1=({inner});keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.MALFORMED_HEADER
    )


@pytest.mark.parametrize(
    "extra",
    [
        '"@status"',
        '"@foo"',
        '"content-type";req',
        '"content-type";tr',
        '"x-absent"',
        '"content-type";key="a"',
    ],
    ids=[
        "b6-status-on-request",
        "b6-unknown-derived",
        "b7-req",
        "b7-tr",
        "b8-absent-field",
        "b7-key-on-non-dict",
    ],
)
def test_b6_b8_component_unavailable(p521_key: SigningKey, key_set: KeySet, extra: str) -> None:
    """Components this request cannot supply are component_unavailable."""
    s = signed(p521_key, body=b"", components=["@method", "@path"])
    si = f'sig1=("@method" "@path" {extra});keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.COMPONENT_UNAVAILABLE
    )


def test_b9_injected_second_field_line(p521_key: SigningKey, key_set: KeySet) -> None:
    """A second Content-Type line is combined ("a, b"), so the signature fails."""
    s = signed(p521_key)
    headers = [*s.headers, ("Content-Type", "text/plain")]
    assert reason_of(s, key_set, headers=headers) is Reason.BAD_SIGNATURE


def test_b10_whitespace_and_obs_fold(p521_key: SigningKey, key_set: KeySet) -> None:
    """Surrounding whitespace is trimmed and obs-fold becomes one space."""
    s = signed(
        p521_key,
        components=["@method", "@path", "digest", "x-note", "x-pair"],
        headers=[("x-note", "a b"), ("x-pair", "one"), ("x-pair", "two")],
    )
    headers = with_headers(s, x_note=" \ta\r\n b  ", x_pair=None)
    headers += [("x-pair", "  one "), ("x-pair", "two\t")]
    assert run(s, key_set, headers=headers).key_id == p521_key.kid


@pytest.mark.parametrize(
    "order",
    [
        ("created", "keyid", "nonce", "expires"),
        ("keyid", "created", "nonce", "expires"),
        ("expires", "nonce", "created", "keyid"),
    ],
)
def test_b11_parameter_order_is_kept(
    p521_key: SigningKey, key_set: KeySet, order: tuple[str, ...]
) -> None:
    """Signature parameters verify in any order; the base keeps the received order."""
    s = signed(p521_key, params_order=order)
    assert run(s, key_set).nonce is not None


def test_b12_optional_spaces_in_inner_list(p521_key: SigningKey, key_set: KeySet) -> None:
    """Extra spaces inside the inner list are accepted; the base uses strict serialisation."""
    s = signed(p521_key)
    si = (s.header("signature-input") or "").replace("(", "(  ").replace('")', '"  )')
    assert run(s, key_set, headers=with_headers(s, signature_input=si)).label == "sig1"


@pytest.mark.parametrize("path", ["/hooks/a%2Fb", "/hooks/%7Euser", "/hooks/caf%C3%A9", "/"])
def test_b13_raw_path(p521_key: SigningKey, key_set: KeySet, path: str) -> None:
    """@path is the raw path; a decoded path breaks the signature."""
    url = "https://receiver.example" + path
    s = signed(p521_key, url=url)
    assert run(s, key_set).key_id == p521_key.kid
    if "%" in path:
        from urllib.parse import unquote

        decoded = "https://receiver.example" + unquote(path)
        assert reason_of(s, key_set, url=decoded) in (Reason.BAD_SIGNATURE, Reason.MALFORMED_HEADER)


@pytest.mark.parametrize("query", ["b=2&a=1", "", "a=%20b&a=c"])
def test_b14_query_exact(p521_key: SigningKey, key_set: KeySet, query: str) -> None:
    """A covered query verifies exactly as sent; reordering it fails."""
    s = signed(p521_key, url=f"{URL}?{query}")
    assert run(s, key_set).key_id == p521_key.kid
    if query == "b=2&a=1":
        assert reason_of(s, key_set, url=f"{URL}?a=1&b=2") is Reason.BAD_SIGNATURE


def test_b14_query_present_but_not_covered(p521_key: SigningKey, key_set: KeySet) -> None:
    """A query that the signature does not cover is missing_component."""
    s = signed(p521_key)
    assert reason_of(s, key_set, url=f"{URL}?evil=1") is Reason.MISSING_COMPONENT


def test_b15_proxy_stripped_prefix(p521_key: SigningKey, key_set: KeySet) -> None:
    """A path as seen behind a prefix-stripping proxy fails unless the public URL is given."""
    s = signed(p521_key, url="https://receiver.example/api/webhooks/upvest")
    assert reason_of(s, key_set, url="/webhooks/upvest") is Reason.BAD_SIGNATURE
    assert run(s, key_set, url="/api/webhooks/upvest").key_id == p521_key.kid


def test_b16_header_named_like_a_derived_component(p521_key: SigningKey, key_set: KeySet) -> None:
    """A header literally named @method never replaces the derived value."""
    s = signed(p521_key)
    assert run(s, key_set, headers=[*s.headers, ("@method", "GET")]).key_id == p521_key.kid


def test_b17_non_ascii_covered_value(p521_key: SigningKey, key_set: KeySet) -> None:
    """A non-ASCII byte in a covered header value is malformed."""
    s = signed(
        p521_key, components=["@method", "@path", "digest", "x-name"], headers=[("x-name", "a")]
    )
    headers = with_headers(s, x_name="caf\u00e9")
    assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(
    ("signed_as", "policy_dialect"), [("upvest-v6", "rfc9421"), ("rfc9421", "upvest-v6")]
)
def test_b18_dialect_pinned_by_policy(
    p521_key: SigningKey, key_set: KeySet, signed_as: str, policy_dialect: str
) -> None:
    """A webhook in one layout fails a verifier pinned to the other."""
    s = signed(p521_key, dialect=signed_as)
    policy = Policy(dialect=policy_dialect)  # type: ignore[arg-type]
    assert reason_of(s, key_set, policy=policy) is Reason.BAD_SIGNATURE


def test_b18_version_header_selects_the_layout(p521_key: SigningKey, key_set: KeySet) -> None:
    """upvest-signature-version 15 on a v6-signed webhook means only the quoted base is tried."""
    s = signed(p521_key, dialect="upvest-v6")
    headers = [*s.headers, ("upvest-signature-version", "15")]
    assert reason_of(s, key_set, headers=headers) is Reason.BAD_SIGNATURE


def test_b19_method_case_matters(p521_key: SigningKey, key_set: KeySet) -> None:
    """A base signed over "post" does not verify a POST request."""
    s = signed(p521_key, method="post")
    assert reason_of(s, key_set, method="POST") is Reason.BAD_SIGNATURE


def test_b20_digest_covered_but_absent(p521_key: SigningKey, key_set: KeySet) -> None:
    """Covering content-digest on a request without one is component_unavailable."""
    s = signed(p521_key, body=b"", components=["@method", "@path"])
    si = f'("@method" "@path" "content-digest");keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    base = f'"@method": POST\n"@path": /webhooks/upvest\n"@signature-params": {si}'
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si, base)
    assert reason_of(s, key_set, headers=headers) is Reason.COMPONENT_UNAVAILABLE


def test_b21_swapped_values(p521_key: SigningKey, key_set: KeySet) -> None:
    """Swapping the values of two covered headers breaks the signature."""
    s = signed(
        p521_key,
        components=["@method", "@path", "digest", "x-a", "x-b"],
        headers=[("x-a", "1"), ("x-b", "2")],
    )
    assert reason_of(s, key_set, headers=with_headers(s, x_a="2", x_b="1")) is Reason.BAD_SIGNATURE


def test_field_key_and_bs_parameters(p521_key: SigningKey, key_set: KeySet) -> None:
    """;key picks a dictionary member and ;bs wraps raw lines; both verify when signed so."""
    s = signed(
        p521_key, components=["@method", "@path", "digest"], headers=[("x-dict", "a=1, b=(2 3)")]
    )
    si = (
        f'sig1=("@method" "@path" "digest" "x-dict";key="b" "x-dict";bs);'
        f'keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    )
    digest = s.header("digest")
    x_dict_bs = ":" + base64.b64encode(b"a=1, b=(2 3)").decode() + ":"
    base = (
        f"@method: POST\n@path: /webhooks/upvest\ndigest: {digest}\n"
        f'x-dict;key="b": (2 3)\nx-dict;bs: {x_dict_bs}\n'
        f'@signature-params: ("@method" "@path" "digest" "x-dict";key="b" "x-dict";bs)'
        f';keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    )
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si.removeprefix("sig1="), base)
    assert run(s, key_set, headers=headers).dialect.layout == "upvest-v6"


def test_query_param_and_authority(p521_key: SigningKey, key_set: KeySet) -> None:
    """@query-param, @authority (normalised), @scheme and @target-uri (as sent) verify.

    RFC 9421 §2.2.2: @target-uri is the target URI as sent, an explicit default port
    and the host's case kept; §2.2.3: @authority is normalised.
    """
    url = "https://Receiver.Example:443/hooks?a=1&pet=c%C3%A4t"
    s = signed(p521_key, body=b"", url=url, components=["@method", "@path", "@target-uri"])
    si = (
        '("@method" "@path" "@authority" "@scheme" "@target-uri" "@query-param";name="pet")'
        f';keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    )
    base = (
        '"@method": POST\n"@path": /hooks\n"@authority": receiver.example\n"@scheme": https\n'
        '"@target-uri": https://Receiver.Example:443/hooks?a=1&pet=c%C3%A4t\n'
        '"@query-param";name="pet": c%C3%A4t\n'
        f'"@signature-params": {si}'
    )
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si, base)
    assert run(s, key_set, headers=headers, url=url).dialect.layout == "rfc9421"
    normalised = base.replace("https://Receiver.Example:443/", "https://receiver.example/")
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si, normalised)
    assert reason_of(s, key_set, headers=headers, url=url) is Reason.BAD_SIGNATURE


def test_query_param_whose_name_repeats_is_unavailable(
    p521_key: SigningKey, key_set: KeySet
) -> None:
    """RFC 9421 §2.2.8: a parameter name that occurs twice in the query must not be covered."""
    url = "https://receiver.example/hooks?pet=dog&pet=cat"
    s = signed(p521_key, body=b"", url=url, components=["@method", "@path", "@query"])
    si = f'("@method" "@path" "@query-param";name="pet");keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    base = (
        '"@method": POST\n"@path": /hooks\n'
        '"@query-param";name="pet": dog\n"@query-param";name="pet": cat\n'
        f'"@signature-params": {si}'
    )
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si, base)
    policy = Policy(require_query=False)
    assert (
        reason_of(s, key_set, headers=headers, url=url, policy=policy)
        is Reason.COMPONENT_UNAVAILABLE
    )


def test_origin_form_url_uses_host_for_authority(p521_key: SigningKey, key_set: KeySet) -> None:
    """With an origin-form URL, @authority comes from Host and @scheme is unavailable."""
    s = signed(p521_key, components=["@method", "@path", "@authority", "digest"])
    assert run(s, key_set, url="/webhooks/upvest").key_id == p521_key.kid
    s2 = signed(p521_key, components=["@method", "@path", "@scheme", "digest"])
    assert reason_of(s2, key_set, url="/webhooks/upvest") is Reason.COMPONENT_UNAVAILABLE


# --- C. crypto and keys -------------------------------------------------------------------


def test_c4_malleated_signature_is_accepted(p521_key: SigningKey, key_set: KeySet) -> None:
    """s -> n - s is still a valid ECDSA signature (so replay state never keys on bytes)."""
    s = signed(p521_key)
    sig_b64 = (s.header("signature") or "").removeprefix("sig1=:").removesuffix(":")
    r, sv = decode_dss_signature(base64.b64decode(sig_b64))
    malleated = encode_dss_signature(r, P521_N - sv)
    headers = with_headers(s, signature=f"sig1=:{base64.b64encode(malleated).decode()}:")
    assert run(s, key_set, headers=headers).key_id == p521_key.kid


@pytest.mark.parametrize("length", [130, 131, 133])
def test_c6_wrong_raw_lengths(p521_key: SigningKey, key_set: KeySet, length: int) -> None:
    """Raw signatures of the wrong length are bad_signature."""
    s = signed(p521_key, encoding="raw")
    bogus = base64.b64encode(b"\x01" * length).decode()
    assert reason_of(s, key_set, headers=with_headers(s, signature=f"sig1=:{bogus}:")) is (
        Reason.BAD_SIGNATURE
    )


@pytest.mark.parametrize(("signed_as", "mode"), [("raw", "der"), ("der", "raw")])
def test_c6_encoding_pinned_by_policy(
    p521_key: SigningKey, key_set: KeySet, signed_as: str, mode: str
) -> None:
    """A raw signature in DER-only mode, and the reverse, is bad_signature."""
    s = signed(p521_key, encoding=signed_as)
    policy = Policy(signature_encoding=mode)  # type: ignore[arg-type]
    assert reason_of(s, key_set, policy=policy) is Reason.BAD_SIGNATURE


def test_c7_c14_signed_by_another_key(p521_key: SigningKey) -> None:
    """Signed with key B but naming key A (both in the set) is bad_signature: no key loop."""
    other = generate_key()
    keys = KeySet.from_jwks(make_jwks(p521_key, other))
    s = signed(other)
    headers = with_headers(
        s, signature_input=(s.header("signature-input") or "").replace(other.kid, p521_key.kid)
    )
    assert reason_of(s, keys, headers=headers) is Reason.BAD_SIGNATURE


def test_c7_p256_key_not_allowed(key_set: KeySet) -> None:
    """A P-256 key is unsupported_key unless the policy admits P-256."""
    p256 = generate_key("P-256")
    keys = KeySet.from_jwks(make_jwks(p256), key_types=("P-256",))
    s = signed(p256)
    assert reason_of(s, keys) is Reason.UNSUPPORTED_KEY
    policy = Policy(key_types=frozenset({"P-256"}))
    assert run(s, keys, policy=policy).key_id == p256.kid


def test_c8_off_curve_key_is_unsupported(p521_key: SigningKey) -> None:
    """A kid whose JWK was skipped (point off the curve) is unsupported_key."""
    jwk = dict(p521_key.public_jwk)
    y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big") + 1
    jwk["y"] = base64.urlsafe_b64encode(y.to_bytes(66, "big")).rstrip(b"=").decode()
    good = generate_key()
    keys = KeySet.from_jwks({"keys": [jwk, good.public_jwk]})
    with pytest.raises(KeyNotFound) as info:
        run(signed(p521_key), keys)
    assert info.value.reason is Reason.UNSUPPORTED_KEY
    assert run(signed(good), keys).key_id == good.kid


@pytest.mark.parametrize("alg", ["hmac-sha256", "rsa-pss-sha512", "ed25519", "ecdsa-p256-sha256"])
def test_c13_contradicting_alg(p521_key: SigningKey, key_set: KeySet, alg: str) -> None:
    """An alg parameter that contradicts the P-521 key is unsupported_algorithm."""
    assert reason_of(signed(p521_key, alg=alg), key_set) is Reason.UNSUPPORTED_ALGORITHM


def test_c13_matching_alg(p521_key: SigningKey, key_set: KeySet) -> None:
    """alg="ecdsa-p521-sha512" (unregistered) verifies only when the policy allows it."""
    s = signed(p521_key, alg="ecdsa-p521-sha512")
    assert reason_of(s, key_set) is Reason.UNSUPPORTED_ALGORITHM
    allowed = Policy(allow_unregistered_alg=True)
    assert run(s, key_set, policy=allowed).key_id == p521_key.kid


@pytest.mark.parametrize("kid", ["../../etc/passwd", "https://evil.example/jwks", "k" * 200, ""])
def test_c15_hostile_kids(p521_key: SigningKey, key_set: KeySet, kid: str) -> None:
    """Hostile keyids are unknown_key (or malformed when empty), never an I/O target."""
    s = signed(p521_key)
    si = (s.header("signature-input") or "").replace(p521_key.kid, kid)
    expected = Reason.MALFORMED_HEADER if not kid else Reason.UNKNOWN_KEY
    assert reason_of(s, key_set, headers=with_headers(s, signature_input=si)) is expected


def test_c15_token_keyid(p521_key: SigningKey, key_set: KeySet) -> None:
    """A keyid given as a token instead of a string is malformed."""
    s = signed(p521_key)
    si = (s.header("signature-input") or "").replace(f'"{p521_key.kid}"', "abc")
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.MALFORMED_HEADER
    )


def test_c16_wrong_hash(p521_key: SigningKey, key_set: KeySet) -> None:
    """The right base signed with SHA-384 instead of SHA-512 is bad_signature."""
    from cryptography.hazmat.primitives import hashes

    s = signed(p521_key)
    sig = p521_key.sign(s.base, hash_algorithm=hashes.SHA384())
    headers = with_headers(s, signature=f"sig1=:{base64.b64encode(sig).decode()}:")
    assert reason_of(s, key_set, headers=headers) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("suffix", [b"\n", b"\r\n"])
def test_c17_stray_newline(p521_key: SigningKey, key_set: KeySet, suffix: bytes) -> None:
    """A base with a trailing newline (or CRLF lines) does not verify."""
    s = signed(p521_key)
    base = s.base + suffix if suffix == b"\n" else s.base.replace(b"\n", b"\r\n")
    sig = p521_key.sign(base)
    headers = with_headers(s, signature=f"sig1=:{base64.b64encode(sig).decode()}:")
    assert reason_of(s, key_set, headers=headers) is Reason.BAD_SIGNATURE


# --- D. digest and body -------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
def test_d1_body_changed(p521_key: SigningKey, key_set: KeySet, dialect: str) -> None:
    """One changed body byte with untouched headers is digest_mismatch."""
    s = signed(p521_key, dialect=dialect)
    assert reason_of(s, key_set, body=BODY.replace(b"1.5", b"9.5")) is Reason.DIGEST_MISMATCH


def test_d2_digest_header_removed(p521_key: SigningKey, key_set: KeySet) -> None:
    """A covered content-digest that was removed is component_unavailable."""
    s = signed(p521_key, dialect="rfc9421")
    headers = with_headers(s, content_digest=None)
    assert reason_of(s, key_set, headers=headers) is Reason.COMPONENT_UNAVAILABLE


def _content_digest(**members: bytes) -> str:
    return ", ".join(f"{k}=:{base64.b64encode(v).decode()}:" for k, v in members.items())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_content_digest(md5=hashlib.md5(BODY).digest()), Reason.DIGEST_MISMATCH),
        (
            _content_digest(**{"sha-512": hashlib.sha512(BODY).digest(), "sha-256": b"\0" * 32}),
            Reason.DIGEST_MISMATCH,
        ),
        (
            "sha-512=:"
            + base64.b64encode(hashlib.sha512(BODY).digest()).decode()
            + ":, sha-512=:AA==:",
            Reason.MALFORMED_HEADER,
        ),
        ('sha-512="abc"', Reason.MALFORMED_HEADER),
        (
            _content_digest(**{"sha-512": hashlib.sha512(BODY).digest()[:63]}),
            Reason.DIGEST_MISMATCH,
        ),
    ],
    ids=["d3-only-md5", "d4-one-wrong", "d5-duplicate", "d6-not-bytes", "d6-63-bytes"],
)
def test_d3_d6_content_digest_rules(
    p521_key: SigningKey, key_set: KeySet, value: str, reason: Reason
) -> None:
    """Deprecated algorithms never count; every supported one must match; duplicates are malformed."""
    s = signed(
        p521_key,
        dialect="rfc9421",
        digest="none",
        headers=[("content-digest", value)],
        components=["@method", "@path", "content-digest"],
    )
    assert reason_of(s, key_set) is reason


def test_d3_sha256_alone_is_not_enough(p521_key: SigningKey, key_set: KeySet) -> None:
    """A correct sha-256 alone in Content-Digest is digest_mismatch: sha-512 is required."""
    value = _content_digest(**{"sha-256": hashlib.sha256(BODY).digest()})
    s = signed(
        p521_key,
        dialect="rfc9421",
        digest="none",
        headers=[("content-digest", value)],
        components=["@method", "@path", "content-digest"],
    )
    assert reason_of(s, key_set) is Reason.DIGEST_MISMATCH


def test_d7_empty_body_with_digest(p521_key: SigningKey, key_set: KeySet) -> None:
    """An empty body with the correct empty-string digest, covered, verifies."""
    s = signed(
        p521_key,
        body=b"",
        components=["@method", "@path", "digest"],
        headers=[("digest", "SHA-256=" + base64.b64encode(hashlib.sha256(b"").digest()).decode())],
        digest="none",
    )
    assert run(s, key_set).body == b""


def test_d8_raw_bytes_are_verified(p521_key: SigningKey, key_set: KeySet) -> None:
    """Odd JSON (BOM, reordering, escapes, duplicates) verifies over the raw bytes, untouched."""
    odd = b'\xef\xbb\xbf{ "b":1,\n "a":"\\u00e9", "a":"\xc3\xa9" }\n'
    s = signed(p521_key, body=odd)
    assert run(s, key_set).body == odd


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("SHA-256=" + base64.b64encode(b"\0" * 32).decode(), Reason.DIGEST_MISMATCH),
        ("sha-256=" + base64.b64encode(hashlib.sha256(BODY).digest()).decode(), None),
        (
            "SHA-256="
            + base64.b64encode(hashlib.sha256(BODY).digest()).decode()
            + ",SHA-512="
            + base64.b64encode(hashlib.sha512(BODY).digest()).decode(),
            None,
        ),
        (
            "SHA-256="
            + base64.b64encode(hashlib.sha256(BODY).digest()).decode()
            + ", SHA-512="
            + base64.b64encode(b"\0" * 64).decode(),
            Reason.DIGEST_MISMATCH,
        ),
        ("MD5=" + base64.b64encode(hashlib.md5(BODY).digest()).decode(), Reason.DIGEST_MISMATCH),
        ("SHA-256=%%%", Reason.MALFORMED_HEADER),
        ("garbage", Reason.MALFORMED_HEADER),
    ],
    ids=[
        "d13-wrong",
        "d13-lower-case",
        "d13-list",
        "d13-list-one-wrong",
        "md5-only",
        "bad-b64",
        "no-eq",
    ],
)
def test_d13_legacy_digest(
    p521_key: SigningKey, key_set: KeySet, value: str, reason: Reason | None
) -> None:
    """Legacy Digest: case-insensitive tokens, every supported entry must match."""
    s = signed(
        p521_key,
        digest="none",
        headers=[("digest", value)],
        components=["@method", "@path", "digest"],
    )
    if reason is None:
        assert run(s, key_set).dialect.digest == "digest"
    else:
        assert reason_of(s, key_set) is reason


def test_body_too_large(p521_key: SigningKey, key_set: KeySet) -> None:
    """A body above max_body_size is body_too_large (413) before anything else."""
    s = signed(p521_key)
    with pytest.raises(RequestTooLarge) as info:
        run(s, key_set, policy=Policy(max_body_size=len(BODY) - 1))
    assert info.value.reason is Reason.BODY_TOO_LARGE
    assert info.value.status_code == 413


# --- E. time window -----------------------------------------------------------------------


def test_e1_fresh_webhook(p521_key: SigningKey, key_set: KeySet) -> None:
    """created = now, expires = now + 60 verifies."""
    assert run(signed(p521_key), key_set).created == REFERENCE_NOW


def test_e2_expired_and_boundary(p521_key: SigningKey, key_set: KeySet) -> None:
    """expires + skew == now is still accepted; one second later it is expired."""
    s = signed(p521_key)
    boundary = REFERENCE_NOW + 60 + Policy().skew
    assert run(s, key_set, now=boundary).key_id == p521_key.kid
    assert reason_of(s, key_set, now=boundary + 1) is Reason.EXPIRED


def test_e3_created_in_future(p521_key: SigningKey, key_set: KeySet) -> None:
    """created five minutes ahead is created_in_future; within the skew it is fine."""
    s = signed(p521_key, created=REFERENCE_NOW + 300)
    assert reason_of(s, key_set) is Reason.CREATED_IN_FUTURE
    s = signed(p521_key, created=REFERENCE_NOW + 59)
    assert run(s, key_set).created == REFERENCE_NOW + 59


def test_e4_created_missing(p521_key: SigningKey, key_set: KeySet) -> None:
    """A signature without created is malformed by default."""
    s = signed(p521_key)
    si = (s.header("signature-input") or "").replace(f";created={REFERENCE_NOW}", "")
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.MALFORMED_HEADER
    )


def test_e4_no_expires_uses_max_age(p521_key: SigningKey, key_set: KeySet) -> None:
    """Without expires, created older than max_age is expired."""
    s = signed(p521_key, ttl=None)
    assert run(s, key_set, now=REFERENCE_NOW + 300).expires is None
    assert reason_of(s, key_set, now=REFERENCE_NOW + 301) is Reason.EXPIRED


@pytest.mark.parametrize(
    ("created", "expires"),
    [
        (REFERENCE_NOW, REFERENCE_NOW),
        (REFERENCE_NOW, REFERENCE_NOW - 1),
        (REFERENCE_NOW, REFERENCE_NOW + 365 * 86400),
    ],
    ids=["e5-equal", "e5-before", "e6-one-year"],
)
def test_e5_e6_bad_windows(
    p521_key: SigningKey, key_set: KeySet, created: int, expires: int
) -> None:
    """expires <= created, or a window above max_window, is expired."""
    assert reason_of(signed(p521_key, created=created, expires=expires), key_set) is Reason.EXPIRED


@pytest.mark.parametrize(
    "param",
    [
        "created=1700000000.5",
        'created="1700000000"',
        "created",
        "created=-5",
        "created=?1",
        "expires=?0",
    ],
)
def test_e7_ill_typed_time_parameters(p521_key: SigningKey, key_set: KeySet, param: str) -> None:
    """created/expires must be real non-negative integers (a bare flag is not 1)."""
    s = signed(p521_key, ttl=None)
    si = (s.header("signature-input") or "").replace(f"created={REFERENCE_NOW}", param)
    if param.startswith("expires"):
        si = s.header("signature-input") + ";" + param  # type: ignore[operator]
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.MALFORMED_HEADER
    )


def test_unknown_signature_parameter(p521_key: SigningKey, key_set: KeySet) -> None:
    """An unknown signature parameter is malformed (it might change the meaning)."""
    s = signed(p521_key)
    si = (s.header("signature-input") or "") + ";crit=1"
    assert (
        reason_of(s, key_set, headers=with_headers(s, signature_input=si))
        is Reason.MALFORMED_HEADER
    )


def test_require_nonce(p521_key: SigningKey, key_set: KeySet) -> None:
    """With require_nonce a signature without nonce is malformed."""
    s = signed(p521_key, with_nonce=False)
    assert reason_of(s, key_set, policy=Policy(require_nonce=True)) is Reason.MALFORMED_HEADER
    assert run(s, key_set).nonce is None


def test_configured_labels(p521_key: SigningKey, key_set: KeySet) -> None:
    """With labels configured, only those are considered."""
    s = signed(p521_key, label="upvest")
    assert run(s, key_set, policy=Policy(labels=("upvest",))).label == "upvest"
    assert reason_of(s, key_set, policy=Policy(labels=("sig1",))) is Reason.LABEL_MISMATCH


# --- API contract -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [None, 42, [("only-one",)], [(1, 2)]],
    ids=["none", "int", "short-pair", "int-pair"],
)
def test_headers_of_the_wrong_python_type_are_a_type_error(
    key_set: KeySet, headers: object
) -> None:
    """Headers that are not (name, value) pairs of str or bytes: a programming error."""
    with no_swallowed_errors(), pytest.raises(TypeError):
        verify("POST", URL, headers, b"", keys=key_set, now=REFERENCE_NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", URL, "{}"),
        ("POST", URL, None),
        ("POST", URL, 12),
        (b"POST", URL, b"{}"),
        (None, URL, b"{}"),
        ("POST", b"https://receiver.example/", b"{}"),
    ],
    ids=["str-body", "none-body", "int-body", "bytes-method", "none-method", "bytes-url"],
)
def test_arguments_of_the_wrong_python_type_are_a_type_error(
    p521_key: SigningKey, key_set: KeySet, method: object, url: object, body: object
) -> None:
    """A str body or a non-str method/URL raises TypeError at once, even if well signed."""
    s = signed(p521_key)
    with no_swallowed_errors(), pytest.raises(TypeError):
        verify(method, url, s.headers, body, keys=key_set, now=REFERENCE_NOW)  # type: ignore[arg-type]


def test_a_huge_int_header_value_is_refused_without_converting_it(key_set: KeySet) -> None:
    """An int header value raises TypeError instead of becoming bytes(n) (n NUL bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(TypeError):
            verify("POST", URL, [("x", 50_000_000)], b"", keys=key_set, now=REFERENCE_NOW)  # type: ignore[list-item]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


@pytest.mark.parametrize("url", ["", "not a url", "://x"])
def test_bad_urls(p521_key: SigningKey, key_set: KeySet, url: str) -> None:
    """A URL that is neither absolute nor origin-form is malformed."""
    s = signed(p521_key)
    assert reason_of(s, key_set, url=url) is Reason.MALFORMED_HEADER


def test_errors_are_typed_for_callers(p521_key: SigningKey, key_set: KeySet) -> None:
    """Signature failures are InvalidSignature with a 401 hint; str() is "reason: message"."""
    s = signed(p521_key)
    with pytest.raises(InvalidSignature) as info:
        run(s, key_set, body=b"tampered")
    assert info.value.status_code == 401
    assert str(info.value).startswith("digest_mismatch: ")


def test_bytes_headers_and_body_types(p521_key: SigningKey, key_set: KeySet) -> None:
    """Headers as bytes pairs and a bytearray/memoryview body are accepted."""
    s = signed(p521_key)
    raw = [(k.encode(), v.encode()) for k, v in s.headers]
    assert (
        verify(s.method, s.url, raw, bytearray(s.body), keys=key_set, now=REFERENCE_NOW).body
        == BODY
    )
    mapping = dict(s.headers)
    assert verify(s.method, s.url, mapping, memoryview(s.body), keys=key_set, now=REFERENCE_NOW)


def test_sample_events_round_trip(p521_key: SigningKey, key_set: KeySet) -> None:
    """sample_events() bodies verify and parse into as many events."""
    s = signed(p521_key, body=sample_events(5))  # type: ignore[arg-type]
    assert [e.type for e in run(s, key_set).events][:2] == ["ORDER.FILLED", "CASH_BALANCE.UPDATED"]


# --- found in review --------------------------------------------------------------------


def test_content_digest_sf_is_still_checked(p521_key: SigningKey, key_set: KeySet) -> None:
    """A body covered by "content-digest";sf is checked against the body like the plain form."""
    s = signed(p521_key, dialect="rfc9421", components=["@method", "@path"])
    value = s.header("content-digest")
    si = f'("@method" "@path" "content-digest";sf);keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    base = (
        f'"@method": POST\n"@path": /webhooks/upvest\n"content-digest";sf: {value}\n'
        f'"@signature-params": {si}'
    )
    headers = [(k, v) for k, v in s.headers if not k.startswith("signature")]
    headers += signature_headers(p521_key, si, base)
    assert run(s, key_set, headers=headers).dialect.digest == "content-digest"
    tampered = BODY.replace(b"1.5", b"9.5")
    assert reason_of(s, key_set, headers=headers, body=tampered) is Reason.DIGEST_MISMATCH


def test_bs_with_characters_beyond_latin1(
    p521_key: SigningKey, key_set: KeySet, caplog: pytest.LogCaptureFixture
) -> None:
    """A ;bs field holding a character beyond ISO-8859-1 is malformed, not a logged crash."""
    s = signed(p521_key, components=["@method", "@path", "digest"])
    si = (
        f'sig1=("@method" "@path" "digest" "x-b";bs);keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    )
    headers = with_headers(s, signature_input=si, x_b="\u20ac")
    with caplog.at_level("ERROR", logger="upvest_verify"):
        assert reason_of(s, key_set, headers=headers) is Reason.MALFORMED_HEADER
    assert not caplog.records


class _RotatingProvider:
    """A key provider whose refresh brings in a newly rotated key."""

    def __init__(self, old: KeySet, new: KeySet) -> None:
        self.old, self.new, self.refreshes = old, new, 0

    def current(self) -> KeySet:
        return self.old

    def refresh_for(self, kid: str) -> KeySet | None:
        self.refreshes += 1
        return self.new


def test_extra_signature_with_known_key_does_not_block_refresh(p521_key: SigningKey) -> None:
    """A garbage sig2 naming a cached kid never stops the refresh for sig1's new kid (R16)."""
    rotated = generate_key()
    provider = _RotatingProvider(
        KeySet.from_jwks(make_jwks(p521_key)), KeySet.from_jwks(make_jwks(p521_key, rotated))
    )
    verifier = Verifier(provider, clock=lambda: REFERENCE_NOW)
    s = signed(rotated)
    extra_si = f'sig2=("@method" "@path" "digest");keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    extra_sig = "sig2=:" + base64.b64encode(p521_key.sign(b"something else")).decode() + ":"
    headers = [*s.headers, ("signature-input", extra_si), ("signature", extra_sig)]
    assert verifier.verify(s.method, s.url, headers, s.body).key_id == rotated.kid
    assert provider.refreshes == 1
