"""Threat model §6 group B: the signature base and the covered components."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from adversarial_helpers import (
    BODY,
    DIALECTS,
    PATH,
    REFERENCE_NOW,
    URL,
    accept,
    hand_signed,
    header,
    reason,
    sign,
    signature_params_of,
    standard_lines,
    with_headers,
    without_signature,
)

from upvest_verify import KeySet, Policy
from upvest_verify.testing import SignedWebhook, SigningKey

# --- B1, B2: too little covered --------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("body", [b"", BODY], ids=["no-body", "body"])
def test_b1_empty_covered_list(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, body: bytes
) -> None:
    """A correctly signed sig1=() is missing_component: it would replay on any request."""
    s = sign(p521_key, dialect, body=body, components=[])
    assert header(s.headers, "signature-input").startswith("sig1=();")
    assert reason(s, key_set) == "missing_component"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("covered", "body"),
    [
        (["@method"], b""),
        (["@path"], b""),
        (["@method", "@path", "content-type"], BODY),
        (["@method", "DIGEST"], BODY),
        (["@path", "DIGEST"], BODY),
    ],
    ids=["only-method", "only-path", "body-without-digest", "no-path", "no-method"],
)
def test_b2_too_little_covered(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    covered: list[str],
    body: bytes,
) -> None:
    """Signed but missing @method, @path or, with a body, the digest: missing_component."""
    components = [digest if c == "DIGEST" else c for c in covered]
    s = sign(p521_key, dialect, body=body, components=components)
    assert reason(s, key_set) == "missing_component"


def test_b2_policy_can_require_more(p521_key: SigningKey, key_set: KeySet) -> None:
    """A component the policy requires (here @authority) but the signature lacks is missing."""
    s = sign(p521_key)
    policy = Policy(required_components=("@method", "@path", "@authority"))
    assert reason(s, key_set, policy=policy) == "missing_component"


# --- B3-B8: malformed or unavailable component lists ---------------------------------------------


def _lines(s: object, digest: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [*standard_lines(s, digest), *extra]


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "extra",
    [
        [('"@method"', "POST")],
        [('"content-type"', "application/json"), ('"content-type"', "application/json")],
        [('"x-dict";key="a"', "1"), ('"x-dict";key="a"', "1")],
    ],
    ids=["derived", "field", "field-with-parameters"],
)
def test_b3_duplicate_identifiers(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    extra: list[tuple[str, str]],
) -> None:
    """The same identifier (with the same parameters) listed twice is malformed, even if signed."""
    s = sign(p521_key, dialect, headers=[("x-dict", "a=1, b=2")])
    lines = _lines(s, digest, *extra)
    inner = "(" + " ".join(ident for ident, _ in lines) + ")"
    headers = hand_signed(p521_key, s, lines, dialect, inner=inner)
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b3_same_name_with_other_parameters_is_not_a_duplicate(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """ "x-dict";key="a" and "x-dict";key="b" are two components: accepted when signed so."""
    s = sign(p521_key, dialect, headers=[("x-dict", "a=1, b=2")])
    lines = _lines(s, digest, ('"x-dict";key="a"', "1"), ('"x-dict";key="b"', "2"))
    assert accept(s, key_set, headers=hand_signed(p521_key, s, lines, dialect)).label == "sig1"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("upper", ["DIGEST", "Content-Type", "@Method"])
def test_b4_component_names_in_upper_case(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, upper: str
) -> None:
    """An upper-case identifier, signed over that very base, is malformed."""
    name = digest.title() if upper == "DIGEST" else upper
    s = sign(p521_key, dialect)
    value = s.method if name == "@Method" else header(s.headers, name)
    lines = [('"@method"', s.method), ('"@path"', PATH), (f'"{name}"', value)]
    if upper != "DIGEST":
        lines.append((f'"{digest}"', header(s.headers, digest)))
    headers = hand_signed(p521_key, s, lines, dialect)
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b4_case_tricks_cannot_satisfy_the_policy(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A policy requiring content-type is not met by a signed "Content-Type"."""
    s = sign(p521_key, dialect)
    lines = _lines(s, digest, ('"Content-Type"', "application/json"))
    headers = hand_signed(p521_key, s, lines, dialect)
    policy = Policy(required_components=("@method", "@path", "content-type"))
    assert reason(s, key_set, headers=headers, policy=policy) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b5_signature_params_listed_as_covered(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """ "@signature-params" as a covered component is malformed."""
    s = sign(p521_key, dialect)
    lines = _lines(s, digest, ('"@signature-params"', '("@method")'))
    headers = hand_signed(p521_key, s, lines, dialect)
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b6_unknown_derived_component(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A derived component the verifier does not know ("@foo") is component_unavailable."""
    s = sign(p521_key, dialect)
    headers = hand_signed(p521_key, s, _lines(s, digest, ('"@foo"', "bar")), dialect)
    assert reason(s, key_set, headers=headers) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b6_status_on_a_request(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """ "@status" exists only on responses: component_unavailable on a request."""
    s = sign(p521_key, dialect)
    headers = hand_signed(p521_key, s, _lines(s, digest, ('"@status"', "200")), dialect)
    assert reason(s, key_set, headers=headers) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b6_query_param_without_name(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """ "@query-param" without a name parameter is malformed."""
    s = sign(p521_key, dialect, url=f"{URL}?a=1")
    lines = [*_lines(s, digest), ('"@query"', "?a=1"), ('"@query-param"', "1")]
    headers = hand_signed(p521_key, s, lines, dialect)
    assert reason(s, key_set, headers=headers, url=f"{URL}?a=1") == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b6_query_param_single_occurrence(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """ "@query-param";name="a" with one a= in the query verifies over its value."""
    url = f"{URL}?a=1&b=2"
    s = sign(p521_key, dialect, url=url)
    lines = [*_lines(s, digest), ('"@query"', "?a=1&b=2"), ('"@query-param";name="a"', "1")]
    headers = hand_signed(p521_key, s, lines, dialect)
    assert accept(s, key_set, headers=headers, url=url).label == "sig1"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b6_query_param_repeated_name_is_unavailable(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A name occurring twice in the query (?a=1&a=2) is component_unavailable (RFC 9421 §2.2.8)."""
    url = f"{URL}?a=1&a=2"
    s = sign(p521_key, dialect, url=url)
    lines = [
        *_lines(s, digest),
        ('"@query"', "?a=1&a=2"),
        ('"@query-param";name="a"', "1"),
        ('"@query-param";name="a"', "2"),
    ]
    headers = hand_signed(p521_key, s, lines, dialect)
    assert reason(s, key_set, headers=headers, url=url) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "ident",
    ['"content-type";xyz', '"DIGEST";bs;sf', '"content-type";sf=1'],
    ids=["unknown", "bs-with-sf", "ill-typed"],
)
def test_b7_bad_component_parameters(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, ident: str
) -> None:
    """An unknown, incompatible or ill-typed component parameter is malformed."""
    s = sign(p521_key, dialect)
    ident = ident.replace("DIGEST", digest)
    headers = hand_signed(p521_key, s, _lines(s, digest, (ident, "x")), dialect)
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "ident",
    ['"content-type";req', '"content-type";tr', '"content-type";key="a"', '"x-dict";key="zz"'],
    ids=["req-on-request", "tr-without-trailers", "key-on-non-dictionary", "key-not-found"],
)
def test_b7_component_parameters_this_request_cannot_serve(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, ident: str
) -> None:
    """;req on a request, ;tr without trailers, or ;key without that member: unavailable."""
    s = sign(p521_key, dialect, headers=[("x-dict", "a=1, b=2")])
    headers = hand_signed(p521_key, s, _lines(s, digest, (ident, "x")), dialect)
    assert reason(s, key_set, headers=headers) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("field", ["content-type", "date", "x-custom"])
def test_b8_covered_field_absent(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, field: str
) -> None:
    """A covered field that is not in the request is component_unavailable."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-custom", "v")],
        components=["@method", "@path", digest, "content-type", "date", "x-custom"],
    )
    headers = with_headers(s, **{field.replace("-", "_"): None})
    assert reason(s, key_set, headers=headers) == "component_unavailable"


# --- B9, B10: field combination ----------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("field", ["content-type", "x-custom"])
@pytest.mark.parametrize("position", ["after", "before"])
def test_b9_injected_second_field_line(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, field: str, position: str
) -> None:
    """A second line of a covered field is combined ("a, b"): bad_signature, never first-only."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-custom", "genuine")],
        components=["@method", "@path", digest, "content-type", "x-custom"],
    )
    injected = (field.title(), "text/plain")
    headers = [*s.headers, injected] if position == "after" else [injected, *s.headers]
    assert reason(s, key_set, headers=headers) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b9_repeated_lines_as_signed(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A field signed as two lines verifies when both lines arrive, in order; not reversed."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-pair", "one"), ("x-pair", "two")],
        components=["@method", "@path", digest, "x-pair"],
    )
    result = accept(s, key_set)
    assert result.dialect.reconstruction == "exact"
    rest = [(k, v) for k, v in s.headers if k != "x-pair"]
    reversed_lines = [*rest, ("x-pair", "two"), ("x-pair", "one")]
    assert reason(s, key_set, headers=reversed_lines) == "bad_signature"


def _two_line_webhook(key: SigningKey, dialect: str, digest: str) -> SignedWebhook:
    return sign(
        key,
        dialect,
        headers=[("x-pair", "one"), ("x-pair", "two")],
        components=["@method", "@path", digest, "x-pair"],
    )


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b9_lines_joined_by_a_wsgi_server(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Two lines that a WSGI server joined with "," still verify; the tolerance is reported."""
    s = _two_line_webhook(p521_key, dialect, digest)
    strict = accept(s, key_set)
    rest = [(k, v) for k, v in s.headers if k != "x-pair"]
    joined = accept(s, key_set, headers=[*rest, ("x-pair", "one,two")])
    assert joined.key_id == p521_key.kid
    assert joined.dialect != strict.dialect
    assert str(joined.dialect) != str(strict.dialect)


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    "value",
    [
        "one,three",
        "two,one",
        "one,two,evil",
        "onetwo",
        "one;two",
        "one,,two",
        "one,two,",
        "one,  two",
        "one ,two",
        "one,\ttwo",
    ],
)
def test_b9_join_tolerance_never_admits_other_content(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, value: str
) -> None:
    """No comma-join tolerance lets a different value verify."""
    s = _two_line_webhook(p521_key, dialect, digest)
    rest = [(k, v) for k, v in s.headers if k != "x-pair"]
    assert reason(s, key_set, headers=[*rest, ("x-pair", value)]) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b9_single_line_with_comma_is_exact(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A value signed as one line "one,two" verifies exactly, with no tolerance reported."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-pair", "one,two")],
        components=["@method", "@path", digest, "x-pair"],
    )
    assert accept(s, key_set).dialect.reconstruction == "exact"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b10_whitespace_and_obs_fold(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Values are trimmed, obs-fold becomes one space, lines join with ", ": the canonical base."""
    s = sign(p521_key, dialect)
    lines = _lines(
        s,
        digest,
        ('"x-note"', "a b"),
        ('"x-pair"', "one, two"),
        ('"x-empty"', ""),
        ('"x-tabs"', "in\tside"),
    )
    signed = hand_signed(p521_key, s, lines, dialect)
    received = [
        *signed,
        ("x-note", " \ta\r\n b  "),
        ("x-pair", "  one "),
        ("x-pair", "two\t"),
        ("x-empty", "   "),
        ("x-tabs", "\tin\tside "),
    ]
    assert accept(s, key_set, headers=received).key_id == p521_key.kid
    # The base as received (untrimmed) is not what the verifier builds.
    verbatim = _lines(
        s,
        digest,
        ('"x-note"', " \ta b  "),
        ('"x-pair"', "one, two"),
        ('"x-empty"', ""),
        ('"x-tabs"', "in\tside"),
    )
    wrong = [*hand_signed(p521_key, s, verbatim, dialect), *received[len(signed) :]]
    assert reason(s, key_set, headers=wrong) == "bad_signature"


# --- B11, B12: @signature-params -------------------------------------------------------------

_ORDERS = [
    ("created", "keyid", "nonce", "expires"),
    ("keyid", "created", "nonce", "expires"),
    ("expires", "created", "keyid", "nonce"),
    ("nonce", "expires", "keyid", "created"),
]


def _params(key: SigningKey, order: tuple[str, ...]) -> str:
    values = {
        "keyid": f'"{key.kid}"',
        "created": str(REFERENCE_NOW),
        "expires": str(REFERENCE_NOW + 60),
        "nonce": '"4f8b7f0e6a"',
    }
    return "".join(f";{name}={values[name]}" for name in order)


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("order", _ORDERS, ids=lambda o: "-".join(o))
def test_b11_parameter_order_is_kept(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, order: tuple[str, ...]
) -> None:
    """Any parameter order verifies; @signature-params keeps the received order, not another."""
    s = sign(p521_key, dialect)
    lines = _lines(s, digest)
    headers = hand_signed(p521_key, s, lines, dialect, params=_params(p521_key, order))
    assert accept(s, key_set, headers=headers).nonce == "4f8b7f0e6a"
    canonical = ("keyid", "created", "expires", "nonce")
    if order != canonical:
        # Signed over the canonical order but sent in this one: the base differs.
        signed = hand_signed(p521_key, s, lines, dialect, params=_params(p521_key, canonical))
        sent = header(headers, "signature-input")
        reordered = [*without_signature(signed), ("signature-input", sent)]
        reordered.append(("signature", header(signed, "signature")))
        assert reason(s, key_set, headers=reordered) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("spaced", ['(  "@method"   "@path" "D"  )', '( "@method" "@path" "D")'])
def test_b12_optional_spaces_in_the_inner_list(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, spaced: str
) -> None:
    """Extra spaces in the inner list verify over the strict re-serialisation, not the raw text."""
    s = sign(p521_key, dialect)
    spaced = spaced.replace('"D"', f'"{digest}"')
    lines = _lines(s, digest)
    strict = hand_signed(p521_key, s, lines, dialect)
    params = header(strict, "signature-input").partition(")")[2]
    sent = [*without_signature(strict), ("signature-input", f"sig1={spaced}{params}")]
    sent.append(("signature", header(strict, "signature")))
    assert accept(s, key_set, headers=sent).label == "sig1"
    # A signer that signed the spaced text as is does not verify.
    verbatim = hand_signed(p521_key, s, lines, dialect, inner=spaced)
    assert reason(s, key_set, headers=verbatim) == "bad_signature"


# --- B13-B16: derived components from the request --------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("path", "decoded_reason"),
    [
        ("/hooks/a%2Fb", "bad_signature"),
        ("/hooks/%7Euser", "bad_signature"),
        ("/hooks/caf%C3%A9", "malformed_header"),
        ("/hooks/%41%42", "bad_signature"),
    ],
    ids=["slash", "tilde", "utf8", "letters"],
)
def test_b13_raw_path(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    path: str,
    decoded_reason: str,
) -> None:
    """@path is the raw path; a decoded one fails (non-ASCII once decoded: malformed_header)."""
    url = "https://receiver.example" + path
    s = sign(p521_key, dialect, url=url)
    assert accept(s, key_set).key_id == p521_key.kid
    decoded = "https://receiver.example" + unquote(path)
    assert reason(s, key_set, url=decoded) == decoded_reason


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b13_percent_decoded_path_is_a_v6_tolerance_only(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A draft-06 base over the decoded path verifies in the v6 layout only, reported as such."""
    url = "https://receiver.example/hooks/%7Euser"
    s = sign(p521_key, dialect, url=url)
    lines = [
        ('"@method"', "POST"),
        ('"@path"', "/hooks/~user"),
        (f'"{digest}"', header(s.headers, digest)),
    ]
    headers = hand_signed(p521_key, s, lines, dialect)
    if dialect == "upvest-v6":
        result = accept(s, key_set, headers=headers)
        assert result.dialect.reconstruction != "exact"
    else:
        assert reason(s, key_set, headers=headers) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("component", "signed", "received"),
    [
        ("@path", "/hooks/a/b", "/hooks/a%2Fb"),
        ("@path", "/hooks/%41", "/hooks/%2541"),
        ("@path", "/hooks/a?b", "/hooks/a%3Fb"),
        ("@query", "?a=b&c=d", "?a=b%26c=d"),
        ("@query", "?a=1", "?a%3D1"),
        ("@query", "?a=1+2", "?a=1%2B2"),
    ],
    ids=["slash", "percent", "question-mark", "ampersand", "equals", "plus"],
)
def test_b13_decoding_never_merges_different_targets(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    component: str,
    signed: str,
    received: str,
) -> None:
    """An escaped delimiter or "%" never verifies a base over its decoded form."""
    if component == "@path":
        url = "https://receiver.example" + received
        lines = [('"@method"', "POST"), ('"@path"', signed)]
    else:
        url = f"{URL}{received}"
        lines = [('"@method"', "POST"), ('"@path"', PATH), ('"@query"', signed)]
    s = sign(p521_key, dialect, url=url)
    lines.append((f'"{digest}"', header(s.headers, digest)))
    headers = hand_signed(p521_key, s, lines, dialect)
    assert reason(s, key_set, headers=headers) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("query", [None, "", "b=2&a=1", "a=%20b&a=c"], ids=repr)
def test_b14_query_exact(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, query: str | None
) -> None:
    """No query, "?" alone, or a query in its order verify exactly as sent."""
    url = URL if query is None else f"{URL}?{query}"
    components = ["@method", "@path", digest] + (["@query"] if query is not None else [])
    s = sign(p521_key, dialect, url=url, components=components)
    assert accept(s, key_set).key_id == p521_key.kid


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("signed_query", "received"),
    [("b=2&a=1", "a=1&b=2"), ("", "a=1"), ("a=1", "a=1&a=2"), ("a=1", "")],
    ids=["reordered", "added-to-empty", "extra-pair", "removed"],
)
def test_b14_changed_query(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    signed_query: str,
    received: str,
) -> None:
    """Any change to a covered query is bad_signature."""
    s = sign(
        p521_key,
        dialect,
        url=f"{URL}?{signed_query}",
        components=["@method", "@path", "@query", digest],
    )
    assert reason(s, key_set, url=f"{URL}?{received}") == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b14_query_present_but_not_covered(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A query the signature does not cover is missing_component."""
    s = sign(p521_key, dialect)
    assert reason(s, key_set, url=f"{URL}?evil=1") == "missing_component"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b15_proxy_stripped_prefix(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A path behind a prefix-stripping proxy fails; X-Forwarded-* never restores it."""
    public = "https://receiver.example/api/webhooks/upvest"
    s = sign(p521_key, dialect, url=public)
    assert reason(s, key_set, url="/webhooks/upvest") == "bad_signature"
    forwarded = [
        *s.headers,
        ("x-forwarded-prefix", "/api"),
        ("x-forwarded-host", "receiver.example"),
        ("x-forwarded-proto", "https"),
        ("x-original-uri", "/api/webhooks/upvest"),
    ]
    assert reason(s, key_set, url="/webhooks/upvest", headers=forwarded) == "bad_signature"
    # Configured external context (the public URL) is what makes it verify.
    assert accept(s, key_set, url=public).key_id == p521_key.kid
    assert accept(s, key_set, url="/api/webhooks/upvest").key_id == p521_key.kid


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b15_forwarded_host_never_replaces_authority(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """@authority comes from the URL given, whatever X-Forwarded-Host or Forwarded say."""
    s = sign(p521_key, dialect, components=["@method", "@path", "@authority", digest])
    spoof = [("x-forwarded-host", "evil.example"), ("forwarded", "host=evil.example")]
    assert accept(s, key_set, headers=[*s.headers, *spoof]).key_id == p521_key.kid
    claim = [("x-forwarded-host", "receiver.example"), ("forwarded", "host=receiver.example")]
    other = "https://evil.example/webhooks/upvest"
    assert reason(s, key_set, url=other, headers=[*s.headers, *claim]) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b15_authority_is_normalised(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """@authority drops the default port and lower-cases the host (RFC 9421 §2.2.3)."""
    url = "https://Receiver.Example:443/webhooks/upvest"
    s = sign(p521_key, dialect, url=url)
    lines = _lines(s, digest, ('"@authority"', "receiver.example"))
    headers = hand_signed(p521_key, s, lines, dialect)
    assert accept(s, key_set, headers=headers).key_id == p521_key.kid


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b15_target_uri_keeps_an_explicit_default_port(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """@target-uri is the URI as sent, :443 included (RFC 9421 §2.2.2); without it: bad_signature."""
    url = "https://receiver.example:443/webhooks/upvest"
    s = sign(p521_key, dialect, url=url)
    lines = _lines(s, digest, ('"@target-uri"', url), ('"@authority"', "receiver.example"))
    assert accept(s, key_set, headers=hand_signed(p521_key, s, lines, dialect)).label == "sig1"
    dropped = _lines(s, digest, ('"@target-uri"', URL), ('"@authority"', "receiver.example"))
    headers = hand_signed(p521_key, s, dropped, dialect)
    assert reason(s, key_set, headers=headers) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b16_header_named_like_a_derived_component(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Headers literally named @method or @path never replace the derived values."""
    s = sign(p521_key, dialect)
    fake = [("@method", "GET"), ("@path", "/evil"), ("@authority", "evil.example")]
    assert accept(s, key_set, headers=[*s.headers, *fake]).key_id == p521_key.kid
    claim = [*s.headers, ("@method", "POST")]
    assert reason(s, key_set, headers=claim, method="PUT") == "bad_signature"


# --- B17-B21 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize("value", ["caf\u00e9", "\x80", "a\x01b", "a\x7fb", "\u20ac"], ids=repr)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_b17_non_ascii_in_a_covered_value(
    p521_key: SigningKey,
    key_set: KeySet,
    dialect: str,
    digest: str,
    value: str,
    as_bytes: bool,
) -> None:
    """A non-ASCII or control character in a covered header value is malformed."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-name", "a")],
        components=["@method", "@path", digest, "x-name"],
    )
    headers: list[tuple[object, object]] = list(with_headers(s, x_name=value))
    if as_bytes:
        headers = [(str(k).encode(), str(v).encode("utf-8")) for k, v in headers]
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b17_non_ascii_in_an_uncovered_value_is_fine(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Non-ASCII in a header the signature does not cover does not matter."""
    s = sign(p521_key, dialect)
    assert accept(s, key_set, headers=[*s.headers, ("x-free", "caf\u00e9")]).label == "sig1"


@pytest.mark.parametrize(
    ("signed_as", "pinned"), [("upvest-v6", "rfc9421"), ("rfc9421", "upvest-v6")]
)
@pytest.mark.parametrize("digest", ["digest", "content-digest"])
def test_b18_dialect_pinned_by_policy(
    p521_key: SigningKey, key_set: KeySet, signed_as: str, pinned: str, digest: str
) -> None:
    """A webhook in one layout fails a verifier pinned to the other, whatever digest it covers."""
    s = sign(p521_key, signed_as, digest=digest)
    assert reason(s, key_set, policy=Policy(dialect=pinned)) == "bad_signature"
    assert accept(s, key_set, policy=Policy(dialect=signed_as)).dialect.layout == signed_as


@pytest.mark.parametrize("policy_dialect", ["auto", "upvest-v6"])
def test_b18_v6_digest_is_checked(
    p521_key: SigningKey, key_set: KeySet, policy_dialect: str
) -> None:
    """With v6 enabled, its Digest field is checked against the body."""
    s = sign(p521_key, "upvest-v6")
    policy = Policy(dialect=policy_dialect)
    assert reason(s, key_set, body=BODY + b" ", policy=policy) == "digest_mismatch"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(("signed", "sent"), [("post", "POST"), ("POST", "post")])
def test_b19_method_case(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, signed: str, sent: str
) -> None:
    """@method is case-sensitive: a base over "post" does not verify "POST", nor the reverse."""
    s = sign(p521_key, dialect, method=signed)
    assert reason(s, key_set, method=sent) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b20_digest_covered_but_no_body_and_no_digest(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A covered digest field on a request with no body and no digest is component_unavailable."""
    s = sign(p521_key, dialect, body=b"", digest="none", components=["@method", "@path"])
    lines = [('"@method"', "POST"), ('"@path"', PATH), (f'"{digest}"', "")]
    headers = hand_signed(p521_key, s, lines, dialect)
    assert all(k != digest for k, _ in headers)
    assert reason(s, key_set, headers=headers) == "component_unavailable"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b21_swapped_values(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Swapping the values of two covered headers is bad_signature."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-a", "1"), ("x-b", "2")],
        components=["@method", "@path", digest, "x-a", "x-b"],
    )
    assert reason(s, key_set, headers=with_headers(s, x_a="2", x_b="1")) == "bad_signature"


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_b21_swapped_names_in_the_list(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Swapping two names in the covered list (values unchanged) is bad_signature."""
    s = sign(
        p521_key,
        dialect,
        headers=[("x-a", "1"), ("x-b", "2")],
        components=["@method", "@path", digest, "x-a", "x-b"],
    )
    si = signature_params_of(s).replace('"x-a" "x-b"', '"x-b" "x-a"')
    assert reason(s, key_set, headers=with_headers(s, signature_input=f"sig1={si}")) == (
        "bad_signature"
    )
