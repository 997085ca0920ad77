"""The parts of a refused request, kept on its error for the failure diagnosis.

For ``bad_signature`` and ``digest_mismatch`` (the reasons a deployment mistake hides
behind) the verifier calls :func:`remember_failure` on its failure path: it stores
references to the request's parts on the error, computing nothing, so a failure
costs what it did and a success nothing at all. :mod:`._diagnose` reads them back
with :func:`failure_context`, only when a diagnosis is asked for.

Kept small on purpose: the verifier imports it; the diagnosis and its dependencies
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._message import HeaderInput, normalise_fields
from .errors import Reason, VerificationError

if TYPE_CHECKING:
    from ._keyset import KeySet
    from ._policy import Policy
    from ._result import Layout

__all__ = ["DIAGNOSED", "FailureContext", "failure_context", "remember_failure"]

DIAGNOSED = frozenset({Reason.BAD_SIGNATURE, Reason.DIGEST_MISMATCH})
"""The reasons a deployment mistake usually hides behind; only these keep a context."""

_ATTRIBUTE = "_upvest_failure"


class FailureContext:
    """The parts of a refused request, kept on its error for a later diagnosis.

    Holds references only; nothing is computed or copied when a request fails. Its
    ``repr`` shows neither the headers nor the body.

    Attributes:
        method: The method as given to the verifier.
        url: The URL as given to the verifier.
        headers: The header input, when ``fields`` is ``None``.
        fields: The normalised field lines, when the strict path built them.
        body: The raw body.
        keys: The key-set snapshot it was checked against.
        policy: The policy.
        layouts: The learnt layout order.
    """

    __slots__ = ("body", "fields", "headers", "keys", "layouts", "method", "policy", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: HeaderInput | None,
        fields: dict[str, list[str]] | None,
        body: bytes,
        keys: KeySet,
        policy: Policy,
        layouts: tuple[Layout, ...],
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.fields = fields
        self.body = body
        self.keys = keys
        self.policy = policy
        self.layouts = layouts

    def field_lines(self) -> dict[str, list[str]]:
        """The header field lines grouped by lower-case name."""
        if self.fields is None:
            self.fields = normalise_fields(self.headers or ())
        return self.fields

    def __repr__(self) -> str:
        return (
            f"FailureContext(method={self.method!r}, url={self.url[:80]!r}, "
            f"body=<{len(self.body)} bytes>)"
        )


def remember_failure(
    error: VerificationError,
    method: str,
    url: str,
    headers: HeaderInput | None,
    fields: dict[str, list[str]] | None,
    body: bytes,
    keys: KeySet,
    policy: Policy,
    layouts: tuple[Layout, ...],
) -> None:
    """Keep the request's parts on a ``bad_signature`` or ``digest_mismatch`` error.

    Any other error is left alone. Called by the verifier on its failure path only.

    Args:
        error: The error about to be raised.
        method: The method.
        url: The URL.
        headers: The header input (must still be readable), or ``None`` with ``fields``.
        fields: The normalised field lines, if already built.
        body: The raw body.
        keys: The key-set snapshot.
        policy: The policy.
        layouts: The layout order the verifier used.
    """
    if error.reason in DIAGNOSED:
        context = FailureContext(method, url, headers, fields, body, keys, policy, layouts)
        setattr(error, _ATTRIBUTE, context)


def failure_context(error: BaseException) -> FailureContext | None:
    """The parts :func:`remember_failure` kept on ``error``, or ``None``."""
    context = getattr(error, _ATTRIBUTE, None)
    return context if isinstance(context, FailureContext) else None
