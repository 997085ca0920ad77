"""Reading an ASGI request's head once (``adapters/_asgi.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from upvest_verify import KeySet, Reason, VerificationError, verify
from upvest_verify.adapters._asgi import asgi_log_path, asgi_route_path, read_head
from upvest_verify.testing import generate_key, make_key_set, sign_webhook

KEY = generate_key()
URL = "http://app.internal/webhooks/upvest"

LINES = [
    (b"host", b"app.internal"),
    (b"content-length", b"12"),
    (b"x-forwarded-for", b"203.0.113.7"),
]


def test_distinct_lower_case_names_become_one_dict() -> None:
    """The usual ASGI head: one dict of the lines, the declared length read from it."""
    head = read_head({"headers": LINES})
    assert head.fields == dict(LINES)
    assert head.declared == 12
    assert head.values("x-forwarded-for") == ["203.0.113.7"]
    assert head.values("x-forwarded-host") == []
    assert head.authority(("10.0.0.9", 80)) == "app.internal"


@pytest.mark.parametrize(
    "lines",
    [
        [*LINES, (b"x-forwarded-for", b"10.0.0.1")],  # a repeated name
        [(b"Host", b"app.internal"), *LINES[1:], (b"X-Forwarded-For", b"203.0.113.7")],
    ],
    ids=["repeated", "mixed-case"],
)
def test_other_heads_are_handed_on_as_received(lines: list[tuple[bytes, bytes]]) -> None:
    """Repeated or upper-case names: the lines go to the verifier as they came, and every
    lookup lower-cases the names."""
    head = read_head({"headers": lines})
    assert head.fields is lines
    assert head.declared == 12
    assert head.values("x-forwarded-for")[0] == "203.0.113.7"
    assert head.authority(None) == "app.internal"


def test_any_iterable_of_byte_likes_is_read_once() -> None:
    """A generator of lines is read once; bytearray and memoryview values decode too."""
    lines = [(b"host", bytearray(b"app.internal")), (b"content-length", memoryview(b"7"))]
    head = read_head({"headers": (line for line in lines)})
    assert head.declared == 7
    assert head.authority(None) == "app.internal"
    assert not read_head({}).fields
    assert read_head({}).declared is None


@pytest.mark.parametrize(
    ("lines", "declared"),
    [
        ([(b"content-length", b"0")], 0),
        ([(b"content-length", b" 42 ")], 42),
        ([(b"content-length", b"4x")], None),
        ([(b"content-length", b"1" * 19)], None),
        ([(b"content-length", b"4"), (b"content-length", b"4")], None),
        ([(b"Content-Length", b"4")], 4),
        ([], None),
    ],
)
def test_declared_length(lines: list[tuple[bytes, bytes]], declared: int | None) -> None:
    """Exactly one plain decimal Content-Length line declares the length."""
    assert read_head({"headers": lines}).declared == declared


@pytest.mark.parametrize(
    ("lines", "authority"),
    [
        ([(b"host", b" app.internal:8000 ")], "app.internal:8000"),
        ([(b":authority", b"app.internal")], "app.internal"),
        ([(b"host", b"APP.internal"), (b":authority", b"app.internal")], "app.internal"),
        ([], "10.0.0.9:8000"),
    ],
)
def test_authority(lines: list[tuple[bytes, bytes]], authority: str) -> None:
    """Host, else :authority (which wins when both agree), else the server's address."""
    assert read_head({"headers": lines}).authority(("10.0.0.9", 8000)) == authority


@pytest.mark.parametrize(
    "lines",
    [
        [(b"host", b"a"), (b"host", b"b")],
        [(b":authority", b"a"), (b":authority", b"a")],
        [(b"host", b"a"), (b":authority", b"b")],
        [(b"Host", b"a"), (b"host", b"a")],
    ],
)
def test_conflicting_authorities_are_malformed(lines: list[tuple[bytes, bytes]]) -> None:
    """Two Host lines, two :authority lines or a Host naming another authority: refused."""
    with pytest.raises(VerificationError) as info:
        read_head({"headers": lines}).authority(None)
    assert info.value.reason is Reason.MALFORMED_HEADER


def test_server_address_without_any_host() -> None:
    """An IPv6 server address is bracketed; no server at all gives localhost."""
    head = read_head({"headers": []})
    assert head.authority(("::1", 443)) == "[::1]:443"
    assert head.authority(("unix.sock", None)) == "unix.sock"
    assert head.authority(None) == "localhost"


@pytest.mark.parametrize("repeat", [False, True])
def test_the_verifier_reads_the_fields_as_handed_on(repeat: bool) -> None:
    """What read_head hands on verifies like the scope's own lines, both shapes."""
    signed = sign_webhook({"payload": []}, key=KEY, url=URL)
    lines: list[tuple[Any, Any]] = [(k.lower().encode(), v.encode()) for k, v in signed.headers]
    if repeat:
        lines.append((b"x-forwarded-for", b"10.0.0.1"))
        lines.append((b"x-forwarded-for", b"10.0.0.2"))
    keys: KeySet = make_key_set(KEY)
    head = read_head({"headers": lines})
    assert isinstance(head.fields, dict) is not repeat
    assert verify("POST", URL, head.fields, signed.body, keys=keys).key_id == KEY.kid


@pytest.mark.parametrize(
    ("scope", "route"),
    [
        ({"path": "/webhooks/upvest"}, "/webhooks/upvest"),
        ({"path": "/api/webhooks/upvest", "root_path": "/api"}, "/webhooks/upvest"),
        ({"path": "/api", "root_path": "/api"}, "/"),
        ({"path": "/apix/webhooks", "root_path": "/api"}, "/apix/webhooks"),
        ({}, "/"),
    ],
)
def test_route_path(scope: dict[str, Any], route: str) -> None:
    """The path relative to root_path, as the router sees it."""
    assert asgi_route_path(scope) == route


def test_log_path() -> None:
    """raw_path as received, else path."""
    assert asgi_log_path({"raw_path": b"/a%20b", "path": "/a b"}) == "/a%20b"
    assert asgi_log_path({"path": "/a b"}) == "/a b"
