"""Self-explaining failures: what a refused webhook looked like, and which setting to fix.

A deployment mistake (a proxy that changes the host or strips a path prefix, a
``public_url`` holding the whole webhook URL, a middleware that rewrites the body)
ends as ``bad_signature`` or ``digest_mismatch``, exactly like a forgery, unless the
log says what the verifier rebuilt. So for those two reasons the verifier keeps the
request's parts on the error (:func:`._failure.remember_failure`: references only,
nothing is computed), and :func:`diagnose` works out, only when something asks (a log line that
is actually written, the command line):

- what was rebuilt: method, scheme, authority, path, and whether a query was present
  (never its text);
- the signature label, the covered component names, the base layouts and
  reconstructions tried and the signature encoding;
- the body length against ``Content-Length``;
- where a common mistake fits the evidence, one-line :class:`Hint` s naming the
  setting to change.

It never shows the body, the signature, or header values other than those a hint
rests on (``Host``, the forwarding fields, ``Content-Length``, ``Content-Encoding``);
the signature base, which holds the covered header values, only with
``show_base=True``.

Cost: the parts are parsed again within the caps verification applies. Whether a
re-encoded body would match the signed digest is checked by hashing a few variants:
always for bodies up to 4 KiB, for bodies up to 256 KiB at most ten times per second
per process, never for larger ones. The body rules are in :mod:`._diagnose_body`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._components import component_value
from ._crypto import decode_signature
from ._diagnose_body import body_hints, content_length_text
from ._diagnose_url import URLSetup, clip, internal_host, url_hints
from ._failure import FailureContext, failure_context
from ._message import Message, request_message
from ._result import Layout
from ._rules import choose_layouts, order_labels
from ._verify import (
    SignatureInput,
    candidate_values,
    parse_signature_input,
    parse_signatures,
    signature_base,
)
from .errors import Reason, VerificationError

__all__ = ["Diagnosis", "Hint", "Surface", "URLSetup", "diagnose", "internal_host"]

Surface = Literal["adapter", "cli"]
"""Whose settings a hint names: an adapter's (``public_url``...) or the command line's."""


@dataclass(frozen=True, slots=True)
class Hint:
    """A likely cause of a refusal and what to change.

    Attributes:
        code: A stable name: ``doubled_path``, ``path_prefix``, ``behind_proxy``,
            ``internal_url``, ``host_rewritten``, ``body_rewritten``, ``body_decoded``,
            ``body_length`` or ``empty_body``.
        text: One line naming the setting to change.
    """

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a refused webhook looked like to the verifier, and the likely causes.

    Attributes:
        reason: ``bad_signature`` or ``digest_mismatch``.
        method: The method.
        scheme: The URL's scheme, or ``None`` for an origin-form URL.
        authority: The normalised authority, or ``None``.
        path: The path the signature base used (with any prefix).
        query_length: Characters in the query, or ``None`` without a query.
        label: The label of the signature diagnosed, if one could be parsed.
        covered: Its covered component identifiers (names, never values).
        tried: The bases tried, as ``layout/reconstruction``; empty when the failure
            came before any (a digest mismatch, undecodable signature bytes).
        encoding: The signature encoding (``der``, ``raw``), or ``undecodable``.
        body_length: Bytes in the body.
        content_length: The ``Content-Length`` field (digits, ``"invalid"``,
            ``"several"``), or ``None`` when absent.
        setup: How the URL was made, when known.
        hints: The likely causes, most specific first.
        notes: Things the diagnosis could not do (a skipped body check).
        bases: ``(layout/reconstruction, base)`` pairs; only when asked for.
    """

    reason: Reason
    method: str
    scheme: str | None
    authority: str | None
    path: str
    query_length: int | None
    label: str | None
    covered: tuple[str, ...]
    tried: tuple[str, ...]
    encoding: str | None
    body_length: int
    content_length: str | None
    setup: URLSetup | None
    hints: tuple[Hint, ...]
    notes: tuple[str, ...] = ()
    bases: tuple[tuple[str, str], ...] = ()

    @property
    def rebuilt(self) -> str:
        """``METHOD scheme://authority/path``: what the signature base was built over."""
        origin = f"{self.scheme}://{self.authority}" if self.scheme and self.authority else ""
        return f"{self.method} {origin}{self.path}"

    def _tried_text(self) -> str:
        if self.tried:
            return " ".join(self.tried)
        if self.reason is Reason.DIGEST_MISMATCH:
            return "none (the digest is checked first)"
        return "none"

    def _query_text(self) -> str:
        return "none" if self.query_length is None else f"{self.query_length} chars"

    def __str__(self) -> str:
        """The diagnosis on one line of ``key=value`` pairs (values quoted), hints last."""
        parts = [
            f"rebuilt={clip(self.rebuilt)!r}",
            f"query={self._query_text()}",
            f"label={self.label!r}",
            f"covered={' '.join(self.covered)!r}",
            f"tried={self._tried_text()!r}",
            f"encoding={self.encoding!r}",
            f"body_bytes={self.body_length}",
            f"content_length={self.content_length!r}",
        ]
        if self.setup is not None:
            parts.append(f"url_settings=({self.setup.describe()})")
        parts.extend(f"note={note!r}" for note in self.notes)
        parts.extend(f"hint={hint.text!r}" for hint in self.hints)
        return " ".join(parts)

    def lines(self) -> list[str]:
        """The diagnosis as lines for a terminal (hints as ``hint: ...``; no bases)."""
        length = "absent" if self.content_length is None else self.content_length
        lines = [
            f"rebuilt: {_printable(clip(self.rebuilt))} (query: {self._query_text()})",
            f"signature: {self.label or '?'} covering {' '.join(self.covered) or '?'}",
            f"tried: {self._tried_text()}"
            + (f", signature encoding {self.encoding}" if self.encoding else ""),
            f"body: {self.body_length} bytes, Content-Length {length}",
        ]
        lines.extend(f"note: {note}" for note in self.notes)
        lines.extend(f"hint: {hint.text}" for hint in self.hints)
        return lines


def _printable(text: str) -> str:
    # A terminal gets no control characters from a request: escape them as repr() does.
    return text if text.isprintable() else repr(text)[1:-1]


class _Diagnoser:
    """One diagnosis: the kept parts parsed again, within the caps verification applies."""

    def __init__(
        self,
        error: VerificationError,
        context: FailureContext,
    ) -> None:
        self.error = error
        self.context = context
        self.fields = context.field_lines()
        self.message: Message | None = None
        self.sig: SignatureInput | None = None
        self.values: list[list[str]] | None = None
        self.names: frozenset[str] = frozenset()

    def parse(self) -> None:
        context = self.context
        try:
            self.message = request_message(context.method, context.url, self.fields)
            self.sig = self._signature(self.message)
        except VerificationError:
            return
        if self.sig is None:
            return
        self.names = frozenset(c.name for c in self.sig.components)
        try:
            self.values = [component_value(self.message, c) for c in self.sig.components]
        except VerificationError:
            self.values = None

    def _signature(self, message: Message) -> SignatureInput | None:
        # The signature verification would have reported: the error's key, else the first.
        policy = self.context.policy
        inputs, signatures = parse_signatures(message, policy)
        labels = order_labels(
            [label for label in inputs if label in signatures],
            lambda label: inputs[label][1].get("keyid"),
            self.context.keys.__contains__,
            policy,
        )
        for label in labels:
            try:
                sig = parse_signature_input(message, label, policy)
            except VerificationError:
                continue
            if self.error.key_id is None or sig.key_id == self.error.key_id:
                return sig
        return None

    def candidates(self, checked_only: bool) -> list[tuple[str, Layout, list[list[str]]]]:
        """The bases verification tried (or, after a digest mismatch, would try)."""
        if self.sig is None or self.values is None or self.message is None:
            return []
        versions = self.fields.get("upvest-signature-version")
        version = None if versions is None else ", ".join(v.strip(" \t") for v in versions)
        layouts = choose_layouts(
            self.context.policy, version, self.sig.coverage, self.context.layouts
        )
        found = candidate_values(self.sig.components, self.values, layouts)
        if checked_only:
            found = found[: self.context.policy.max_verifications]
        return [(f"{layout}/{name}", layout, list(values)) for layout, name, values in found]

    def encoding(self) -> str | None:
        sig = self.sig
        if sig is None or sig.key_id is None:
            return None
        key = self.context.keys.get(sig.key_id)
        if key is None:
            return None
        try:
            return decode_signature(
                key.key_type, sig.signature, self.context.policy.signature_encoding
            )[1]
        except VerificationError:
            return "undecodable"


def diagnose(
    error: BaseException,
    *,
    setup: URLSetup | None = None,
    surface: Surface = "adapter",
    show_base: bool = False,
) -> Diagnosis | None:
    """Explain a ``bad_signature`` or ``digest_mismatch`` raised by the verifier.

    Args:
        error: The error; only one carrying a :class:`FailureContext` is diagnosed.
        setup: How the URL was made (adapter settings and peer), when known; ignored
            when its ``url`` is not the refused request's.
        surface: Whose settings the hints name: ``"adapter"`` or ``"cli"``.
        show_base: Also build the signature bases (they hold covered header values:
            show them only to someone who asked).

    Returns:
        The diagnosis, or ``None`` for an error without a kept context.
    """
    context = failure_context(error)
    if context is None or not isinstance(error, VerificationError):
        return None
    if setup is not None and setup.url is not None and setup.url != context.url:
        setup = None  # the settings made another request's URL
    work = _Diagnoser(error, context)
    work.parse()
    checked = error.reason is Reason.BAD_SIGNATURE
    encoding = work.encoding() if checked else None
    candidates = work.candidates(checked_only=True) if encoding not in (None, "undecodable") else []
    hints = (
        []
        if work.message is None
        else [
            Hint(code, text)
            for code, text in url_hints(
                work.message, work.names, work.fields, setup, cli=surface == "cli"
            )
        ]
    )
    body_found, notes = body_hints(
        context.body, work.fields, work.sig, error.reason, cli=surface == "cli"
    )
    hints += [Hint(code, text) for code, text in body_found]
    bases: list[tuple[str, str]] = []
    if show_base and work.message is not None and work.sig is not None:
        shown = candidates if checked else work.candidates(checked_only=False)
        for name, layout, values in shown:
            base = signature_base(work.message, work.sig, layout, values).decode("ascii")
            bases.append((name if checked else f"{name} (not checked)", base))
    message = work.message
    return Diagnosis(
        reason=error.reason,
        method=context.method,
        scheme=message.scheme if message is not None else None,
        authority=message.authority if message is not None else None,
        path=message.path if message is not None else "?",
        query_length=(
            len(message.query) if message is not None and message.query is not None else None
        ),
        label=work.sig.label if work.sig is not None else None,
        covered=tuple(c.unquoted for c in work.sig.components) if work.sig is not None else (),
        tried=tuple(name for name, _, _ in candidates),
        encoding=encoding,
        body_length=len(context.body),
        content_length=content_length_text(work.fields),
        setup=setup,
        hints=tuple(_unique(hints)),
        notes=tuple(notes),
        bases=tuple(bases),
    )


def _unique(hints: Sequence[Hint]) -> list[Hint]:
    seen: set[str] = set()
    out: list[Hint] = []
    for hint in hints:
        if hint.text not in seen:
            seen.add(hint.text)
            out.append(hint)
    return out
