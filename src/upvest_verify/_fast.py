"""The fast path: a canonical single-signature webhook, straight from the raw inputs.

Upvest sends one signature whose ``Signature-Input`` is in canonical RFC 8941 form::

    sig1=("@method" "@path" ... "content-digest");keyid="...";created=...;expires=...;nonce="..."

For exactly that shape, with the header fields given as a list, tuple, dict or
mapping of ``str`` or ``bytes`` pairs, the strict machinery (field-line grouping, the
SF parser, ``Message``, ``SignatureInput``) can be skipped. The head, ``sig1=(...)``, is the
same on every request from a sender: it is validated once (a regex that admits
only plain component names and single spaces, then the strict component checks)
and compiled into a :class:`_Plan`, cached by its text, that says how to fetch
each value and holds the base's template for each layout (from :mod:`._base`).
Per request only the parameters are matched, by a regex that admits strings without escapes and
canonical integers, so the received text *is* the strict re-serialisation of
``@signature-params``.

:func:`fast_verify` returns ``None`` as soon as anything is outside that subset or
any check before the signature fails (a repeated header name, an odd component, a
non-canonical digest value, a time-window or policy failure...):
the strict path in :mod:`._verify` then decides, and it is the only source of
errors but one. The exception is ``bad_signature`` after every check passed and
every layout was tried: the strict path would reach the same verdict, so it is
raised here rather than paying for the ECDSA verifies twice.
tests/core/test_fast_path.py checks that both paths give the same verdicts.

This module recognises shapes; it decides nothing. Every acceptance rule (the
parameters, the time window, labels, coverage, the key, the layout order) is a
function of :mod:`._rules`, called here per request or, for what depends only on
the head and the policy, once per (plan, policy) in :func:`_bind`.

Measure before and after any change here (``benchmarks/bench_verify.py``): this
function is most of what the library costs beyond the cryptography.
"""

from __future__ import annotations

import re
import sys
from binascii import a2b_base64
from collections.abc import Mapping
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any, Literal

from . import _sfv
from ._base import LAYOUTS, base_template, identifiers
from ._components import request_derived_value
from ._crypto import decode_signature, verify_signature
from ._digest import content_digest, legacy_digest
from ._keyset import KeySet
from ._message import ascii_lower, normalise_fields, split_url
from ._policy import EncodingSetting, Policy
from ._result import DigestField, Layout, VerifiedWebhook, dialect_of, new_verified_webhook
from ._rules import (
    MAX_KEYID,
    Coverage,
    bad_signature,
    check_params,
    choose_layouts,
    coverage_error,
    coverage_of,
    covered_size_error,
    head_error,
    key_error,
    label_allowed,
    time_window_error,
)
from ._tolerance import any_comma_spaced
from .errors import VerificationError

__all__ = ["fast_verify"]

ENABLED = True  # tests switch it off to compare both paths

_COMPONENT = r'"[a-z0-9@!#$%&\'*+\-.^_`|~]+"'
_HEAD = re.compile(rf"([a-z*][a-z0-9_\-.*]*)=\(((?:{_COMPONENT}(?: {_COMPONENT})*)?)\)")
_HEAD_MAX = 2048  # longer heads are not cached; the strict path takes them
_TEXT = r'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'  # an sf-string without escapes
_INT = r"(0|[1-9][0-9]{0,14})"  # a canonical sf-integer >= 0
# The parameters in the order of Upvest's documentation, in one match. Every text
# it admits passes check_params under every policy (all four present, keyid of 1 to
# MAX_KEYID characters, the times non-negative ints), so that call is skipped for it;
# tests/core/test_fast_path.py proves this by property over the regex and policies.
# Any other order goes through _PARAMS, _PARAM and check_params.
_UPVEST_PARAMS = re.compile(
    rf';keyid="([\x20\x21\x23-\x5b\x5d-\x7e]{{1,{MAX_KEYID}}})";created={_INT};expires={_INT};nonce={_TEXT}'
)
_PARAMS = re.compile(
    rf';keyid="([\x20\x21\x23-\x5b\x5d-\x7e]{{1,256}})";created={_INT};expires={_INT};nonce={_TEXT}'
)
_PARAMS = re.compile(rf"(?:;(?:keyid|nonce|alg|tag)={_TEXT}|;(?:created|expires)={_INT})+")
_PARAM = re.compile(rf";([a-z]+)=(?:{_TEXT}|{_INT})")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

# Derived components the fast path computes (with request_derived_value); anything
# else (@query-param, @status, @target-uri as sent) takes the strict path.
_DERIVED = frozenset({"@method", "@path", "@query", "@request-target", "@authority", "@scheme"})
_METHOD_PATH = ("@method", "@path")


@dataclass(frozen=True, slots=True)
class _Binding:
    """What the rules say about one plan under one policy, worked out once.

    Attributes:
        policy: The policy (compared by identity).
        head_ok: The label may be tried and :func:`._rules.head_error` finds nothing.
        coverage_ok: :func:`._rules.coverage_error` finds nothing, indexed by
            ``2 * has_body + has_query``.
        signature_encoding: The policy's ``signature_encoding``.
    """

    policy: Policy
    head_ok: bool
    coverage_ok: tuple[bool, bool, bool, bool]
    signature_encoding: EncodingSetting


@dataclass(slots=True)
class _Plan:
    """A signature head (``label=(components)``) compiled for the fast path.

    Immutable but for ``bound``, a memo that a thread may replace at any time (the
    tuple it holds is never changed).

    The base is built with ``%`` from the derived values (in order), then the
    field values (in order), then ``@signature-params``.

    Attributes:
        label: The signature label.
        signature_prefix: What the ``Signature`` value starts with: ``label=:``.
        coverage: The validated components.
        derived: The derived components' names, in order.
        fields: The covered field names, in order.
        field_keys: The same names as ``bytes``, to read ASGI's lines by.
        latin1: ``"latin-1"`` once per field (the encoding ``str`` is mapped with).
        strip: ``" "`` once per field (the argument ``str.strip`` is mapped with).
        order: Which argument goes on each line, when that is not the order above.
        digest: Index in ``fields`` of the one covered digest field, or -1.
        legacy: That field is ``digest`` (RFC 3230), not ``content-digest``.
        templates: Per layout, the base as a ``%`` template.
        decodable: ``@path`` or ``@query`` is covered (draft-06 signed them decoded).
        params_from: Where ``@signature-params`` starts in ``Signature-Input``.
        bound: The binding to the last policy this plan was used with.
    """

    label: str
    signature_prefix: str
    coverage: Coverage
    derived: tuple[str, ...]
    fields: tuple[str, ...]
    field_keys: tuple[bytes, ...]
    latin1: tuple[str, ...]
    strip: tuple[str, ...]
    order: tuple[int, ...] | None
    digest: int
    legacy: bool
    templates: dict[Layout, str]
    decodable: bool
    params_from: int
    bound: _Binding | None = None


def _bind(plan: _Plan, policy: Policy) -> _Binding:
    coverage = plan.coverage
    bound = _Binding(
        policy=policy,
        head_ok=label_allowed(plan.label, policy) and head_error(coverage, policy) is None,
        coverage_ok=tuple(  # type: ignore[arg-type]  # four, by construction
            coverage_error(coverage, policy, has_body=body, has_query=query) is None
            for body in (False, True)
            for query in (False, True)
        ),
        signature_encoding=policy.signature_encoding,
    )
    plan.bound = bound
    return bound


def _compile(label: str, coverage: Coverage) -> _Plan | None:
    derived: list[str] = []
    fields: list[str] = []
    for comp in coverage.components:
        if comp.params:
            return None  # ;sf, ;key, ;bs, ;name...: the strict path
        if comp.is_derived:
            if comp.name not in _DERIVED:
                return None  # @query-param, @status: the strict path
            derived.append(comp.name)
        else:
            fields.append(comp.name)
    if len(coverage.digests) > 1:
        return None
    # Values arrive derived first, then fields; a list that interleaves them (rare:
    # Upvest lists @method, @path, @query first) needs them put in covered order.
    argument = []
    n_derived = n_fields = 0
    for comp in coverage.components:
        if comp.is_derived:
            argument.append(n_derived)
            n_derived += 1
        else:
            argument.append(len(derived) + n_fields)
            n_fields += 1
    templates = {
        layout: base_template(identifiers(coverage.components, layout)) for layout in LAYOUTS
    }
    digest = -1
    if coverage.digests:
        digest = fields.index(coverage.components[coverage.digests[0]].name)
    return _Plan(
        label=label,
        signature_prefix=label + "=:",
        coverage=coverage,
        # The usual pair is the module's own tuple, so the hot path tests it with "is".
        derived=_METHOD_PATH if tuple(derived) == _METHOD_PATH else tuple(derived),
        fields=tuple(fields),
        field_keys=tuple(name.encode("ascii") for name in fields),
        latin1=("latin-1",) * len(fields),
        strip=(" ",) * len(fields),
        order=None if argument == sorted(argument) else (*argument, len(argument)),
        digest=digest,
        legacy=digest >= 0 and fields[digest] == "digest",
        templates=templates,
        decodable="@path" in derived or "@query" in derived,
        params_from=len(label) + 1,
    )


# head -> its plan, or False when the strict path must take it.
_PLANS: dict[str, _Plan | Literal[False]] = {}
_PLAN_CAP = 256


def _plan(head: str) -> _Plan | Literal[False]:
    if len(head) > _HEAD_MAX:
        return False
    plan: _Plan | None = None
    match = _HEAD.fullmatch(head)
    if match is not None:
        try:
            parsed = _sfv.parse_list("(" + match.group(2) + ")", allow_duplicates=False)
            # The strict validation, uncapped: the policy's cap is checked per request.
            coverage = coverage_of(parsed[0][0], None)  # type: ignore[arg-type]
            plan = _compile(match.group(1), coverage)
        except (_sfv.SFError, VerificationError):
            plan = None  # the strict path reports it
    if len(_PLANS) >= _PLAN_CAP:
        _PLANS.clear()
    result: _Plan | Literal[False] = False if plan is None else plan
    _PLANS[head] = result
    return result


class _Latin1Fields:
    """ASGI's field lines (lower-case ``bytes`` names, distinct), to be read as ``str``.

    Only the few fields the fast path reads are decoded, each as ISO-8859-1 like
    :func:`~upvest_verify._message.field_text` does, instead of every line of the
    request up front: :func:`fast_verify` reads ``raw`` by the byte names the plan holds.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: dict[bytes, Any]) -> None:
        self.raw = raw


_Fields = dict[str, str] | _Latin1Fields
_NO_FIELDS: dict[str, str] = {}


def _bytes_fields(fields: dict[Any, Any], count: int) -> _Latin1Fields | None:
    # Every name and value bytes-like (the joins prove it; a bytearray name cannot
    # be a dict key, a read-only memoryview one hashes and compares like bytes),
    # names lower-case ASCII and distinct: the shape ASGI servers hand over.
    try:
        names = b"".join(fields)
        b"".join(fields.values())
    except TypeError:
        return None
    if len(fields) != count or not names.isascii() or names.lower() != names:
        return None
    return _Latin1Fields(fields)


def _grouped(pairs: Any) -> dict[str, str] | None:
    # Anything but all-str or all-bytes lines, grouped as the strict path groups them;
    # a field given more than once is the strict path's to combine.
    try:
        grouped = normalise_fields(pairs)
    except TypeError:
        return None  # the strict path raises it for the caller
    if any(len(lines) > 1 for lines in grouped.values()):
        return None
    return {name: lines[0] for name, lines in grouped.items()}


def _header_dict(headers: object) -> _Fields | None:
    # The field lines as one dict, when its lower-cased names are all distinct (the
    # strict path combines repeated lines). Adapters pass lists of lower-case str
    # pairs, so the usual case is one dict() and two C-level joins, which also prove
    # that every name and value is a str. A generator is left alone: the strict path
    # must still be able to read it.
    kind = type(headers)
    pairs: Any
    fields: Any
    if kind is dict:
        pairs = fields = headers
    else:
        if kind is list or kind is tuple:
            pairs = headers
        elif isinstance(headers, Mapping):  # Starlette, Werkzeug, Django headers...
            try:
                pairs = list(headers.items())
            except Exception:
                return None  # the strict path reads it again and reports the error
        else:
            return None
        try:
            fields = dict(pairs)
        except (TypeError, ValueError):
            return None  # not (name, value) pairs: the strict path says so
    # Bytes from an ASGI scope are read lazily, told apart by the first name without
    # raising and catching the TypeError of a str join.
    if type(next(iter(fields), None)) is bytes:
        raw = _bytes_fields(fields, len(pairs))
        return raw if raw is not None else _grouped(pairs)
    try:
        names = "".join(fields)
        "".join(fields.values())
    except TypeError:
        return _grouped(pairs)  # mixed types: grouped the way the strict path does
    # ASCII and already lower-case; otherwise only the ASCII letters are folded.
    if not names.isascii() or names.lower() != names:
        fields = {ascii_lower(name): value for name, value in fields.items()}
    if len(fields) != len(pairs):
        return None
    return fields  # type: ignore[no-any-return]  # every name and value is a str by now


def _derived(
    names: tuple[str, ...],
    method: str,
    scheme: str | None,
    authority: str | None,
    path: str,
    query: str | None,
) -> list[str] | None:
    values = []
    for name in names:
        value = request_derived_value(name, method, scheme, authority, path, query)
        if value is None:
            return None  # origin-form URL: @authority comes from Host (strict path)
        values.append(value)
    return values


if sys.version_info >= (3, 11):

    def _b64decode(encoded: str) -> bytes | None:
        # strict_mode refuses anything outside the alphabet and misplaced padding;
        # a non-ASCII str raises ValueError, of which binascii.Error is a subclass.
        try:
            return a2b_base64(encoded, strict_mode=True)
        except ValueError:
            return None

else:  # pragma: no cover - Python 3.10

    def _b64decode(encoded: str) -> bytes | None:
        return a2b_base64(encoded) if _B64.fullmatch(encoded) else None


def fast_verify(
    method: str,
    url: str,
    headers: object,
    body: bytes,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: tuple[Layout, ...],
) -> VerifiedWebhook | None:
    """Verify a canonical webhook, or return ``None`` for the strict path to decide.

    Args: as for :func:`upvest_verify.verify`, with ``layouts`` the learnt order.

    Returns:
        The verified webhook, or ``None``.

    Raises:
        VerificationError: ``bad_signature`` once everything else checked out.
    """
    fields = _header_dict(headers)
    if fields is None or type(body) is not bytes or len(body) > policy.max_body_size:
        return None
    if type(method) is not str or not method or type(url) is not str:
        return None

    raw_fields: dict[bytes, Any] | None = None
    text_fields: dict[str, str] = _NO_FIELDS
    si_value: str | None
    sig_value: str | None
    if isinstance(fields, _Latin1Fields):  # ASGI's lines: decode only what is read
        raw_fields = fields.raw
        si_line = raw_fields.get(b"signature-input")
        sig_line = raw_fields.get(b"signature")
        if si_line is None or sig_line is None:
            return None
        si_value = str(si_line, "latin-1").strip(" ")
        sig_value = str(sig_line, "latin-1").strip(" ")
    else:
        text_fields = fields
        si_value = fields.get("signature-input")
        sig_value = fields.get("signature")
        if si_value is None or sig_value is None:
            return None
        si_value = si_value.strip(" ")
        sig_value = sig_value.strip(" ")
    if len(si_value) + len(sig_value) > policy.max_header_bytes:
        return None
    close = si_value.find(")") + 1
    plan = _PLANS.get(si_value[:close])
    if plan is None:
        plan = _plan(si_value[:close])
    if not plan:
        return None
    bound = plan.bound
    if bound is None or bound.policy is not policy:
        bound = _bind(plan, policy)
    if not bound.head_ok:
        return None
    if not sig_value.startswith(plan.signature_prefix) or sig_value[-1] != ":":
        return None

    # The parameters: recognised by a regex that admits only strings without escapes
    # and canonical integers, then judged by the rules.
    kid: str
    nonce: str | None
    created: int | None
    expires: int | None
    alg: object
    usual = _UPVEST_PARAMS.fullmatch(si_value, close)
    if usual is not None:
        kid, created_text, expires_text, nonce = usual.groups()
        created = int(created_text)
        expires = int(expires_text)
        alg = None
    else:
        if _PARAMS.fullmatch(si_value, close) is None:
            return None
        params: dict[str, _sfv.BareItem] = {}
        for key, text, number in _PARAM.findall(si_value, close):
            if key in params:
                return None  # duplicate parameter: the strict path rejects it
            params[key] = text if not number else int(number)
        try:
            check_params(params, policy)
        except VerificationError:
            return None
        # check_params proved the types: keyid and nonce strings, the times ints.
        kid = params["keyid"]  # type: ignore[assignment]
        nonce = params.get("nonce")  # type: ignore[assignment]
        created = params.get("created")  # type: ignore[assignment]
        expires = params.get("expires")  # type: ignore[assignment]
        alg = params.get("alg")
    if time_window_error(created, expires, now, policy) is not None:
        return None

    try:
        scheme, authority, path, query = split_url(url)
    except VerificationError:
        return None
    if not bound.coverage_ok[2 * bool(body) + bool(query)]:
        return None

    key = keys.get(kid)  # usable keys only: the strict path reports the others
    if key is None or key_error(key, kid, alg, policy) is not None:
        return None

    # Component values: printable ASCII only (RFC 9421 §2.5), checked over all of them
    # at once; a field is its one line, trimmed (§2.1).
    args: list[str] | None
    if plan.derived is _METHOD_PATH:
        args = [method, path]
    else:
        args = _derived(plan.derived, method, scheme, authority, path, query)
        if args is None:
            return None
    try:
        if raw_fields is None:
            lines = list(map(text_fields.__getitem__, plan.fields))
        else:
            lines = list(map(str, map(raw_fields.__getitem__, plan.field_keys), plan.latin1))
    except KeyError:
        return None  # a covered field is absent: component_unavailable
    digest_field: DigestField | None = None
    expected = ""
    digest_size = 0
    if plan.digest >= 0:
        # Only the value a sender writes for this body; anything else (another
        # algorithm, several members, a mismatch) is the strict path's to judge.
        if plan.legacy:
            expected = legacy_digest(body)
            digest_field = "digest"
        else:
            expected = content_digest(body)
            digest_field = "content-digest"
        value = lines[plan.digest]
        digest_size = len(value)
        if not (value.isascii() and compare_digest(value.strip(" "), expected)):
            return None
        lines[plan.digest] = ""  # equal to a printable value: no need to check it below
    joined = "".join(args) + "".join(lines)
    if not (joined.isascii() and joined.isprintable()):
        return None
    if covered_size_error(len(joined) + digest_size, 1, policy) is not None:
        return None
    lines = list(map(str.strip, lines, plan.strip))
    if "," in joined and any_comma_spaced(lines):
        return None  # "a,b" may be lines a WSGI server joined: the strict path tries both
    if expected:
        lines[plan.digest] = expected

    # An RFC 8941 byte sequence, padded (unpadded base64 is the strict path's);
    # strict_mode accepts padding beyond the last quad ("AAAA===="): refused first.
    encoded = sig_value[len(plan.signature_prefix) : -1]
    if len(encoded) % 4 or encoded.find("=", 0, -2) >= 0:
        return None
    raw = _b64decode(encoded)
    if raw is None:
        return None
    try:
        signature, encoding = decode_signature(key.key_type, raw, bound.signature_encoding)
    except VerificationError:
        return None

    if raw_fields is None:
        version = text_fields.get("upvest-signature-version")
    else:
        version_line = raw_fields.get(b"upvest-signature-version")
        version = None if version_line is None else str(version_line, "latin-1")
    chosen = choose_layouts(
        policy, None if version is None else version.strip(" \t"), plan.coverage, layouts
    )[: policy.max_verifications]
    if "%" in url and "upvest-v6" in chosen and plan.decodable:
        return None  # draft-06 may have signed @path/@query percent-decoded: the strict path
    args += lines
    args.append(si_value[plan.params_from :])
    values = tuple(args) if plan.order is None else tuple(args[i] for i in plan.order)
    for layout in chosen:
        base = (plan.templates[layout] % values).encode("ascii")
        if verify_signature(key, signature, base):
            return new_verified_webhook(
                kid,
                plan.label,
                plan.coverage.quoted,
                created,
                expires,
                nonce,
                dialect_of(layout, encoding, digest_field),
                body,
            )
    raise bad_signature(plan.label, kid, chosen)
