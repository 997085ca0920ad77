"""The canonical-header fast path gives exactly the strict path's verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import ItemsView, Iterator, Mapping
from types import MappingProxyType

import pytest
from core_helpers import REFERENCE_NOW
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import upvest_verify._fast as fast_module
import upvest_verify._verify as verify_module
from upvest_verify import KeySet, Policy, VerificationError, _sfv, verify
from upvest_verify._rules import MAX_KEYID, check_params
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)


def verdict(
    s: SignedWebhook,
    headers: list[tuple[str, str]],
    policy: Policy,
    fast: bool,
    now: int = REFERENCE_NOW,
) -> str:
    """Verify with the fast path on or off; return the dialect or the reason."""
    fast_module.ENABLED = fast
    try:
        result = verify(s.method, s.url, headers, s.body, keys=KEYS, now=now, policy=policy)
    except VerificationError as e:
        return e.reason.value
    except TypeError:
        return "TypeError"  # a wrong Python type: the caller's mistake
    finally:
        fast_module.ENABLED = True
    return str(result.dialect)


def test_fast_path_is_taken_for_canonical_headers() -> None:
    """A canonical Upvest webhook is handled without the strict Signature-Input parse."""
    s = sign_webhook(b"{}", key=KEY, created=REFERENCE_NOW)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "parse_signatures", None)  # would crash if called
        assert verify(s.method, s.url, s.headers, s.body, keys=KEYS, now=REFERENCE_NOW)


PARAM_ORDERS = st.permutations(["keyid", "created", "expires", "nonce"])
MUTATIONS = st.sampled_from(
    [
        lambda v: v,
        lambda v: v.replace("(", "( "),
        lambda v: v.replace('" "', '"  "'),
        lambda v: v.replace(";created=", ";created=0"),
        lambda v: v.replace(";created=", ";created=?1;x="),
        lambda v: v + ";created=1",
        lambda v: v + ';alg="ecdsa-p521-sha512"',
        lambda v: v + ';alg="ed25519"',
        lambda v: v + ';tag="a\\"b"',
        lambda v: v + ";crit=1",
        lambda v: v.replace('"@path"', '"@path" "@path"'),
        lambda v: v.replace('"@path"', '"@foo"'),
        lambda v: v.replace('"@path"', '"Content-Type"'),
        lambda v: v.replace('"@path"', '"@path";req'),
        lambda v: v.replace("sig1=", "sig2="),
        lambda v: v.replace('nonce="', 'nonce="x;y'),
        lambda v: v.replace('keyid="', 'keyid="'),
        lambda v: v + ', sig2=("@method");keyid="x";created=1',
        lambda v: v.replace('keyid="', 'keyid="00000000-'),
        lambda v: " " + v + " ",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=PARAM_ORDERS,
    mutate=MUTATIONS,
    dialect=st.sampled_from(["upvest-v6", "rfc9421"]),
    labels=st.sampled_from([(), ("sig1",), ("sig2",)]),
    padding_cut=st.booleans(),
)
def test_fast_and_strict_paths_agree(
    order: list[str],
    mutate: object,
    dialect: str,
    labels: tuple[str, ...],
    padding_cut: bool,
) -> None:
    """For canonical and near-canonical headers both paths give the same verdict."""
    s = sign_webhook(
        b'{"payload":[]}',
        key=KEY,
        created=REFERENCE_NOW,
        dialect=dialect,  # type: ignore[arg-type]
        params_order=order,
    )
    si = mutate(s.header("signature-input") or "")  # type: ignore[operator]
    sig = s.header("signature") or ""
    if padding_cut:
        sig = sig.replace("=:", ":")
    headers = [(k, v) for k, v in s.headers if k not in ("signature-input", "signature")]
    headers += [("signature-input", si), ("signature", sig)]
    policy = Policy(labels=labels)
    assert verdict(s, headers, policy, fast=True) == verdict(s, headers, policy, fast=False)


# --- Requests around the fast path's own checks ------------------------------------------
#
# The fast path reads the raw inputs itself (header shape, names, URL, component values,
# digest, signature bytes, version header), so each of those gets mutations here, on
# webhooks covering random component lists in random order.

COMPONENT_POOL = [
    "@method",
    "@path",
    "@query",
    "@authority",
    "@scheme",
    "@target-uri",
    "@request-target",
    "content-type",
    "content-length",
    "date",
    "upvest-client-id",
]


class MultiMapping(Mapping[str, str]):
    """A header mapping whose items() repeats names, like Starlette's or Werkzeug's."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def __getitem__(self, name: str) -> str:
        return next(v for k, v in self._pairs if k.lower() == name.lower())

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> ItemsView[str, str]:
        return self._pairs  # type: ignore[return-value]


def _replace_value(name: str, change: object) -> object:
    def mutate(headers: list[tuple[object, object]]) -> list[tuple[object, object]]:
        return [(k, change(v) if k == name else v) for k, v in headers]  # type: ignore[operator]

    return mutate


HEADER_MUTATIONS = st.sampled_from(
    [
        lambda h: h,
        lambda h: [(k.title(), v) for k, v in h],  # type: ignore[union-attr]
        lambda h: [(k.upper() if k == "date" else k, v) for k, v in h],  # type: ignore[union-attr]
        lambda h: [*h, ("DATE", "Mon, 01 Jan 2024 00:00:00 GMT")],
        lambda h: [*h, ("content-type", "text/plain")],
        lambda h: [*h, ("signature", "sig2=:AAAA:")],
        lambda h: [(k.encode(), v) for k, v in h],  # type: ignore[union-attr]
        lambda h: [(k, v.encode()) for k, v in h],  # type: ignore[union-attr]
        lambda h: [(k, v.encode() if k == "content-type" else v) for k, v in h],  # type: ignore[union-attr]
        lambda h: [*h, (b"x-extra", b"1")],
        lambda h: [*h, ("x-extra", None)],
        lambda h: [*h, ("x-extra", 5)],
        lambda h: [*h, ("x-extra", "caf\u00e9")],
        lambda h: [*h, ("upvest-signature-version", "6")],
        lambda h: [*h, ("upvest-signature-version", " 15\t")],
        lambda h: [*h, ("upvest-signature-version", "7")],
        lambda h: tuple(h),
        lambda h: dict(h),  # type: ignore[arg-type]
        lambda h: MappingProxyType(dict(h)),  # type: ignore[arg-type]
        lambda h: MultiMapping(h),  # type: ignore[arg-type]
        lambda h: MultiMapping([*h, ("Content-Type", "text/plain")]),  # type: ignore[list-item]
        lambda h: [(k.encode(), v.encode()) for k, v in h] + [(b"X-A", b"\xe9")],  # type: ignore[union-attr]
        lambda h: [(bytearray(k.encode()), v) for k, v in h],  # type: ignore[union-attr]
        lambda h: iter(h),
        _replace_value("content-type", lambda v: " " + v + "  "),
        _replace_value("content-type", lambda v: v + "\t"),
        _replace_value("content-type", lambda v: v + "\u00e9"),
        _replace_value("content-type", lambda v: v + "\x7f"),
        _replace_value("content-type", lambda v: v + "\r\n x"),
        _replace_value("date", lambda v: ""),
        _replace_value("content-digest", lambda v: " " + v),
        _replace_value("content-digest", lambda v: v + ", sha-256=:AAAA:"),
        _replace_value("content-digest", lambda v: v.replace("sha-512", "SHA-512")),
        _replace_value("content-digest", lambda v: v.replace("=:", "=: ")),
        _replace_value("content-digest", lambda v: v.replace("A", "B", 1)),
        _replace_value("content-digest", lambda v: v.replace("==:", ":")),
        _replace_value("digest", lambda v: v.replace("SHA-256", "sha-256")),
        _replace_value("digest", lambda v: v + ",md5=AAAA"),
        _replace_value("digest", lambda v: " " + v + " "),
        _replace_value("digest", lambda v: v.replace("A", "B", 1)),
        _replace_value("signature", lambda v: v.replace("==:", "====:")),
        _replace_value("signature", lambda v: v.replace("==:", "======:")),
        _replace_value("signature", lambda v: v.replace("==:", ":")),
        _replace_value("signature", lambda v: v.replace(":", ": ", 1)),
        _replace_value("signature", lambda v: v[:-1] + ";x"),
        _replace_value("signature", lambda v: v[:-1] + "\u00e9:"),
        _replace_value("signature", lambda v: v.replace("sig1", "sig2")),
        _replace_value("signature", lambda v: v[:12] + "=" + v[13:]),
        _replace_value("signature", lambda v: "sig1=::"),
        _replace_value("signature-input", lambda v: v.replace(")", ") ")),
        _replace_value("signature-input", lambda v: v.replace('"', "'", 2)),
        _replace_value("signature-input", lambda v: v.replace("created=", "created=-")),
    ]
)
URLS = st.sampled_from(
    [
        "https://receiver.example/webhooks/upvest",
        "https://receiver.example/webhooks/upvest?a=1&b=%20",
        "https://RECEIVER.example:443/webhooks/upvest?",
        "http://receiver.example:8080/p%C3%A9/x",
        "https://receiver.example",
    ]
)
URL_CHANGES = st.sampled_from(
    [
        lambda u: u,
        lambda u: u + "\u00e9",
        lambda u: u.replace("receiver", "RECEIVER"),
        lambda u: u.replace("https", "HTTPS"),
        lambda u: u + "#fragment",
        lambda u: u.replace("://", ":/"),
        lambda u: u + "\x7f",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    components=st.lists(st.sampled_from(COMPONENT_POOL), unique=True, max_size=7),
    digest_at=st.integers(min_value=0, max_value=8),
    dialect=st.sampled_from(["upvest-v6", "rfc9421"]),
    digest=st.sampled_from(["digest", "content-digest", "both", "none"]),
    encoding=st.sampled_from(["der", "raw"]),
    url=URLS,
    origin_form=st.booleans(),
    body=st.sampled_from([b"", b'{"payload":[]}']),
    mutate=HEADER_MUTATIONS,
    age=st.sampled_from([0, 100, 400, -120]),
    url_change=URL_CHANGES,
)
def test_fast_and_strict_paths_agree_on_raw_inputs(
    components: list[str],
    digest_at: int,
    dialect: str,
    digest: str,
    encoding: str,
    url: str,
    origin_form: bool,
    body: bytes,
    mutate: object,
    age: int,
    url_change: object,
) -> None:
    """Header shapes, names, values, URLs and component orders: both paths agree."""
    digest_names = {"both": ["digest", "content-digest"], "none": []}.get(digest, [digest])
    for name in digest_names:
        components.insert(min(digest_at, len(components)), name)
    s = sign_webhook(
        body,
        key=KEY,
        url=url,
        created=REFERENCE_NOW - age,
        dialect=dialect,  # type: ignore[arg-type]
        digest=digest,  # type: ignore[arg-type]
        encoding=encoding,  # type: ignore[arg-type]
        components=components,
    )
    if origin_form:
        target = url.split("://", 1)[1]
        s = dataclasses.replace(s, url="/" + target.split("/", 1)[1] if "/" in target else "/")
    s = dataclasses.replace(s, url=url_change(s.url))  # type: ignore[operator]
    headers = mutate(list(s.headers))  # type: ignore[operator]
    policy = Policy(required_components=())
    fast = verdict_of(s, headers, policy, fast=True)
    headers = mutate(list(s.headers))  # type: ignore[operator]  # iterators are one-shot
    event(fast.split("/")[0])
    assert fast == verdict_of(s, headers, policy, fast=False)


def verdict_of(s: SignedWebhook, headers: object, policy: Policy, fast: bool) -> str:
    """Like verdict(), for any header shape."""
    return verdict(s, headers, policy, fast)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "components",
    [
        ["content-type", "@method", "content-digest", "@path"],
        ["date", "@authority", "@scheme", "content-digest", "@method", "@path"],
        ["@path", "@method", "@query", "@request-target", "@scheme", "content-digest"],
    ],
)
@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
def test_fast_path_takes_any_component_order(components: list[str], dialect: str) -> None:
    """Derived components and fields in any order verify on the fast path."""
    s = sign_webhook(
        b"{}",
        key=KEY,
        url="https://receiver.example/hook" + ("?x=1" if "@query" in components else ""),
        created=REFERENCE_NOW,
        dialect=dialect,  # type: ignore[arg-type]
        digest="content-digest",
        components=components,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "parse_signatures", None)  # would crash if called
        result = verify(s.method, s.url, s.headers, s.body, keys=KEYS, now=REFERENCE_NOW)
    assert result.covered_components == tuple(f'"{c}"' for c in components)
    assert result.dialect.layout == dialect


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda h: h, id="list"),
        pytest.param(tuple, id="tuple"),
        pytest.param(dict, id="dict"),
        pytest.param(lambda h: MultiMapping([(k.title(), v) for k, v in h]), id="mapping"),
        pytest.param(lambda h: [(k.encode(), v.encode()) for k, v in h], id="asgi-bytes"),
        pytest.param(
            lambda h: [(k.encode(), memoryview(v.encode())) for k, v in h], id="memoryview-values"
        ),
        pytest.param(lambda h: [(k.upper(), v) for k, v in h], id="upper-case"),
    ],
)
def test_fast_path_takes_the_usual_header_shapes(shape: object) -> None:
    """Lists, tuples, dicts and mappings, str or bytes, any case: no strict parse."""
    s = sign_webhook(b"{}", key=KEY, created=REFERENCE_NOW)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "parse_signatures", None)  # would crash if called
        headers = shape(list(s.headers))  # type: ignore[operator]
        assert verify(s.method, s.url, headers, s.body, keys=KEYS, now=REFERENCE_NOW)


@pytest.mark.parametrize(
    ("created", "expires", "now", "policy", "accepted"),
    [
        pytest.param(1000, 1060, 1000 - 60, Policy(), True, id="created-at-now-plus-skew"),
        pytest.param(1000, 1060, 999 - 60, Policy(), False, id="created-past-now-plus-skew"),
        pytest.param(1000, 1060, 1060 + 60, Policy(), True, id="expires-at-now-minus-skew"),
        pytest.param(1000, 1060, 1061 + 60, Policy(), False, id="expires-before-now-minus-skew"),
        pytest.param(1000, 4600, 1000, Policy(), True, id="window-at-max"),
        pytest.param(1000, 4601, 1000, Policy(), False, id="window-over-max"),
        pytest.param(1000, 1000 + 86400, 1000, Policy(max_window=None), True, id="no-window-cap"),
        pytest.param(1000, 1000, 1000, Policy(max_window=None), False, id="expires-equal"),
    ],
)
def test_fast_path_time_window_edges(
    created: int, expires: int, now: int, policy: Policy, accepted: bool
) -> None:
    """The fast path's window check accepts and refuses exactly at the edges."""
    s = sign_webhook(b"{}", key=KEY, created=created, expires=expires)
    for fast in (True, False):
        assert (verdict(s, list(s.headers), policy, fast, now=now) == "upvest-v6/der/digest") is (
            accepted
        )
    if accepted:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(verify_module, "parse_signatures", None)  # would crash if called
            assert verify(s.method, s.url, s.headers, s.body, keys=KEYS, now=now, policy=policy)


# --- The whole policy, and the time window at its boundaries -----------------------------
#
# The fast path holds the rules' answers per (plan, policy) and calls the time-window rule
# per request; any policy field or time it misread would show as a verdict difference here.


def mostly(usual: object, *others: object) -> st.SearchStrategy[object]:
    """The usual value seven times in eight, else one of the others."""
    return st.sampled_from([usual] * 7 + list(others))


POLICIES = st.builds(
    Policy,
    labels=mostly((), ("sig1",), ("sig2",), ("sig2", "sig1")),
    required_components=mostly(
        ("@method", "@path"), (), ("@method", "@path", "content-type"), ("@query",), ("date",)
    ),
    require_digest=mostly(True, False),
    require_query=mostly(True, False),
    require_created=mostly(True, False),
    require_nonce=mostly(False, True),
    skew=st.sampled_from([0, 1, 30, 60, 0.5]),
    max_age=st.sampled_from([0, 1, 59, 60, 300]),
    max_window=st.sampled_from([None, 1, 59, 60, 61, 3600]),
    dialect=st.sampled_from(["auto", "auto", "upvest-v6", "rfc9421"]),
    signature_encoding=st.sampled_from(["auto", "auto", "der", "raw"]),
    key_types=mostly(frozenset({"P-521"}), frozenset({"P-256"}), frozenset({"P-521", "Ed25519"})),
    max_body_size=mostly(4 * 1024 * 1024, 1, 14, 15),
    max_header_bytes=mostly(16 * 1024, 200),
    max_labels=mostly(64, 1),
    max_signatures=mostly(4, 1),
    max_components=mostly(32, 1, 2, 6, 7),
    max_covered_bytes=mostly(16 * 1024, 40, 120, 160, 200, 260),
    max_field_lines=mostly(16, 1),
    max_verifications=mostly(4, 1, 2),
)
# Offsets around every boundary of skew, max_age and max_window above.
TIME_OFFSETS = st.sampled_from(
    [0] * 15 + [-3601, -301, -300, -299, -61, -60, -59, -2, -1, 1, 2, 59, 60, 61]
)
WINDOWS = st.sampled_from([None] * 4 + [30] * 6 + [-1, 0, 1, 59, 60, 61, 300, 3600, 3601])
SHAPES = st.sampled_from(["list", "tuple", "dict", "bytes", "mapping", "upper"])


def shaped(headers: list[tuple[str, str]], shape: str) -> object:
    """The header pairs in one of the shapes callers and adapters pass."""
    if shape == "tuple":
        return tuple(headers)
    if shape == "dict":
        return dict(headers)
    if shape == "bytes":
        return [(k.encode(), v.encode()) for k, v in headers]
    if shape == "mapping":
        return MultiMapping(headers)
    if shape == "upper":
        return [(k.title(), v) for k, v in headers]
    return list(headers)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=POLICIES,
    created=TIME_OFFSETS,
    window=WINDOWS,
    with_created=mostly(True, False),
    with_nonce=mostly(True, False),
    label=mostly("sig1", "sig2"),
    dialect=st.sampled_from(["upvest-v6", "rfc9421"]),
    encoding=st.sampled_from(["der", "raw"]),
    query=st.booleans(),
    body=st.sampled_from([b"", b'{"payload":[]}']),
    shape=SHAPES,
    now_fraction=st.sampled_from([0.0, 0.25, 0.75]),
    digest=mostly(None, "digest", "content-digest"),
)
def test_fast_and_strict_paths_agree_on_every_policy(
    policy: Policy,
    created: int,
    window: int | None,
    with_created: bool,
    with_nonce: bool,
    label: str,
    dialect: str,
    encoding: str,
    query: bool,
    body: bytes,
    shape: str,
    now_fraction: float,
    digest: str | None,
) -> None:
    """Any policy, created/expires around every boundary, any header shape: same verdict."""
    signed_at = REFERENCE_NOW + created
    s = sign_webhook(
        body,
        key=KEY,
        url="https://receiver.example/webhooks/upvest" + ("?a=1" if query else ""),
        created=signed_at,
        expires=None if window is None else signed_at + window,
        ttl=None,
        with_nonce=with_nonce,
        label=label,
        dialect=dialect,  # type: ignore[arg-type]
        encoding=encoding,  # type: ignore[arg-type]
        digest=digest,  # type: ignore[arg-type]
    )
    headers = list(s.headers)
    if not with_created:
        # Drop created from Signature-Input: the signature no longer verifies, but every
        # rule before the ECDSA check (require_created, the window) must still agree.
        headers = [
            (k, v.replace(f";created={signed_at}", "") if k == "signature-input" else v)
            for k, v in headers
        ]
    now = REFERENCE_NOW + now_fraction
    results = []
    for fast in (True, False):
        fast_module.ENABLED = fast
        try:
            result = verify(
                s.method, s.url, shaped(headers, shape), s.body, keys=KEYS, now=now, policy=policy
            )  # type: ignore[arg-type]
            results.append(str(result.dialect))
        except VerificationError as e:
            results.append(e.reason.value)
        finally:
            fast_module.ENABLED = True
    event(results[0])
    assert results[0] == results[1]


# The fast path skips check_params for parameters its usual-order regex matches: that is
# sound only if the rule accepts every text the regex admits, under every policy.


@settings(max_examples=1000, deadline=None)
@given(text=st.from_regex(fast_module._UPVEST_PARAMS, fullmatch=True), policy=POLICIES)
def test_the_usual_parameters_regex_admits_only_what_check_params_accepts(
    text: str, policy: Policy
) -> None:
    """What the regex captures is what the strict parser reads, and the rule accepts it."""
    match = fast_module._UPVEST_PARAMS.fullmatch(text)
    assert match is not None
    keyid, created, expires, nonce = match.groups()
    inner_list, params = _sfv.parse_dictionary("sig1=()" + text, allow_duplicates=False)["sig1"]
    assert inner_list == []
    assert dict(params) == {
        "keyid": keyid,
        "created": int(created),
        "expires": int(expires),
        "nonce": nonce,
    }
    check_params(params, policy)  # raises VerificationError if the rule refuses it


@pytest.mark.parametrize(
    ("keyid", "admitted"),
    [("", False), ("k", True), ("k" * MAX_KEYID, True), ("k" * (MAX_KEYID + 1), False)],
)
def test_the_usual_parameters_regex_bounds_keyid_as_check_params_does(
    keyid: str, admitted: bool
) -> None:
    """The regex's keyid length is the rule's: 1 to MAX_KEYID characters."""
    text = f';keyid="{keyid}";created=1;expires=2;nonce="n"'
    assert (fast_module._UPVEST_PARAMS.fullmatch(text) is not None) is admitted
    params = _sfv.parse_dictionary("sig1=()" + text)["sig1"][1]
    try:
        check_params(params, Policy())
    except VerificationError:
        accepted = False
    else:
        accepted = True
    assert accepted is admitted


@pytest.mark.parametrize("where", ["signature-input", "signature", "content-digest"])
def test_bytes_fields_with_non_ascii_are_refused_like_the_strict_path(where: str) -> None:
    """A Latin-1 byte in a covered ASGI field line is decoded, then refused, on both paths."""
    s = sign_webhook(b"{}", key=KEY, created=REFERENCE_NOW, dialect="rfc9421")
    headers = [
        (k.encode(), v.encode() + (b"\xe9" if k.lower() == where else b"")) for k, v in s.headers
    ]
    outcomes = []
    for enabled in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fast_module, "ENABLED", enabled)
            with pytest.raises(VerificationError) as caught:
                verify(s.method, s.url, headers, s.body, keys=KEYS, now=REFERENCE_NOW)
            outcomes.append(caught.value.reason)
    assert outcomes[0] == outcomes[1]
