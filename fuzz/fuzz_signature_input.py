"""Fuzz target: parsing ``Signature-Input`` and ``Signature`` into signatures.

Input layout: the first byte holds options, the rest is ISO-8859-1 text cut into
lines at LF:

* line 1 is the ``Signature-Input`` value, line 2 the ``Signature`` value (a
  missing line means a missing field);
* every further line ``name:value`` is one more header field line (so a
  signature field can be repeated);
* the pseudo-lines ``:method X``, ``:url X`` and ``:body X`` replace the defaults
  (``POST``, the RFC 9421 test URL with a query, an empty body).

Option bits: 0-1 choose the policy (default, tight caps, fixed label with a nonce,
RFC 9421 dialect with raw signatures), 2 passes header names and values as bytes.

What runs: ``normalise_fields``, ``request_message``, ``parse_signatures``, then
``parse_signature_input`` for every label, the component values and the signature
base of both layouts; also the fast path ``_fast.fast_verify`` and the strict
``verify_message`` (with the P-521 key of ``tests/vectors/p521_generated.json``).

Properties: only :class:`VerificationError` is raised, and for every signature
that parses,

* ``@signature-params`` is the strict serialisation of the received member and
  parses back to itself (RFC 9421 §2.3);
* no component is listed twice and the policy's caps hold;
* the signature base is printable ASCII (plus HTAB) with exactly one line per
  component value plus the ``@signature-params`` line, which ends the base:
  a covered value can never inject a base line (RFC 9421 §2.5).

Run: ``python fuzz/fuzz_signature_input.py -atheris_runs=1000000`` (README.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import _harness

with _harness.instrumented(__name__ == "__main__"):
    from upvest_verify import KeySet, Policy, VerificationError, _fast, _sfv
    from upvest_verify._base import LAYOUTS
    from upvest_verify._components import component_value
    from upvest_verify._message import normalise_fields, request_message
    from upvest_verify._rules import DEFAULT_LAYOUTS
    from upvest_verify._verify import (
        parse_signature_input,
        parse_signatures,
        signature_base,
        verify_message,
    )

DEFAULT_METHOD = "POST"
DEFAULT_URL = "https://example.com/foo?param=Value&Pet=dog"
POLICIES = (
    Policy(),
    Policy(max_labels=2, max_components=4, max_header_bytes=600, max_signatures=1),
    Policy(labels=("sig1",), require_nonce=True, max_window=None),
    Policy(dialect="rfc9421", signature_encoding="raw", required_components=()),
)
_P521 = _harness.p521_vectors()
KEYS = KeySet.from_jwks({"keys": [_P521["key"]]})
NOW = int(_P521["reference_now"])
_BASE_ALLOWED = frozenset(b"\t\n" + bytes(range(0x20, 0x7F)))


def decode(data: bytes) -> tuple[Policy, str, str, list[tuple[str, str]], bytes, bool]:
    """Turn an input into ``(policy, method, url, header pairs, body, as_bytes)``."""
    head = data[0] if data else 0
    lines = data[1:].decode("latin-1").split("\n")
    method, url, body = DEFAULT_METHOD, DEFAULT_URL, b""
    pairs: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if i == 0 and data[1:]:
            pairs.append(("signature-input", line))
        elif i == 1:
            pairs.append(("signature", line))
        elif line.startswith(":method "):
            method = line[8:]
        elif line.startswith(":url "):
            url = line[5:]
        elif line.startswith(":body "):
            body = line[6:].encode("latin-1")
        elif i > 1:
            name, _, value = line.partition(":")
            pairs.append((name, value))
    return POLICIES[head & 3], method, url, pairs, body, bool(head & 4)


def check_signature(message: object, label: str, member: _sfv.Member, policy: Policy) -> None:
    """The properties of one label that parsed (see the module docstring)."""
    try:
        sig = parse_signature_input(message, label, policy)  # type: ignore[arg-type]
    except VerificationError:
        return
    if sig.label != label or type(sig.signature) is not bytes:
        raise _harness.Finding(f"signature {label!r} parsed as {sig!r}")
    expected = _sfv.serialize_inner_list(*member)
    if sig.signature_params != expected:
        raise _harness.Finding(f"@signature-params {sig.signature_params!r} != {expected!r}")
    try:
        again = _sfv.parse_list(sig.signature_params, allow_duplicates=False)
    except _sfv.SFError as e:
        raise _harness.Finding(f"@signature-params {sig.signature_params!r} does not parse") from e
    if len(again) != 1 or _sfv.serialize_list(again) != sig.signature_params:
        raise _harness.Finding(f"@signature-params {sig.signature_params!r} is not canonical")
    quoted = [c.quoted for c in sig.components]
    if len(set(quoted)) != len(quoted):
        raise _harness.Finding(f"component listed twice was accepted: {quoted}")
    if len(quoted) > policy.max_components:
        raise _harness.Finding(f"{len(quoted)} components exceed the cap")
    try:
        values = [component_value(message, c) for c in sig.components]  # type: ignore[arg-type]
    except VerificationError:
        return
    for layout in LAYOUTS:
        base = signature_base(message, sig, layout, values)  # type: ignore[arg-type]
        if not _BASE_ALLOWED.issuperset(base):
            raise _harness.Finding(f"base holds a character outside VCHAR/SP/HTAB: {base!r}")
        lines = base.split(b"\n")
        if len(lines) != sum(map(len, values)) + 1:
            raise _harness.Finding(f"a component value added or hid a base line: {base!r}")
        if not lines[-1].endswith(b": " + sig.signature_params.encode("ascii")):
            raise _harness.Finding(f"base does not end with @signature-params: {base!r}")


def test_one_input(data: bytes) -> None:
    """The fuzz target (see the module docstring)."""
    policy, method, url, pairs, body, raw = decode(data)
    headers: list[tuple[str, str]] | list[tuple[bytes, bytes]] = pairs
    if raw:
        headers = [(_harness.as_bytes(n), _harness.as_bytes(v)) for n, v in pairs]
    # Whether a message may be accepted is fuzz_verify.py's question; here only
    # the exceptions matter.
    with contextlib.suppress(VerificationError):
        _fast.fast_verify(method, url, headers, body, KEYS, NOW, policy, DEFAULT_LAYOUTS)
    try:
        message = request_message(method, url, normalise_fields(headers))
    except VerificationError:
        return
    with contextlib.suppress(VerificationError):
        verify_message(message, body, keys=KEYS, now=NOW, policy=policy)
    try:
        inputs, signatures = parse_signatures(message, policy)
    except VerificationError:
        return
    if len(inputs) > policy.max_labels or len(signatures) > policy.max_labels:
        raise _harness.Finding("more labels than the policy allows")
    for label, member in inputs.items():
        check_signature(message, label, member, policy)


def _encode(
    si: str | None, sig: str | None, headers: list[tuple[str, str]], extra: list[str]
) -> bytes:
    lines = [si or "", sig or "", *extra, *(f"{n}:{v}" for n, v in headers)]
    return "\n".join(lines).encode("latin-1")


def _seed_messages() -> Iterator[bytes]:
    for vector in _harness.http_vectors():
        yield _encode(
            vector["signature_input_header"],
            vector["signature_header"],
            [(n, v) for n, v in vector["headers"]],
            [
                f":method {vector['method'] or 'POST'}",
                f":url {vector['url']}",
                f":body {vector['body']}",
            ],
        )
    for case in _harness.p521_vectors()["cases"]:
        fields = [(n, v) for n, v in case["headers"] if n not in ("signature-input", "signature")]
        found = dict(case["headers"])
        yield _encode(
            found.get("signature-input"),
            found.get("signature"),
            fields,
            [f":method {case['method']}", f":url {case['url']}", f":body {case['body']}"],
        )


SEED_MESSAGES = frozenset(_seed_messages())


def seeds() -> Iterator[bytes]:
    """The RFC 9421, draft-06 and P-521 vectors, under each policy and header type."""
    for message in sorted(SEED_MESSAGES):
        for options in range(8):
            yield bytes([options]) + message


def describe(data: bytes) -> str:
    """The policy, request line, header pairs and body an input stands for."""
    policy, method, url, pairs, body, raw = decode(data)
    lines = [f"policy={policy!r}", f"method={method!r} url={url!r} as_bytes={raw}"]
    lines += [f"  {name!r}: {value!r}" for name, value in pairs]
    lines.append(f"body={body!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    _harness.main("signature_input", test_one_input, seeds, describe)
