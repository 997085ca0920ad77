"""Threat model §6 group A: parsing Signature and Signature-Input as an attacker writes them."""

from __future__ import annotations

import base64
import re

import pytest
from adversarial_helpers import (
    DIALECTS,
    ENTRY_POINTS,
    REFERENCE_NOW,
    accept,
    b64,
    ecdsa_verifies,
    header,
    no_swallowed_errors,
    reason,
    sf_parses,
    sign,
    signature_params_of,
    with_headers,
    without_signature,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from upvest_verify import KeySet, Policy, VerificationError, verify
from upvest_verify.testing import SigningKey, make_key_set

# --- A1, A2: absent headers ---------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_a1_no_signature_headers(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Neither Signature nor Signature-Input is missing_signature."""
    s = sign(p521_key, dialect)
    headers = with_headers(s, signature=None, signature_input=None)
    assert reason(s, key_set, headers=headers) == "missing_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("drop", ["signature", "signature_input"])
def test_a2_only_one_header(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, drop: str
) -> None:
    """Only one of the two signature headers is missing_signature."""
    s = sign(p521_key, dialect)
    headers = with_headers(s, **{drop: None})
    assert reason(s, key_set, headers=headers) == "missing_signature"


# --- A3: labels that do not pair ---------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("renamed", ["signature-input", "signature"])
def test_a3_labels_do_not_pair(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, renamed: str
) -> None:
    """sig1 in one header and only sig2 in the other is label_mismatch."""
    s = sign(p521_key, dialect)
    value = header(s.headers, renamed).replace("sig1=", "sig2=", 1)
    headers = with_headers(s, **{renamed.replace("-", "_"): value})
    assert reason(s, key_set, headers=headers) == "label_mismatch"


# --- A4, A5: duplicate labels --------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("good_first", [True, False], ids=["good-then-evil", "evil-then-good"])
@pytest.mark.parametrize("field", ["Signature-Input", "Signature"])
def test_a4_same_label_on_two_lines(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    good_first: bool,
    field: str,
) -> None:
    """A label repeated on a second field line is malformed, never first- or last-wins."""
    s = sign(p521_key, dialect)
    evil = {
        "Signature-Input": f'sig1=("@method");keyid="{p521_key.kid}";created={REFERENCE_NOW}',
        "Signature": "sig1=:" + b64(p521_key.sign(b"evil")) + ":",
    }[field]
    rest = [(k, v) for k, v in s.headers if k.lower() != field.lower()]
    lines = [(field, header(s.headers, field)), (field, evil)]
    headers = rest + (lines if good_first else lines[::-1])
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("field", ["signature_input", "signature"])
@pytest.mark.parametrize("identical", [True, False], ids=["identical", "different"])
def test_a5_same_label_twice_in_one_line(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, field: str, identical: bool
) -> None:
    """A label twice in one Signature-Input or Signature line is malformed."""
    s = sign(p521_key, dialect)
    value = header(s.headers, field.replace("_", "-"))
    if identical:
        other = value
    elif field == "signature":
        other = "sig1=:" + b64(p521_key.sign(b"other")) + ":"
    else:
        other = f'sig1=("@method");keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    headers = with_headers(s, **{field: f"{value}, {other}"})
    assert reason(s, key_set, headers=headers) == "malformed_header"


# --- A6-A10: member types, byte sequences, inner lists ---------------------------------------


@pytest.mark.parametrize(
    "value",
    ['sig1="abc"', "sig1=abc", "sig1=42", "sig1=4.2", "sig1=?1", "sig1=(:AAAA:)", "sig1=@1"],
    ids=["string", "token", "integer", "decimal", "boolean", "inner-list", "date"],
)
def test_a6_signature_member_of_wrong_type(
    p521_key: SigningKey, key_set: KeySet, value: str
) -> None:
    """A Signature member that is not a byte sequence is malformed."""
    s = sign(p521_key)
    assert reason(s, key_set, headers=with_headers(s, signature=value)) == "malformed_header"


def _force(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


@pytest.mark.parametrize(
    "variant",
    ["base64url", "inner-space", "padding-both-ends", "padding-inside", "mixed-alphabets"],
)
def test_a7_bad_byte_sequence(p521_key: SigningKey, key_set: KeySet, variant: str) -> None:
    """URL-safe or mixed alphabets, inner spaces and misplaced padding in Signature are malformed."""
    s = sign(p521_key)
    encoded = header(s.headers, "signature").removeprefix("sig1=:").removesuffix(":")
    body = encoded.rstrip("=")
    mutated = {
        "base64url": _force(body, 7, "-") + encoded[len(body) :],
        "inner-space": body[:40] + " " + body[40:] + encoded[len(body) :],
        "padding-both-ends": "=" + encoded + ("=" if encoded.endswith("=") else "=="),
        "padding-inside": body[:40] + "=" + body[41:] + encoded[len(body) :],
        "mixed-alphabets": _force(_force(body, 7, "-"), 9, "+") + encoded[len(body) :],
    }[variant]
    assert mutated != encoded
    headers = with_headers(s, signature=f"sig1=:{mutated}:")
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(
    "member",
    ['"@method"', "method", "1", ":AAAA:", "?1"],
    ids=["string", "token", "integer", "bytes", "boolean"],
)
def test_a8_signature_input_member_is_an_item(
    p521_key: SigningKey, key_set: KeySet, member: str
) -> None:
    """A Signature-Input member that is an item, not an inner list, is malformed."""
    s = sign(p521_key)
    value = f'sig1={member};keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    assert reason(s, key_set, headers=with_headers(s, signature_input=value)) == "malformed_header"


@pytest.mark.parametrize(
    "inner",
    [
        "(@method @path)",
        "(method path digest)",
        '("@method" path)',
        "(1 2)",
        '("@method" 1.5)',
        '("@method" ?1)',
        '("@method" :AAAA:)',
        '(("@method") "@path")',
    ],
    ids=[
        "at-tokens",
        "tokens",
        "mixed-token",
        "integers",
        "decimal",
        "boolean",
        "bytes",
        "nested-inner-list",
    ],
)
def test_a9_inner_list_of_non_strings(p521_key: SigningKey, key_set: KeySet, inner: str) -> None:
    """An inner list holding tokens, numbers or anything but strings is malformed."""
    s = sign(p521_key)
    value = f'sig1={inner};keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    assert reason(s, key_set, headers=with_headers(s, signature_input=value)) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "component",
    [
        r'"@method\" \"x\": y"',
        r'"@method\": GET\n\"@path"',
        r'"content-type: evil"',
        r'"@path\\"',
        '"x-a" "x-b\\"',
    ],
    ids=["quote-line", "fake-newline", "colon-in-name", "backslash", "dangling-escape"],
)
def test_a10_escaped_quote_cannot_inject_a_line(
    p521_key: SigningKey,
    key_set: KeySet,
    monkeypatch: pytest.MonkeyPatch,
    dialect: str,
    digest: str,
    component: str,
) -> None:
    """Escapes in a component name are malformed, and no base is ever built or checked."""
    s = sign(p521_key, dialect)
    value = f'sig1=("@path" {component} "{digest}");keyid="{p521_key.kid}";created={REFERENCE_NOW}'
    with ecdsa_verifies(monkeypatch) as calls:
        assert (
            reason(s, key_set, headers=with_headers(s, signature_input=value)) == "malformed_header"
        )
    assert calls == []


# --- A11: size caps before parsing ----------------------------------------------------------

_NONCE_64K = "n" * (64 * 1024)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signature_input", f'sig1=("@method");keyid="k";created=1;nonce="{_NONCE_64K}"'),
        ("signature", "sig1=:" + "A" * (64 * 1024) + ":"),
        ("signature_input", "sig1=(" + " ".join(f'"x-h{i}"' for i in range(10_000)) + ")"),
        ("signature_input", ", ".join(f'sig{i}=("@method");keyid="k"' for i in range(1000))),
        ("signature_input", 'sig1=("@method");keyid="k";created=' + "1" * 100_000),
    ],
    ids=["64k-header", "64k-signature", "10k-components", "1000-labels", "100k-digit-integer"],
)
def test_a11_size_caps_refuse_before_parsing(
    p521_key: SigningKey,
    key_set: KeySet,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    value: str,
) -> None:
    """Oversized signature headers are malformed without the SF parser ever running."""
    s = sign(p521_key)
    headers = with_headers(s, **{field: value})
    with sf_parses(monkeypatch) as calls:
        assert reason(s, key_set, headers=headers) == "malformed_header"
    assert calls == []


def test_a11_cap_counts_all_field_lines(
    p521_key: SigningKey, key_set: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 small Signature-Input lines are capped as one combined value, before parsing."""
    s = sign(p521_key)
    lines = [("signature-input", f'sig{i}=("@method");keyid="k"') for i in range(1000)]
    headers = [*with_headers(s, signature_input=None), *lines]
    with sf_parses(monkeypatch) as calls:
        assert reason(s, key_set, headers=headers) == "malformed_header"
    assert calls == []


@pytest.mark.parametrize(
    "value",
    [
        ", ".join(f"s{i}=()" for i in range(Policy().max_labels + 1)),
        "sig1=("
        + " ".join(f'"h{i}"' for i in range(Policy().max_components + 1))
        + f');keyid="k";created={REFERENCE_NOW}',
    ],
    ids=["labels-over-cap", "components-over-cap"],
)
def test_a11_count_caps_below_the_byte_cap(
    p521_key: SigningKey, key_set: KeySet, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Too many labels or components within the byte cap are malformed before any ECDSA work."""
    s = sign(p521_key)
    assert len(value) < Policy().max_header_bytes
    with ecdsa_verifies(monkeypatch) as calls:
        assert reason(s, key_set, headers=with_headers(s, signature_input=value)) == (
            "malformed_header"
        )
    assert calls == []


# --- A12, A13: name case and non-ASCII -------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("style", ["upper", "title", "alternating", "bytes-upper"])
def test_a12_header_names_in_odd_case(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, style: str
) -> None:
    """SIGNATURE-INPUT, Content-DIGEST and friends are the same fields: accepted."""
    s = sign(p521_key, dialect)

    def spell(name: str) -> str:
        if style == "title":
            return name.title()
        if style == "alternating":
            return "".join(c.upper() if j % 2 else c for j, c in enumerate(name))
        return name.upper()

    headers: list[tuple[object, object]] = [(spell(k), v) for k, v in s.headers]
    if style == "bytes-upper":
        headers = [(str(k).encode(), str(v).encode()) for k, v in headers]
    assert accept(s, key_set, headers=headers).key_id == p521_key.kid


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("component", '"@pa\u00e9th"'),
        ("nonce", '"caf\u00e9"'),
        ("keyid", '"k\u00ff"'),
        ("obs-text", '"\x80"'),
        ("control", '"a\x01b"'),
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "latin1-bytes"])
def test_a13_non_ascii_in_signature_input(
    p521_key: SigningKey, key_set: KeySet, where: str, text: str, as_bytes: bool
) -> None:
    """A non-ASCII, obs-text or control byte in Signature-Input is malformed."""
    s = sign(p521_key)
    si = header(s.headers, "signature-input")
    if where == "component":
        si = si.replace('"@path"', text)
    elif where == "keyid":
        si = si.replace(f'keyid="{p521_key.kid}"', f"keyid={text}")
    else:
        si = re.sub(r'nonce="[^"]*"', lambda _: f"nonce={text}", si)
    assert si != header(s.headers, "signature-input")
    headers: list[tuple[object, object]] = list(with_headers(s, signature_input=si))
    if as_bytes:
        headers = [(str(k).encode(), str(v).encode("latin-1")) for k, v in headers]
    assert reason(s, key_set, headers=headers) == "malformed_header"


def test_a13_non_ascii_in_signature(p521_key: SigningKey, key_set: KeySet) -> None:
    """A non-ASCII byte inside the Signature byte sequence is malformed."""
    s = sign(p521_key)
    sig = header(s.headers, "signature")
    headers = with_headers(s, signature=sig[:20] + "\u00e9" + sig[21:])
    assert reason(s, key_set, headers=headers) == "malformed_header"


# --- A14, A15: extra signatures -------------------------------------------------------------


def _attacker_signature(kind: str, p521_key: SigningKey, attacker_key: SigningKey) -> list[str]:
    """Signature-Input and Signature members of an attacker's sig2."""
    s = sign(attacker_key, "rfc9421", label="sig2")
    if kind == "valid-under-attacker-key":
        return [header(s.headers, "signature-input"), header(s.headers, "signature")]
    kid = p521_key.kid if kind == "garbage-with-real-kid" else "unknown-kid"
    params = signature_params_of(s, "sig2").replace(attacker_key.kid, kid)
    garbage = b"\x30" + bytes(range(137))
    return [f"sig2={params}", f"sig2=:{b64(garbage)}:"]


_ATTACKS = ["unknown-kid", "garbage-with-real-kid", "valid-under-attacker-key"]


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("kind", _ATTACKS)
@pytest.mark.parametrize("layout", ["extra-lines", "same-line-after", "same-line-before"])
def test_a14_extra_attacker_signature_never_vetoes(
    p521_key: SigningKey,
    attacker_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    kind: str,
    layout: str,
) -> None:
    """A valid Upvest sig1 plus any attacker sig2 is accepted on sig1."""
    s = sign(p521_key, dialect)
    si2, sig2 = _attacker_signature(kind, p521_key, attacker_key)
    si1, sig1 = header(s.headers, "signature-input"), header(s.headers, "signature")
    rest = without_signature(s.headers)
    if layout == "extra-lines":
        headers = [*s.headers, ("signature-input", si2), ("signature", sig2)]
    elif layout == "same-line-after":
        headers = [*rest, ("signature-input", f"{si1}, {si2}"), ("signature", f"{sig1}, {sig2}")]
    else:
        headers = [*rest, ("signature-input", f"{si2}, {si1}"), ("signature", f"{sig2}, {sig1}")]
    result = accept(s, key_set, headers=headers)
    assert result.label == "sig1"
    assert result.key_id == p521_key.kid


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("kind", _ATTACKS)
def test_a14_attacker_takes_label_sig1(
    p521_key: SigningKey,
    attacker_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    kind: str,
) -> None:
    """Upvest's signature renamed by a proxy, the attacker's as sig1: accepted on Upvest's."""
    s = sign(p521_key, dialect)
    si2, sig2 = (
        member.replace("sig2=", "sig1=", 1)
        for member in _attacker_signature(kind, p521_key, attacker_key)
    )
    si = header(s.headers, "signature-input").replace("sig1=", "upvest=", 1)
    sig = header(s.headers, "signature").replace("sig1=", "upvest=", 1)
    headers = [
        *without_signature(s.headers),
        ("signature-input", f"{si2}, {si}"),
        ("signature", f"{sig2}, {sig}"),
    ]
    result = accept(s, key_set, headers=headers)
    assert (result.label, result.key_id) == ("upvest", p521_key.kid)


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("kind", ["unknown-kid", "valid-under-attacker-key"])
def test_a14_attacker_signature_alone(
    p521_key: SigningKey,
    attacker_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    kind: str,
) -> None:
    """The attacker's sig2 alone is unknown_key."""
    s = sign(p521_key, dialect)
    si2, sig2 = _attacker_signature(kind, p521_key, attacker_key)
    headers = [*without_signature(s.headers), ("signature-input", si2), ("signature", sig2)]
    error_reason = reason(s, key_set, headers=headers)
    assert error_reason == "unknown_key"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("junk", ["der-shaped", "raw-sized", "valid-other-base"])
def test_a15_many_labels_bound_the_ecdsa_work(
    p521_key: SigningKey,
    key_set: KeySet,
    monkeypatch: pytest.MonkeyPatch,
    dialect: str,
    digest: str,
    junk: str,
) -> None:
    """20 labels with the real kid and junk bytes cost at most label cap x layouts verifies."""
    s = sign(p521_key, dialect)
    params = signature_params_of(s)

    def junk_bytes(i: int) -> bytes:
        if junk == "valid-other-base":
            return p521_key.sign(b"another base %d" % i)
        if junk == "raw-sized":
            return bytes([1]) + bytes((i * 7 + j) % 256 for j in range(131))
        return p521_key.sign(b"x")[:4] + bytes((i + j) % 256 for j in range(134))

    inputs = ", ".join(f"s{i}={params}" for i in range(20))
    sigs = ", ".join(f"s{i}=:{b64(junk_bytes(i))}:" for i in range(20))
    headers = with_headers(s, signature_input=inputs, signature=sigs)
    with (
        ecdsa_verifies(monkeypatch) as calls,
        no_swallowed_errors(),
        pytest.raises(VerificationError) as info,
    ):
        verify(s.method, s.url, headers, s.body, keys=key_set, now=REFERENCE_NOW)
    assert info.value.reason.value == "bad_signature"
    policy = Policy()
    assert 0 < len(calls) <= policy.max_signatures * 2


# --- type errors are programming errors -------------------------------------------------------


@pytest.mark.parametrize(
    "pair",
    [("x-count", 42), ("x-none", None), ("x-float", 4.5), (42, "value")],
    ids=["int-value", "none-value", "float-value", "int-name"],
)
def test_a_header_of_wrong_type_raises_type_error(
    p521_key: SigningKey, key_set: KeySet, pair: tuple[object, object]
) -> None:
    """A header name or value that is neither str nor bytes is a programming error: TypeError."""
    s = sign(p521_key)
    headers = [*s.headers, pair]
    for run in ENTRY_POINTS:
        with no_swallowed_errors(), pytest.raises(TypeError):
            run(s.method, s.url, headers, s.body, key_set, REFERENCE_NOW, None)


def test_a_str_body_raises_type_error(p521_key: SigningKey, key_set: KeySet) -> None:
    """A body passed as str (decoded by mistake) is a programming error: TypeError."""
    s = sign(p521_key)
    for run in ENTRY_POINTS:
        with no_swallowed_errors(), pytest.raises(TypeError):
            run(s.method, s.url, s.headers, s.body.decode(), key_set, REFERENCE_NOW, None)


# --- A16: mutations of signed headers ---------------------------------------------------------

_FUZZ_KEY = SigningKey.generate(key_id="fuzz-key")
_FUZZ_KEYS = make_key_set(_FUZZ_KEY)
_FUZZ_SIGNED = {d: sign(_FUZZ_KEY, d) for d in ("upvest-v6", "rfc9421")}
_FIELDS = ["signature-input", "signature", "content-type", "content-length", "date", "digest"]
_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def _decoded_signature(value: str) -> bytes | None:
    # What a lenient reader makes of a Signature value: equal bytes mean an equal signature.
    inner = value.removeprefix("sig1=:").removesuffix(":").rstrip("=")
    try:
        return base64.b64decode(inner + "=" * (-len(inner) % 4), validate=True)
    except ValueError:
        return None


@pytest.mark.parametrize("dialect", sorted(_FUZZ_SIGNED))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(_FIELDS),
    operation=st.sampled_from(["replace", "insert", "delete"]),
    index=st.integers(min_value=0, max_value=10_000),
    char=_CHARS,
)
def test_a16_mutated_headers_are_never_accepted(
    dialect: str, field: str, operation: str, index: int, char: str
) -> None:
    """One changed character in a signed header is always rejected, with a VerificationError only."""
    s = _FUZZ_SIGNED[dialect]
    name = "content-digest" if field == "digest" and dialect == "rfc9421" else field
    value = header(s.headers, name)
    i = index % len(value)
    if operation == "replace":
        mutated = value[:i] + char + value[i + 1 :]
    elif operation == "insert":
        mutated = value[:i] + char + value[i:]
    else:
        mutated = value[:i] + value[i + 1 :]
    assume(mutated.strip() != value.strip())
    # A space dropped after a comma is the comma-join tolerance (same list, RFC 9110 §5.6.1).
    assume(re.sub(r",(?![ \t])", ", ", mutated) != value)
    # A leading zero on an integer parameter parses to the same value (RFC 8941 §4.2.4).
    assume(re.sub(r"=0+(?=[0-9])", "=", mutated) != value)
    if name == "signature":
        # Non-zero pad bits or dropped padding decode to the same signature.
        assume(_decoded_signature(mutated) != _decoded_signature(value))
    headers = [(k, mutated if k == name else v) for k, v in s.headers]
    with no_swallowed_errors(), pytest.raises(VerificationError):
        verify(s.method, s.url, headers, s.body, keys=_FUZZ_KEYS, now=REFERENCE_NOW)
