"""Fuzz target: ``verify()`` on mutated, correctly signed webhooks.

The seeds are webhooks that verify: nine signed here with a fixed P-521 key and
deterministic ECDSA (both dialects, DER and raw r||s, with a query, with extra,
repeated and uncovered headers, two signatures, an origin-form URL, an empty
body, derived components), the accepted cases of
``tests/vectors/p521_generated.json`` and RFC 9421 B.2.6 (Ed25519, under a policy
that admits it). Everything is fixed, so an input means the same in every run.

Input layout (read with :class:`_harness.ByteReader`): the seed, how the headers
are passed (list, bytes pairs, dict, tuple, generator, mixed, a multi-valued
mapping), a policy variant, an offset to ``now``, options (body as
bytes/bytearray/memoryview, compare the fast and the strict path), then up to 16
mutations, each choosing a part of the request (method, URL, a header name or
value, the body, adding, removing, duplicating, moving or swapping header lines,
splicing a line from another seed) and a byte-level or dictionary edit of it.

Properties:

1. ``verify()`` raises nothing but :class:`VerificationError`;
2. it swallowed no unexpected exception (its ``logger.exception`` path is spied);
3. a message that is accepted has exactly the covered content of a seed: the
   same ``@signature-params`` (the strict serialisation of the accepted label's
   member), the same value for every covered component, and the same body
   whenever the body is covered (a digest field is covered, or the policy
   requires one). A mutation of anything outside that (an uncovered header, the
   label, whitespace the RFC trims) may be accepted. The component values are
   recomputed here from the message as RFC 9421 §2 defines them, independently
   of the library's code for them, and compared up to two equivalences the
   library deliberately tolerates (``_tolerance``), both meaning-preserving:
   whitespace around the commas of a field value (RFC 9110 §5.6.1, a server that
   joined repeated lines with ``","``) and percent-encoded unreserved characters
   in the path and query (RFC 3986 §6.2.2.2, draft-06 signed them decoded);
4. when the input asks for it, the fast path (``_fast``) and the strict path give
   the same verdict: the same reason, or equal results.

Run: ``python fuzz/fuzz_verify.py -atheris_runs=1000000`` (README.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import _harness
from cryptography.hazmat.primitives.asymmetric import ec

with _harness.instrumented(__name__ == "__main__"):
    from upvest_verify import (
        KeySet,
        Policy,
        VerificationError,
        VerifiedWebhook,
        _fast,
        _sfv,
        verify,
    )
    from upvest_verify.signing import sign_request
    from upvest_verify.testing import SigningKey, sign_webhook

REFERENCE_NOW = 1_700_000_000
KID = "fuzz-p521"
MAX_OPS = 16


def _fixed_key(kid: str, seed: bytes) -> SigningKey:
    # A fixed scalar: the same key, and with RFC 6979 the same signatures, every run.
    scalar = int.from_bytes(hashlib.sha512(seed).digest(), "big") >> 3
    return SigningKey(
        kid=kid, key_type="P-521", private_key=ec.derive_private_key(scalar, ec.SECP521R1())
    )


KEY = _fixed_key(KID, b"upvest-verify fuzz key")
OTHER_KEY = _fixed_key("fuzz-unknown", b"upvest-verify fuzz key, not in the key set")
_P521 = _harness.p521_vectors()
KEYS = KeySet.from_jwks({"keys": [KEY.public_jwk, _P521["key"]]})
DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Seed:
    """A correctly signed request and what verifies it."""

    name: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keys: KeySet = field(default_factory=lambda: KEYS)
    now: int = REFERENCE_NOW
    policy: Policy = DEFAULT_POLICY
    variants: bool = True  # may the policy be replaced by one of POLICY_VARIANTS


BODY = (
    b'{"payload":[{"id":"8962b496-0000-4000-8000-000000000000","created_at":'
    b'"2023-11-14T22:13:20.000000Z","type":"ORDER.FILLED","object":{"id":'
    b'"0c0ffee0-0000-4000-8000-000000000000","status":"FILLED"},"webhook_id":'
    b'"9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b"}]}'
)
URL = "https://receiver.example/webhooks/upvest"


def _signed(name: str, body: bytes = BODY, **kwargs: Any) -> Seed:
    kwargs.setdefault("created", REFERENCE_NOW)
    kwargs.setdefault("nonce", "fuzz-nonce")
    s = sign_webhook(body, key=kwargs.pop("key", KEY), deterministic=True, **kwargs)
    return Seed(name, s.method, s.url, tuple(s.headers), s.body)


def _generated_seeds() -> list[Seed]:
    seeds = [
        _signed("upvest-v6/der", dialect="upvest-v6"),
        _signed(
            "upvest-v6/raw/query/extra-headers",
            url=URL + "?page=2&sort=asc",
            dialect="upvest-v6",
            encoding="raw",
            headers=[("x-request-id", "r-1"), ("accept", "*/*")],
            version_header=True,
        ),
        _signed(
            "rfc9421/der/query/repeated-covered-header",
            url=URL + "?a=1&b=2",
            dialect="rfc9421",
            headers=[("x-hook", "one"), ("X-Hook", " two ")],
            components=[
                "@method",
                "@path",
                "@query",
                "content-type",
                "content-length",
                "content-digest",
                "date",
                "x-hook",
            ],
        ),
        _signed(
            "rfc9421/raw/derived-components",
            url="https://Hooks.Example:443/hooks/upvest?a=1&b=%20x&c=d%2Fe",
            dialect="rfc9421",
            encoding="raw",
            components=[
                "@method",
                "@target-uri",
                "@authority",
                "@scheme",
                "@request-target",
                "@path",
                "@query",
                '@query-param;name="a"',
                "content-type",
                "content-digest;sf",
            ],
        ),
        _signed(
            "rfc9421/der/both-digests/order/label",
            dialect="rfc9421",
            digest="both",
            label="upvest",
            params_order=("created", "nonce", "keyid", "expires"),
        ),
        _signed("rfc9421/empty-body", b"", dialect="rfc9421", ttl=None, with_nonce=False),
        _signed(
            "upvest-v6/put/repeated-uncovered-header",
            method="PUT",
            dialect="upvest-v6",
            headers=[("x-trace", "a"), ("x-trace", "b")],
        ),
    ]
    # Two signatures: one by a key the receiver does not know, one valid (R16).
    valid = _signed("two-signatures", dialect="rfc9421")
    unknown = _signed("unknown", dialect="rfc9421", key=OTHER_KEY, label="sig2")
    extra = tuple(h for h in unknown.headers if h[0] in ("signature-input", "signature"))
    seeds.append(Seed("two-signatures", valid.method, valid.url, extra + valid.headers, BODY))
    # Origin-form URL: @authority comes from the Host field.
    s = sign_request(
        "POST",
        "/webhooks/upvest?x=1",
        [("host", "hooks.example"), ("content-type", "application/json")],
        BODY,
        key=KEY,
        components=["@method", "@authority", "@path", "@query", "content-type"],
        created=REFERENCE_NOW,
        nonce="fuzz-nonce",
        deterministic=True,
    )
    seeds.append(Seed("origin-form", s.method, s.url, tuple(s.headers), s.body))
    return seeds


def _vector_seeds() -> list[Seed]:
    seeds = [
        Seed(
            f"p521_generated/{case['name']}",
            case["method"],
            case["url"],
            tuple((n, v) for n, v in case["headers"]),
            case["body"].encode(),
            now=int(_P521["reference_now"]),
        )
        for case in _P521["cases"]
        if case["verdict"] == "accept"
    ]
    for vector in _harness.http_vectors():
        if vector["key"].get("crv") != "Ed25519" or vector["message_type"] != "request":
            continue
        headers = [(n, v) for n, v in vector["headers"]]
        headers += [
            ("Signature-Input", vector["signature_input_header"]),
            ("Signature", vector["signature_header"]),
        ]
        seeds.append(
            Seed(
                vector["source_url"].rpartition("#")[2],
                vector["method"],
                vector["url"],
                tuple(headers),
                vector["body"].encode(),
                keys=KeySet.from_jwks({"keys": [vector["key"]]}, key_types=("Ed25519",)),
                now=int(vector["signature_params"]["created"]),
                policy=Policy(
                    key_types=frozenset({"Ed25519"}),
                    require_digest=False,
                    require_query=False,
                ),
                variants=False,
            )
        )
    return seeds


SEEDS: list[Seed] = _generated_seeds() + _vector_seeds()

POLICY_VARIANTS: tuple[Policy, ...] = (
    DEFAULT_POLICY,
    Policy(dialect="rfc9421"),
    Policy(dialect="upvest-v6"),
    Policy(signature_encoding="der"),
    Policy(signature_encoding="raw"),
    Policy(labels=("sig1",), require_nonce=True),
    Policy(max_signatures=1, max_labels=1),
    Policy(required_components=("@method", "@path", "content-type"), max_window=None),
)
NOW_OFFSETS = (0, 0, 0, 0, 59, 61, -59, -61, 299, 301, 3599, 3601)
HEADER_NAMES = (
    "signature-input",
    "signature",
    "Signature-Input",
    "SIGNATURE",
    "content-digest",
    "digest",
    "content-type",
    "content-length",
    "date",
    "host",
    "x-hook",
    "upvest-signature-version",
    "@method",
    "content-digest ",
    "",
)


# ---------------------------------------------------------------------------
# The covered content of a message, computed here from RFC 9421 §2
# ---------------------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    # Host names, schemes and field names are case-insensitive in ASCII only
    # (RFC 3986 §3.1, §3.2.2; RFC 9110 §5.1): str.lower() would also turn KELVIN
    # SIGN U+212A into "k".
    return text.translate(_ASCII_LOWER)


def _trim_host(value: str) -> str:
    # RFC 9110 §5.5: a field value has no leading or trailing OWS (SP / HTAB); an
    # obs-fold is one SP (RFC 9112 §5.2). Not str.strip(): VT, NEL or NBSP are no OWS.
    return _OBS_FOLD.sub(" ", value).strip(" \t")


# RFC 9112 §5.2 obs-fold: a line break then SP/HTAB; RFC 9421 §2.1 turns it into one
# SP. The line break may be a bare LF (RFC 9112 §2.2 lets a recipient accept one).
_OBS_FOLD = re.compile(r"\r?\n[ \t]+")
_DEFAULT_PORT = {"http": ":80", "https": ":443"}
# RFC 9421 §2.1.1: ";sf" needs the field's structured type.
_SF_KINDS = {
    "content-digest": "dictionary",
    "signature": "dictionary",
    "signature-input": "dictionary",
}
_ABSENT = ("absent",)


def _field_value(lines: list[str]) -> str:
    # RFC 9421 §2.1: each line without leading/trailing OWS, obs-fold as SP, joined ", ".
    return ", ".join(_OBS_FOLD.sub(" ", line).strip(" \t") for line in lines)


# A quoted string (with backslash escapes), or a comma with the OWS around it.
_QUOTED_OR_COMMA = re.compile(r'"(?:[^"\\]|\\.)*"?|[ \t]*,[ \t]*')


def _list_form(value: str) -> str:
    """``value`` with no whitespace around the commas outside quoted strings.

    RFC 9110 §5.6.1: in a comma-separated list that whitespace carries no meaning,
    so two values equal in this form have the same content.
    """
    return _QUOTED_OR_COMMA.sub(lambda m: m.group() if m.group()[0] == '"' else ",", value)


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _uri_form(text: str | None) -> str | None:
    """``text`` with escapes of unreserved characters decoded (RFC 3986 §6.2.2.2)."""
    if text is None or "%" not in text:
        return text

    def decode(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else m.group()

    return _ESCAPE.sub(decode, text)


def _split_url(url: str) -> tuple[str | None, str | None, str, str | None]:
    # RFC 3986 §3: scheme "://" authority path-abempty ["?" query] ["#" fragment].
    scheme = authority = None
    rest = url
    if not url.startswith("/"):
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme:
            return None, None, "", None
        scheme = _ascii_lower(scheme)
        m = re.match(r"[^/?#]*", rest)
        assert m is not None
        # RFC 9110 §4.2.3: the host is case-insensitive and a default port is omitted.
        authority = _ascii_lower(m.group().rpartition("@")[2])
        rest = rest[m.end() :]
        port = _DEFAULT_PORT.get(scheme)
        if port and authority.endswith(port):
            authority = authority[: -len(port)]
    rest = rest.partition("#")[0]
    path, question, query = rest.partition("?")
    return scheme, authority, path or "/", query if question else None


def _component_value(
    name: str, params: dict[str, object], method: str, url: str, fields: dict[str, list[str]]
) -> object:
    if "req" in params or "tr" in params:
        return _ABSENT
    if name.startswith("@"):
        scheme, authority, raw_path, raw_query = _split_url(url)
        path, query = _uri_form(raw_path) or "/", _uri_form(raw_query)
        if authority is None and scheme is None:
            hosts = fields.get("host", [])
            authority = _ascii_lower(_trim_host(hosts[0])) if len(hosts) == 1 else None
        target = None if query is None else f"{path}?{query}"
        derived = {
            "@method": method,
            "@path": path,
            "@query": "?" + (query or ""),
            "@request-target": target or path,
            "@authority": authority,
            "@scheme": scheme,
            "@target-uri": (
                f"{scheme}://{authority}{target or path}" if scheme and authority else None
            ),
            # RFC 9421 §2.2.8 re-encodes each parameter; the raw query is a stricter
            # stand-in (every seed covering it covers @query too).
            "@query-param": ("query-param", params.get("name"), query),
        }
        return derived.get(name, _ABSENT)
    lines = fields.get(name)
    if lines is None:
        return _ABSENT
    if "bs" in params:
        try:
            wrapped = [
                ":"
                + base64.b64encode(_OBS_FOLD.sub(" ", v).strip(" \t").encode("latin-1")).decode()
                + ":"
                for v in lines
            ]
        except UnicodeEncodeError:
            return _ABSENT
        return ", ".join(wrapped)
    value = _field_value(lines)
    if not params:
        return _list_form(value)
    try:
        if "key" in params:
            member = _sfv.parse_dictionary(value)[params["key"]]  # type: ignore[index]
            if _sfv.is_inner_list(member):
                return _sfv.serialize_inner_list(*member)
            return _sfv.serialize_item(member)
        if "sf" in params:
            if _SF_KINDS.get(name) != "dictionary":
                return _ABSENT
            return _sfv.serialize_dictionary(_sfv.parse_dictionary(value))
    except (KeyError, _sfv.SFError):
        return _ABSENT
    return value


def covered_content(
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    label: str,
    policy: Policy,
) -> tuple[object, ...]:
    """What the signature with ``label`` covers in this message (see property 3)."""
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(_ascii_lower(name), []).append(value)
    inputs = _sfv.parse_dictionary(
        ", ".join(v.strip(" \t") for v in fields.get("signature-input", [])),
        allow_duplicates=False,
    )
    items, params = inputs[label]
    assert isinstance(items, list)
    signature_params = _sfv.serialize_inner_list(items, params)
    values = tuple(
        _component_value(name, item_params, method, url, fields)  # type: ignore[arg-type]
        for name, item_params in items
    )
    names = {name for name, _ in items}
    body_covered = policy.require_digest or not names.isdisjoint({"content-digest", "digest"})
    return (signature_params, values, bytes(body) if body_covered else None)


# ---------------------------------------------------------------------------
# Mutation and header shapes
# ---------------------------------------------------------------------------


@dataclass
class Request:
    """The request being mutated; header names and values as ISO-8859-1 text."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    log: list[str] = field(default_factory=list)


def mutate(req: Request, r: _harness.ByteReader) -> None:
    """Apply one mutation chosen by ``r`` to ``req``."""
    mutate_text = _harness.mutate_text
    h = req.headers
    values = tuple(v for _, v in h)
    op = r.below(12)
    i = r.below(len(h)) if h else 0
    if op == 0:
        req.method = mutate_text(req.method, r)
        req.log.append("method")
    elif op == 1:
        req.url = mutate_text(req.url, r, (req.url, *(s.url for s in SEEDS)))
        req.log.append("url")
    elif op == 2 and h:
        h[i] = (h[i][0], mutate_text(h[i][1], r, values))
        req.log.append(f"value of {h[i][0]!r}")
    elif op == 3 and h:
        h[i] = (mutate_text(h[i][0], r, tuple(HEADER_NAMES)), h[i][1])
        req.log.append(f"name {h[i][0]!r}")
    elif op == 4:
        body = mutate_text(req.body.decode("latin-1"), r, values)
        req.body = _harness.as_bytes(body)
        req.log.append("body")
    elif op == 5:
        name = r.pick(HEADER_NAMES)
        value = r.pick(values or ("",)) if r.byte() & 1 else r.pick(_harness.TOKENS)
        h.insert(r.below(len(h) + 1), (name, value))
        req.log.append(f"add {name!r}")
    elif op == 6 and h:
        req.log.append(f"remove {h.pop(i)[0]!r}")
    elif op == 7 and h:
        h.insert(r.below(len(h) + 1), h[i])
        req.log.append(f"duplicate {h[i][0]!r}")
    elif op == 8 and h:
        line = h.pop(i)
        h.insert(r.below(len(h) + 1), line)
        req.log.append(f"move {line[0]!r}")
    elif op == 9:
        donor = r.pick(SEEDS).headers
        line = donor[r.below(len(donor))]
        same = [k for k, (n, _) in enumerate(h) if n.lower() == line[0].lower()]
        if same and r.byte() & 1:
            h[same[0]] = line
        else:
            h.insert(r.below(len(h) + 1), line)
        req.log.append(f"splice {line[0]!r}")
    elif op == 10 and len(h) > 1:
        j = r.below(len(h))
        h[i], h[j] = (h[i][0], h[j][1]), (h[j][0], h[i][1])
        req.log.append(f"swap values of {h[i][0]!r} and {h[j][0]!r}")
    elif op == 11 and len(h) > 1:
        j = r.below(len(h))
        h[i] = (h[j][0], h[i][1])
        req.log.append(f"rename to {h[j][0]!r}")


class MultiHeaders(Mapping[str, str]):
    """A mapping whose ``items()`` yields every field line, like Starlette's Headers."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def __getitem__(self, key: str) -> str:
        for name, value in self._pairs:
            if name.lower() == key.lower():
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._pairs))

    def __len__(self) -> int:
        return len(dict.fromkeys(name for name, _ in self._pairs))

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every line, repeated names included."""
        return list(self._pairs)


def _b(text: str) -> bytes:
    return _harness.as_bytes(text)


SHAPES: tuple[Callable[[list[tuple[str, str]]], object], ...] = (
    list,
    lambda h: [(_b(n), _b(v)) for n, v in h],
    lambda h: dict(h) if len({n for n, _ in h}) == len(h) else list(h),
    tuple,
    iter,
    lambda h: [(_b(n), v) if k % 2 else (n, _b(v)) for k, (n, v) in enumerate(h)],
    MultiHeaders,
)
# Which shapes turn a value into bytes (the library then reads it as ISO-8859-1).
_BYTES_NAMES = (False, True, False, False, False, None, False)
BODY_TYPES: tuple[Callable[[bytes], object], ...] = (bytes, bytearray, memoryview, bytes)


def seen_headers(shape: int, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header pairs as the library reads them after ``SHAPES[shape]``."""

    def wire(text: str) -> str:
        return _b(text).decode("latin-1")

    if _BYTES_NAMES[shape] is True:
        return [(wire(n), wire(v)) for n, v in headers]
    if _BYTES_NAMES[shape] is None:
        return [(wire(n), v) if k % 2 else (n, wire(v)) for k, (n, v) in enumerate(headers)]
    return list(headers)


# ---------------------------------------------------------------------------
# The target
# ---------------------------------------------------------------------------


@dataclass
class Case:
    """A decoded input: the seed, the mutated request and how to call ``verify()``."""

    seed: Seed
    request: Request
    shape: int
    policy: Policy
    now: int
    body_type: int
    compare_paths: bool


def decode(data: bytes) -> Case:
    """Turn an input into a :class:`Case` (deterministic)."""
    r = _harness.ByteReader(data)
    seed = SEEDS[r.below(len(SEEDS))]
    shape = r.below(len(SHAPES))
    variant = r.below(len(POLICY_VARIANTS))
    now = seed.now + NOW_OFFSETS[r.below(len(NOW_OFFSETS))]
    options = r.byte()
    policy = POLICY_VARIANTS[variant] if seed.variants else seed.policy
    req = Request(seed.method, seed.url, list(seed.headers), seed.body)
    for _ in range(MAX_OPS):
        if not r.remaining():
            break
        mutate(req, r)
    return Case(seed, req, shape, policy, now, (options >> 1) % len(BODY_TYPES), bool(options & 1))


def run(case: Case) -> VerifiedWebhook | VerificationError:
    """Call ``verify()`` once; return its result or its VerificationError."""
    req = case.request
    headers = SHAPES[case.shape](list(req.headers))
    body = BODY_TYPES[case.body_type](req.body)
    with _harness.no_swallowed_errors():
        try:
            return verify(
                req.method,
                req.url,
                headers,  # type: ignore[arg-type]
                body,  # type: ignore[arg-type]
                keys=case.seed.keys,
                now=case.now,
                policy=case.policy,
            )
        except VerificationError as e:
            return e


def _verdict(outcome: VerifiedWebhook | VerificationError) -> object:
    return outcome.reason if isinstance(outcome, VerificationError) else outcome


def check_accepted(case: Case, result: VerifiedWebhook) -> None:
    """Property 3: an accepted message carries the covered content of a seed."""
    req = case.request
    seen = seen_headers(case.shape, req.headers)
    try:
        content = covered_content(req.method, req.url, seen, req.body, result.label, case.policy)
    except (KeyError, _sfv.SFError) as e:
        raise _harness.Finding(
            f"accepted, but its Signature-Input does not hold {result.label!r}"
        ) from e
    if content not in SEED_CONTENT:
        raise _harness.Finding(
            f"a mutated message was accepted (seed {case.seed.name!r}, mutations {req.log}):"
            f" {content!r}"
        )


def test_one_input(data: bytes) -> None:
    """The fuzz target (see the module docstring)."""
    case = decode(data)
    outcome = run(case)
    if case.compare_paths:
        _fast.ENABLED = False
        try:
            strict = run(case)
        finally:
            _fast.ENABLED = True
        if _verdict(outcome) != _verdict(strict):
            raise _harness.Finding(
                f"fast path says {_verdict(outcome)!r}, strict path {_verdict(strict)!r}"
                f" (seed {case.seed.name!r}, mutations {case.request.log})"
            )
    if isinstance(outcome, VerifiedWebhook):
        check_accepted(case, outcome)


def _seed_content() -> frozenset[tuple[object, ...]]:
    content = set()
    for seed in SEEDS:
        headers = list(seed.headers)
        try:
            result = verify(
                seed.method,
                seed.url,
                headers,
                seed.body,
                keys=seed.keys,
                now=seed.now,
                policy=seed.policy,
            )
        except VerificationError as e:
            raise RuntimeError(f"seed {seed.name!r} does not verify: {e}") from e
        content.add(
            covered_content(seed.method, seed.url, headers, seed.body, result.label, seed.policy)
        )
    return frozenset(content)


# Every seed must verify: a failure here means the harness or the library is broken.
SEED_CONTENT = _seed_content()


def seeds() -> Iterator[bytes]:
    """Each seed unmutated, under every header shape, and with a few policies and clocks."""
    for index in range(len(SEEDS)):
        for shape in range(len(SHAPES)):
            yield bytes([index, shape, 0, 0, 1])
        for variant in range(1, len(POLICY_VARIANTS)):
            yield bytes([index, 0, variant, 0, 1])
        for offset in range(4, len(NOW_OFFSETS)):
            yield bytes([index, 0, 0, offset, 0])


def describe(data: bytes) -> str:
    """The seed, the mutations, the request passed to ``verify()`` and the verdict."""
    case = decode(data)
    req = case.request
    lines = [
        f"seed={case.seed.name!r} shape={case.shape} body_type={case.body_type}"
        f" compare_paths={case.compare_paths} now={case.now}",
        f"policy={case.policy!r}",
        f"mutations={req.log}",
        f"method={req.method!r}",
        f"url={req.url!r}",
        "headers=[",
        *(f"    ({n!r}, {v!r})," for n, v in req.headers),
        "]",
        f"body={req.body!r}",
    ]
    try:
        outcome = run(case)
    except Exception as e:  # shown, not handled
        outcome = e  # type: ignore[assignment]
    lines.append(f"verdict={outcome!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    _harness.main("verify", test_one_input, seeds, describe)
