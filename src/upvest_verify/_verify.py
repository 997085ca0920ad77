"""The pure verification algorithm (upvest-protocol.md §2.8).

No I/O, no clock: the caller passes the message, a key-set snapshot and ``now``.
Checks run cheapest first (threat model K9): size caps, header parsing, label
and parameter policy, time window, key lookup, component values, body digest,
and the ECDSA verify last.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from . import _sfv
from ._components import Component, component_value, parse_component
from ._crypto import decode_signature, verify_signature
from ._digest import BodyHasher, check_content_digest, check_legacy_digest
from ._keyset import KeySet
from ._message import Message
from ._policy import Policy
from ._result import Dialect, DigestField, Encoding, Layout, VerifiedWebhook
from .errors import Reason, VerificationError

__all__ = [
    "SignatureInput",
    "parse_signature_input",
    "parse_signatures",
    "signature_base",
    "verify_message",
]

logger = logging.getLogger("upvest_verify")

_PARAMS = frozenset({"created", "expires", "nonce", "alg", "keyid", "tag"})
_DIGEST_FIELDS = ("content-digest", "digest")
_QUERY_COVERAGE = frozenset({"@query", "@target-uri", "@request-target"})
DEFAULT_LAYOUTS: tuple[Layout, ...] = ("rfc9421", "upvest-v6")
V6_FIRST: tuple[Layout, ...] = ("upvest-v6", "rfc9421")


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a covered-component list covers, computed once per list.

    Attributes:
        components: The component identifiers, in order.
        quoted: Their strict serialisations (``'"@method"'``...).
        names: Names covered plainly (no parameters other than ``sf``), for policy checks.
        digests: Indexes of covered ``content-digest``/``digest`` fields.
    """

    components: tuple[Component, ...]
    quoted: tuple[str, ...]
    names: frozenset[str]
    digests: tuple[int, ...]

    @classmethod
    def of(cls, components: tuple[Component, ...]) -> Coverage:
        """Summarise a component list."""
        return cls(
            components=components,
            quoted=tuple(c.quoted for c in components),
            names=frozenset(
                c.name for c in components if not c.params or c.params == (("sf", True),)
            ),
            # A digest field covered as is or with ";sf" (a strictly re-serialised
            # Content-Digest is still a Content-Digest): both are checked against the
            # body, and only they satisfy the body-coverage policy.
            digests=tuple(
                i
                for i, c in enumerate(components)
                if c.name in _DIGEST_FIELDS and c.params in ((), (("sf", True),))
            ),
        )


@dataclass(slots=True)
class SignatureInput:
    """One signature from the ``Signature-Input`` and ``Signature`` headers.

    Attributes:
        label: The dictionary key both headers share (``sig1``).
        coverage: The covered component identifiers and what they cover.
        params: The signature parameters in received order (``keyid``, ``created``...).
        signature_params: The strict re-serialisation of the inner list with its
            parameters: the value of the ``@signature-params`` line (RFC 9421 §2.3).
        signature: The decoded ``Signature`` byte sequence.
    """

    label: str
    coverage: Coverage
    params: dict[str, _sfv.BareItem]
    signature_params: str
    signature: bytes

    @property
    def components(self) -> tuple[Component, ...]:
        """The covered component identifiers, in order."""
        return self.coverage.components

    @property
    def key_id(self) -> str | None:
        """The ``keyid`` parameter if it is a string."""
        kid = self.params.get("keyid")
        return kid if type(kid) is str else None


def _malformed(msg: str) -> VerificationError:
    return VerificationError(Reason.MALFORMED_HEADER, msg)


def _combined_field(message: Message, name: str) -> str | None:
    lines = message.fields.get(name)
    if lines is None:
        return None
    return ", ".join(v.strip(" \t") for v in lines)


def parse_signatures(
    message: Message, policy: Policy
) -> tuple[dict[str, _sfv.Member], dict[str, _sfv.Member]]:
    """Parse the ``Signature-Input`` and ``Signature`` dictionaries (RFC 9421 §4.1-4.2).

    Field lines are combined first, so a label repeated across lines is a duplicate
    (A4), detected before any last-wins rule could hide it.

    Args:
        message: The message.
        policy: Supplies the size caps.

    Returns:
        The two dictionaries, label to member.

    Raises:
        VerificationError: ``missing_signature``, or ``malformed_header`` for syntax
            errors, duplicates, non-ASCII bytes and size caps.
    """
    si_value = _combined_field(message, "signature-input")
    sig_value = _combined_field(message, "signature")
    if si_value is None or sig_value is None:
        raise VerificationError(
            Reason.MISSING_SIGNATURE, "Signature and Signature-Input are both required"
        )
    if len(si_value) + len(sig_value) > policy.max_header_bytes:
        # Cap before parsing (A11): parse cost stays bounded whatever is sent.
        raise _malformed(f"signature headers exceed {policy.max_header_bytes} bytes")
    try:
        inputs = _sfv.parse_dictionary(si_value, allow_duplicates=False)
        signatures = _sfv.parse_dictionary(sig_value, allow_duplicates=False)
    except _sfv.SFError as e:
        raise _malformed(f"signature header: {e}") from e
    if len(inputs) > policy.max_labels or len(signatures) > policy.max_labels:
        raise _malformed(f"more than {policy.max_labels} signature labels")
    return inputs, signatures


def _components(items: list[_sfv.Item], max_components: int | None) -> Coverage:
    if max_components is not None and len(items) > max_components:
        raise _malformed(f"more than {max_components} covered components")
    components = tuple(parse_component(item) for item in items)
    seen: set[tuple[str, frozenset[tuple[str, _sfv.BareItem]]]] = set()
    for comp in components:
        ident = (comp.name, frozenset(comp.params))
        if ident in seen:
            # RFC 9421 §2: identifiers, parameters included, MUST NOT repeat (B3).
            raise _malformed(f"component {comp.quoted} is listed twice")
        seen.add(ident)
    return Coverage.of(components)


def _check_params(params: dict[str, _sfv.BareItem], policy: Policy) -> None:
    for key, param in params.items():
        if key not in _PARAMS:
            # RFC 9421 §2.3 registry; an unknown parameter may change the meaning (B7).
            raise _malformed(f"unknown signature parameter {key!r}")
        if key in ("created", "expires"):
            # type() rather than isinstance(): SF "?1" parses to True, and True == 1 (E7).
            if type(param) is not int or param < 0:
                raise _malformed(f"signature parameter {key!r} must be a non-negative integer")
        elif type(param) is not str:
            raise _malformed(f"signature parameter {key!r} must be a string")
    kid = params.get("keyid")
    if kid is None:
        raise _malformed("signature parameter 'keyid' is missing")
    if not kid or len(kid) > 256:  # type: ignore[arg-type]
        raise _malformed("signature parameter 'keyid' must have 1 to 256 characters")
    if policy.require_created and "created" not in params:
        raise _malformed("signature parameter 'created' is missing")
    if policy.require_nonce and "nonce" not in params:
        raise _malformed("signature parameter 'nonce' is missing")


def _candidate(
    label: str, member: _sfv.Member, sig_member: _sfv.Member, policy: Policy
) -> SignatureInput:
    # RFC 9421 §4.1: each Signature-Input member is an inner list of component
    # identifiers with the signature parameters; §4.2: each Signature member is a
    # byte sequence (R2).
    value, params = member
    if not isinstance(value, list):
        raise _malformed(f"Signature-Input {label!r} is not an inner list")
    if isinstance(sig_member[0], list) or not isinstance(sig_member[0], bytes):
        raise _malformed(f"Signature {label!r} is not a byte sequence")
    coverage = _components(value, policy.max_components)
    _check_params(params, policy)
    return SignatureInput(
        label=label,
        coverage=coverage,
        params=params,
        signature_params=_sfv.serialize_inner_list(value, params),
        signature=sig_member[0],
    )


def _check_coverage(sig: SignatureInput, message: Message, body: bytes, policy: Policy) -> None:
    covered = sig.coverage.names
    for name in policy.required_components:
        if name not in covered:
            raise VerificationError(Reason.MISSING_COMPONENT, f"{name!r} is not covered")
    if policy.require_digest and body and not sig.coverage.digests:
        raise VerificationError(
            Reason.MISSING_COMPONENT, "the body is not covered by content-digest or digest"
        )
    if policy.require_query and message.query and not covered.intersection(_QUERY_COVERAGE):
        raise VerificationError(Reason.MISSING_COMPONENT, "the query is not covered")


def _check_time(sig: SignatureInput, now: float, policy: Policy) -> None:
    created = sig.params.get("created")
    expires = sig.params.get("expires")
    assert created is None or type(created) is int
    assert expires is None or type(expires) is int
    error = time_window_error(created, expires, now, policy)
    if error is not None:
        raise error


def time_window_error(
    created: int | None, expires: int | None, now: float, policy: Policy
) -> VerificationError | None:
    """Why ``created``/``expires`` fall outside the policy's window at ``now``, if they do.

    Returns:
        ``created_in_future`` or ``expired``, or ``None`` when the window holds.
    """
    if created is not None and created > now + policy.skew:
        return VerificationError(
            Reason.CREATED_IN_FUTURE, f"created={created} is after now={now:.0f}"
        )
    if expires is not None:
        if created is not None:
            if expires <= created:
                return VerificationError(Reason.EXPIRED, "expires is not after created")
            if policy.max_window is not None and expires - created > policy.max_window:
                return VerificationError(
                    Reason.EXPIRED, f"validity window exceeds {policy.max_window:g} s"
                )
        # The boundary now == expires + skew is still accepted (E2).
        if expires < now - policy.skew:
            return VerificationError(Reason.EXPIRED, f"expired at {expires}, now={now:.0f}")
    elif created is not None and now - created > policy.max_age:
        return VerificationError(
            Reason.EXPIRED, f"created={created} is older than {policy.max_age:g} s"
        )
    return None


def signature_base(
    message: Message, sig: SignatureInput, layout: Layout, values: Sequence[list[str]] | None = None
) -> bytes:
    """Build the signature base for one signature (RFC 9421 §2.5).

    ``rfc9421`` (RFC 9421 and draft-15)::

        "@method": POST
        "@signature-params": ("@method");created=...

    ``upvest-v6`` (Upvest's draft-06, component names unquoted)::

        @method: POST
        @signature-params: ("@method");created=...

    Lines end with LF; there is no trailing LF. ``@query-param`` contributes one
    line per occurrence.

    Args:
        message: The received message.
        sig: The signature whose base to build.
        layout: The base layout.
        values: Precomputed component values (one list per component), if any.

    Returns:
        The base as ASCII bytes.

    Raises:
        VerificationError: ``component_unavailable`` or ``malformed_header`` when a
            component cannot be built.
    """
    if values is None:
        values = [component_value(message, c) for c in sig.components]
    quoted = layout == "rfc9421"
    lines = []
    for comp, comp_values in zip(sig.components, values, strict=True):
        ident = comp.quoted if quoted else comp.unquoted
        for value in comp_values:
            lines.append(f"{ident}: {value}")
    lines.append(
        ('"@signature-params": ' if quoted else "@signature-params: ") + sig.signature_params
    )
    return "\n".join(lines).encode("ascii")


def _layouts(
    message: Message, policy: Policy, preferred: Sequence[Layout], sig: SignatureInput
) -> Sequence[Layout]:
    if policy.dialect != "auto":
        return (policy.dialect,)
    version = _combined_field(message, "upvest-signature-version")
    if version == "6":
        return ("upvest-v6",)
    if version == "15":
        return ("rfc9421",)
    if preferred is DEFAULT_LAYOUTS:
        # Nothing learnt yet: start with the layout whose digest field is covered
        # (Upvest v6 signs "digest", RFC 9421 senders "content-digest"). Both
        # layouts are still tried; only the order, so the cost, changes.
        for comp in sig.components:
            if comp.name == "digest":
                return V6_FIRST
            if comp.name == "content-digest":
                return DEFAULT_LAYOUTS
    return preferred


def _verify_one(
    message: Message,
    body: bytes,
    hasher: BodyHasher,
    sig: SignatureInput,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: Sequence[Layout],
) -> VerifiedWebhook:
    _check_coverage(sig, message, body, policy)
    _check_time(sig, now, policy)
    kid = sig.key_id
    assert kid is not None
    key = keys.lookup(kid)
    if key.key_type not in policy.key_types:
        raise VerificationError(
            Reason.UNSUPPORTED_KEY, f"key {kid!r} is {key.key_type}, not allowed", key_id=kid
        )
    alg = sig.params.get("alg")
    if alg is not None and alg != key.algorithm:
        # R5/R17: the algorithm comes from the key; a contradicting alg is refused.
        raise VerificationError(
            Reason.UNSUPPORTED_ALGORITHM, f"alg={alg!r} but key {kid!r} is {key.algorithm}"
        )
    components = sig.coverage.components
    fields = message.fields
    values: list[list[str]] = []
    for comp in components:
        if comp.is_plain_field:
            # Fast path for the usual single printable-ASCII line: no obs-fold, no HTAB,
            # nothing to combine, so RFC 9421 §2.1 reduces to a trim. Anything else goes
            # through component_value().
            lines = fields.get(comp.name)
            if lines is not None and len(lines) == 1:
                value = lines[0]
                if value.isascii() and value.isprintable():
                    values.append([value.strip(" ")])
                    continue
        values.append(component_value(message, comp))
    digest_field: DigestField | None = None
    for i in sig.coverage.digests:
        if components[i].name == "content-digest":
            check_content_digest(values[i][0], hasher)
            digest_field = digest_field or "content-digest"
        else:
            check_legacy_digest(values[i][0], hasher)
            digest_field = digest_field or "digest"
    signature, encoding = decode_signature(key.key_type, sig.signature, policy.signature_encoding)
    for layout in layouts:
        if verify_signature(key, signature, signature_base(message, sig, layout, values)):
            return VerifiedWebhook(
                key_id=kid,
                label=sig.label,
                covered_components=sig.coverage.quoted,
                created=sig.params.get("created"),  # type: ignore[arg-type]
                expires=sig.params.get("expires"),  # type: ignore[arg-type]
                nonce=sig.params.get("nonce"),  # type: ignore[arg-type]
                dialect=_dialect(layout, encoding, digest_field),
                body=body,
            )
    raise bad_signature_error(sig.label, kid, layouts)


def bad_signature_error(label: str, kid: str, layouts: Sequence[Layout]) -> VerificationError:
    """The error for a signature that failed the ECDSA verify under every layout tried."""
    return VerificationError(
        Reason.BAD_SIGNATURE,
        f"signature {label!r} does not verify with key {kid!r} ({'/'.join(layouts)})",
        key_id=kid,
    )


@functools.lru_cache(maxsize=16)
def _dialect(layout: Layout, encoding: Encoding, digest: DigestField | None) -> Dialect:
    return Dialect(layout, encoding, digest)


def _order_labels(
    inputs: dict[str, _sfv.Member], signatures: dict[str, _sfv.Member], keys: KeySet, policy: Policy
) -> list[str]:
    paired = [label for label in inputs if label in signatures]
    if not paired:
        raise VerificationError(
            Reason.LABEL_MISMATCH, "no label appears in both Signature-Input and Signature"
        )
    if policy.labels:
        wanted = [label for label in policy.labels if label in paired]
        if not wanted:
            raise VerificationError(
                Reason.LABEL_MISMATCH, f"none of the labels {list(policy.labels)} is present"
            )
        return wanted[: policy.max_signatures]

    def rank(label: str) -> tuple[int, int]:
        kid = inputs[label][1].get("keyid")
        known = isinstance(kid, str) and kid in keys
        return (0 if known else 1, 0 if label == "sig1" else 1)

    return sorted(paired, key=rank)[: policy.max_signatures]


def verify_message(
    message: Message,
    body: bytes,
    *,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: Sequence[Layout] = DEFAULT_LAYOUTS,
) -> VerifiedWebhook:
    """Verify a message against a key-set snapshot; the heart of :func:`verify`.

    Several signatures (RFC 9421 §3.2, R16): labels present in both headers are
    tried in policy order, at most ``policy.max_signatures``; the first that passes
    every check wins, and an extra invalid signature never causes a reject. When
    all fail, the first one's error is raised (without configured labels, signatures
    whose key is known are tried first), with ``unknown_key_ids`` naming every kid
    that was not in the key set, so a key provider can refresh for it.

    Args:
        message: The message.
        body: The raw body.
        keys: The key-set snapshot.
        now: Current Unix time.
        policy: The policy.
        layouts: Base layouts to try, in order, when the message does not say.

    Returns:
        The verified webhook.

    Raises:
        VerificationError: Why the message was rejected.
    """
    if len(body) > policy.max_body_size:
        raise VerificationError(
            Reason.BODY_TOO_LARGE, f"body of {len(body)} bytes exceeds {policy.max_body_size}"
        )
    hasher = BodyHasher(body)
    inputs, signatures = parse_signatures(message, policy)
    first_error: VerificationError | None = None
    unknown: list[str] = []
    for label in _order_labels(inputs, signatures, keys, policy):
        try:
            sig = _candidate(label, inputs[label], signatures[label], policy)
            chosen = _layouts(message, policy, layouts, sig)
            return _verify_one(message, body, hasher, sig, keys, now, policy, chosen)
        except VerificationError as e:
            if first_error is None:
                first_error = e
            if e.reason is Reason.UNKNOWN_KEY and e.key_id is not None:
                unknown.append(e.key_id)
    assert first_error is not None
    # Tell a key provider which kids were missing even when another signature's error
    # is the one raised: an extra signature must never stop the refresh (R16).
    first_error.unknown_key_ids = tuple(unknown)
    raise first_error


def parse_signature_input(
    message: Message, label: str, policy: Policy | None = None
) -> SignatureInput:
    """Parse and validate the signature with ``label`` from a message's headers.

    Useful to inspect what a webhook covers, or to rebuild its base with
    :func:`signature_base` when debugging a sender.

    Args:
        message: The message.
        label: The signature label.
        policy: Supplies caps and required parameters; defaults to ``Policy()``.

    Returns:
        The validated signature input.

    Raises:
        VerificationError: The headers are missing, malformed, or lack ``label``.
    """
    policy = policy or Policy()
    inputs, signatures = parse_signatures(message, policy)
    if label not in inputs or label not in signatures:
        raise VerificationError(Reason.LABEL_MISMATCH, f"label {label!r} is not in both headers")
    return _candidate(label, inputs[label], signatures[label], policy)
