"""The fast path at each of its own checks: one request per check, both paths, one verdict.

``test_fast_path.py`` draws random requests around the fast path; here every check the
fast path makes on the raw request (field presence, whitespace, repeated lines, comma
joins, padding, the version field, digests, the head's length, the refusal's details)
gets a request that reaches it, so that a change to that check shows as a verdict that
differs from the strict path's or from the one expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from core_helpers import REFERENCE_NOW, with_headers

import upvest_verify._fast as fast_module
from upvest_verify import KeySet, Policy, VerificationError, verify
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)
URL = "https://receiver.example/webhooks/upvest"

Headers = list[tuple[Any, Any]]


def outcome(
    s: SignedWebhook, headers: object, *, fast: bool, policy: Policy | None = None, url: str = URL
) -> tuple[str, ...]:
    """The verdict with the fast path on or off: the dialect, or the refusal's details."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_module, "ENABLED", fast)
        try:
            result = verify(
                s.method,
                url,
                headers,  # type: ignore[arg-type]
                s.body,
                keys=KEYS,
                now=REFERENCE_NOW,
                policy=policy or Policy(),
            )
        except VerificationError as e:
            return (e.reason.value, str(e.key_id), e.message)
    return ("accepted", str(result.dialect), result.key_id)


def same_verdict(s: SignedWebhook, headers: object, **options: Any) -> tuple[str, ...]:
    """Both paths' verdict, asserted equal."""
    fast = outcome(s, headers, fast=True, **options)
    assert fast == outcome(s, headers, fast=False, **options)
    return fast


def signed(**options: Any) -> SignedWebhook:
    options.setdefault("created", REFERENCE_NOW)
    options.setdefault("url", URL)
    return sign_webhook(b'{"payload":[]}', key=KEY, **options)


def as_bytes(headers: Headers) -> Headers:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def edit(s: SignedWebhook, name: str, change: Callable[[str], str]) -> Headers:
    """The webhook's header lines with ``name``'s value changed."""
    return with_headers(s, **{name: change(s.header(name) or "")})


@pytest.mark.parametrize("shape", [list, as_bytes], ids=["str", "bytes"])
@pytest.mark.parametrize("missing", ["signature", "signature-input"])
def test_one_of_the_two_signature_fields_missing(shape: Any, missing: str) -> None:
    """Without Signature or Signature-Input: the strict path's refusal, from ASGI lines too."""
    s = signed()
    verdict = same_verdict(s, shape(with_headers(s, **{missing: None})))
    assert verdict[0] == "missing_signature"


@pytest.mark.parametrize("shape", [list, as_bytes], ids=["str", "bytes"])
@pytest.mark.parametrize(
    "name", ["signature", "signature-input", "content-digest", "content-type", "date"]
)
@pytest.mark.parametrize("pad", [" ", "\t"], ids=["space", "tab"])
def test_whitespace_around_a_field_value(shape: Any, name: str, pad: str) -> None:
    """Spaces around a value are trimmed (RFC 9110 OWS); a tab is judged as the strict path does."""
    s = signed(
        dialect="rfc9421",
        components=["@method", "@path", "content-type", "content-digest", "date"],
    )
    headers = shape(edit(s, name, lambda v: pad + v + pad))
    verdict = same_verdict(s, headers)
    if pad == " ":
        assert verdict[0] == "accepted"


@pytest.mark.parametrize("shape", [list, as_bytes], ids=["str", "bytes"])
def test_a_covered_field_sent_twice_is_combined(shape: Any) -> None:
    """Two lines of a covered field are one value joined by ", ": not the last line alone."""
    s = signed(dialect="rfc9421", components=["@method", "@path", "content-type", "content-digest"])
    headers = [*s.headers, ("content-type", "application/json")]
    assert same_verdict(s, shape(headers))[0] == "bad_signature"
    mixed = [(k.encode(), v) if k == "content-type" else (k, v) for k, v in headers]
    assert same_verdict(s, mixed)[0] == "bad_signature"


def test_a_comma_joined_value_is_tried_spaced() -> None:
    """A list value signed as "a, b" and received as "a,b" (a WSGI join) still verifies."""
    s = signed(
        dialect="rfc9421",
        components=["@method", "@path", "x-list", "content-digest"],
        headers=[("x-list", "a, b")],
    )
    headers = edit(s, "x-list", lambda v: "a,b")
    assert same_verdict(s, headers)[0] == "accepted"
    assert same_verdict(s, as_bytes(headers))[0] == "accepted"


@pytest.mark.parametrize("encoding", ["der", "raw"])
@pytest.mark.parametrize("extra", ["=", "==", "===", "===="])
def test_padding_beyond_the_last_quad_is_refused(encoding: str, extra: str) -> None:
    """A base64 signature with more "=" than its length needs is malformed on both paths."""
    s = signed(dialect="rfc9421", encoding=encoding)
    headers = edit(s, "signature", lambda v: v[:-1] + extra + ":")
    verdict = same_verdict(s, headers)
    assert verdict[0] != "accepted"
    assert same_verdict(s, as_bytes(headers)) == verdict


@pytest.mark.parametrize("shape", [list, as_bytes], ids=["str", "bytes"])
@pytest.mark.parametrize(("dialect", "version"), [("upvest-v6", 6), ("rfc9421", 15)])
def test_the_version_field_picks_the_layout(shape: Any, dialect: str, version: int) -> None:
    """Upvest-Signature-Version names the layout tried first, also from ASGI lines."""
    s = signed(dialect=dialect, version_header=version)
    one = Policy(max_verifications=1)
    verdict = same_verdict(s, shape(list(s.headers)), policy=one)
    assert (verdict[0], verdict[1].split("/")[0]) == ("accepted", dialect)
    other = 15 if version == 6 else 6
    headers = edit(s, "upvest-signature-version", lambda v: f" {other}\t")
    assert same_verdict(s, shape(headers), policy=one)[0] == "bad_signature"


def test_both_digest_fields_covered_are_both_checked() -> None:
    """With Digest and Content-Digest covered, a wrong one of them refuses the webhook."""
    s = signed(dialect="rfc9421", digest="both")
    assert same_verdict(s, list(s.headers))[0] == "accepted"
    for name in ("digest", "content-digest"):
        headers = edit(s, name, lambda v: v.replace("A", "B", 1).replace("a", "b", 1))
        assert same_verdict(s, headers)[0] == "digest_mismatch"


@pytest.mark.parametrize(("width", "over"), [(8, False), (80, True)])
def test_a_head_longer_than_the_plan_cache_takes(width: int, over: bool) -> None:
    """A Signature-Input head over the fast path's cap is not planned: the strict path decides."""
    names = [f"x-{'f' * width}-{i:02d}" for i in range(30)]
    s = signed(
        dialect="rfc9421",
        components=["@method", "@path", "content-digest", *names],
        headers=[(name, "v") for name in names],
    )
    head = (s.header("signature-input") or "").partition(")")[0] + ")"
    assert (len(head) > fast_module._HEAD_MAX) is over
    policy = Policy(max_components=64, max_header_bytes=16 * 1024)
    assert same_verdict(s, list(s.headers), policy=policy)[0] == "accepted"
    assert (head in fast_module._PLANS) is not over


@pytest.mark.parametrize("shape", [list, as_bytes], ids=["str", "bytes"])
def test_a_bad_signature_names_its_label_and_key(shape: Any) -> None:
    """The fast path's bad_signature carries the strict path's label, key id and message."""
    s = signed(dialect="rfc9421", label="hook")
    other = signed(dialect="rfc9421", label="hook")
    headers = edit(s, "signature", lambda v: other.header("signature") or "")
    reason, key_id, message = same_verdict(s, shape(headers))
    assert (reason, key_id) == ("bad_signature", KEY.kid)
    assert "hook" in message
