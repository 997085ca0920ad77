"""Alternative reconstructions: what they accept, and that they never let other content verify."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

import pytest
from core_helpers import REFERENCE_NOW, no_swallowed_errors, signature_headers
from hypothesis import given, settings
from hypothesis import strategies as st

import upvest_verify._verify as verify_module
from upvest_verify import KeySet, Policy, VerificationError, verify
from upvest_verify._tolerance import (
    PATH_DECODABLE,
    QUERY_DECODABLE,
    any_comma_spaced,
    comma_spaced,
    percent_decoded,
)
from upvest_verify.signing import sign_request
from upvest_verify.testing import SigningKey, generate_key, make_key_set

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)
URL = "https://receiver.example/webhooks/upvest"
POLICY = Policy(require_digest=False, require_query=False)

# --- the alternatives themselves -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spaced"),
    [
        ("a,b", "a, b"),
        ("a, b", None),
        ("a,\tb", None),
        ("a,b, c,d", "a, b, c, d"),
        ("a,", "a, "),
        ('"x,y",z', '"x,y", z'),
        ('"x\\",y",z', '"x\\",y", z'),
        ("no comma", None),
    ],
)
def test_comma_spaced(value: str, spaced: str | None) -> None:
    """A space after each bare comma outside quoted strings; None when nothing changes."""
    assert comma_spaced(value) == spaced


@pytest.mark.parametrize(
    ("text", "decodable", "decoded"),
    [
        ("/a%7Eb", PATH_DECODABLE, "/a~b"),
        ("/p%C3%A9", PATH_DECODABLE, None),  # not ASCII: no alternative
        ("/a%2Fb", PATH_DECODABLE, None),  # "/" is structure in a path
        ("/a%25b", PATH_DECODABLE, None),  # "%" would decode twice
        ("/a%0Ab", PATH_DECODABLE, None),  # a control character: base injection
        ("/a%zz", PATH_DECODABLE, None),  # a stray "%"
        ("/plain", PATH_DECODABLE, None),
        ("t=2021-07-21T14%3A10%3A00Z", QUERY_DECODABLE, "t=2021-07-21T14:10:00Z"),
        ("q=a%20b", QUERY_DECODABLE, "q=a b"),
        ("a=1%262=3", QUERY_DECODABLE, None),  # "&" is structure in a query
        ("a=1%2B2", QUERY_DECODABLE, None),  # "+" means a space in a form query
        ("a=%3D", QUERY_DECODABLE, None),
    ],
)
def test_percent_decoded(text: str, decodable: frozenset[str], decoded: str | None) -> None:
    """Decoded only when every escape is of a character that carries no structure there."""
    assert percent_decoded(text, decodable) == decoded


# --- no alternative can make different content verify --------------------------------------

LIST_TEXT = st.text(alphabet='ab,"\\ \t', max_size=12)


def list_elements(value: str) -> list[str]:
    """A comma-separated field value's elements (RFC 9110 §5.6.1), quoted strings kept whole."""
    elements, current, quoted, escaped = [], "", False, False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            elements.append(current.strip(" \t"))
            current = ""
            continue
        current += ch
    elements.append(current.strip(" \t"))
    return elements


@settings(max_examples=1000)
@given(first=LIST_TEXT, second=LIST_TEXT)
def test_comma_alternative_only_meets_the_same_list(first: str, second: str) -> None:
    """If a received value's alternative equals another value, both are the same list."""
    alternative = comma_spaced(first)
    if alternative is not None and alternative == second:
        assert list_elements(first) == list_elements(second)
        assert re.sub(r"[ \t]", "", first) == re.sub(r"[ \t]", "", second)


# Raw characters and escapes of delimiters, "%", unreserved and other characters.
URL_PARTS = ["a", "b", "/", "&", "=", "+", "~", ":", " ", "%", "%2F", "%26", "%2B", "%3D"]
URL_PARTS += ["%25", "%7E", "%7e", "%20", "%3A", "%41", "%61", "%3B", "%C3%A9", "%0A"]
URL_TEXT = st.lists(st.sampled_from(URL_PARTS), max_size=8).map("".join)


def candidates(text: str, decodable: frozenset[str]) -> set[str]:
    """The values a received path or query can be verified with: as received, or decoded."""
    decoded = percent_decoded(text, decodable)
    return {text} if decoded is None else {text, decoded}


@settings(max_examples=1500)
@given(first=URL_TEXT, second=URL_TEXT)
def test_a_decoded_path_only_meets_the_same_path(first: str, second: str) -> None:
    """Two paths that share a candidate value have the same segments, percent-decoded."""
    if candidates(first, PATH_DECODABLE) & candidates(second, PATH_DECODABLE):
        assert [unquote(s) for s in first.split("/")] == [unquote(s) for s in second.split("/")]


@settings(max_examples=1500)
@given(first=URL_TEXT, second=URL_TEXT)
def test_a_decoded_query_only_meets_the_same_parameters(first: str, second: str) -> None:
    """Two queries that share a candidate value form-decode to the same parameters."""
    if candidates(first, QUERY_DECODABLE) & candidates(second, QUERY_DECODABLE):
        assert parse_qsl(first, keep_blank_values=True) == parse_qsl(second, keep_blank_values=True)


# --- end to end: tried after the exact base, reported, bounded ----------------------------


def comma_signed(lines: list[str], layout: str = "rfc9421") -> tuple[list[tuple[str, str]], str]:
    """Headers of a request signed with ``x-list`` sent as ``lines``, and the signed URL."""
    signed = sign_request(
        "POST",
        URL,
        [("x-list", line) for line in lines],
        b"",
        key=KEY,
        components=["@method", "@path", "x-list"],
        created=REFERENCE_NOW,
        layout=layout,  # type: ignore[arg-type]
    )
    return [(k, v) for k, v in signed.headers if k != "x-list"], signed.url


def run(url: str, headers: list[tuple[str, str]], policy: Policy = POLICY) -> str:
    """The dialect verified, or the reason refused."""
    with no_swallowed_errors():
        try:
            return str(
                verify(
                    "POST", url, headers, b"", keys=KEYS, now=REFERENCE_NOW, policy=policy
                ).dialect
            )
        except VerificationError as e:
            return e.reason.value


@pytest.mark.parametrize("layout", ["rfc9421", "upvest-v6"])
def test_lines_a_wsgi_server_joined_with_a_bare_comma_verify(layout: str) -> None:
    """RFC 9421 §2.1 joins lines with ", "; WSGI servers with ",": reported as comma-joined."""
    headers, url = comma_signed(["a", "b"], layout)
    policy = Policy(require_digest=False, require_query=False, dialect=layout)  # type: ignore[arg-type]
    assert run(url, [*headers, ("x-list", "a, b")], policy) == f"{layout}/der/no-digest"
    assert run(url, [*headers, ("x-list", "a,b")], policy) == f"{layout}/der/no-digest/comma-joined"


@pytest.mark.parametrize("received", ["a,c", "b,a", "a,b,", "ab", "a;b", '"a,b"'])
def test_a_comma_joined_value_with_other_content_does_not_verify(received: str) -> None:
    """Only the spacing may differ: other elements, order or quoting is bad_signature."""
    headers, url = comma_signed(["a", "b"])
    assert run(url, [*headers, ("x-list", received)]) == "bad_signature"


def v6_signed_decoded(url: str, decoded_path: str, decoded_query: str) -> list[tuple[str, str]]:
    """A draft-06 signature over a percent-decoded @path and @query, as that draft defined them."""
    si = f'("@method" "@path" "@query");keyid="{KEY.key_id}";created={REFERENCE_NOW}'
    base = (
        f"@method: POST\n@path: {decoded_path}\n@query: ?{decoded_query}\n@signature-params: {si}"
    )
    return signature_headers(KEY, si, base)


def test_a_draft06_base_over_the_decoded_path_and_query_verifies() -> None:
    """Upvest's v6 dialect over percent-decoded values: tried after the raw one, reported."""
    url = "https://receiver.example/hooks/%7Euser?t=2021-07-21T14%3A10%3A00Z"
    headers = v6_signed_decoded(url, "/hooks/~user", "t=2021-07-21T14:10:00Z")
    assert run(url, headers) == "upvest-v6/der/no-digest/percent-decoded"
    rfc_only = Policy(require_digest=False, require_query=False, dialect="rfc9421")
    assert run(url, headers, rfc_only) == "bad_signature"  # RFC 9421 never decodes


@pytest.mark.parametrize(
    "received",
    [
        "https://receiver.example/hooks/%7Euser?t=2021-07-21T14%3A10%3A01Z",
        "https://receiver.example/hooks%2F%7Euser?t=2021-07-21T14%3A10%3A00Z",
        "https://receiver.example/hooks/%7Euser?t=2021-07-21T14%3A10%3A00Z%26a=1",
    ],
)
def test_a_decoded_base_does_not_verify_other_content(received: str) -> None:
    """Another value, or an escaped delimiter that would decode to the signed text, fails."""
    headers = v6_signed_decoded(received, "/hooks/~user", "t=2021-07-21T14:10:00Z")
    assert run(received, headers) == "bad_signature"


def test_every_candidate_counts_against_the_verification_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Layouts x reconstructions stay within max_verifications ECDSA calls per request."""
    headers, url = comma_signed(["a", "b"])
    headers = [(k, v) for k, v in headers]
    calls: list[bytes] = []
    real = verify_module.verify_signature

    def counting(key: object, signature: bytes, base: bytes) -> bool:
        calls.append(base)
        return real(key, signature, base)  # type: ignore[arg-type]

    monkeypatch.setattr(verify_module, "verify_signature", counting)
    tampered = [*headers, ("x-list", "a,c")]
    tampered_url = url.replace("/webhooks/upvest", "/webhooks/%7Eupvest")
    for budget in (1, 2, 3, 4):
        calls.clear()
        policy = Policy(require_digest=False, require_query=False, max_verifications=budget)
        assert run(tampered_url, tampered, policy) == "bad_signature"
        assert len(calls) == budget  # 2 layouts x (exact, comma, decoded, both) = 6 candidates


@settings(max_examples=2000)
@given(values=st.lists(LIST_TEXT.map(lambda v: v.strip(" \t")), max_size=4))
def test_any_comma_spaced_is_comma_spaced_over_the_values(values: list[str]) -> None:
    """The one-search shortcut agrees with comma_spaced value by value."""
    assert any_comma_spaced(values) is any(comma_spaced(v) is not None for v in values)
