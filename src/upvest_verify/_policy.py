"""Verification policy: what a webhook must cover and how fresh it must be."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from ._crypto import ALGORITHMS, KeyType
from .errors import ConfigurationError

__all__ = ["DialectSetting", "EncodingSetting", "Policy"]

DialectSetting = Literal["auto", "upvest-v6", "rfc9421"]
EncodingSetting = Literal["auto", "der", "raw"]

_DIALECTS = ("auto", "upvest-v6", "rfc9421")
_ENCODINGS = ("auto", "der", "raw")


@dataclass(frozen=True, slots=True)
class Policy:
    """What the verifier demands of a webhook, on top of a valid signature.

    The defaults fit Upvest webhooks (RFC 9421 §3.2.1 asks every verifier to set
    such requirements). All durations are seconds.

    Attributes:
        labels: Signature labels to check, in order. Empty: signatures whose ``keyid``
            is in the key set first, ``sig1`` before the others, then header order
            (labels carry no meaning, RFC 9421 §7.2.5).
        required_components: Derived components or fields that must be covered.
        require_digest: A non-empty body must be covered by ``content-digest`` or
            ``digest`` (the body is otherwise unsigned).
        require_query: A request with a query must cover it (``@query``,
            ``@target-uri`` or ``@request-target``; otherwise the query is unsigned).
        require_created: ``created`` must be present.
        require_nonce: ``nonce`` must be present.
        skew: Allowed clock difference with Upvest.
        max_age: Without ``expires``, the oldest acceptable ``created``.
        max_window: Longest acceptable ``expires - created`` (``None``: no cap).
        dialect: ``"auto"`` (both base layouts), ``"upvest-v6"`` or ``"rfc9421"``.
        signature_encoding: ``"auto"`` (DER or raw r||s), ``"der"`` or ``"raw"``.
        key_types: Key types that may verify. Upvest uses only ``P-521``; ``P-256``,
            ``P-384`` and ``Ed25519`` exist to run public test vectors.
        max_body_size: Largest body accepted (``body_too_large`` above).
        max_header_bytes: Largest ``Signature`` plus ``Signature-Input`` size.
        max_labels: Most members a signature header may have (``malformed_header``).
        max_signatures: Most signatures evaluated per request.
        max_components: Most covered components per signature.
        max_covered_bytes: Most characters the covered components of all the
            signatures evaluated may read, each source once: a covered field's lines,
            a derived value, the query for ``@query-param`` (``malformed_header``
            above; a request's cost stays bounded whatever it covers).
        max_field_lines: Most lines a covered field may have (``malformed_header``).
        allow_unregistered_alg: Accept an ``alg`` parameter that names the key's
            algorithm by a name outside the IANA registry (``ecdsa-p521-sha512``: P-521
            has none). Off by default: Upvest sends no ``alg``, and an ``alg`` no
            standard defines is refused (``unsupported_algorithm``).
        max_verifications: Most ECDSA verifications per request, over every label,
            base layout and alternative reconstruction; once spent, the remaining
            candidates fail with ``bad_signature``.
    """

    labels: tuple[str, ...] = ()
    required_components: tuple[str, ...] = ("@method", "@path")
    require_digest: bool = True
    require_query: bool = True
    require_created: bool = True
    require_nonce: bool = False
    skew: float = 60
    max_age: float = 300
    max_window: float | None = 3600
    dialect: DialectSetting = "auto"
    signature_encoding: EncodingSetting = "auto"
    key_types: frozenset[KeyType] = field(default_factory=lambda: frozenset({"P-521"}))
    max_body_size: int = 4 * 1024 * 1024
    max_header_bytes: int = 8 * 1024
    max_labels: int = 64
    max_signatures: int = 4
    max_components: int = 32
    max_covered_bytes: int = 8 * 1024
    max_field_lines: int = 16
    max_verifications: int = 4
    allow_unregistered_alg: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable for the tuple/frozenset fields, then validate, so a bad
        # policy fails at start-up rather than on the first webhook.
        object.__setattr__(self, "labels", _str_tuple("labels", self.labels))
        object.__setattr__(
            self, "required_components", _str_tuple("required_components", self.required_components)
        )
        key_types = frozenset(cast(Iterable[KeyType], self.key_types))
        unknown = key_types - set(ALGORITHMS)
        if unknown or not key_types:
            allowed = sorted(ALGORITHMS)
            raise ConfigurationError(
                f"key_types must be a non-empty subset of {allowed}, got {sorted(key_types)}"
            )
        object.__setattr__(self, "key_types", key_types)
        if self.dialect not in _DIALECTS:
            raise ConfigurationError(f"dialect must be one of {_DIALECTS}, got {self.dialect!r}")
        if self.signature_encoding not in _ENCODINGS:
            raise ConfigurationError(
                f"signature_encoding must be one of {_ENCODINGS}, got {self.signature_encoding!r}"
            )
        for name in ("skew", "max_age"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if self.max_window is not None and (
            isinstance(self.max_window, bool)
            or not isinstance(self.max_window, (int, float))
            or self.max_window <= 0
        ):
            raise ConfigurationError(f"max_window must be > 0 or None, got {self.max_window!r}")
        for name in (
            "max_body_size",
            "max_header_bytes",
            "max_labels",
            "max_signatures",
            "max_components",
            "max_covered_bytes",
            "max_field_lines",
            "max_verifications",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")


def _str_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"{name} must be a sequence of strings, not a single str")
    try:
        items = tuple(cast(Iterable[object], value))
    except TypeError as e:
        raise ConfigurationError(f"{name} must be a sequence of strings") from e
    if not all(isinstance(v, str) and v for v in items):
        raise ConfigurationError(f"{name} must contain non-empty strings")
    return cast(tuple[str, ...], items)
