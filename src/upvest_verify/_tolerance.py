"""Alternative reconstructions: where a server or a draft changed a value, bounded and safe.

The signature base is first built from the values exactly as received. Two things can
make that base differ from the one the sender signed although the content is the same:

- **Comma-joined field lines.** RFC 9421 §2.1 combines repeated field lines with
  ``", "``; WSGI servers (Werkzeug, gunicorn) join them with ``","``. The receiver only
  sees ``a,b`` where the sender signed ``a, b``.
- **Percent-decoded** ``@path`` **and** ``@query``. Draft-06 (Upvest's "v6") defined
  them over percent-decoded values; RFC 9421 over the raw ones.

Only after the exact base failed does the verifier try these, within the per-request
budget of ECDSA verifications, and :class:`~upvest_verify.Dialect` reports which one
matched. Each alternative is built so that it can only equal the value of a message
with the same content:

- :func:`comma_spaced` only inserts one space after a comma that is outside a quoted
  string and not already followed by whitespace: both forms are the same comma-separated
  list (RFC 9110 §5.6.1: whitespace around the commas carries no meaning).
- :func:`percent_decoded` decodes only escapes of printable ASCII characters that
  carry no structure where they appear (never ``%``, never ``/`` in a path, never
  ``&``, ``=`` or ``+`` in a query...); if any escape is of another byte, there is no
  alternative. Two raw values whose alternatives meet therefore percent-decode to the
  same path, or form-decode to the same query parameters.

tests/core/test_tolerance.py proves both claims by property.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._components import Component
from ._result import Layout, Reconstruction

__all__ = [
    "PATH_DECODABLE",
    "QUERY_DECODABLE",
    "alternatives",
    "any_comma_spaced",
    "comma_spaced",
    "percent_decoded",
]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable characters that may not appear raw in a URI, so cannot be confused with
# structure (RFC 3986 §2): decoding them changes nothing a server or router reads.
_NOT_IN_URIS = frozenset(' "<>^`{|}')
# The characters a decoded escape may give. Everything else (%, and the delimiters of
# paths and form-encoded queries) keeps its escape, so the value has no alternative.
PATH_DECODABLE = _UNRESERVED | _NOT_IN_URIS
QUERY_DECODABLE = PATH_DECODABLE | frozenset(":/?@!$'()*,")

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BARE_COMMA = re.compile(r",(?![ \t])")


def comma_spaced(value: str) -> str | None:
    """``value`` with ``", "`` for every comma that is not followed by whitespace.

    Commas inside a quoted string (``"a,b"``, with ``\\`` escapes) are left alone.

    Args:
        value: A combined field value.

    Returns:
        The spaced value, or ``None`` when it would not change.
    """
    if "," not in value:
        return None
    if '"' not in value:
        spaced = _BARE_COMMA.sub(", ", value)
        return None if spaced == value else spaced
    out: list[str] = []
    quoted = escaped = changed = False
    for i, ch in enumerate(value):
        out.append(ch)
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted and value[i + 1 : i + 2] not in (" ", "\t"):
            out.append(" ")
            changed = True
    return "".join(out) if changed else None


def any_comma_spaced(values: Sequence[str]) -> bool:
    """Whether :func:`comma_spaced` would change any of ``values`` (one regex search first).

    Args:
        values: Trimmed field values.

    Returns:
        ``True`` when some value has a comma outside a quoted string not followed by
        whitespace.
    """
    # "\0" ends each value, so a trailing comma counts as bare, as comma_spaced has it.
    if _BARE_COMMA.search("\0".join(values) + "\0") is None:
        return False
    return any(comma_spaced(value) is not None for value in values)


def percent_decoded(text: str, decodable: frozenset[str]) -> str | None:
    """``text`` with every ``%XX`` escape decoded, if all of them decode into ``decodable``.

    Args:
        text: A raw path or query.
        decodable: The characters an escape may decode to (:data:`PATH_DECODABLE`,
            :data:`QUERY_DECODABLE`).

    Returns:
        The decoded text, or ``None`` when it has no escape or an escape of any other
        byte (then the raw value is the only reading).
    """
    if "%" not in text:
        return None
    chars: list[str] = []

    def decode(match: re.Match[str]) -> str:
        ch = chr(int(match.group(1), 16))
        chars.append(ch)
        return ch

    decoded = _ESCAPE.sub(decode, text)
    if "%" in _ESCAPE.sub("", text) or not all(ch in decodable for ch in chars):
        return None  # a stray "%" or an escape of a delimiter, "%" or a non-ASCII byte
    return decoded


def alternatives(
    components: Sequence[Component], values: Sequence[list[str]], layout: Layout
) -> list[tuple[Reconstruction, list[list[str]]]]:
    """The alternative component values to try for ``layout``, most likely first.

    Args:
        components: The covered components.
        values: Their values as received (one list per component).
        layout: The base layout: only ``upvest-v6`` (draft-06) decodes ``@path``/``@query``.

    Returns:
        ``(reconstruction, values)`` pairs; empty when no value is ambiguous.
    """
    spaced = [
        [comma_spaced(v) or v for v in vs] if comp.is_plain_field else list(vs)
        for comp, vs in zip(components, values, strict=True)
    ]
    comma = spaced != [list(vs) for vs in values]
    decoded_any = False
    if layout == "upvest-v6":
        decoded: list[list[str]] = []
        for comp, vs in zip(components, values, strict=True):
            alt: str | None = None
            if comp.name == "@path" and not comp.params:
                alt = percent_decoded(vs[0], PATH_DECODABLE)
            elif comp.name == "@query" and not comp.params:
                tail = percent_decoded(vs[0][1:], QUERY_DECODABLE)
                alt = None if tail is None else "?" + tail
            decoded_any = decoded_any or alt is not None
            decoded.append([alt] if alt is not None else list(vs))
    found: list[tuple[Reconstruction, list[list[str]]]] = []
    if comma:
        found.append(("comma-joined", spaced))
    if decoded_any:
        found.append(("percent-decoded", decoded))
        if comma:
            both = [
                d if comp.name in ("@path", "@query") else s
                for comp, d, s in zip(components, decoded, spaced, strict=True)
            ]
            found.append(("comma-joined+percent-decoded", both))
    return found
