"""Tests for the strict RFC 8941 / RFC 9651 structured-field parser and serializer."""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from upvest_verify import _sfv
from upvest_verify._sfv import (
    Date,
    DisplayString,
    SFError,
    Token,
    is_inner_list,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_bare_item,
    serialize_dictionary,
    serialize_field,
    serialize_inner_list,
    serialize_item,
    serialize_list,
    serialize_params,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
SF_TESTS = VECTORS / "structured-field-tests"

PARSERS: dict[str, Callable[..., Any]] = {
    "dictionary": parse_dictionary,
    "list": parse_list,
    "item": parse_item,
}
SERIALIZERS: dict[str, Callable[[Any], str]] = {
    "dictionary": serialize_dictionary,
    "list": serialize_list,
    "item": serialize_item,
}

SIGNATURE_INPUT = (
    'sig1=("@method" "@path" "content-type" "content-length" "digest" "upvest-client-id")'
    ';keyid="9ed77463-c18e-4794-ab5c-17423f9b801a";created=1700000000;expires=1700000060'
    ';nonce="o085M4cMgpbicuOL"'
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def typed(value: object) -> object:
    """Tag every value with its exact type so that True != 1 and Token != str."""
    if isinstance(value, dict):
        return ("dict", tuple((k, typed(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(v) for v in value))
    return (type(value).__name__, value)


def _bare_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        kind, raw = value["__type"], value["value"]
        if kind == "token":
            return Token(raw)
        if kind == "binary":
            return base64.b32decode(raw)
        if kind == "date":
            return Date(raw)
        if kind == "displaystring":
            return DisplayString(raw)
        raise AssertionError(f"unknown __type {kind}")
    return value


def _params_from_json(params: list[list[Any]]) -> dict[str, Any]:
    return {key: _bare_from_json(value) for key, value in params}


def _member_from_json(member: list[Any]) -> Any:
    first, params = member
    if isinstance(first, list):
        items = [(_bare_from_json(v), _params_from_json(p)) for v, p in first]
        return (items, _params_from_json(params))
    return (_bare_from_json(first), _params_from_json(params))


def from_json(expected: Any, header_type: str) -> Any:
    """Convert the suite's JSON `expected` into this module's representation."""
    if header_type == "dictionary":
        return {key: _member_from_json(member) for key, member in expected}
    if header_type == "list":
        return [_member_from_json(member) for member in expected]
    return _member_from_json(expected)


def _load(folder: Path, *, keep: Callable[[dict[str, Any]], bool]) -> list[Any]:
    if not folder.is_dir():
        reason = f"structured-field-tests not found at {folder}"
        return [pytest.param(None, id="vectors-missing", marks=pytest.mark.skip(reason=reason))]
    cases = []
    for path in sorted(folder.glob("*.json")):
        records = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        for record in records:
            if keep(record):
                cases.append(pytest.param(record, id=f"{path.stem}: {record['name']}"))
    return cases


PARSE_CASES = _load(SF_TESTS, keep=lambda record: True)
CANONICAL_CASES = _load(SF_TESTS, keep=lambda record: not record.get("must_fail", False))
SERIALISATION_CASES = _load(SF_TESTS / "serialisation-tests", keep=lambda record: True)


# ---------------------------------------------------------------------------
# httpwg/structured-field-tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", PARSE_CASES)
def test_conformance_parse(case: dict[str, Any]) -> None:
    """Each suite record parses to its expected value, or fails when it must.

    We accept every ``can_fail`` record (missing base64 padding, non-zero pad
    bits, dates beyond year 9999, strings split over field lines), so those
    must yield their expected value too.
    """
    raw = ", ".join(case["raw"])
    parse = PARSERS[case["header_type"]]
    if case.get("must_fail", False):
        with pytest.raises(SFError):
            parse(raw)
        return
    expected = from_json(case["expected"], case["header_type"])
    assert typed(parse(raw)) == typed(expected)


@pytest.mark.parametrize("case", CANONICAL_CASES)
def test_conformance_canonical(case: dict[str, Any]) -> None:
    """The parsed value and the suite's expected value both serialise to the canonical form."""
    kind = case["header_type"]
    canonical = ", ".join(case.get("canonical", case["raw"]))
    parsed = PARSERS[kind](", ".join(case["raw"]))
    assert SERIALIZERS[kind](parsed) == canonical
    assert SERIALIZERS[kind](from_json(case["expected"], kind)) == canonical
    if canonical:
        assert typed(PARSERS[kind](canonical)) == typed(parsed)


@pytest.mark.parametrize("case", SERIALISATION_CASES)
def test_conformance_serialisation(case: dict[str, Any]) -> None:
    """Serialisation-only records give their canonical form, or are refused when they must be."""
    kind = case["header_type"]
    value = from_json(case["expected"], kind)
    if case.get("must_fail", False):
        with pytest.raises(SFError):
            SERIALIZERS[kind](value)
        return
    assert SERIALIZERS[kind](value) == ", ".join(case["canonical"])


# ---------------------------------------------------------------------------
# The shapes upvest-verify parses
# ---------------------------------------------------------------------------


def test_signature_input_parses_to_exact_types() -> None:
    """A typical Signature-Input member parses to strings, real ints and a string nonce."""
    result = parse_dictionary(SIGNATURE_INPUT)
    assert list(result) == ["sig1"]
    member = result["sig1"]
    assert is_inner_list(member)
    items, params = member
    assert [value for value, _ in items] == [
        "@method",
        "@path",
        "content-type",
        "content-length",
        "digest",
        "upvest-client-id",
    ]
    assert all(type(value) is str and item_params == {} for value, item_params in items)
    assert params == {
        "keyid": "9ed77463-c18e-4794-ab5c-17423f9b801a",
        "created": 1700000000,
        "expires": 1700000060,
        "nonce": "o085M4cMgpbicuOL",
    }
    assert list(params) == ["keyid", "created", "expires", "nonce"]
    assert type(params["created"]) is int
    assert type(params["keyid"]) is str


def test_signature_input_round_trips_byte_for_byte() -> None:
    """Re-serialising the parsed Signature-Input reproduces it exactly (as @signature-params needs)."""
    items, params = parse_dictionary(SIGNATURE_INPUT)["sig1"]
    assert isinstance(items, list)
    assert "sig1=" + serialize_inner_list(items, params) == SIGNATURE_INPUT
    assert serialize_dictionary(parse_dictionary(SIGNATURE_INPUT)) == SIGNATURE_INPUT


def test_signature_header_byte_sequence() -> None:
    """A Signature member is a byte sequence decoded to the exact signature bytes."""
    signature = bytes(range(132))
    header = f"sig1=:{base64.b64encode(signature).decode()}:, sig2=:AAEC:"
    result = parse_dictionary(header)
    assert result == {"sig1": (signature, {}), "sig2": (b"\x00\x01\x02", {})}
    assert not is_inner_list(result["sig1"])


def test_boolean_and_integer_stay_distinguishable() -> None:
    """?1 parses to bool True and 1 to int 1, so `type(x) is int` tells them apart."""
    params = parse_item("a;created=?1;expires=1")[1]
    assert type(params["created"]) is bool
    assert type(params["expires"]) is int


def test_token_and_string_stay_distinguishable() -> None:
    """A token parses to Token and a quoted string to plain str."""
    value, params = parse_item('tok;s="tok"')
    assert type(value) is Token
    assert type(params["s"]) is str
    assert value == params["s"]


def test_decimal_is_exact_decimal() -> None:
    """Decimals parse to decimal.Decimal exactly as written, integers never do."""
    assert parse_item("-1.250") == (Decimal("-1.250"), {})
    assert type(parse_item("1.5")[0]) is Decimal
    assert type(parse_item("15")[0]) is int


# Inputs that exercise the fast paths and their boundaries: strings holding
# delimiters, valueless parameters followed by values the fast path does not
# take, OWS variants, escapes, all value types in parameters.
FAST_PATH_INPUTS = [
    SIGNATURE_INPUT,
    'a=("x;y" "p=q" "(z)" "");k="v;w";n=-12;t=tok/en:1;f',
    'a=( "x"  "y" );k=1, b=("c");d;e=?0',
    'a=();k="", b=(), c=("")',
    'a=("x" "y");k=:aGVsbG8=:;z=1.5',
    'a=("x" "y");k;j=:aGVsbG8=:',
    'a=("x\\"y" "z");k=1',
    'a=("x";p=1 "y");k=1',
    'a=("x");k=1;k=2;k="3"',
    'a=("x");k=1, a=("y");k=2',
    'a=("x");  k=1;   j="2"\t,\tb=("y")',
    'a=("x");k=1234567890123456',
    'a=("x");k=123456789012345;j=1.',
    'a=("x");k=%"%c3%bc";d=@1700000000',
    'a=("x");K=1',
    'a=("x");k=1 ;j=2',
    'a=("x");k=1;',
    'a=("x" );k=1,',
    'a=("x"\t"y")',
    'a=("x")=1',
    "a;k=1;j=tok, b=1;k=2",
]


def _parse_or_error(func: Callable[[str], Any], text: str) -> tuple[bool, object]:
    try:
        return True, typed(func(text))
    except SFError as e:
        return False, type(e)


@pytest.mark.parametrize("text", FAST_PATH_INPUTS)
def test_fast_paths_agree_with_step_by_step_parser(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disabling the regex fast paths changes neither the value nor the accept/reject decision."""
    fast = {kind: _parse_or_error(PARSERS[kind], text) for kind in ("dictionary", "list", "item")}

    def never(*args: object) -> None:
        return None

    monkeypatch.setattr(_sfv, "_match_fast_member", never)
    monkeypatch.setattr(_sfv, "_match_simple_params", never)
    monkeypatch.setattr(_sfv, "_match_plain_inner_list", never)
    for kind in ("dictionary", "list", "item"):
        assert _parse_or_error(PARSERS[kind], text) == fast[kind], kind


# ---------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("dictionary", "a=1, b=2, a=3", {"a": (3, {}), "b": (2, {})}),
        ("dictionary", 'a=("x");k=1;j=2;k=3', {"a": ([("x", {})], {"k": 3, "j": 2})}),
        ("dictionary", "a=(x;k=1;k=2)", {"a": ([(Token("x"), {"k": 2})], {})}),
        ("dictionary", "a=1;k=:AA==:;k=?0", {"a": (1, {"k": False})}),
        ("dictionary", "a;k;k=1", {"a": (True, {"k": 1})}),
        ("list", "x;k=1;k=2", [(Token("x"), {"k": 2})]),
        ("list", "(x);k=1;k=2", [([(Token("x"), {})], {"k": 2})]),
        ("item", "x;k=1;j;k=2", (Token("x"), {"k": 2, "j": True})),
    ],
)
def test_duplicates_last_wins_by_default(kind: str, text: str, expected: object) -> None:
    """By default a repeated key keeps the last value in the first key's position (RFC 8941)."""
    assert typed(PARSERS[kind](text)) == typed(expected)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("dictionary", "a=1, b=2, a=3"),
        ("dictionary", 'sig1=("@method");created=1, sig1=("@path");created=2'),
        ("dictionary", 'a=("x");k=1;j=2;k=3'),
        ("dictionary", "a=(x;k=1;k=2)"),
        ("dictionary", "a=1;k=:AA==:;k=?0"),
        ("dictionary", "a;k;k=1"),
        ("list", "x;k=1;k=2"),
        ("list", "(x);k=1;k=2"),
        ("item", "x;k=1;j;k=2"),
    ],
)
def test_duplicates_rejected_when_not_allowed(kind: str, text: str) -> None:
    """With allow_duplicates=False a repeated dictionary or parameter key is an SFError."""
    with pytest.raises(SFError, match="duplicate"):
        PARSERS[kind](text, allow_duplicates=False)


# ---------------------------------------------------------------------------
# Strictness
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'a="\x00"',
        'a="\x7f"',
        'a="caf\u00e9"',
        'a="\t"',
        'a="line\nbreak"',
        "a=\u0661",  # ARABIC-INDIC DIGIT ONE: a Unicode digit, not a DIGIT
        "a=1\u0661",
        "a=\uff41",  # FULLWIDTH LATIN SMALL LETTER A
        "\u00e9=1",
        "a=1;\u00e9",
        "a=:aGVs\u00e9bG8=:",
        'a=%"\u00fc"',
        "a=1\r",
        "\x0ba=1",
    ],
)
def test_characters_outside_vchar_sp_are_rejected(text: str) -> None:
    """Any character outside %x20-7E (other than OWS where the grammar allows it) fails."""
    with pytest.raises(SFError):
        parse_dictionary(text)


def test_only_sp_is_stripped_around_the_value() -> None:
    """Leading/trailing SP are discarded; HTAB is only OWS between and after members."""
    assert parse_item("   1   ") == (1, {})
    assert parse_dictionary("  a=1  ") == {"a": (1, {})}
    assert parse_list("1\t") == [(1, {})]
    with pytest.raises(SFError):
        parse_item("1\t")
    with pytest.raises(SFError):
        parse_dictionary("\ta=1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (":aGVsbG8=:", b"hello"),
        (":aGVsbG8:", b"hello"),  # missing padding is tolerated (RFC 8941 §4.2.7)
        (":aGVsbA==:", b"hell"),
        (":aGVsbA:", b"hell"),
        (":iZ==:", b"\x89"),  # non-zero pad bits are tolerated (RFC 8941 §4.2.7)
        ("::", b""),
        (":/+Ah:", b"\xff\xe0\x21"),
    ],
)
def test_byte_sequence_accepted(raw: str, expected: bytes) -> None:
    """Standard base64 decodes, with or without its padding."""
    assert parse_item(raw) == (expected, {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (":aGVsbA=:", "padding"),
        (":aGVsbG8==:", "padding"),
        (":aGVsbA===:", "'='"),
        (":=:", "padding"),
        (":=aGVsbG8=:", "'='"),
        (":aGVs=bG8=:", "'='"),
        (":a:", "length"),
        (":aGVsb:", "length"),
        (":_-Ah:", "not allowed"),
        (":aGVs bG8=:", "not allowed"),
        (":aGVsbG8=", "closing"),
    ],
)
def test_byte_sequence_rejected(raw: str, message: str) -> None:
    """URL-safe characters, spaces, misplaced or wrong '=' padding and bad lengths fail."""
    with pytest.raises(SFError, match=message):
        parse_item(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a=1, b=2,", "trailing comma"),
        ("a=1 b=2", "expected ','"),
        ('a="abc', "no closing"),
        ('a="ab\\c"', "invalid escape"),
        ('a="ab\\', "backslash"),
        ('a="ok\\"\x01"', "not allowed"),
        ("a=?2", "boolean"),
        ("a=1.", "ends with '.'"),
        ("a=1.2345", "3 fractional"),
        ("a=1234567890123.1", "12 integer"),
        ("a=1234567890123456", "15 digits"),
        ("a=-x", "digit"),
        ("a=@1.5", "integer"),
        ('a=%"%C3%BC"', "hex"),
        ('a=%"%c3"', "UTF-8"),
        ("a=(1 2", "no closing"),
        ("a=(1,2)", "expected SP or"),
        ("A=1", "dictionary key"),
        ("a=1;", "parameter key"),
        ("a=1; ", "parameter key"),
        ("a=[1]", "bare item"),
    ],
)
def test_error_messages_say_what_is_wrong(raw: str, message: str) -> None:
    """Parse errors are SFError (a ValueError) naming the problem and its position."""
    with pytest.raises(SFError, match=message) as info:
        parse_dictionary(raw)
    assert isinstance(info.value, ValueError)
    assert info.value.position is not None
    assert "at position" in str(info.value)


def test_empty_values() -> None:
    """An empty List or Dictionary parses to an empty container; an empty Item fails."""
    assert parse_dictionary("") == {}
    assert parse_list("   ") == []
    with pytest.raises(SFError):
        parse_item("")


def test_date_and_display_string() -> None:
    """RFC 9651 Dates and Display Strings parse to their wrapper types."""
    value, params = parse_item('@1700000000;d=%"f%c3%bc%c3%bc"')
    assert value == Date(1700000000)
    assert type(params["d"]) is DisplayString
    assert params["d"] == "f\u00fc\u00fc"


# ---------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-0, "0"),
        (999_999_999_999_999, "999999999999999"),
        (-999_999_999_999_999, "-999999999999999"),
        (True, "?1"),
        (False, "?0"),
        (Decimal("1.5"), "1.5"),
        (Decimal("-1.20"), "-1.2"),
        (Decimal("0.0005"), "0.0"),
        (Decimal("0.0015"), "0.002"),
        (Decimal("0.0025"), "0.002"),
        (Decimal("-0.0004"), "0.0"),
        (Decimal("-0.0"), "0.0"),
        (Decimal("9.9995"), "10.0"),
        (Decimal("999999999999.999"), "999999999999.999"),
        (Decimal("1E+2"), "100.0"),
        (2.5, "2.5"),
        (0.0025, "0.002"),
        (1.0005, "1.0"),
        (1.0015, "1.002"),
        ("", '""'),
        ('a "quoted" \\ back', '"a \\"quoted\\" \\\\ back"'),
        (Token("text/html"), "text/html"),
        (Token("*foo:bar/baz"), "*foo:bar/baz"),
        (b"hell", ":aGVsbA==:"),
        (b"", "::"),
        (bytes(range(250, 256)), ":+vv8/f7/:"),
        (Date(-62135596800), "@-62135596800"),
        (DisplayString('f\u00fc "%"'), '%"f%c3%bc %22%25%22"'),
    ],
)
def test_serialize_bare_item(value: Any, text: str) -> None:
    """Bare items serialise to the RFC 8941 §4.1 canonical text."""
    assert serialize_bare_item(value) == text


@pytest.mark.parametrize(
    "value",
    [
        1_000_000_000_000_000,
        -1_000_000_000_000_000,
        Decimal("999999999999.9995"),
        Decimal("1000000000000"),
        Decimal("1E+100"),
        Decimal("NaN"),
        Decimal("-Infinity"),
        float("inf"),
        float("nan"),
        1e13,
        "caf\u00e9",
        "tab\t",
        "nl\n",
        Token(""),
        Token("1abc"),
        Token("a b"),
        Token("a,b"),
        Token("\u00e9"),
        Date(10**15),
    ],
)
def test_serialize_bare_item_rejects_invalid_values(value: Any) -> None:
    """Out-of-range numbers and characters a type forbids raise SFError."""
    with pytest.raises(SFError):
        serialize_bare_item(value)


@pytest.mark.parametrize("value", [None, object(), [1], 1j, bytearray(b"x")])
def test_serialize_bare_item_rejects_unsupported_types(value: Any) -> None:
    """Values that are no SF bare item raise TypeError."""
    with pytest.raises(TypeError):
        serialize_bare_item(value)


class _Number(enum.IntEnum):
    ONE = 1


class _Text(str):
    __slots__ = ()

    def __str__(self) -> str:
        return "overridden"


def test_serialize_subclasses_by_base_value() -> None:
    """int and str subclasses serialise by their underlying value, never as tokens."""
    assert serialize_bare_item(_Number.ONE) == "1"
    assert serialize_bare_item(_Text("plain")) == '"plain"'


@pytest.mark.parametrize("key", ["", "A", "1a", "a b", "a=b", "\u00e9", "a\x00"])
def test_serialize_rejects_invalid_keys(key: str) -> None:
    """Keys must match ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )."""
    with pytest.raises(SFError):
        serialize_params({key: 1})
    with pytest.raises(SFError):
        serialize_dictionary({key: (1, {})})


def test_serialize_structures() -> None:
    """Params, items, inner lists (list or tuple), lists and dictionaries serialise canonically."""
    assert serialize_params({}) == ""
    assert serialize_params({"a": True, "b": False, "c": Token("x")}) == ";a;b=?0;c=x"
    assert serialize_item((Token("foo"), {"q": Decimal("0.5")})) == "foo;q=0.5"
    assert serialize_inner_list((("@method", {}), ("@path", {}))) == '("@method" "@path")'
    assert serialize_inner_list([], {"created": 1}) == "();created=1"
    assert serialize_list([(1, {}), ([(2, {}), (3, {"x": True})], {"y": "z"})]) == (
        '1, (2 3;x);y="z"'
    )
    assert serialize_dictionary({"a": (True, {}), "b": (True, {"p": 1}), "c": (False, {})}) == (
        "a, b;p=1, c=?0"
    )
    assert serialize_list([]) == ""
    assert serialize_dictionary({}) == ""


def test_serialize_field_dispatches_on_kind() -> None:
    """serialize_field picks the serializer for the top-level type and checks the shape."""
    assert serialize_field("item", (1, {})) == "1"
    assert serialize_field("list", [(1, {}), (2, {})]) == "1, 2"
    assert serialize_field("dictionary", {"a": (1, {})}) == "a=1"
    with pytest.raises(TypeError):
        serialize_field("dictionary", [(1, {})])
    with pytest.raises(TypeError):
        serialize_field("list", (1, {}))
    with pytest.raises(TypeError):
        serialize_field("item", [(1, {})])
    with pytest.raises(ValueError, match="unknown"):
        serialize_field("bogus", (1, {}))  # type: ignore[arg-type]


def test_wrapper_types() -> None:
    """Token and DisplayString are str subclasses with telling reprs; Date is a value object."""
    assert repr(Token("a")) == "Token('a')"
    assert repr(DisplayString("a")) == "DisplayString('a')"
    assert isinstance(Token("a"), str)
    assert type(Token("a")) is not str
    assert Date(5) == Date(5)
    assert hash(Date(5)) == hash(Date(5))
    with pytest.raises(AttributeError):
        Date(5).timestamp = 6  # type: ignore[misc]
