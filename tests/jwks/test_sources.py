"""Key sources: FetchResult (and its Cache-Control rules), StaticKeySource and load_jwks."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from upvest_verify import ConfigurationError, JWKSError
from upvest_verify.jwks import (
    AsyncKeySource,
    FetchResult,
    KeySource,
    StaticKeySource,
    URLKeySource,
    load_jwks,
)
from upvest_verify.jwks._sources import freshness_lifetime, parse_cache_control

from .jwks_support import JWKKey, jwks

# ---- StaticKeySource ---------------------------------------------------------------


def test_static_source_from_mapping_text_and_bytes(key_a: JWKKey) -> None:
    """A mapping, JSON text and JSON bytes all come back as the same document."""
    doc = jwks(key_a)
    for given in (doc, json.dumps(doc), json.dumps(doc).encode()):
        source = StaticKeySource(given)
        result = source.fetch()
        assert json.loads(result.body) == doc
        assert result.max_age is None
        assert asyncio.run(source.afetch()) == result


def test_static_source_reads_file_on_every_fetch(
    tmp_path: Path, key_a: JWKKey, key_b: JWKKey
) -> None:
    """A file-backed source re-reads the file, so replacing it rotates the keys."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(key_a)))
    source = StaticKeySource(path)
    assert json.loads(source.fetch().body) == jwks(key_a)
    path.write_text(json.dumps(jwks(key_b)))
    assert json.loads(asyncio.run(source.afetch()).body) == jwks(key_b)
    assert json.loads(StaticKeySource(str(path)).fetch().body) == jwks(key_b)


def test_static_source_caps_file_size(tmp_path: Path) -> None:
    """A file larger than max_bytes is refused as a whole."""
    path = tmp_path / "big.json"
    path.write_bytes(b'{"keys": []}' + b" " * 100)
    with pytest.raises(JWKSError, match="larger than"):
        StaticKeySource(path, max_bytes=50).fetch()


@pytest.mark.parametrize(
    "bad",
    [{"keys": {1, 2}}, "{not json", b"{also not json", "/no/such/file.json"],
    ids=["unserialisable", "bad-text", "bad-bytes", "missing-file"],
)
def test_static_source_rejects_bad_configuration(bad: object) -> None:
    """Unserialisable mappings, non-JSON text and missing files fail at construction."""
    with pytest.raises(ConfigurationError):
        StaticKeySource(bad)  # type: ignore[arg-type]


def test_sources_satisfy_protocols(key_a: JWKKey) -> None:
    """Both built-in sources implement KeySource and AsyncKeySource."""
    for source in (
        StaticKeySource(jwks(key_a)),
        URLKeySource("https://api.upvest.co/auth/verify_keys"),
    ):
        assert isinstance(source, KeySource)
        assert isinstance(source, AsyncKeySource)


# ---- load_jwks --------------------------------------------------------------------------


def test_load_jwks_serialises_a_mapping(key_a: JWKKey) -> None:
    """A mapping comes back as its JSON serialisation."""
    body = load_jwks(jwks(key_a))
    assert isinstance(body, bytes)
    assert json.loads(body) == jwks(key_a)


def test_load_jwks_returns_bytes_as_given() -> None:
    """Bytes are the document itself, byte for byte (a repeated member name stays visible)."""
    doc = b'{"keys": [], "keys": []}'
    assert load_jwks(doc) == doc
    assert load_jwks(bytearray(doc)) == doc


@pytest.mark.parametrize("text", ['{"keys": []}', '  \n\t{"keys": []}'], ids=["plain", "indented"])
def test_load_jwks_reads_a_str_starting_with_a_brace_as_json_text(text: str) -> None:
    """A str whose first non-whitespace character is { is JSON text, not a path."""
    assert load_jwks(text) == text.encode()


def test_load_jwks_reads_a_file_from_str_or_path_like(tmp_path: Path, key_a: JWKKey) -> None:
    """Any other str, and any path-like, names a file that is read as it is."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(key_a), indent=2))
    assert load_jwks(str(path)) == path.read_bytes()
    assert load_jwks(path) == path.read_bytes()

    class Where(os.PathLike[str]):
        def __fspath__(self) -> str:
            return str(path)

    assert load_jwks(Where()) == path.read_bytes()


def test_load_jwks_caps_file_size_inclusively(tmp_path: Path) -> None:
    """A file of exactly max_bytes is read; one byte more is a ConfigurationError."""
    path = tmp_path / "jwks.json"
    path.write_bytes(b'{"keys": []}' + b" " * 88)
    assert len(load_jwks(path, max_bytes=100)) == 100
    with pytest.raises(ConfigurationError, match="larger than 99 bytes"):
        load_jwks(path, max_bytes=99)


def test_load_jwks_does_not_treat_non_brace_text_as_json(tmp_path: Path) -> None:
    """JSON text that does not start with { is taken for a path, by the single rule."""
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_jwks('["not", "a", "jwks"]')


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"keys": {1, 2}}, "mapping is not JSON-serialisable"),
        ({"keys": [float("nan")]}, "mapping is not JSON-serialisable"),
        ("{not json", "JWKS text is not JSON"),
        (b"{also not json", "JWKS text is not JSON"),
        (b"\xff\xfe{", "JWKS text is not JSON"),
        ("/no/such/file.json", "cannot be read"),
        (Path("/no/such/file.json"), "cannot be read"),
        (42, "mapping, JSON text or bytes, or a file path"),
        (None, "mapping, JSON text or bytes, or a file path"),
    ],
    ids=[
        "unserialisable",
        "nan",
        "bad-text",
        "bad-bytes",
        "not-utf",
        "missing-file",
        "missing-path",
        "int",
        "none",
    ],
)
def test_load_jwks_errors_are_configuration_errors(given: object, match: str) -> None:
    """Bad JSON, missing files and unsupported types fail with a ConfigurationError saying why."""
    with pytest.raises(ConfigurationError, match=match):
        load_jwks(given)  # type: ignore[arg-type]


def test_load_jwks_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    """A file that is not JSON is a ConfigurationError naming the file."""
    path = tmp_path / "jwks.json"
    path.write_text("keys: []")
    with pytest.raises(ConfigurationError, match=r"JWKS file .*jwks\.json.* is not JSON"):
        load_jwks(path)


def test_load_jwks_refuses_a_directory_and_a_bad_limit(tmp_path: Path) -> None:
    """A directory is unreadable as a JWKS file, and max_bytes must be positive."""
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_jwks(tmp_path)
    with pytest.raises(ConfigurationError, match="max_bytes"):
        load_jwks("{}", max_bytes=0)


def test_static_source_follows_the_load_jwks_rule(tmp_path: Path, key_a: JWKKey) -> None:
    """StaticKeySource tells text from a path exactly as load_jwks does."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(key_a)))
    given: list[Mapping[str, Any] | str | bytes | os.PathLike[str]] = [
        jwks(key_a),
        "  " + json.dumps(jwks(key_a)),
        json.dumps(jwks(key_a)).encode(),
        str(path),
        path,
    ]
    for value in given:
        assert json.loads(StaticKeySource(value).fetch().body) == json.loads(load_jwks(value))


def test_fetch_result_is_frozen() -> None:
    """FetchResult is an immutable value object."""
    result = FetchResult(b"{}", 5.0)
    with pytest.raises(AttributeError):
        result.body = b"x"  # type: ignore[misc]


# ---- Cache-Control (RFC 9111) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        (None, None, None),
        ("max-age=120", None, 120.0),
        ("public, max-age=600, must-revalidate", None, 600.0),
        ('max-age="90"', None, 90.0),
        ("MAX-AGE=45", None, 45.0),
        ("max-age=100, max-age=5", None, 100.0),
        ("max-age=120", "30", 90.0),
        ("max-age=120", "500", 0.0),
        ("max-age=120", "bogus", 120.0),
        ("no-store", None, 0.0),
        ("max-age=600, no-cache", None, 0.0),
        ('private="a, b", max-age=70', None, 70.0),
        ("max-age=-5", None, None),
        ("max-age=1.5", None, None),
        ("max-age=abc, max-age=80", None, 80.0),
        ("garbage;;, max-age=33", None, 33.0),
        ("max-age=99999999999999999999", None, 2147483648.0),
        ("public", None, None),
        ('max-age=60, "unterminated', None, 60.0),
    ],
)
def test_fetch_result_from_http(
    cache_control: str | None, age: str | None, expected: float | None
) -> None:
    """Cache-Control max-age (RFC 9111 §5.2.2.1) minus Age is parsed leniently but safely."""
    result = FetchResult.from_http(b"{}", cache_control=cache_control, age=age)
    assert result.body == b"{}"
    assert result.max_age == expected


def test_freshness_lifetime_and_parse_cache_control_directly() -> None:
    """The lifetime is max-age minus Age, never negative; no lifetime without a max-age."""
    assert parse_cache_control("s-maxage=5, max-age=7") == 7.0
    assert parse_cache_control("") is None
    assert freshness_lifetime("max-age=120", "120") == 0.0
    assert freshness_lifetime("max-age=120", " 20 ") == 100.0
    assert freshness_lifetime(None, "20") is None
    assert freshness_lifetime("", None) is None
