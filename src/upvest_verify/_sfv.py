"""Strict, fast parser and serializer for HTTP Structured Field Values.

Implements RFC 8941 ("Structured Field Values for HTTP") and the two bare-item
types added by RFC 9651 (Date ``@1700000000`` and Display String ``%"..."``).
The parser is the judge of what ``Signature-Input`` and ``Signature`` mean, so it
is exactly as strict as the httpwg conformance suite demands; the serializer is
used to rebuild ``@signature-params`` and ``;sf``/``;key`` component values, so
it follows RFC 8941 §4.1 to the letter and refuses anything it cannot emit.

Python representation (what the parser returns, what the serializer accepts)::

    Integer        int              never bool: callers test ``type(x) is int``
    Decimal        decimal.Decimal  exact; the serializer also takes float
    String         str              exactly ``str`` (Token/DisplayString are subclasses)
    Token          Token            ``str`` subclass
    Byte Sequence  bytes
    Boolean        bool
    Date           Date             RFC 9651; frozen dataclass holding the integer
    Display String DisplayString    RFC 9651; ``str`` subclass
    Parameters     dict[str, BareItem]          insertion order kept
    Item           (bare_item, params)          a tuple
    Inner List     (list[Item], params)         a tuple whose first element is a list
    List           list[Item | InnerList]
    Dictionary     dict[str, Item | InnerList]  a member without ``=`` is ``(True, params)``

Decimals are parsed to :class:`decimal.Decimal` so that the value is exactly the
text received (``1.20`` stays ``Decimal("1.20")``) and re-serialises to the
canonical form. The serializer accepts ``float`` too and converts it through its
shortest ``repr`` (``0.0025`` is treated as the decimal 0.0025, not the binary
fraction just above it) before rounding half-even to three places.

Deviations and choices, all within what the RFC and the conformance suite allow:

* Input is ``str``. Only SP is stripped from both ends (RFC 8941 §4.2 steps 2
  and 6; HTAB is *not* stripped, the suite's ``item.json`` requires that).
  Every other character outside %x20-7E is an error because no production
  accepts one.
* Byte sequences: missing ``=`` padding is accepted (RFC 8941 §4.2.7 SHOULD NOT
  fail) and non-zero pad bits are accepted (ditto). Padding that is present must
  be complete and correct (``aGVsbA==``, not ``aGVsbA=`` or ``aGVsbG8==``); a
  length that no padding can fix (4n+1) is rejected. PyPI ``http_sf`` is more
  lenient here (it accepts one or two ``=`` whatever the length).
* Dates are accepted over the whole sf-integer range (the suite's ``can_fail``
  cases), not only years 1-9999.
* Duplicate dictionary keys and parameter keys keep the last value in the
  position of the first (RFC 8941 §4.2.2, §4.2.3.2) unless the caller passes
  ``allow_duplicates=False``, which turns them into :class:`SFError`.
* Serialising an empty List or Dictionary returns ``""``: per RFC 8941 §4.1 the
  field must then be omitted, which is the caller's job.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal, NoReturn, TypeAlias, cast

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    "BareItem",
    "BareItemIn",
    "Date",
    "Dictionary",
    "DisplayString",
    "InnerList",
    "InnerListIn",
    "Item",
    "ItemIn",
    "List",
    "Member",
    "MemberIn",
    "Params",
    "ParamsIn",
    "SFError",
    "Token",
    "is_inner_list",
    "parse_dictionary",
    "parse_item",
    "parse_list",
    "serialize_bare_item",
    "serialize_dictionary",
    "serialize_field",
    "serialize_inner_list",
    "serialize_item",
    "serialize_list",
    "serialize_params",
]


class SFError(ValueError):
    """A structured field value could not be parsed or serialised.

    Attributes:
        position: Offset in the (SP-stripped) input where parsing failed, or
            ``None`` for serialisation errors.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        """Create the error.

        Args:
            message: What is wrong, for logs.
            position: Offset in the SP-stripped field value, if parsing.
        """
        self.position = position
        if position is not None:
            message = f"{message} at position {position}"
        super().__init__(message)


class Token(str):
    """An sf-token (RFC 8941 §3.3.4), kept apart from an sf-string by its type.

    The constructor does not validate; :func:`serialize_bare_item` does.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        """Return ``Token('value')``."""
        return f"Token({str.__repr__(self)})"


class DisplayString(str):
    """An sf-displaystring (RFC 9651 §3.3.8): Unicode text, percent-encoded on the wire."""

    __slots__ = ()

    def __repr__(self) -> str:
        """Return ``DisplayString('value')``."""
        return f"DisplayString({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Date:
    """An sf-date (RFC 9651 §3.3.7): whole seconds since the Unix epoch.

    Attributes:
        timestamp: Seconds since 1970-01-01T00:00:00Z (may be negative).
    """

    timestamp: int


BareItem: TypeAlias = int | Decimal | str | bytes | bool | Token | Date | DisplayString
Params: TypeAlias = dict[str, BareItem]
Item: TypeAlias = tuple[BareItem, Params]
InnerList: TypeAlias = tuple[list[Item], Params]
Member: TypeAlias = Item | InnerList
Dictionary: TypeAlias = dict[str, Member]
List: TypeAlias = list[Member]

# What the serializers accept: the parser's output, plus floats, any mappings
# for parameters and any sequence (list or tuple) for inner-list members.
BareItemIn: TypeAlias = BareItem | float
ParamsIn: TypeAlias = Mapping[str, BareItemIn]
ItemIn: TypeAlias = tuple[BareItemIn, ParamsIn]
InnerListIn: TypeAlias = tuple[Sequence[ItemIn], ParamsIn]
MemberIn: TypeAlias = ItemIn | InnerListIn


def is_inner_list(member: Member) -> TypeIs[InnerList]:
    """Tell an Inner List member from an Item member.

    Args:
        member: A List or Dictionary member as returned by the parser.

    Returns:
        True if ``member`` is ``(list_of_items, params)``; type checkers narrow
        ``member`` to :data:`InnerList` if so and to :data:`Item` if not.
    """
    return type(member[0]) is list


# ---------------------------------------------------------------------------
# Lexical patterns. Every pattern is ASCII-only by construction ([0-9], never
# \d, which would match other Unicode digits) and is applied with
# ``pattern.match(s, pos)`` so that one C-level call consumes a whole token.
# ---------------------------------------------------------------------------

# RFC 8941 §3.1.2
#   key    = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
_KEY = r"[a-z*][a-z0-9_\-.*]*"
_match_key = re.compile(_KEY).match
# RFC 8941 §3.1.2
#   parameters = *( ";" *SP parameter )
#   parameter  = param-key [ "=" param-value ]
_match_param_key = re.compile(r";[ ]*(" + _KEY + r")").match

# RFC 8941 §3.3.4 (+ §3.3.4 note: ":" and "/" are allowed after the first char)
#   sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )
#   tchar    = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#              "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TOKEN = r"[A-Za-z*][0-9A-Za-z!#$%&'*+\-.^_`|~:/]*"  # noqa: S105 - an sf-token, not a secret
_match_token = re.compile(_TOKEN).match
# For the serializer: validating with str.strip() over the allowed set is a
# single C call and cheaper than a regex fullmatch on these short strings.
_KEY_START_CHARS = "abcdefghijklmnopqrstuvwxyz*"
_KEY_CHARS = _KEY_START_CHARS + "0123456789_-."
_TCHAR_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*"
_TCHARS = _TCHAR_START + "0123456789!#$%&'+-.^_`|~:/"

# RFC 8941 §3.3.3
#   sf-string = DQUOTE *chr DQUOTE
#   chr       = unescaped / escaped
#   unescaped = %x20-21 / %x23-5B / %x5D-7E
#   escaped   = "\" ( DQUOTE / "\" )
_UNESCAPED = r"\x20\x21\x23-\x5b\x5d-\x7e"
_match_plain_string = re.compile(r'"([' + _UNESCAPED + r']*)"').match
_match_string = re.compile(r'"((?:[' + _UNESCAPED + r']|\\["\\])*)"').match
_sub_unescape = re.compile(r'\\(["\\])').sub

# RFC 8941 §3.3.1, §3.3.2
#   sf-integer = ["-"] 1*15DIGIT
#   sf-decimal = ["-"] 1*12DIGIT "." 1*3DIGIT
# The fast pattern takes a plain integer in one step; anything else (decimals
# and every malformed number) goes through the step-by-step checks.
_match_integer = re.compile(r"-?[0-9]{1,15}(?![0-9.])").match
_match_number = re.compile(r"-?([0-9]*)(?:\.([0-9]*))?").match

# RFC 8941 §3.3.5
#   sf-binary = ":" *(base64) ":"
#   base64    = ALPHA / DIGIT / "+" / "/" / "="
# Padding is only allowed at the end; how much is checked in code.
_match_binary = re.compile(r":([A-Za-z0-9+/]*)(=?=?):").match

# RFC 9651 §3.3.8
#   sf-displaystring = "%" DQUOTE *( unescaped / "\" / pct-encoded ) DQUOTE
#   pct-encoded      = "%" lc-hexdig lc-hexdig
#   lc-hexdig        = DIGIT / %x61-66 ; 0-9, a-f
_match_display = re.compile(r'%"((?:[\x20\x21\x23\x24\x26-\x7e]|%[0-9a-f]{2})*)"').match
_sub_pct = re.compile(r"%([0-9a-f]{2})").sub

# Fast paths. They accept a subset of what the step-by-step parser accepts and
# produce the same values; anything they do not match falls through to it.
#
# An inner list of plain strings without item parameters — the shape of every
# Signature-Input member. Its content can then be cut out with str.split('"').
_PLAIN_STRING = r'"[' + _UNESCAPED + r']*"'
_match_plain_inner_list = re.compile(
    r"\( *((?:" + _PLAIN_STRING + r"(?: +" + _PLAIN_STRING + r")*)?) *\)"
).match
# A run of parameters whose values are absent, integers, tokens, or plain
# strings without ";". None of those values can contain ";" and no key can
# contain "=", so once the run is validated, str.split(";") and
# str.partition("=") cut it exactly. A valueless key must not be followed by
# "=" (otherwise the run stops there and the general loop takes over).
# Python 3.10 has no possessive quantifiers, so the negative lookaheads after
# the key and the token stop the engine from backtracking into a shorter key
# or token (";created=?1" must not match as the valueless key ";create").
_SIMPLE_PARAM = (
    r";[ ]*"
    + _KEY
    + r"(?![a-z0-9_\-.*])(?:=(?:\"[\x20\x21\x23-\x3a\x3c-\x5b\x5d-\x7e]*\""
    + r"|-?[0-9]{1,15}(?![0-9.])|"
    + _TOKEN
    + r"(?![0-9A-Za-z!#$%&'*+\-.^_`|~:/]))|(?!=))"
)
_match_simple_params = re.compile(r"(?:" + _SIMPLE_PARAM + r")+").match
# A whole dictionary member of the Signature-Input shape, key=(...);params,
# followed by OWS and "," or the end; validated in one call.
_match_fast_member = re.compile(
    r"("
    + _KEY
    + r")=\( *((?:"
    + _PLAIN_STRING
    + r"(?: +"
    + _PLAIN_STRING
    + r")*)?) *\)((?:"
    + _SIMPLE_PARAM
    + r")*)(?=[ \t]*(?:,|\Z))"
).match

# RFC 8941 §4.2.1 / §4.2.2: OWS "," OWS between members.
_match_separator = re.compile(r"[ \t]*,[ \t]*").match

_NUMBER_START = frozenset("-0123456789")
_TOKEN_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*")

_MAX_INT = 999_999_999_999_999
_MAX_DECIMAL_INT = 10**12  # exclusive bound on the integer part of a decimal


def _fail(message: str, pos: int) -> NoReturn:
    raise SFError(message, pos)


def _describe(s: str, pos: int) -> str:
    """Name the character at ``pos`` for an error message."""
    if pos >= len(s):
        return "end of input"
    return repr(s[pos])


# ---------------------------------------------------------------------------
# Bare items — RFC 8941 §4.2.3.1
# ---------------------------------------------------------------------------


def _parse_bare_item(s: str, pos: int) -> tuple[BareItem, int]:
    # RFC 8941 §4.2.3.1 / RFC 9651 §4.2.3.1: dispatch on the first character.
    # sf-string is tried first: it is what Signature-Input is made of.
    if pos >= len(s):
        _fail("expected a bare item, found end of input", pos)
    c = s[pos]
    if c == '"':
        m = _match_plain_string(s, pos)
        if m is not None:
            return m.group(1), m.end()
        return _parse_escaped_string(s, pos)
    if c in _NUMBER_START:
        m = _match_integer(s, pos)
        if m is not None:
            return int(m.group()), m.end()
        return _parse_decimal(s, pos)
    if c in _TOKEN_START:
        m = _match_token(s, pos)
        assert m is not None  # the first character is a token start
        return Token(m.group()), m.end()
    if c == ":":
        return _parse_binary(s, pos)
    if c == "?":
        # RFC 8941 §3.3.6: sf-boolean = "?" boolean ; boolean = "0" / "1"
        flag = s[pos + 1 : pos + 2]
        if flag == "1":
            return True, pos + 2
        if flag == "0":
            return False, pos + 2
        _fail(f"boolean must be ?0 or ?1, found {_describe(s, pos + 1)}", pos + 1)
    if c == "@":
        return _parse_date(s, pos)
    if c == "%":
        return _parse_display_string(s, pos)
    _fail(f"expected a bare item, found {c!r}", pos)


def _parse_escaped_string(s: str, pos: int) -> tuple[str, int]:
    # RFC 8941 §4.2.5: the slow path, taken only for strings with a backslash
    # or for invalid input (which is then diagnosed character by character).
    m = _match_string(s, pos)
    if m is not None:
        return _sub_unescape(r"\1", m.group(1)), m.end()
    i, n = pos + 1, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                _fail("string ends with a backslash", i)
            if s[i + 1] in '"\\':
                i += 2
                continue
            _fail(f'invalid escape {s[i : i + 2]!r} in a string (only \\\\ and \\")', i)
        if not " " <= c <= "~":
            _fail(f"character {c!r} not allowed in a string", i)
        if c == '"':  # pragma: no cover - the patterns would have matched
            break
        i += 1
    _fail("string has no closing '\"'", n)


def _parse_decimal(s: str, pos: int) -> tuple[int | Decimal, int]:
    # RFC 8941 §4.2.4, applied to whatever the integer fast path refused.
    m = _match_number(s, pos)
    assert m is not None  # every part of the pattern is optional
    int_digits, frac_digits = m.group(1, 2)
    start = pos + 1 if s[pos] == "-" else pos
    if not int_digits:
        # step 6: "If the first character of input_string is not a DIGIT, fail"
        _fail(f"number must start with a digit, found {_describe(s, start)}", start)
    if frac_digits is None:
        # step 7.5: more than 15 characters in an integer
        _fail("integer has more than 15 digits", start + 15)
    if len(int_digits) > 12:
        # step 7.3.1: more than 12 characters before "."
        _fail("decimal has more than 12 integer digits", start + 12)
    if not frac_digits:
        # step 9.1: "If the final character of input_number is '.', fail"
        _fail("decimal ends with '.'", m.end() - 1)
    if len(frac_digits) > 3:
        # step 9.2: more than three characters after "."
        _fail("decimal has more than 3 fractional digits", m.end() - len(frac_digits) + 3)
    return Decimal(m.group()), m.end()


def _parse_binary(s: str, pos: int) -> tuple[bytes, int]:
    # RFC 8941 §4.2.7
    m = _match_binary(s, pos)
    if m is None:
        end = s.find(":", pos + 1)
        if end < 0:
            _fail("byte sequence has no closing ':'", len(s))
        for i in range(pos + 1, end):
            if s[i] == "=":
                _fail("misplaced '=' padding in byte sequence", i)
            if not (s[i].isascii() and (s[i].isalnum() or s[i] in "+/")):
                _fail(f"character {s[i]!r} not allowed in a byte sequence", i)
        _fail("malformed byte sequence", pos)  # pragma: no cover - unreachable
    data, pad = m.group(1, 2)
    rem = len(data) % 4
    if pad:
        # Padding present: it must be exactly what RFC 4648 §4 prescribes.
        if rem + len(pad) != 4:
            _fail("byte sequence has incorrect '=' padding", m.end() - 1 - len(pad))
        data += pad
    elif rem:
        # "parsers SHOULD NOT fail when '=' padding is not present": synthesise it.
        if rem == 1:
            _fail("byte sequence has an impossible length for base64", m.end() - 1)
        data += "==" if rem == 2 else "="
    # The alphabet and the padding are validated above, so the lenient decoder
    # cannot misread anything; it tolerates non-zero pad bits, which the RFC
    # says parsers SHOULD NOT reject.
    return binascii.a2b_base64(data), m.end()


def _parse_date(s: str, pos: int) -> tuple[Date, int]:
    # RFC 9651 §4.2.9: "@" then an Integer; a Decimal fails.
    if pos + 1 >= len(s) or s[pos + 1] not in _NUMBER_START:
        _fail(f"date must be '@' then an integer, found {_describe(s, pos + 1)}", pos + 1)
    m = _match_integer(s, pos + 1)
    if m is not None:
        return Date(int(m.group())), m.end()
    _parse_decimal(s, pos + 1)  # raises for every malformed number
    _fail("date must be an integer, not a decimal", pos + 1)


def _pct_byte(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def _parse_display_string(s: str, pos: int) -> tuple[DisplayString, int]:
    # RFC 9651 §4.2.10
    m = _match_display(s, pos)
    if m is None:
        if s[pos + 1 : pos + 2] != '"':
            _fail('display string must start with %"', pos)
        i, n = pos + 2, len(s)
        while i < n:
            c = s[i]
            if c == "%":
                if not re.fullmatch(r"[0-9a-f]{2}", s[i + 1 : i + 3]):
                    _fail("display string needs '%' then two lower-case hex digits", i)
                i += 3
                continue
            if not " " <= c <= "~":
                _fail(f"character {c!r} not allowed in a display string", i)
            i += 1
        _fail("display string has no closing '\"'", n)
    body = m.group(1)
    if "%" in body:
        # Each %xx is one octet; map octets to code points 0-255 and let the
        # strict UTF-8 decoder reject invalid sequences.
        try:
            body = _sub_pct(_pct_byte, body).encode("latin-1").decode("utf-8")
        except UnicodeDecodeError as e:
            raise SFError("display string is not valid UTF-8", pos) from e
    return DisplayString(body), m.end()


# ---------------------------------------------------------------------------
# Parameters, items, inner lists — RFC 8941 §4.2.3, §4.2.1.2
# ---------------------------------------------------------------------------


def _split_simple_params(text: str, params: Params, allow_duplicates: bool, pos: int) -> None:
    # Cut a run validated by _match_simple_params / _match_fast_member into
    # params. Every part is ` *key`, or ` *key=` followed by "plain string",
    # an integer, or a token; the first character tells which.
    value: BareItem
    for part in text.split(";")[1:]:
        key, equals, raw = part.partition("=")
        if key[0] == " ":
            key = key.lstrip(" ")
        if not equals:
            value = True
        elif raw[0] == '"':
            value = raw[1:-1]
        elif raw[0] in _NUMBER_START:
            value = int(raw)
        else:
            value = Token(raw)
        if not allow_duplicates and key in params:
            _fail(f"duplicate parameter {key!r}", pos)
        params[key] = value


def _parse_params(s: str, pos: int, allow_duplicates: bool) -> tuple[Params, int]:
    # RFC 8941 §4.2.3.2 — called only when s[pos] == ";"
    #   parameters  = *( ";" *SP parameter )
    #   parameter   = param-key [ "=" param-value ]
    #   param-value = bare-item
    params: Params = {}
    n = len(s)
    m = _match_simple_params(s, pos)
    if m is not None:
        _split_simple_params(m.group(), params, allow_duplicates, pos)
        pos = m.end()
    while pos < n and s[pos] == ";":
        m = _match_param_key(s, pos)
        if m is None:
            i = pos + 1
            while i < n and s[i] == " ":
                i += 1
            _fail(f"expected a parameter key after ';', found {_describe(s, i)}", i)
        key = m.group(1)
        pos = m.end()
        if pos < n and s[pos] == "=":
            value, pos = _parse_bare_item(s, pos + 1)
        else:
            value = True
        if not allow_duplicates and key in params:
            _fail(f"duplicate parameter {key!r}", m.start(1))
        params[key] = value
    return params, pos


def _parse_inner_list(s: str, pos: int, allow_duplicates: bool) -> tuple[InnerList, int]:
    # RFC 8941 §4.2.1.2 — called with s[pos] == "("
    #   inner-list = "(" *SP [ sf-item *( 1*SP sf-item ) *SP ] ")" parameters
    n = len(s)
    m = _match_plain_inner_list(s, pos)
    if m is not None:
        # Plain strings contain no DQUOTE, so the odd fields of a split on
        # DQUOTE are exactly the string contents.
        items: list[Item] = [(v, {}) for v in m.group(1).split('"')[1::2]]
        pos = m.end()
    else:
        items = []
        pos = _parse_inner_list_items(s, pos + 1, items, allow_duplicates)
    if pos < n and s[pos] == ";":
        params, pos = _parse_params(s, pos, allow_duplicates)
    else:
        params = {}
    return (items, params), pos


def _parse_inner_list_items(s: str, pos: int, items: list[Item], allow_duplicates: bool) -> int:
    # RFC 8941 §4.2.1.2, step by step; returns the position after ")".
    n = len(s)
    while True:
        while pos < n and s[pos] == " ":
            pos += 1
        if pos >= n:
            _fail("inner list has no closing ')'", pos)
        if s[pos] == ")":
            return pos + 1
        value, pos = _parse_bare_item(s, pos)
        if pos < n and s[pos] == ";":
            item_params, pos = _parse_params(s, pos, allow_duplicates)
        else:
            item_params = {}
        items.append((value, item_params))
        if pos >= n:
            _fail("inner list has no closing ')'", pos)
        c = s[pos]
        if c != " " and c != ")":
            _fail(f"expected SP or ')' after an inner-list item, found {c!r}", pos)


def _parse_member(s: str, pos: int, allow_duplicates: bool) -> tuple[Member, int]:
    # RFC 8941 §4.2.1.1: list-member = sf-item / inner-list
    if pos < len(s) and s[pos] == "(":
        return _parse_inner_list(s, pos, allow_duplicates)
    value, pos = _parse_bare_item(s, pos)
    if pos < len(s) and s[pos] == ";":
        params, pos = _parse_params(s, pos, allow_duplicates)
    else:
        params = {}
    return (value, params), pos


def _after_member(s: str, pos: int, what: str) -> int:
    # RFC 8941 §4.2.1 steps 2.3-2.7 / §4.2.2 steps 2.4-2.8:
    # discard OWS; done at end of input; else require ","; then OWS; then a
    # member must follow (a trailing comma fails). Returns -1 at end of input.
    m = _match_separator(s, pos)
    if m is None:
        rest = s[pos:].lstrip(" \t")
        if not rest:
            return -1
        _fail(f"expected ',' after a {what} member, found {rest[0]!r}", len(s) - len(rest))
    pos = m.end()
    if pos == len(s):
        _fail(f"{what} ends with a trailing comma", pos)
    return pos


# ---------------------------------------------------------------------------
# Public parsers — RFC 8941 §4.2
# ---------------------------------------------------------------------------


def parse_dictionary(s: str, *, allow_duplicates: bool = True) -> Dictionary:
    """Parse a Dictionary structured field value (RFC 8941 §4.2.2).

    Args:
        s: The field value; repeated field lines must already be joined with ``", "``.
        allow_duplicates: If False, a repeated dictionary key or a repeated
            parameter key (anywhere in the value) raises instead of the RFC's
            last-one-wins.

    Returns:
        Members in order of first appearance; each is ``(bare_item, params)``
        or ``(list_of_items, params)``. A member without ``=`` is ``(True, params)``.
        An empty value gives ``{}``.

    Raises:
        SFError: If ``s`` is not a valid Dictionary (or has a duplicate key when
            ``allow_duplicates`` is False).
    """
    # RFC 8941 §4.2 steps 2 and 6: discard leading and trailing SP.
    s = s.strip(" ")
    result: Dictionary = {}
    n = len(s)
    if not n:
        return result
    pos = 0
    # RFC 8941 §3.2
    #   sf-dictionary  = dict-member *( OWS "," OWS dict-member )
    #   dict-member    = member-key ( parameters / ( "=" member-value ))
    #   member-value   = sf-item / inner-list
    member: Member
    params: Params
    while True:
        m = _match_fast_member(s, pos)
        if m is not None:
            # Fast path: key=("plain" "strings");simple=params
            key, inner, param_text = m.group(1, 2, 3)
            params = {}
            if param_text:
                _split_simple_params(param_text, params, allow_duplicates, m.start(3))
            # Plain strings contain no DQUOTE: the odd fields are the contents.
            items: list[Item] = [(v, {}) for v in inner.split('"')[1::2]]
            member = (items, params)
            pos = m.end()
            if not allow_duplicates and key in result:
                _fail(f"duplicate dictionary key {key!r}", m.start())
            result[key] = member
            if pos == n:
                return result
            pos = _after_member(s, pos, "dictionary")
            if pos < 0:
                return result
            continue
        m = _match_key(s, pos)
        if m is None:
            _fail(f"expected a dictionary key, found {_describe(s, pos)}", pos)
        key = m.group()
        pos = m.end()
        if pos < n and s[pos] == "=":
            pos += 1
            if pos < n and s[pos] == "(":
                member, pos = _parse_inner_list(s, pos, allow_duplicates)
            else:
                value, pos = _parse_bare_item(s, pos)
                if pos < n and s[pos] == ";":
                    params, pos = _parse_params(s, pos, allow_duplicates)
                else:
                    params = {}
                member = (value, params)
        elif pos < n and s[pos] == ";":
            params, pos = _parse_params(s, pos, allow_duplicates)
            member = (True, params)
        else:
            member = (True, {})
        if not allow_duplicates and key in result:
            _fail(f"duplicate dictionary key {key!r}", m.start())
        result[key] = member
        if pos == n:
            return result
        pos = _after_member(s, pos, "dictionary")
        if pos < 0:
            return result


def parse_list(s: str, *, allow_duplicates: bool = True) -> List:
    """Parse a List structured field value (RFC 8941 §4.2.1).

    Args:
        s: The field value; repeated field lines must already be joined with ``", "``.
        allow_duplicates: If False, a repeated parameter key raises.

    Returns:
        The members in order; an empty value gives ``[]``.

    Raises:
        SFError: If ``s`` is not a valid List.
    """
    # RFC 8941 §3.1
    #   sf-list     = list-member *( OWS "," OWS list-member )
    #   list-member = sf-item / inner-list
    s = s.strip(" ")
    result: List = []
    n = len(s)
    pos = 0
    while pos < n:
        member, pos = _parse_member(s, pos, allow_duplicates)
        result.append(member)
        if pos == n:
            break
        pos = _after_member(s, pos, "list")
        if pos < 0:
            break
    return result


def parse_item(s: str, *, allow_duplicates: bool = True) -> Item:
    """Parse an Item structured field value (RFC 8941 §4.2.3).

    Args:
        s: The field value.
        allow_duplicates: If False, a repeated parameter key raises.

    Returns:
        ``(bare_item, params)``.

    Raises:
        SFError: If ``s`` is not a valid Item (an empty value is not).
    """
    # RFC 8941 §3.3: sf-item = bare-item parameters
    s = s.strip(" ")
    value, pos = _parse_bare_item(s, 0)
    n = len(s)
    if pos < n and s[pos] == ";":
        params, pos = _parse_params(s, pos, allow_duplicates)
    else:
        params = {}
    if pos != n:
        _fail(f"unexpected {s[pos]!r} after the item", pos)
    return value, params


# ---------------------------------------------------------------------------
# Serialisation — RFC 8941 §4.1
# ---------------------------------------------------------------------------

_DECIMAL_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
_THOUSANDTH = Decimal("0.001")


def _serialize_integer(value: int) -> str:
    # RFC 8941 §4.1.4
    if not -_MAX_INT <= value <= _MAX_INT:
        raise SFError(f"integer {value} is outside ±999,999,999,999,999")
    return str(value)


def _serialize_decimal(value: Decimal) -> str:
    # RFC 8941 §4.1.5
    if not value.is_finite():
        raise SFError(f"decimal {value} is not finite")
    # Cheap pre-check so that quantize() never sees a huge exponent; the exact
    # limit is checked after rounding, as step 3 requires.
    if value and value.adjusted() >= 13:
        raise SFError(f"decimal {value} has more than 12 integer digits")
    # Step 2: round to three places, half to even.
    try:
        rounded = value.quantize(_THOUSANDTH, context=_DECIMAL_CONTEXT)
    except InvalidOperation as e:  # pragma: no cover - excluded by the pre-check
        raise SFError(f"decimal {value} cannot be rounded") from e
    # Step 3: more than 12 significant digits left of the point after rounding.
    if abs(rounded) >= _MAX_DECIMAL_INT:
        raise SFError(f"decimal {value} has more than 12 integer digits")
    # Steps 4-8: sign only if < 0 (so -0.0001 gives "0.0"); integer part; ".";
    # up to three fractional digits without trailing zeros, at least one.
    text = format(abs(rounded), "f")
    int_part, _, frac_part = text.partition(".")
    frac_part = frac_part.rstrip("0") or "0"
    sign = "-" if rounded < 0 else ""
    return f"{sign}{int_part}.{frac_part}"


def _serialize_string(value: str) -> str:
    # RFC 8941 §4.1.6. For ASCII, isprintable() is exactly %x20-7E.
    if not (value.isascii() and value.isprintable()):
        raise SFError("string contains a character outside %x20-7E")
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


def _serialize_token(value: str) -> str:
    # RFC 8941 §4.1.7: sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )
    if not value or value[0] not in _TCHAR_START or value.strip(_TCHARS):
        raise SFError(f"{value!r} is not a valid token")
    return value


def _serialize_binary(value: bytes) -> str:
    # RFC 8941 §4.1.8: standard alphabet, with padding.
    return ":" + binascii.b2a_base64(value, newline=False).decode("ascii") + ":"


def _serialize_display_string(value: str) -> str:
    # RFC 9651 §4.1.11: UTF-8, then %-encode "%", DQUOTE and non-VCHAR/SP
    # octets with lower-case hex digits.
    out = []
    for byte in value.encode("utf-8"):
        if byte == 0x25 or byte == 0x22 or not 0x20 <= byte <= 0x7E:
            out.append(f"%{byte:02x}")
        else:
            out.append(chr(byte))
    return '%"' + "".join(out) + '"'


def serialize_bare_item(value: BareItemIn) -> str:
    """Serialise one bare item (RFC 8941 §4.1.3.1).

    Args:
        value: int, bool, Decimal or float, str, Token, bytes, Date or DisplayString.
            Subclasses of int, str, float and bytes are serialised by their base
            value.

    Returns:
        The textual form.

    Raises:
        SFError: If the value is out of range or contains characters its type forbids.
        TypeError: If the value has an unsupported type.
    """
    t = type(value)
    if t is str:
        return _serialize_string(value)  # type: ignore[arg-type]
    if t is int:
        return _serialize_integer(value)  # type: ignore[arg-type]
    if t is Token:
        return _serialize_token(value)  # type: ignore[arg-type]
    if t is bool:
        return "?1" if value else "?0"
    if t is bytes:
        return _serialize_binary(value)  # type: ignore[arg-type]
    if t is Decimal:
        return _serialize_decimal(value)  # type: ignore[arg-type]
    if isinstance(value, Date):
        # RFC 9651 §4.1.10
        if type(value.timestamp) is not int:
            raise TypeError("Date.timestamp must be an int")
        return "@" + _serialize_integer(value.timestamp)
    if isinstance(value, Token):
        return _serialize_token(str.__str__(value))
    if isinstance(value, DisplayString):
        return _serialize_display_string(str.__str__(value))
    if isinstance(value, str):
        return _serialize_string(str.__str__(value))
    if isinstance(value, int):  # bool is handled above and cannot be subclassed
        return _serialize_integer(int.__index__(value))
    if isinstance(value, float):
        # The shortest repr is the decimal the caller meant (0.0025, not
        # 0.00250000000000000005...).
        return _serialize_decimal(Decimal(repr(float(value))))
    if isinstance(value, Decimal):
        return _serialize_decimal(value)
    if isinstance(value, bytes):
        return _serialize_binary(bytes(value))
    raise TypeError(f"cannot serialise {type(value).__name__} as a structured field bare item")


def _serialize_key(key: str) -> str:
    # RFC 8941 §4.1.1.3
    if type(key) is not str:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        key = str.__str__(key)
    # key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
    if not key or key[0] not in _KEY_START_CHARS or key.strip(_KEY_CHARS):
        raise SFError(f"{key!r} is not a valid key")
    return key


def serialize_params(params: ParamsIn) -> str:
    """Serialise Parameters (RFC 8941 §4.1.1.2).

    Args:
        params: Keys to bare items, in order; a value of ``True`` is written as
            the bare key.

    Returns:
        ``";key=value;flag..."`` or ``""`` when there are none.

    Raises:
        SFError: If a key or value cannot be serialised.
        TypeError: If a value has an unsupported type.
    """
    if not params:
        return ""
    out = []
    for key, value in params.items():
        if value is True:
            out.append(";" + _serialize_key(key))
        elif type(value) is str:
            out.append(";" + _serialize_key(key) + "=" + _serialize_string(value))
        elif type(value) is int and -_MAX_INT <= value <= _MAX_INT:
            out.append(";" + _serialize_key(key) + "=" + str(value))
        else:
            out.append(";" + _serialize_key(key) + "=" + serialize_bare_item(value))
    return "".join(out)


def serialize_item(item: ItemIn) -> str:
    """Serialise an Item (RFC 8941 §4.1.3).

    Args:
        item: ``(bare_item, params)``.

    Returns:
        The textual form.

    Raises:
        SFError: If any part cannot be serialised.
        TypeError: If a value has an unsupported type.
    """
    value, params = item
    if params:
        return serialize_bare_item(value) + serialize_params(params)
    return serialize_bare_item(value)


def serialize_inner_list(items: Sequence[ItemIn], params: ParamsIn | None = None) -> str:
    """Serialise an Inner List (RFC 8941 §4.1.1.1).

    Args:
        items: The member items, each ``(bare_item, params)``.
        params: Parameters of the inner list itself.

    Returns:
        ``"(item item);params"``.

    Raises:
        SFError: If any part cannot be serialised.
        TypeError: If a value has an unsupported type.
    """
    out = []
    for value, item_params in items:
        # Inline the common case (a plain string without parameters).
        text = _serialize_string(value) if type(value) is str else serialize_bare_item(value)
        out.append(text + serialize_params(item_params) if item_params else text)
    inner = " ".join(out)
    return "(" + inner + ")" + serialize_params(params) if params else "(" + inner + ")"


def _serialize_member(member: MemberIn) -> str:
    first, params = member
    if isinstance(first, (list, tuple)):
        return serialize_inner_list(first, params)
    return serialize_item((cast(BareItemIn, first), params))


def serialize_list(members: Sequence[MemberIn]) -> str:
    """Serialise a List (RFC 8941 §4.1.1).

    Args:
        members: Items ``(bare_item, params)`` and inner lists ``(items, params)``.

    Returns:
        Members joined with ``", "``; ``""`` for an empty list, meaning the
        field must not be sent.

    Raises:
        SFError: If any part cannot be serialised.
        TypeError: If a value has an unsupported type.
    """
    return ", ".join([_serialize_member(member) for member in members])


def serialize_dictionary(members: Mapping[str, MemberIn]) -> str:
    """Serialise a Dictionary (RFC 8941 §4.1.2).

    Args:
        members: Keys to items or inner lists; an item whose value is ``True`` is
            written as the bare key with its parameters.

    Returns:
        Members joined with ``", "``; ``""`` for an empty dictionary, meaning
        the field must not be sent.

    Raises:
        SFError: If any part cannot be serialised.
        TypeError: If a value has an unsupported type.
    """
    out = []
    for key, member in members.items():
        name = _serialize_key(key)
        first, params = member
        if first is True:
            out.append(name + serialize_params(params))
        else:
            out.append(name + "=" + _serialize_member(member))
    return ", ".join(out)


def serialize_field(
    kind: Literal["item", "list", "dictionary"],
    value: ItemIn | Sequence[MemberIn] | Mapping[str, MemberIn],
) -> str:
    """Serialise a whole field value of the given top-level type (RFC 8941 §4.1).

    Args:
        kind: ``"item"``, ``"list"`` or ``"dictionary"``.
        value: The structure, shaped as the parser of that kind returns it.

    Returns:
        The field value (``""`` for an empty List or Dictionary).

    Raises:
        SFError: If any part cannot be serialised.
        TypeError: If ``value`` does not have the shape ``kind`` needs.
        ValueError: If ``kind`` is unknown.
    """
    if kind == "dictionary":
        if not isinstance(value, Mapping):
            raise TypeError("a dictionary field needs a mapping")
        return serialize_dictionary(value)
    if kind == "list":
        if not isinstance(value, list):
            raise TypeError("a list field needs a list")
        return serialize_list(value)
    if kind == "item":
        if not isinstance(value, tuple):
            raise TypeError("an item field needs a (bare_item, params) tuple")
        return serialize_item(value)
    raise ValueError(f"unknown structured field type {kind!r}")
