"""Sign HTTP requests: webhooks for the emulator, API calls for the management client.

:func:`sign_request` writes every dialect the verifier accepts (upvest-protocol.md
§2.4): Upvest's v6 base with unquoted line names or the RFC 9421 ("v15") base, DER
or raw ``r || s`` signatures, a ``Digest`` or ``Content-Digest`` body digest::

    from upvest_verify.signing import SigningKey, sign_request

    key = SigningKey.generate()
    signed = sign_request("POST", "https://receiver.example/hooks?t=7", {"content-type":
        "application/json"}, b"{}", key=key, components=["@method", "@path", "@query",
        "content-type", "content-digest"], digest="content-digest")

Component values, the base and ``@signature-params`` come from the verifier's own
code (:mod:`._components`, :mod:`._base`, :mod:`._digest`); the test suite checks that
shared code against an independently written signer and the RFC's bases.
:func:`sign_upvest_request` is Upvest's v15 request profile (§7) for the management
client; :func:`upvest_verify.testing.sign_webhook` is a thin layer over
:func:`sign_request`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from . import _sfv
from ._base import LAYOUTS, serialize_signature_params, signature_base
from ._components import Component, component_value, parse_component
from ._digest import content_digest, legacy_digest
from ._message import (
    HeaderInput,
    Message,
    field_text,
    normalise_fields,
    request_message,
    split_url,
)
from ._result import Layout
from ._signing_key import PrivateKey, SigningKey
from .errors import VerificationError
from .types import Clock

__all__ = [
    "DEFAULT_PARAMS_ORDER",
    "UPVEST_UNCOVERED_FIELDS",
    "UPVEST_UNCOVERED_PREFIXES",
    "DigestChoice",
    "PrivateKey",
    "SignedRequest",
    "SigningKey",
    "digest_fields",
    "sign_request",
    "sign_upvest_request",
    "upvest_components",
]

DigestChoice = Literal["content-digest", "digest", "both", "none"]
"""Which body digest field(s) to add: RFC 9530 ``Content-Digest``, RFC 3230 ``Digest``."""

DEFAULT_PARAMS_ORDER: tuple[str, ...] = ("keyid", "created", "expires", "nonce", "alg", "tag")
"""The order signature parameters are written in unless told otherwise (Upvest's docs)."""

# upvest-protocol.md §7.3: what Upvest's request signers never cover (Proxy
# service/signer/material/material.go), plus a third-party hint's hop-by-hop fields.
UPVEST_UNCOVERED_PREFIXES: tuple[str, ...] = (
    "cf-",
    "cdn-",
    "cookie",
    "x-",
    "priority",
    "upvest-signature",
    "sec-",
)
"""Field-name prefixes Upvest's signers never cover."""
UPVEST_UNCOVERED_FIELDS: frozenset[str] = frozenset(
    {"user-agent", "accept-encoding", "connection", "host", "expect", "te", "transfer-encoding"}
)
"""Field names Upvest's signers never cover."""

_R = TypeVar("_R", bound="SignedRequest")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A signed request, ready to send or to pass to :func:`upvest_verify.verify`.

    Attributes:
        method: The request method.
        url: The URL, as given to the signer.
        headers: Every header field line as ``(name, value)`` pairs, in order: the
            caller's, the added digest field(s), ``signature-input``, ``signature``
            and, if asked for, ``upvest-signature-version``.
        body: The raw body.
        base: The signature base that was signed (for debugging and tests).
    """

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    base: bytes = field(repr=False)

    @property
    def path(self) -> str:
        """The request target in origin form (path and query)."""
        rest = self.url.split("://", 1)[-1]
        slash = rest.find("/")
        return rest[slash:] if slash != -1 else "/"

    def header(self, name: str) -> str | None:
        """Return the first value of a header, or ``None``."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def replace_header(self: _R, name: str, value: str | None) -> _R:
        """Return a copy with header ``name`` set to ``value`` (or removed if ``None``)."""
        lower = name.lower()
        headers = [(k, v) for k, v in self.headers if k.lower() != lower]
        if value is not None:
            headers.append((name, value))
        return dataclasses.replace(self, headers=headers)

    def replace_body(self: _R, body: bytes) -> _R:
        """Return a copy with another body and the same headers (a tampered request)."""
        return dataclasses.replace(self, headers=list(self.headers), body=body)


# RFC 8941 §3.2: a Dictionary key, which is what a signature label is (RFC 9421 §4.1).
_LABEL = re.compile(r"[a-z*][a-z0-9_\-.*]*")


def digest_fields(body: bytes, digest: DigestChoice) -> list[tuple[str, str]]:
    """The body digest field(s) a sender adds for ``body``.

    Args:
        body: The raw body.
        digest: ``"digest"`` (``SHA-256=<b64>``, Upvest v6), ``"content-digest"``
            (``sha-512=:<b64>:``, RFC 9530), ``"both"`` (in that order) or ``"none"``.

    Returns:
        ``(name, value)`` pairs.

    Raises:
        ValueError: ``digest`` is none of those.
    """
    if digest not in ("digest", "content-digest", "both", "none"):
        raise ValueError(f"digest must be 'digest', 'content-digest', 'both' or 'none': {digest!r}")
    out = []
    if digest in ("digest", "both"):
        out.append(("digest", legacy_digest(body)))
    if digest in ("content-digest", "both"):
        out.append(("content-digest", content_digest(body)))
    return out


def _pairs(headers: HeaderInput) -> list[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(field_text(name), field_text(value)) for name, value in items]


def _component(spec: str) -> Component:
    # Either the serialised identifier, as in Signature-Input ('"@query-param";name="a"'),
    # or the bare name with the same parameters ('@query-param;name="a"', 'example;sf').
    if not isinstance(spec, str):
        raise ValueError(f"a component is written as a str, not {type(spec).__name__}")
    if spec.startswith('"'):
        text = spec
    else:
        name, sep, params = spec.partition(";")
        text = f'"{name}"{sep}{params}'
    try:
        return parse_component(_sfv.parse_item(text, allow_duplicates=False))
    except _sfv.SFError as e:
        raise ValueError(f"component {spec!r} is not an RFC 9421 identifier: {e}") from e
    except VerificationError as e:
        raise ValueError(f"component {spec!r}: {e.message}") from e


def _values(message: Message, comp: Component) -> list[str]:
    try:
        return component_value(message, comp)
    except VerificationError as e:
        raise ValueError(f"cannot cover {comp.quoted}: {e.message}") from e


def sign_request(
    method: str,
    url: str,
    headers: HeaderInput = (),
    body: bytes = b"",
    *,
    key: SigningKey,
    components: Iterable[str] | None = None,
    layout: Layout = "rfc9421",
    encoding: Literal["der", "raw"] = "der",
    digest: DigestChoice | None = None,
    created: int | None = None,
    expires: int | None = None,
    ttl: int | None = 60,
    nonce: str | None = None,
    with_nonce: bool = True,
    label: str = "sig1",
    alg: str | None = None,
    tag: str | None = None,
    version_header: bool | str = False,
    deterministic: bool = False,
    params_order: Sequence[str] = DEFAULT_PARAMS_ORDER,
    now: Clock | None = None,
) -> SignedRequest:
    """Sign an HTTP request in any dialect the verifier accepts (RFC 9421, Upvest v6).

    Components are written as strings, one per covered component, either as the
    serialised identifier that appears in ``Signature-Input`` or as the bare name
    followed by the same parameters; both spell the same component::

        "@method"   "content-type"   '"@query-param";name="Pet"'   '@query-param;name="Pet"'
        "example-dict;sf"   'example-dict;key="a"'   "example-header;bs"

    Args:
        method: The request method, used as given (``@method`` is case-sensitive).
        url: The absolute URL (``https://host/path?query``), or origin form
            (``/path?query``) with a ``host`` header, exactly as it will be sent.
        headers: The request's header fields: a mapping or ``(name, value)`` pairs
            (names may repeat; repeated fields are combined as RFC 9421 §2.1 says).
        body: The raw body.
        key: The signing key.
        components: The covered components, in order. ``None``: ``@method``,
            ``@path`` and ``@query`` when the URL has a non-empty query. The digest
            field(s) added are covered too, after these unless listed here.
        layout: ``"rfc9421"`` (quoted base lines, RFC 9421/draft-15/Upvest v15) or
            ``"upvest-v6"`` (Upvest's draft-06 base with unquoted line names).
        encoding: ``"der"`` (Upvest's tooling) or ``"raw"`` r||s (RFC 9421).
        digest: The digest field(s) to add (see :func:`digest_fields`). ``None``: the
            layout's own (``digest`` for v6, ``content-digest`` for RFC 9421) when the
            body is not empty, else none.
        created: The ``created`` parameter; now by default.
        expires: The ``expires`` parameter; ``created + ttl`` by default.
        ttl: Validity when ``expires`` is not given; ``None`` omits ``expires``.
        nonce: The ``nonce`` parameter; random by default.
        with_nonce: Whether to send a nonce at all.
        label: The signature label.
        alg: An ``alg`` parameter to include (none by default, like Upvest).
        tag: A ``tag`` parameter to include.
        version_header: Add an uncovered ``upvest-signature-version`` field: ``True``
            writes the layout's (``6`` or ``15``), a string writes that value.
        deterministic: RFC 6979 deterministic ECDSA (reproducible signatures).
        params_order: The order of the signature parameters; ones not named follow.
        now: The clock for ``created`` (``time.time`` by default).

    Returns:
        The signed request.

    Raises:
        ValueError: A component is malformed, repeated or cannot be computed (a
            covered header is absent, a query parameter is missing, a value is not
            ASCII), the URL is unusable, a digest field to add is already present, or
            another argument is out of range.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if encoding not in ("der", "raw"):
        raise ValueError(f"encoding must be 'der' or 'raw', got {encoding!r}")
    if not _LABEL.fullmatch(label):
        raise ValueError(f"label {label!r} is not a structured-field key (like 'sig1')")
    if isinstance(components, str):
        raise ValueError("components is a list of identifiers, not one string")
    body = bytes(body)
    pairs = _pairs(headers)
    if digest is None:
        digest = ("digest" if layout == "upvest-v6" else "content-digest") if body else "none"
    added = digest_fields(body, digest)
    present = {name.lower() for name, _ in pairs}
    for name, _ in added:
        if name in present:
            raise ValueError(f"headers already hold {name!r}; pass digest='none' to sign it as is")
    pairs += added
    try:
        message = request_message(method, url, normalise_fields(pairs))
    except VerificationError as e:
        raise ValueError(f"cannot sign this request: {e.message}") from e
    if components is None:
        components = ["@method", "@path", *(["@query"] if message.query else [])]
    comps = [_component(spec) for spec in components]
    # A digest field added here is always covered: the body is signed only through it
    # (RFC 9421 §7.2.8). One the caller already lists stays where it is.
    listed = {comp.name for comp in comps}
    comps += [_component(name) for name, _ in added if name not in listed]
    seen: set[str] = set()
    for comp in comps:
        if comp.quoted in seen:
            raise ValueError(f"component {comp.quoted} is listed twice (RFC 9421 §2)")
        seen.add(comp.quoted)
    values = [_values(message, comp) for comp in comps]

    created_at = int((now or time.time)()) if created is None else created
    params: dict[str, _sfv.BareItem] = {"keyid": key.key_id, "created": created_at}
    if expires is not None or ttl is not None:
        params["expires"] = expires if expires is not None else created_at + (ttl or 0)
    if with_nonce:
        params["nonce"] = nonce if nonce is not None else uuid.uuid4().hex
    if alg is not None:
        params["alg"] = alg
    if tag is not None:
        params["tag"] = tag
    ordered = {p: params.pop(p) for p in params_order if p in params}
    ordered.update(params)
    try:
        signature_params = serialize_signature_params(comps, ordered)
    except (_sfv.SFError, TypeError) as e:
        raise ValueError(f"cannot write the signature parameters: {e}") from e

    base = signature_base(comps, values, signature_params, layout)
    signature = key.sign(base, encoding=encoding, deterministic=deterministic)
    out = [
        *pairs,
        ("signature-input", f"{label}={signature_params}"),
        ("signature", f"{label}={_sfv.serialize_bare_item(signature)}"),
    ]
    if version_header is True:
        version_header = "6" if layout == "upvest-v6" else "15"
    if version_header:
        out.append(("upvest-signature-version", str(version_header)))
    return SignedRequest(method=method, url=url, headers=out, body=body, base=base)


# -- Upvest v15 request signing (upvest-protocol.md §7) -------------------------------


def upvest_components(url: str, headers: HeaderInput) -> list[str]:
    """The components Upvest's request signers cover (upvest-protocol.md §7.3-4).

    ``@method``, ``@path``, ``@query`` only when the URL has a (non-empty) query, then
    every header field present, in order of first appearance, except those whose name
    starts with one of :data:`UPVEST_UNCOVERED_PREFIXES` or is in
    :data:`UPVEST_UNCOVERED_FIELDS`.

    Args:
        url: The request URL.
        headers: The header fields that will be sent.

    Returns:
        Component names for :func:`sign_request`.

    Raises:
        ValueError: The URL is neither absolute nor origin form.
    """
    try:
        query = split_url(url)[3]
    except VerificationError as e:
        raise ValueError(e.message) from e
    names = ["@method", "@path", *(["@query"] if query else [])]
    for name in normalise_fields(_pairs(headers)):
        if name not in UPVEST_UNCOVERED_FIELDS and not name.startswith(UPVEST_UNCOVERED_PREFIXES):
            names.append(name)
    return names


def sign_upvest_request(
    method: str,
    url: str,
    headers: HeaderInput = (),
    body: bytes = b"",
    *,
    key: SigningKey,
    created: int | None = None,
    nonce: str | None = None,
    ttl: int = 10,
    deterministic: bool = False,
    now: Clock | None = None,
) -> SignedRequest:
    """Sign an Upvest Investment API request as Upvest's v15 signers do (§7).

    The caller supplies the headers it means to send (``accept``, ``authorization``,
    ``upvest-client-id``, ``upvest-api-version``, ``content-type``...). This adds
    ``date`` (from ``created``, RFC 1123) if absent and, for a non-empty body,
    ``content-length`` if absent and ``content-digest: sha-512=:...:``; covers the
    components :func:`upvest_components` picks; signs the RFC 9421 base with ECDSA,
    DER-encoded, label ``sig1``, parameters ``keyid;created;expires;nonce`` with
    ``expires = created + ttl`` (10 s, like Upvest's Python signer) and a UUID4
    nonce; and appends the uncovered
    ``upvest-signature-version: 15``.

    Args:
        method: The request method (upper-cased, as Upvest's signers send it).
        url: The absolute request URL.
        headers: The header fields to send.
        body: The raw body (empty for GET and DELETE).
        key: The tenant's registered signing key (P-521; Ed25519 also accepted by Upvest).
        created: The ``created`` parameter; now by default.
        nonce: The ``nonce``; a random UUID4 by default.
        ttl: ``expires - created`` in seconds.
        deterministic: RFC 6979 deterministic ECDSA (tests).
        now: The clock for ``created`` (``time.time`` by default).

    Returns:
        The signed request.

    Raises:
        ValueError: As for :func:`sign_request`, e.g. ``content-digest`` already given.
    """
    pairs = _pairs(headers)
    present = {name.lower() for name, _ in pairs}
    created_at = int((now or time.time)()) if created is None else created
    if "date" not in present:
        pairs.append(("date", email.utils.formatdate(created_at, usegmt=True)))
    if body and "content-length" not in present:
        pairs.append(("content-length", str(len(body))))
    components = upvest_components(url, pairs) + (["content-digest"] if body else [])
    return sign_request(
        method.upper(),
        url,
        pairs,
        body,
        key=key,
        components=components,
        layout="rfc9421",
        encoding="der",
        digest="content-digest" if body else "none",
        created=created_at,
        ttl=ttl,
        nonce=nonce if nonce is not None else str(uuid.uuid4()),
        version_header="15",
        deterministic=deterministic,
        params_order=("keyid", "created", "expires", "nonce"),
    )
