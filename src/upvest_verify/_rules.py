"""The acceptance rules: every decision about *whether* a signature is acceptable.

Everything that decides acceptance lives here and nowhere else, as pure functions of
plain values: the signature parameters, the time window, which labels are tried,
what must be covered (components, body digest, query), which key may verify, and
which base layout to try first. The strict path (:mod:`._verify`) calls them on the
parsed headers; the fast path (:mod:`._fast`) calls the same functions, or holds
their results for a compiled head and a bound policy, and never restates them. A
rule added here therefore reaches both paths at once.

The rules report a failure by *returning* the :class:`VerificationError` to raise
(or ``None``); they never raise it themselves, so the fast path can give way to the
strict path without paying for an exception. The exceptions are the two parsers of
structure, :func:`check_params` and :func:`coverage_of`, which raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import _sfv
from ._components import Component, parse_component
from ._crypto import REGISTERED_ALGORITHMS, VerifyingKey
from ._policy import Policy
from ._result import Layout
from .errors import Reason, VerificationError

__all__ = [
    "DEFAULT_LAYOUTS",
    "DIGEST_FIELDS",
    "MAX_KEYID",
    "QUERY_COVERAGE",
    "SIGNATURE_PARAMETERS",
    "V6_FIRST",
    "Coverage",
    "bad_signature",
    "check_params",
    "choose_layouts",
    "coverage_error",
    "coverage_of",
    "covered_size_error",
    "head_error",
    "key_error",
    "label_allowed",
    "order_labels",
    "time_window_error",
]

# RFC 9421 §2.3: the registered signature parameters; anything else is refused (B7).
SIGNATURE_PARAMETERS = frozenset({"created", "expires", "nonce", "alg", "keyid", "tag"})
# The fields that carry a body digest: RFC 9530 Content-Digest, RFC 3230 Digest (v6).
DIGEST_FIELDS = ("content-digest", "digest")
# Components that cover the query (B14).
QUERY_COVERAGE = frozenset({"@query", "@target-uri", "@request-target"})
# Base layouts in the order tried when nothing says otherwise.
DEFAULT_LAYOUTS: tuple[Layout, ...] = ("rfc9421", "upvest-v6")
V6_FIRST: tuple[Layout, ...] = ("upvest-v6", "rfc9421")
# The longest keyid accepted (a UUID has 36 characters).
MAX_KEYID = 256


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a covered-component list covers, computed once per list.

    Attributes:
        components: The component identifiers, in order.
        quoted: Their strict serialisations (``'"@method"'``...).
        names: Names covered plainly (no parameters other than ``sf``), for policy checks.
        digests: Indexes of covered ``content-digest``/``digest`` fields.
        covers_query: ``@query``, ``@target-uri`` or ``@request-target`` is covered.
        first_layouts: The layout order to try before anything is learnt: the one
            whose digest field is covered first (Upvest v6 signs ``digest``, RFC 9421
            senders ``content-digest``).
    """

    components: tuple[Component, ...]
    quoted: tuple[str, ...]
    names: frozenset[str]
    digests: tuple[int, ...]
    covers_query: bool
    first_layouts: tuple[Layout, ...]

    @classmethod
    def of(cls, components: tuple[Component, ...]) -> Coverage:
        """Summarise a component list (already validated).

        Args:
            components: The component identifiers.

        Returns:
            The summary.
        """
        names = frozenset(c.name for c in components if not c.params or c.params == (("sf", True),))
        first = DEFAULT_LAYOUTS
        for comp in components:
            if comp.name in DIGEST_FIELDS:
                first = V6_FIRST if comp.name == "digest" else DEFAULT_LAYOUTS
                break
        return cls(
            components=components,
            quoted=tuple(c.quoted for c in components),
            names=names,
            # A digest field covered as is or with ";sf" (a strictly re-serialised
            # Content-Digest is still a Content-Digest): both are checked against the
            # body, and only they satisfy the body-coverage policy.
            digests=tuple(
                i
                for i, c in enumerate(components)
                if c.name in DIGEST_FIELDS and c.params in ((), (("sf", True),))
            ),
            covers_query=not names.isdisjoint(QUERY_COVERAGE),
            first_layouts=first,
        )


def _malformed(msg: str) -> VerificationError:
    return VerificationError(Reason.MALFORMED_HEADER, msg)


def coverage_of(items: list[_sfv.Item], max_components: int | None) -> Coverage:
    """Validate the inner list of a ``Signature-Input`` member (RFC 9421 §2, §4.1).

    Args:
        items: The parsed inner-list items.
        max_components: The policy's cap, or ``None`` for no cap.

    Returns:
        The coverage.

    Raises:
        VerificationError: ``malformed_header`` for too many components, an invalid
            component identifier, or one listed twice.
    """
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


def check_params(params: Mapping[str, _sfv.BareItem], policy: Policy) -> None:
    """Check a signature's parameters (RFC 9421 §2.3) against the policy.

    Args:
        params: The parameters as parsed.
        policy: Says whether ``created`` and ``nonce`` are required.

    Raises:
        VerificationError: ``malformed_header`` for an unknown parameter, a wrong
            type, a missing or oversized ``keyid``, or a missing required parameter.
    """
    for key, param in params.items():
        if key not in SIGNATURE_PARAMETERS:
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
    if not kid or len(kid) > MAX_KEYID:  # type: ignore[arg-type]  # a str by now
        raise _malformed(f"signature parameter 'keyid' must have 1 to {MAX_KEYID} characters")
    if policy.require_created and "created" not in params:
        raise _malformed("signature parameter 'created' is missing")
    if policy.require_nonce and "nonce" not in params:
        raise _malformed("signature parameter 'nonce' is missing")


def _seconds(value: float) -> str:
    # Whole seconds print as integers; a fractional clock keeps up to milliseconds.
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def time_window_error(
    created: int | None, expires: int | None, now: float, policy: Policy
) -> VerificationError | None:
    """Why ``created``/``expires`` fall outside the policy's window at ``now``, if they do.

    ``created`` may be at most ``skew`` in the future; ``expires`` must follow
    ``created`` by at most ``max_window`` and may be at most ``skew`` in the past
    (the boundary ``now == expires + skew`` is accepted, E2); without ``expires``,
    ``created`` may be at most ``max_age`` old.

    An ``expired`` error whose only fault is age (``expires`` passed, or ``created``
    beyond ``max_age``), with a well-formed window and a known ``created``, carries
    ``signed_at=created``: at that instant every time rule holds, so a caller may
    re-check the webhook as of then (:class:`~upvest_verify.Verifier`'s
    ``late_retries``). A future ``created``, ``expires <= created`` and a window
    longer than ``max_window`` never carry it.

    Args:
        created: The ``created`` parameter, if present.
        expires: The ``expires`` parameter, if present.
        now: Current Unix time.
        policy: Supplies ``skew``, ``max_age`` and ``max_window``.

    Returns:
        ``created_in_future`` or ``expired``, or ``None`` when the window holds.
    """
    if created is not None and created > now + policy.skew:
        return VerificationError(
            Reason.CREATED_IN_FUTURE,
            f"created {_seconds(created - now)} s in the future "
            f"(created={created}, now={_seconds(now)}, skew={policy.skew:g} s)",
        )
    if expires is not None:
        if created is not None:
            if expires <= created:
                return VerificationError(
                    Reason.EXPIRED, f"expires={expires} is not after created={created}"
                )
            if policy.max_window is not None and expires - created > policy.max_window:
                return VerificationError(
                    Reason.EXPIRED,
                    f"validity window of {expires - created} s exceeds {policy.max_window:g} s",
                )
        if expires < now - policy.skew:
            return VerificationError(
                Reason.EXPIRED,
                f"expired {_seconds(now - expires)} s ago "
                f"(expires={expires}, now={_seconds(now)}, skew={policy.skew:g} s)",
                signed_at=created,
            )
    elif created is not None and now - created > policy.max_age:
        return VerificationError(
            Reason.EXPIRED,
            f"created {_seconds(now - created)} s ago, more than max_age={policy.max_age:g} s "
            f"(created={created}, now={_seconds(now)})",
            signed_at=created,
        )
    return None


def label_allowed(label: str, policy: Policy) -> bool:
    """Whether the policy lets signature ``label`` be tried at all.

    Args:
        label: A label present in both signature headers.
        policy: Its ``labels`` (empty: any label).

    Returns:
        ``True`` if the label may be tried.
    """
    return not policy.labels or label in policy.labels


def order_labels(
    labels: Iterable[str],
    key_id_of: Callable[[str], object],
    known: Callable[[str], bool],
    policy: Policy,
) -> list[str]:
    """The labels to try, in order, at most ``policy.max_signatures`` (RFC 9421 §3.2, R16).

    With configured labels, those present in that order; otherwise signatures whose
    ``keyid`` is in the key set first, ``sig1`` before the others, then header order
    (labels carry no meaning, RFC 9421 §7.2.5).

    Args:
        labels: The labels present in both headers, in header order.
        key_id_of: The ``keyid`` parameter of a label (any type, as parsed).
        known: Whether a key id is in the key set.
        policy: Supplies ``labels`` and ``max_signatures``.

    Returns:
        The labels to try.

    Raises:
        VerificationError: ``label_mismatch`` when no label may be tried.
    """
    paired = list(labels)
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
        kid = key_id_of(label)
        return (0 if isinstance(kid, str) and known(kid) else 1, 0 if label == "sig1" else 1)

    return sorted(paired, key=rank)[: policy.max_signatures]


def head_error(coverage: Coverage, policy: Policy) -> VerificationError | None:
    """Why a component list is unacceptable whatever the request, if it is.

    Args:
        coverage: The covered components.
        policy: Supplies ``max_components`` and ``required_components``.

    Returns:
        ``malformed_header`` above the component cap, ``missing_component`` for an
        uncovered required component, or ``None``.
    """
    if len(coverage.components) > policy.max_components:
        return _malformed(f"more than {policy.max_components} covered components")
    for name in policy.required_components:
        if name not in coverage.names:
            return VerificationError(Reason.MISSING_COMPONENT, f"{name!r} is not covered")
    return None


def coverage_error(
    coverage: Coverage, policy: Policy, *, has_body: bool, has_query: bool
) -> VerificationError | None:
    """Why a signature does not cover enough of this request, if it does not.

    Args:
        coverage: The covered components.
        policy: The policy.
        has_body: The body is not empty.
        has_query: The query is not empty.

    Returns:
        ``missing_component`` (or ``malformed_header`` for too many components), or
        ``None`` when the coverage is enough.
    """
    error = head_error(coverage, policy)
    if error is not None:
        return error
    if policy.require_digest and has_body and not coverage.digests:
        # R22: the body is signed only through a covered digest.
        return VerificationError(
            Reason.MISSING_COMPONENT, "the body is not covered by content-digest or digest"
        )
    if policy.require_query and has_query and not coverage.covers_query:
        return VerificationError(Reason.MISSING_COMPONENT, "the query is not covered")
    return None


def covered_size_error(size: int, lines: int, policy: Policy) -> VerificationError | None:
    """Why the covered values are too large to build, if they are (threat model K9).

    Checked before any covered value is combined, parsed or decoded, so the cost of
    building a base stays bounded whatever the headers.

    Args:
        size: The characters the covered components read (see
            :func:`._components.covered_size`).
        lines: The most lines a covered field has.
        policy: Supplies ``max_covered_bytes`` and ``max_field_lines``.

    Returns:
        ``malformed_header``, or ``None``.
    """
    if size > policy.max_covered_bytes:
        return _malformed(f"covered values exceed {policy.max_covered_bytes} bytes")
    if lines > policy.max_field_lines:
        return _malformed(f"a covered field has more than {policy.max_field_lines} lines")
    return None


def key_error(key: VerifyingKey, kid: str, alg: object, policy: Policy) -> VerificationError | None:
    """Why ``key`` may not verify this signature, if it may not.

    Args:
        key: The key the ``keyid`` names.
        kid: That key id.
        alg: The ``alg`` parameter, or ``None`` when absent.
        policy: Supplies the allowed ``key_types``.

    Returns:
        ``unsupported_key`` for a key type the policy does not allow,
        ``unsupported_algorithm`` for an ``alg`` that contradicts the key (R5/R17:
        the algorithm comes from the key) or that no registry defines (unless the
        policy allows it), or ``None``.
    """
    if key.key_type not in policy.key_types:
        return VerificationError(
            Reason.UNSUPPORTED_KEY, f"key {kid!r} is {key.key_type}, not allowed", key_id=kid
        )
    if alg is not None:
        if alg != key.algorithm:
            return VerificationError(
                Reason.UNSUPPORTED_ALGORITHM, f"alg={alg!r} but key {kid!r} is {key.algorithm}"
            )
        if alg not in REGISTERED_ALGORITHMS and not policy.allow_unregistered_alg:
            return VerificationError(
                Reason.UNSUPPORTED_ALGORITHM,
                f"alg={alg!r} is not a registered name (Policy.allow_unregistered_alg)",
            )
    return None


def choose_layouts(
    policy: Policy,
    version: str | None,
    coverage: Coverage,
    learnt: tuple[Layout, ...],
) -> tuple[Layout, ...]:
    """The base layouts to try, in order (upvest-protocol.md §2.4).

    A fixed ``dialect`` wins; else ``upvest-signature-version`` (``6`` or ``15``)
    decides; else both are tried, the learnt order first, or, before anything is
    learnt, the layout whose digest field is covered. The order only changes the
    cost: both layouts cover the same components and parameters.

    Args:
        policy: Supplies ``dialect``.
        version: The combined ``upvest-signature-version`` field, if present.
        coverage: The covered components.
        learnt: The order that verified last time (:data:`DEFAULT_LAYOUTS` if none).

    Returns:
        The layouts to try.
    """
    if policy.dialect != "auto":
        return (policy.dialect,)
    if version == "6":
        return ("upvest-v6",)
    if version == "15":
        return ("rfc9421",)
    if learnt is DEFAULT_LAYOUTS:
        return coverage.first_layouts
    return learnt


def bad_signature(label: str, kid: str, layouts: Iterable[Layout]) -> VerificationError:
    """The error for a signature that failed the ECDSA verify under every layout tried.

    Args:
        label: The signature label.
        kid: The key id.
        layouts: The layouts tried.

    Returns:
        The ``bad_signature`` error.
    """
    return VerificationError(
        Reason.BAD_SIGNATURE,
        f"signature {label!r} does not verify with key {kid!r} ({'/'.join(layouts)})",
        key_id=kid,
    )
