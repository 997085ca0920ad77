"""Component values: built once per message, capped before they are read, RFC-exact."""

from __future__ import annotations

import json

import pytest
from core_helpers import REFERENCE_NOW, no_swallowed_errors, signature_headers
from hypothesis import given, settings
from hypothesis import strategies as st

import upvest_verify._components as components_module
from upvest_verify import KeySet, Policy, Reason, VerificationError, verify
from upvest_verify._message import _URL_CACHE, split_url
from upvest_verify._result import PayloadError, VerifiedWebhook, dialect_of
from upvest_verify.testing import SigningKey, generate_key, make_key_set

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)
URL = "https://receiver.example/webhooks/upvest"
POLICY = Policy(require_digest=False, require_query=False)


def hostile(
    components: str, headers: list[tuple[str, str]], labels: int = 1
) -> list[tuple[str, str]]:
    """Unsigned headers naming a known key and a current created, covering ``components``."""
    si = ", ".join(
        f'sig{i}=({components});keyid="{KEY.key_id}";created={REFERENCE_NOW}' for i in range(labels)
    )
    sig = ", ".join(f"sig{i}=:{'A' * 184}:" for i in range(labels))
    return [*headers, ("signature-input", si), ("signature", sig)]


def reason(url: str, headers: list[tuple[str, str]], policy: Policy = POLICY) -> str:
    with no_swallowed_errors(), pytest.raises(VerificationError) as info:
        verify("POST", url, headers, b"", keys=KEYS, now=REFERENCE_NOW, policy=policy)
    return info.value.reason.value


def test_each_dictionary_field_is_parsed_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 ;key components over one field, in 4 signatures: one dictionary parse (K9)."""
    parses: list[str] = []
    real = components_module._sfv.parse_dictionary

    def counting(value: str, **kwargs: bool) -> object:
        if value.startswith("k0="):
            parses.append(value)
        return real(value, **kwargs)

    monkeypatch.setattr(components_module._sfv, "parse_dictionary", counting)
    field = ", ".join(f"k{i}={i}" for i in range(200))
    covered = " ".join(f'"x-dict";key="k{i}"' for i in range(30)) + ' "@method" "@path"'
    policy = Policy(require_digest=False, require_query=False, max_covered_bytes=1 << 20)
    assert reason(URL, hostile(covered, [("x-dict", field)], labels=4), policy) == "bad_signature"
    assert len(parses) == 1


def test_the_query_is_decoded_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any number of @query-param components and signatures decode the query once."""
    decodes: list[str] = []
    real = components_module._form_normal
    monkeypatch.setattr(
        components_module, "_form_normal", lambda text: decodes.append(text) or real(text)
    )
    query = "&".join(f"q{i}={i}" for i in range(50))
    covered = " ".join(f'"@query-param";name="q{i}"' for i in range(30)) + ' "@method" "@path"'
    policy = Policy(require_digest=False, require_query=False, max_covered_bytes=1 << 20)
    assert reason(f"{URL}?{query}", hostile(covered, [], labels=4), policy) == "bad_signature"
    assert len(decodes) == 2 * 50  # one name and one value per pair, once


@pytest.mark.parametrize(
    ("covered", "headers", "query"),
    [
        ('"@method" "@path" "x-big"', [("x-big", "v" * 20_000)], ""),
        (
            '"@method" "@path" "x-d";key="a" "x-d";key="b"',
            [("x-d", "a=1, b=2, " + "c=3, " * 4000)],
            "",
        ),
        ('"@method" "@path" "@query-param";name="a"', [], "a=1&" + "b=2&" * 5000),
        ('"@method" "@path" "@query"', [], "a=" + "b" * 20_000),
    ],
    ids=["field", "dictionary", "query-param", "query"],
)
def test_covered_values_above_the_cap_are_refused_before_they_are_read(
    covered: str, headers: list[tuple[str, str]], query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than max_covered_bytes to read: malformed_header, nothing parsed or decoded."""
    monkeypatch.setattr(components_module, "_dictionary", None)  # would crash if reached
    monkeypatch.setattr(components_module, "_query_params", None)
    url = f"{URL}?{query}" if query else URL
    assert reason(url, hostile(covered, headers)) == "malformed_header"


def test_a_covered_field_with_too_many_lines_is_refused() -> None:
    """More than max_field_lines lines of one covered field: malformed_header."""
    lines = [("x-many", "v")] * 17
    assert reason(URL, hostile('"@method" "@path" "x-many"', lines)) == "malformed_header"
    assert reason(URL, hostile('"@method" "@path" "x-many"', lines[:16])) == "bad_signature"


def test_the_url_memo_keeps_no_long_url() -> None:
    """Unsigned requests with long URLs cannot fill the URL-split memo (K9)."""
    long_url = URL + "?" + "a" * 5000
    split_url(long_url)
    assert long_url not in _URL_CACHE
    split_url(URL)
    assert URL in _URL_CACHE
    assert all(len(u) <= 2048 for u in _URL_CACHE)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"payload": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"payload": [' + b"1" * 5000 + b"]}",
        b"\xff\xfe",
        b'{"payload": [{"id": "e", "type": "T.X", "created_at": "9999-12-31T23:59:59+99:99",'
        b' "webhook_id": "w", "object": {}}]}',
        json.dumps({"payload": [{"id": 1}]}).encode(),
    ],
    ids=["nested", "nested-payload", "huge-int", "not-utf8", "bad-offset", "wrong-types"],
)
def test_events_of_a_hostile_signed_body_raise_only_payload_error(body: bytes) -> None:
    """Whatever a signed body holds, reading .events raises PayloadError and nothing else."""
    webhook = VerifiedWebhook(
        key_id="k",
        label="sig1",
        covered_components=(),
        created=None,
        expires=None,
        nonce=None,
        dialect=dialect_of("rfc9421", "der", None),
        body=body,
    )
    with pytest.raises(PayloadError):
        webhook.events  # noqa: B018


def test_a_signature_over_the_target_uri_as_sent_verifies() -> None:
    """RFC 9421 §2.2.2: the explicit default port stays in @target-uri."""
    url = "https://receiver.example:443/webhooks/upvest"
    si = f'("@method" "@path" "@target-uri");keyid="{KEY.key_id}";created={REFERENCE_NOW}'
    base = f'"@method": POST\n"@path": /webhooks/upvest\n"@target-uri": {url}\n"@signature-params": {si}'
    result = verify(
        "POST",
        url,
        signature_headers(KEY, si, base),
        b"",
        keys=KEYS,
        now=REFERENCE_NOW,
        policy=POLICY,
    )
    assert result.key_id == KEY.key_id
    assert Reason.BAD_SIGNATURE.value == reason(
        url.replace(":443", ""), signature_headers(KEY, si, base)
    )


def test_the_covered_size_cap_holds_for_the_whole_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four signatures, each under the cap with its own 5 KB field: refused before the
    second field is parsed, because the cap counts every signature's sources together."""
    parsed: list[str] = []
    real = components_module._sfv.parse_dictionary

    def counting(value: str, **kwargs: bool) -> object:
        if value.startswith("m="):
            parsed.append(value)
        return real(value, **kwargs)

    monkeypatch.setattr(components_module._sfv, "parse_dictionary", counting)
    fields = [(f"x-d{i}", "m=1" + ", c=3" * 1000) for i in range(4)]
    si = ", ".join(
        f'sig{i}=("@method" "@path" "x-d{i}";key="m");keyid="{KEY.key_id}";created={REFERENCE_NOW}'
        for i in range(4)
    )
    sig = ", ".join(f"sig{i}=:{'A' * 184}:" for i in range(4))
    headers = [*fields, ("signature-input", si), ("signature", sig)]
    assert reason(URL, headers) == "bad_signature"  # the first error is the first label's
    assert len(parsed) == 1  # the second label is refused before its field is parsed


@pytest.mark.parametrize("suffix", ["\x0b", "\x0c", "\x85", "\xa0", "\r", "\n"])
def test_host_is_trimmed_of_optional_whitespace_only(suffix: str) -> None:
    """RFC 9110 §5.5: SP and HTAB only; "Host: h<VT>" is not the signed host "h"."""
    si = f'("@method" "@path" "@authority");keyid="{KEY.key_id}";created={REFERENCE_NOW}'
    base = f'"@method": POST\n"@path": /w\n"@authority": hooks.example\n"@signature-params": {si}'
    headers = signature_headers(KEY, si, base)
    ok = [*headers, ("host", " hooks.example\t")]
    assert verify("POST", "/w", ok, b"", keys=KEYS, now=REFERENCE_NOW, policy=POLICY)
    refused = reason("/w", [*headers, ("host", "hooks.example" + suffix)])
    assert refused in ("malformed_header", "bad_signature")


@pytest.mark.parametrize("where", ["url", "host", "field-name"])
def test_non_ascii_is_never_folded_into_ascii(where: str) -> None:
    """KELVIN SIGN (U+212A) lower-cases to "k" with str.lower(); names and hosts fold ASCII only."""
    kelvin = "hoo\u212as.example"
    si = f'("@method" "@path" "@authority" "x-hook");keyid="{KEY.key_id}";created={REFERENCE_NOW}'
    base = (
        '"@method": POST\n"@path": /w\n"@authority": hooks.example\n"x-hook": 1\n'
        f'"@signature-params": {si}'
    )
    headers = [*signature_headers(KEY, si, base), ("x-hook", "1")]
    url, host = "https://hooks.example/w", None
    if where == "url":
        url = f"https://{kelvin}/w"
    elif where == "host":
        url, host = "/w", kelvin
    else:
        headers = [("x-hoo\u212a" if n == "x-hook" else n, v) for n, v in headers]
    if host is not None:
        headers.append(("host", host))
    assert verify("POST", "https://hooks.example/w", [*headers[:2], ("x-hook", "1")], b"",
                  keys=KEYS, now=REFERENCE_NOW, policy=POLICY)  # fmt: skip
    assert reason(url, headers) in ("malformed_header", "component_unavailable", "bad_signature")


@settings(max_examples=2000)
@given(text=st.text(alphabet="aZ09*-._~+% =&/\u00e9\u20ac", max_size=12) | st.text(max_size=8))
def test_form_normal_skips_only_text_the_round_trip_leaves_alone(text: str) -> None:
    """The shortcut for safe text gives exactly RFC 9421 §2.2.8's decode-then-encode."""
    expected = components_module._form_encode(components_module._form_decode(text))
    assert components_module._form_normal(text) == expected


def test_signatures_after_the_covered_budget_is_spent_are_not_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four signatures over a query above the cap: one component list validated, not four."""
    import upvest_verify._verify as verify_module

    validated: list[object] = []
    real = verify_module.coverage_of
    monkeypatch.setattr(verify_module, "coverage_of", lambda *a: validated.append(a) or real(*a))
    query = "&".join(f"q{i}=v{i}" for i in range(2000))
    covered = '"@method" "@path" "@query"' + "".join(
        f' "@query-param";name="q{i}"' for i in range(20)
    )
    assert reason(f"{URL}?{query}", hostile(covered, [], labels=4)) == "malformed_header"
    assert len(validated) == 1
