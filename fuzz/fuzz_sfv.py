"""Fuzz target: the structured-field parser and serializer (``upvest_verify._sfv``).

Input layout: the first byte chooses how to parse, the rest is the field value.

* bits 0-1: 0 Dictionary, 1 List, 2 Item, 3 all three;
* bit 2: ``allow_duplicates=False``;
* bit 3: decode the value as UTF-8 (invalid sequences replaced), else ISO-8859-1.

Properties checked (RFC 8941 §4):

1. parsing raises nothing but :class:`SFError`;
2. a parsed value serialises without error (every value the parser builds is one
   the serializer can write);
3. round trip: parsing that serialisation gives the same value with the same
   types (Token stays Token, Decimal stays Decimal), and serialising again gives
   the same text (the serialisation is canonical);
4. with ``UPVEST_FUZZ_HTTP_SF=1`` and the ``http_sf`` package installed, the
   accept/reject verdict and the value agree with ``http_sf``, apart from the two
   documented differences (wrong ``=`` padding in byte sequences, dates beyond
   years 1-9999).

Run: ``python fuzz/fuzz_sfv.py -atheris_runs=1000000`` (README.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import _harness

with _harness.instrumented(__name__ == "__main__"):
    from upvest_verify import _sfv

KINDS = ("dictionary", "list", "item")
PARSERS: dict[str, Callable[..., Any]] = {
    "dictionary": _sfv.parse_dictionary,
    "list": _sfv.parse_list,
    "item": _sfv.parse_item,
}

# The differential check against http_sf, when asked for and installed.
http_sf: Any = None
if os.environ.get("UPVEST_FUZZ_HTTP_SF") == "1":
    with contextlib.suppress(ImportError):
        import http_sf


def typed(value: object) -> object:
    """``value`` with the type of every leaf made explicit, for strict comparison."""
    if isinstance(value, dict):
        return ("dict", tuple((k, typed(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(v) for v in value))
    return (type(value).__name__, value)


def decode(data: bytes) -> tuple[tuple[str, ...], bool, str]:
    """Split an input into the kinds to parse as, ``allow_duplicates`` and the text."""
    head = data[0] if data else 0
    kinds = KINDS if head & 3 == 3 else (KINDS[head & 3],)
    text = data[1:].decode("utf-8", "replace") if head & 8 else data[1:].decode("latin-1")
    return kinds, not head & 4, text


def check(kind: str, text: str, allow_duplicates: bool) -> None:
    """Check the properties of the module docstring for one parse."""
    try:
        value = PARSERS[kind](text, allow_duplicates=allow_duplicates)
    except _sfv.SFError as e:
        if e.position is not None and not 0 <= e.position <= len(text):
            raise _harness.Finding(f"error position {e.position} outside the input: {e}") from e
        value = e
    if http_sf is not None:
        differential(kind, text, allow_duplicates, value)
    if isinstance(value, _sfv.SFError):
        return
    try:
        serialised = _sfv.serialize_field(kind, value)  # type: ignore[arg-type]
    except (_sfv.SFError, TypeError) as e:
        raise _harness.Finding(f"parsed {kind} {value!r} does not serialise: {e}") from e
    if kind == "item" and not serialised:
        raise _harness.Finding(f"item {value!r} serialises to nothing")
    try:
        again = PARSERS[kind](serialised, allow_duplicates=False)
    except _sfv.SFError as e:
        raise _harness.Finding(f"serialisation {serialised!r} of {text!r} does not parse") from e
    if typed(again) != typed(value):
        raise _harness.Finding(
            f"round trip changed the value: {text!r} -> {value!r} -> {serialised!r} -> {again!r}"
        )
    if _sfv.serialize_field(kind, again) != serialised:  # type: ignore[arg-type]
        raise _harness.Finding(f"serialisation of {text!r} is not canonical: {serialised!r}")


# -- optional differential check against http_sf ------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _Duplicate(Exception):
    pass


def _raise_duplicate(key: str, where: str) -> None:
    raise _Duplicate(f"duplicate {where} key {key!r}")


def _from_http_sf(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _from_http_sf(member) for key, member in value.items()}
    if isinstance(value, list):
        return [_from_http_sf(member) for member in value]
    if isinstance(value, tuple):
        first, params = value
        return (_from_http_sf(first), {k: _from_http_sf(v) for k, v in params.items()})
    if isinstance(value, http_sf.Token):
        return _sfv.Token(str(value))
    if isinstance(value, http_sf.DisplayString):
        return _sfv.DisplayString(str(value))
    if isinstance(value, datetime):
        return _sfv.Date((value - _EPOCH) // timedelta(seconds=1))
    return value


def differential(kind: str, text: str, allow_duplicates: bool, ours: object) -> None:
    """Compare with http_sf, allowing only the documented differences."""
    try:
        theirs: object = _from_http_sf(
            http_sf.parse(
                text.encode("utf-8"),
                tltype=kind,
                on_duplicate_key=None if allow_duplicates else _raise_duplicate,
            )
        )
    except (http_sf.StructuredFieldError, _Duplicate) as e:
        theirs = e
    ours_ok = not isinstance(ours, _sfv.SFError)
    theirs_ok = not isinstance(theirs, Exception)
    if ours_ok and theirs_ok:
        if typed(ours) != typed(theirs):
            raise _harness.Finding(f"{kind} {text!r}: ours {ours!r}, http_sf {theirs!r}")
        return
    if ours_ok == theirs_ok:
        return
    if not ours_ok and "incorrect '=' padding" in str(ours):
        return  # documented: http_sf accepts present-but-wrong padding
    if ours_ok and "Date value out of range" in str(theirs):
        return  # documented: we accept dates outside years 1-9999
    verdict = "accept" if ours_ok else "reject"
    raise _harness.Finding(f"{kind} {text!r}: we {verdict} ({ours!r}), http_sf says {theirs!r}")


def test_one_input(data: bytes) -> None:
    """The fuzz target: parse, serialise, re-parse."""
    kinds, allow_duplicates, text = decode(data)
    for kind in kinds:
        check(kind, text, allow_duplicates)


def seeds() -> Iterator[bytes]:
    """The structured-field suite and the signature fields of the test vectors."""
    flag = {"dictionary": 0, "list": 1, "item": 2}
    for case in _harness.sf_suite_cases():
        kind = case.get("header_type")
        if kind not in flag:
            continue
        for key in ("raw", "canonical"):
            lines = case.get(key)
            if isinstance(lines, list) and all(isinstance(x, str) for x in lines):
                text = ", ".join(lines)
                yield bytes([flag[kind]]) + text.encode("utf-8")
                yield bytes([flag[kind] | 4 | 8]) + text.encode("utf-8")
    for vector in _harness.http_vectors():
        for key in ("signature_input_header", "signature_header"):
            yield b"\x03" + vector[key].encode("ascii")
        for _, value in vector["headers"]:
            yield b"\x03" + value.encode("latin-1")
    for case in _harness.p521_vectors()["cases"]:
        for name, value in case["headers"]:
            if name in ("signature-input", "signature", "content-digest"):
                yield b"\x07" + value.encode("latin-1")


def describe(data: bytes) -> str:
    """The kinds, the duplicate setting and the text an input stands for."""
    kinds, allow_duplicates, text = decode(data)
    return f"kinds={kinds} allow_duplicates={allow_duplicates}\ntext={text!r}"


if __name__ == "__main__":
    _harness.main("sfv", test_one_input, seeds, describe)
