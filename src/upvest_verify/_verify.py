"""The pure verification algorithm (upvest-protocol.md §2.8).

No I/O, no clock: the caller passes the message, a key-set snapshot and ``now``.
Checks run cheapest first (threat model K9): size caps, header parsing, label
and parameter policy, time window, key lookup, component values, body digest,
and the ECDSA verify last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from . import _sfv
from ._base import signature_base as build_base
from ._components import Component, component_value, covered_size
from ._crypto import decode_signature, verify_signature
from ._digest import BodyHasher, check_content_digest, check_legacy_digest
from ._keyset import KeySet
from ._message import Message
from ._policy import Policy
from ._result import DigestField, Layout, Reconstruction, VerifiedWebhook, dialect_of
from ._rules import (
    DEFAULT_LAYOUTS,
    Coverage,
    bad_signature,
    check_params,
    choose_layouts,
    coverage_error,
    coverage_of,
    covered_size_error,
    key_error,
    order_labels,
    time_window_error,
)
from ._tolerance import alternatives
from .errors import Reason, VerificationError

__all__ = [
    "Candidate",
    "SignatureInput",
    "candidate_values",
    "parse_signature_input",
    "parse_signatures",
    "signature_base",
    "verify_message",
]


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
    coverage = coverage_of(value, policy.max_components)
    check_params(params, policy)
    return SignatureInput(
        label=label,
        coverage=coverage,
        params=params,
        signature_params=_sfv.serialize_inner_list(value, params),
        signature=sig_member[0],
    )


def signature_base(
    message: Message,
    sig: SignatureInput,
    layout: Layout,
    values: Sequence[Sequence[str]] | None = None,
) -> bytes:
    """Build the signature base of one received signature (RFC 9421 §2.5).

    The layouts are described in :mod:`upvest_verify._base`.

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
    return build_base(sig.components, values, sig.signature_params, layout)


Candidate: TypeAlias = tuple[Layout, Reconstruction, Sequence[list[str]]]
"""A base to try: its layout, how its values were reconstructed, and the values."""


def candidate_values(
    components: Sequence[Component], values: Sequence[list[str]], layouts: Sequence[Layout]
) -> list[Candidate]:
    """The component values to build bases from, in the order they are tried.

    The values as received in every layout first, then the alternative
    reconstructions (:mod:`._tolerance`); the caller stops at the request's budget of
    ECDSA verifications. The failure diagnosis lists the same candidates.

    Args:
        components: The covered components.
        values: Their values as received (one list per component).
        layouts: The layouts to try, in order.

    Returns:
        ``(layout, reconstruction, values)`` triples.
    """
    candidates: list[Candidate] = [(layout, "exact", values) for layout in layouts]
    for layout in layouts:
        candidates.extend(
            (layout, name, alt) for name, alt in alternatives(components, values, layout)
        )
    return candidates


class _Budget:
    """What a request may still cost: ECDSA verifications and covered characters (K9).

    Attributes:
        left: ECDSA verifications left (``policy.max_verifications`` at first).
        covered: Characters of covered sources read so far, over every signature.
        seen: Those sources (field and derived component names), each counted once.
    """

    __slots__ = ("covered", "left", "seen")

    def __init__(self, left: int) -> None:
        self.left = left
        self.covered = 0
        self.seen: set[str] = set()


def _verify_one(
    message: Message,
    body: bytes,
    hasher: BodyHasher,
    sig: SignatureInput,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: Sequence[Layout],
    budget: _Budget,
) -> VerifiedWebhook:
    params = sig.params
    error = coverage_error(
        sig.coverage, policy, has_body=bool(body), has_query=bool(message.query)
    ) or time_window_error(
        params.get("created"),  # type: ignore[arg-type]  # check_params proved the types
        params.get("expires"),  # type: ignore[arg-type]
        now,
        policy,
    )
    if error is not None:
        raise error
    # The covered sources of every signature tried so far count against one cap.
    size, most_lines = covered_size(message, sig.coverage.components, budget.seen)
    budget.covered += size
    error = covered_size_error(budget.covered, most_lines, policy)
    if error is not None:
        raise error
    kid = sig.key_id
    assert kid is not None
    key = keys.lookup(kid)
    error = key_error(key, kid, params.get("alg"), policy)
    if error is not None:
        raise error
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
    tried: list[Layout] = []
    for layout, reconstruction, candidate in candidate_values(components, values, layouts):
        if budget.left <= 0:
            break
        budget.left -= 1
        tried.append(layout)
        if verify_signature(key, signature, signature_base(message, sig, layout, candidate)):
            return VerifiedWebhook(
                key_id=kid,
                label=sig.label,
                covered_components=sig.coverage.quoted,
                created=sig.params.get("created"),  # type: ignore[arg-type]
                expires=sig.params.get("expires"),  # type: ignore[arg-type]
                nonce=sig.params.get("nonce"),  # type: ignore[arg-type]
                dialect=dialect_of(layout, encoding, digest_field, reconstruction),
                body=body,
            )
    if not tried:
        raise VerificationError(
            Reason.BAD_SIGNATURE,
            f"signature {sig.label!r} not tried: the request's "
            f"{policy.max_verifications} ECDSA verifications are spent",
            key_id=kid,
        )
    raise bad_signature(sig.label, kid, dict.fromkeys(tried))


def verify_message(
    message: Message,
    body: bytes,
    *,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: tuple[Layout, ...] = DEFAULT_LAYOUTS,
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
    paired = [label for label in inputs if label in signatures]
    version = _combined_field(message, "upvest-signature-version")
    budget = _Budget(policy.max_verifications)
    for label in order_labels(
        paired, lambda label: inputs[label][1].get("keyid"), keys.__contains__, policy
    ):
        try:
            # Once the request's covered budget is spent, every later signature would be
            # refused for it: refuse before validating its components (K9).
            spent = covered_size_error(budget.covered, 0, policy)
            if spent is not None:
                raise spent
            sig = _candidate(label, inputs[label], signatures[label], policy)
            chosen = choose_layouts(policy, version, sig.coverage, layouts)
            return _verify_one(message, body, hasher, sig, keys, now, policy, chosen, budget)
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
