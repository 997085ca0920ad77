"""Covered components: validation of identifiers and derivation of their values.

RFC 9421 §2 defines two kinds of component: HTTP fields (``content-type``) and
derived components (``@method``). A component identifier is an sf-string with
parameters; its value is computed from the message the verifier *received*
(RFC 9421 §3.2, R6) and never taken from a header of the same name (§7.5.1).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from . import _sfv
from ._message import Message
from .errors import Reason, VerificationError

__all__ = [
    "Component",
    "component_value",
    "covered_size",
    "parse_component",
    "request_derived_value",
]

# RFC 9421 §2.2: the derived components a request or response can have. Draft-06's
# "@query-params" and "@request-response" are gone in RFC 9421; "@signature-params"
# is the last line of every base and may never be listed as covered (B5).
REQUEST_DERIVED = frozenset(
    {
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
        "@query-param",
    }
)
RESPONSE_DERIVED = frozenset({"@status"})
_KNOWN_DERIVED = REQUEST_DERIVED | RESPONSE_DERIVED

# RFC 9421 §2.1: parameters a component identifier may carry; anything else is an error.
_FIELD_PARAMS = frozenset({"sf", "key", "bs", "req", "tr"})
_DERIVED_PARAMS = frozenset({"req"})

_T = TypeVar("_T")

# Field names (RFC 9110 §5.1 token) in lower case; RFC 9421 §2.1 requires lower case.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")

# RFC 9421 §2.1.1: ";sf" re-serialises a field of *known* structured type.
_SF_TYPES: Mapping[str, str] = {
    "accept-signature": "dictionary",
    "cache-status": "list",
    "cdn-cache-control": "dictionary",
    "content-digest": "dictionary",
    "example-dict": "dictionary",
    "example-list": "list",
    "priority": "dictionary",
    "proxy-status": "list",
    "repr-digest": "dictionary",
    "signature": "dictionary",
    "signature-input": "dictionary",
    "want-content-digest": "dictionary",
    "want-repr-digest": "dictionary",
}

# obs-fold (RFC 9112 §5.2): CRLF followed by whitespace becomes one SP (RFC 9421 §2.1).
_OBS_FOLD = re.compile(r"\r?\n[ \t]+")
# Printable ASCII plus HTAB: anything else cannot appear in a base (RFC 9421 §2.5).
_BASE_SAFE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class Component:
    """One covered component identifier.

    Attributes:
        name: The component name (``@method``, ``content-digest``).
        params: Its parameters in received order (``(("name", "Pet"),)``).
        quoted: The strict RFC 8941 serialisation, e.g. ``"@query-param";name="Pet"``.
        unquoted: The same without quotes around the name (Upvest's v6 base lines).
        is_plain_field: A field without parameters (the strict path reads its single line directly).
        is_derived: A derived (``@``) component.
    """

    name: str
    params: tuple[tuple[str, _sfv.BareItem], ...]
    quoted: str
    unquoted: str
    is_plain_field: bool
    is_derived: bool


def _malformed(msg: str) -> VerificationError:
    return VerificationError(Reason.MALFORMED_HEADER, msg)


def _unavailable(msg: str) -> VerificationError:
    return VerificationError(Reason.COMPONENT_UNAVAILABLE, msg)


def parse_component(item: object) -> Component:
    """Validate one member of a ``Signature-Input`` inner list.

    Args:
        item: A parsed SF item ``(bare_item, params)``.

    Returns:
        The component identifier.

    Raises:
        VerificationError: ``malformed_header`` for a non-string item, an upper-case or
            invalid name, ``@signature-params``, or an unknown or ill-typed parameter
            (RFC 9421 §2, R7); ``component_unavailable`` for an unknown derived component
            whose name is well-formed (``"@foo"``).
    """
    if not isinstance(item, tuple) or len(item) != 2:
        raise _malformed("covered component is not an item")
    name, params = item
    # RFC 9421 §2: "component identifiers are serialized as sf-string"; a token
    # like (@method) or an integer is not one (A9).
    if type(name) is not str:
        raise _malformed(f"covered component {name!r} is not a string")
    if name.startswith("@"):
        if name == "@signature-params":
            raise _malformed('"@signature-params" cannot be a covered component')
        if name not in _KNOWN_DERIVED:
            if _FIELD_NAME.fullmatch(name[1:]):
                # Well-formed, but no value can be derived for it (threat model B6).
                raise _unavailable(f"unknown derived component {name!r}")
            raise _malformed(f"invalid derived component name {name!r}")
        allowed = _DERIVED_PARAMS | ({"name"} if name == "@query-param" else set())
    else:
        if not _FIELD_NAME.fullmatch(name):
            # Upper case is rejected, not folded: "Content-Digest" must not satisfy a
            # policy asking for "content-digest" (B4).
            raise _malformed(f"invalid field name {name!r} (must be lower-case token)")
        allowed = _FIELD_PARAMS
    assert isinstance(params, dict)
    for key, value in params.items():
        if key not in allowed:
            raise _malformed(f"unknown parameter {key!r} on component {name!r}")
        if key in ("name", "key"):
            if type(value) is not str:
                raise _malformed(f"parameter {key!r} of {name!r} must be a string")
        elif value is not True:
            raise _malformed(f"parameter {key!r} of {name!r} must be boolean true")
    if "sf" in params and ("bs" in params or "key" in params):
        # RFC 9421 §2.1.3: bs cannot be combined with sf or key.
        raise _malformed(f"incompatible parameters on {name!r}")
    if "bs" in params and "key" in params:
        raise _malformed(f"incompatible parameters on {name!r}")
    if name == "@query-param" and "name" not in params:
        raise _malformed('"@query-param" needs a name parameter')
    param_tuple = tuple(params.items())
    ser_params = _sfv.serialize_params(params) if params else ""
    derived = name.startswith("@")
    return Component(
        name=name,
        params=param_tuple,
        quoted=_sfv.serialize_bare_item(name) + ser_params,
        unquoted=name + ser_params,
        is_plain_field=not derived and not params,
        is_derived=derived,
    )


def _check_ascii(name: str, value: str) -> str:
    if value.isascii() and value.isprintable():  # fast path: printable ASCII, no HTAB
        return value
    if not _BASE_SAFE.fullmatch(value):
        # RFC 9421 §2.5: a base containing non-ASCII or control characters MUST fail (B17).
        raise _malformed(f"component {name!r} has a non-ASCII or control character")
    return value


def _field_lines(message: Message, comp: Component) -> list[str]:
    lines = message.fields.get(comp.name)
    if lines is None:
        raise _unavailable(f"covered field {comp.name!r} is absent")
    return lines


def _combined(lines: list[str]) -> str:
    # RFC 9421 §2.1: strip leading/trailing whitespace of each line, replace obs-fold
    # with one SP, join the lines with ", " in order. Never only the first line (R21).
    if len(lines) == 1:
        value = lines[0]
        if "\n" in value:
            value = _OBS_FOLD.sub(" ", value)
        return value.strip(" \t")
    return ", ".join((_OBS_FOLD.sub(" ", v) if "\n" in v else v).strip(" \t") for v in lines)


def _memo(message: Message, key: tuple[str, str], work: Callable[[], _T]) -> _T:
    # Each field is combined, parsed and re-serialised at most once per message, however
    # many components and signatures cover it (K9). A failure is remembered too.
    memo = message.memo
    if key not in memo:
        try:
            memo[key] = work()
        except VerificationError as e:
            memo[key] = e
    found = memo[key]
    if isinstance(found, VerificationError):
        raise found.with_traceback(None)
    return found  # type: ignore[no-any-return]


def _dictionary(message: Message, name: str, value: str) -> _sfv.Dictionary:
    def work() -> _sfv.Dictionary:
        try:
            return _sfv.parse_dictionary(value)
        except _sfv.SFError as e:
            raise _unavailable(f"field {name!r} is not a dictionary: {e}") from None

    return _memo(message, ("dictionary", name), work)


def _structured(message: Message, name: str, kind: str, value: str) -> str:
    def work() -> str:
        try:
            if kind == "dictionary":
                return _sfv.serialize_dictionary(_sfv.parse_dictionary(value))
            return _sfv.serialize_list(_sfv.parse_list(value))
        except _sfv.SFError as e:
            raise _unavailable(f"field {name!r} is not a valid {kind}: {e}") from None

    return _memo(message, ("sf", name), work)


def _field_value(message: Message, comp: Component) -> str:
    params = dict(comp.params)
    if "req" in params:
        # RFC 9421 §2.4: "req" takes the value from the related request; a request
        # message has none (B7).
        raise _unavailable(f"{comp.name!r};req has no related request")
    if "tr" in params:
        raise _unavailable(f"{comp.name!r};tr: trailers are not available")
    lines = _field_lines(message, comp)
    if "bs" in params:
        return _memo(message, ("bs", comp.name), lambda: _byte_sequences(comp.name, lines))
    value = _memo(
        message, ("combined", comp.name), lambda: _check_ascii(comp.name, _combined(lines))
    )
    if "key" in params:
        # RFC 9421 §2.1.2: the member of a Dictionary field, re-serialised strictly.
        members = _dictionary(message, comp.name, value)
        key = params["key"]
        assert isinstance(key, str)
        if key not in members:
            raise _unavailable(f"dictionary {comp.name!r} has no member {key!r}")
        member = members[key]
        if _sfv.is_inner_list(member):
            return _sfv.serialize_inner_list(*member)
        return _sfv.serialize_item(member)
    if "sf" in params:
        # RFC 9421 §2.1.1: strict re-serialisation of a field of known type.
        kind = _SF_TYPES.get(comp.name)
        if kind is None:
            raise _unavailable(f"{comp.name!r} is not a known structured field")
        return _structured(message, comp.name, kind, value)
    return value


def _byte_sequences(name: str, lines: list[str]) -> str:
    # RFC 9421 §2.1.3: each line wrapped as a byte sequence, joined with ", ".
    parts = []
    for line in lines:
        try:
            raw = _OBS_FOLD.sub(" ", line).strip(" \t").encode("latin-1")
        except UnicodeEncodeError as e:
            raise _malformed(f"field {name!r} has a non-ISO-8859-1 character") from e
        parts.append(":" + base64.b64encode(raw).decode("ascii") + ":")
    return ", ".join(parts)


# RFC 9421 §2.2.8 refers to the WHATWG "application/x-www-form-urlencoded percent-encode
# set": everything but ASCII alphanumerics and *-._ is encoded (so "~" and " " are too).
# urllib.parse (with ipaddress) is imported on first use: only @query-param needs it,
# and a cold process that never sees one need not pay for it.
def _form_encode(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="*").replace("~", "%7E")


def _form_decode(text: str) -> str:
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "replace")


# Text that form-decodes and re-encodes to itself: ASCII alphanumerics and *-._ only.
_FORM_SAFE = re.compile(r"[A-Za-z0-9*\-._]*")


def _form_normal(text: str) -> str:
    # RFC 9421 §2.2.8's decode-then-encode, skipped for text it cannot change.
    return text if _FORM_SAFE.fullmatch(text) else _form_encode(_form_decode(text))


def _query_params(message: Message) -> dict[str, list[str]]:
    # RFC 9421 §2.2.8: parse the query as application/x-www-form-urlencoded, then
    # re-encode names and values; the "name" parameter holds the encoded name. Done
    # once per message, whatever the number of @query-param components (K9).
    params: dict[str, list[str]] | None = message.memo.get(("query", ""))
    if params is None:
        params = {}
        for pair in (message.query or "").split("&"):
            if not pair:
                continue
            raw_name, _, raw_value = pair.partition("=")
            params.setdefault(_form_normal(raw_name), []).append(_form_normal(raw_value))
        message.memo[("query", "")] = params
    return params


def component_value(message: Message, comp: Component) -> list[str]:
    """Compute the base-line value(s) of a covered component.

    Args:
        message: The received message.
        comp: The component identifier.

    Returns:
        One value per base line; only ``@query-param`` can give several (one per
        occurrence of the parameter, in order).

    Raises:
        VerificationError: ``component_unavailable`` when the message cannot supply the
            component; ``malformed_header`` for a non-ASCII value.
    """
    name = comp.name
    if not comp.is_derived:
        return [_field_value(message, comp)]
    if comp.params and "req" in dict(comp.params):
        raise _unavailable(f"{name!r};req has no related request")
    if name == "@status":
        if message.status is None:
            raise _unavailable('"@status" is not available on a request')
        return [f"{message.status:03d}"]
    if message.method is None:
        raise _unavailable(f"{name!r} is not available on a response")
    if name == "@target-uri" and message.target_uri is not None:
        # RFC 9421 §2.2.2: the target URI as sent; an explicit default port stays.
        return [_check_ascii(name, message.target_uri)]
    if name != "@query-param":
        value = request_derived_value(
            name, message.method, message.scheme, message.authority, message.path, message.query
        )
        if value is None:
            if name == "@authority":
                raise _unavailable('"@authority" needs an absolute URL or a single Host field')
            raise _unavailable(f"{name!r} needs the absolute URL the request was sent to")
        return [_check_ascii(name, value)]
    # "@query-param"; parse_component admits no other name
    param = dict(comp.params)["name"]
    assert isinstance(param, str)
    values = _query_params(message).get(param)
    if not values:
        raise _unavailable(f"query parameter {param!r} is absent")
    if len(values) > 1:
        # RFC 9421 §2.2.8: a name that occurs more than once must not be signed this way.
        raise _unavailable(f"query parameter {param!r} occurs {len(values)} times")
    return [_check_ascii(name, values[0])]


def covered_size(
    message: Message, components: Sequence[Component], seen: set[str] | None = None
) -> tuple[int, int]:
    """What building these components' values would read, before reading it (K9).

    Each source is counted once: a field's lines as received (however many components
    name the field), a derived component's value, the whole query for ``@query-param``.
    Values are built once per message (:attr:`Message.memo`), so this is what the work
    costs.

    Args:
        message: The received message.
        components: The covered components.
        seen: Sources already counted for this message (field names and derived
            component names), updated in place; sources in it count nothing more, so
            the sizes of several signatures add up to what the whole message reads.

    Returns:
        ``(size, lines)``: the characters of the sources not yet counted, and the most
        lines any covered field has.
    """
    if seen is None:
        seen = set()
    size = most_lines = 0
    for comp in components:
        name = comp.name
        if not comp.is_derived:
            lines = message.fields.get(name)
            if lines is not None:
                most_lines = max(most_lines, len(lines))
                if name not in seen:
                    size += sum(map(len, lines))
        elif name in seen:
            pass
        elif name == "@query-param":
            size += len(message.query or "")
        elif name == "@target-uri" and message.target_uri is not None:
            size += len(message.target_uri)
        elif name != "@status" and message.method is not None:
            value = request_derived_value(
                name,
                message.method,
                message.scheme,
                message.authority,
                message.path,
                message.query,
            )
            size += 0 if value is None else len(value)
        seen.add(name)
    return size, most_lines


def request_derived_value(
    name: str,
    method: str,
    scheme: str | None,
    authority: str | None,
    path: str,
    query: str | None,
) -> str | None:
    """The value of a request-derived component other than ``@query-param``.

    Args:
        name: ``@method``, ``@path``, ``@query``, ``@request-target``, ``@authority``,
            ``@scheme`` or ``@target-uri``.
        method, scheme, authority, path, query: The request's parts, as in
            :class:`~upvest_verify._message.Message`.

    Returns:
        The value, not yet checked for printable ASCII; ``None`` when the request
        cannot supply it (no authority, or no scheme, from an origin-form URL).
    """
    if name == "@method":
        # RFC 9421 §2.2.1: the method as received, case preserved (B19).
        return method
    if name == "@path":
        # RFC 9421 §2.2.6: the raw absolute path; an empty path is "/" (B13).
        return path
    if name == "@query":
        # RFC 9421 §2.2.7: "?" plus the raw query, or "?" alone when there is none.
        return "?" + (query or "")
    if name == "@request-target":
        # RFC 9421 §2.2.5: origin form for an ordinary request.
        return path if query is None else f"{path}?{query}"
    if name == "@authority":
        return authority
    if scheme is None or authority is None:
        return None
    if name == "@scheme":
        return scheme
    target = f"{scheme}://{authority}{path}"  # "@target-uri"
    return target if query is None else f"{target}?{query}"
