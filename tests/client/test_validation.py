"""Every field is checked before anything is sent, with a ValueError subclass naming it."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")

from upvest_verify.client import (
    EVENT_CATEGORIES,
    InvalidDelay,
    InvalidEventTypes,
    InvalidListParameter,
    InvalidMaxPackageSize,
    InvalidTitle,
    InvalidURL,
    InvalidWebhookId,
    UnknownFields,
    WebhookValidationError,
)
from upvest_verify.client._validation import (
    check_delay,
    check_event_types,
    check_max_package_size,
    check_title,
    check_url,
    create_body,
    update_body,
)

from .client_support import Driver, ScriptedUpvest

GOOD = {"title": "Users", "url": "https://hooks.tenant.example/upvest"}
HOOK_ID = "a8eb3540-5a84-40f9-b2bb-7f99f282fc5a"


@pytest.mark.parametrize(
    "title", ["Users", "x", "Ü-hooks 🚀", "a" * 100, "Orders (prod) #2", " padded "]
)
def test_good_titles(title: str) -> None:
    """Up to 100 printable characters, any script."""
    assert check_title(title) == title


@pytest.mark.parametrize(
    ("title", "why"),
    [
        ("", "empty"),
        ("   ", "blank"),
        ("a" * 101, "101 characters"),
        ("line\nbreak", "U+000A"),
        ("tab\there", "U+0009"),
        ("nul\x00", "U+0000"),
        ("bidi\u202eevil", "U+202E"),
        ("zero\u200bwidth", "U+200B"),
        ("sep\u2028", "U+2028"),
        (None, "string"),
        (42, "string"),
    ],
)
def test_bad_titles(title: Any, why: str) -> None:
    """Empty, too long, control or invisible characters, not a string."""
    with pytest.raises(InvalidTitle, match="title") as info:
        check_title(title)
    assert info.value.field == "title"
    assert why in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://tenant.example/webhooks/upvest",
        "https://hooks.tenant.example:8443/upvest?x=1",
        "https://a.b/" + "p" * 980,
        "https://xn--bcher-kva.example/hooks",
        "HTTPS://Tenant.Example/Path",
    ],
)
def test_good_urls(url: str) -> None:
    """https with a DNS name, up to 1,000 characters."""
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://tenant.example/hooks", "https"),
        ("ftp://tenant.example/hooks", "https"),
        ("tenant.example/hooks", "relative"),
        ("https://127.0.0.1/hooks", "IP address"),
        ("https://[::1]/hooks", "IP address"),
        ("https://[2001:db8::1]:8443/hooks", "IP address"),
        ("https://10.0.0.1/hooks", "IP address"),
        ("https://127.1/hooks", "numeric"),
        ("https://2130706433/hooks", "DNS name"),
        ("https://localhost/hooks", "localhost"),
        ("https://api.localhost/hooks", "localhost"),
        ("https://intranet/hooks", "DNS name"),
        ("https://bad_host.example/hooks", "DNS name"),
        ("https://-bad.example/hooks", "DNS name"),
        ("https://b\u00fccher.example/hooks", "non-ASCII"),
        ("https://tenant.example/a b", "spaces"),
        ("https://user:pw@tenant.example/hooks", "password"),
        ("https://tenant.example/hooks#frag", "fragment"),
        ("https:///hooks", "host"),
        ("https://tenant.example:99999/hooks", "parse"),
        ("https://a.b/" + "p" * 989, "1001 characters"),
        (b"https://tenant.example", "string"),
    ],
)
def test_bad_urls(url: Any, why: str) -> None:
    """Not https, an IP literal, localhost, not a DNS name, credentials, fragment, too long."""
    with pytest.raises(InvalidURL) as info:
        check_url(url)
    assert info.value.field == "url"
    assert why in str(info.value)


def test_localhost_only_with_the_opt_in() -> None:
    """http://localhost:<port> (the emulator's receiver) passes only when asked for."""
    url = "http://localhost:8000/webhooks/upvest"
    with pytest.raises(InvalidURL, match="https"):
        check_url(url)
    assert check_url(url, allow_localhost=True) == url
    assert check_url("http://127.0.0.1:9000/h", allow_localhost=True)
    assert check_url("https://localhost/h", allow_localhost=True)
    with pytest.raises(InvalidURL, match="port"):
        check_url("http://localhost/h", allow_localhost=True)
    with pytest.raises(InvalidURL, match="https"):
        check_url("http://tenant.example:80/h", allow_localhost=True)


def test_documented_categories_and_all() -> None:
    """ALL and each documented category pass; the list is kept in order."""
    assert len(EVENT_CATEGORIES) == 26
    assert check_event_types(["ALL"]) == ["ALL"]
    assert check_event_types(("USER", "ORDER")) == ["USER", "ORDER"]
    assert check_event_types(sorted(EVENT_CATEGORIES)) == sorted(EVENT_CATEGORIES)


@pytest.mark.parametrize(
    ("types", "why"),
    [
        ("USER", "not a string"),
        ([], "at least one"),
        (["USER", "USER"], "twice"),
        (["USER.CREATED"], "subscribe to its category 'USER'"),
        (["SPACESHIP"], "allow_unknown_types"),
        (["user"], "not a documented"),
        ([1], "strings"),
        (7, "not a string"),
        (["A"] * 65, "at most 64"),
    ],
)
def test_bad_event_types(types: Any, why: str) -> None:
    """A string, empty, repeated, an event type, an unknown category."""
    with pytest.raises(InvalidEventTypes) as info:
        check_event_types(types)
    assert info.value.field == "types"
    assert why in str(info.value)


def test_unknown_categories_with_the_opt_in() -> None:
    """Categories Upvest added since pass with allow_unknown_types, if they look like one."""
    assert check_event_types(["SPACESHIP", "USER"], allow_unknown=True) == ["SPACESHIP", "USER"]
    for bad in (["lower"], ["TWO__UNDERSCORES"], ["_X"], ["X-Y"]):
        with pytest.raises(InvalidEventTypes):
            check_event_types(bad, allow_unknown=True)


@pytest.mark.parametrize("delay", ["1s", "2s", "9s", "10s", "30s"])
def test_good_delays(delay: str) -> None:
    """^[1-9][0-9]?[sm]$ within 1 s to 30 s."""
    assert check_delay(delay) == delay


@pytest.mark.parametrize(
    "delay", ["0s", "31s", "99s", "1m", "2m", "1", "s", "01s", "100s", "1h", " 1s", "1s\n", 1, None]
)
def test_bad_delays(delay: Any) -> None:
    """Anything outside the pattern, or above 30 s (minutes are all above it)."""
    with pytest.raises(InvalidDelay) as info:
        check_delay(delay)
    assert info.value.field == "delay"


@pytest.mark.parametrize("size", [100, 101, 51200, 1_048_576])
def test_good_sizes(size: int) -> None:
    """100 to 1,048,576 bytes."""
    assert check_max_package_size(size) == size


@pytest.mark.parametrize("size", [99, 0, -1, 1_048_577, 10**9, True, 512.0, "512", None])
def test_bad_sizes(size: Any) -> None:
    """Out of range, or not an int (bool and float included)."""
    with pytest.raises(InvalidMaxPackageSize) as info:
        check_max_package_size(size)
    assert info.value.field == "max_package_size"


def _create(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        **GOOD,
        "types": None,
        "delay": None,
        "max_package_size": None,
        "extras": None,
        "unknown": {},
        "allow_localhost": False,
        "allow_unknown_types": False,
    }
    args.update(kwargs)
    return create_body(**args)


def test_create_body_sends_only_what_is_given() -> None:
    """title and url always; type and config only when given; extras merged."""
    assert _create() == GOOD
    assert _create(types=["USER"], delay="2s", max_package_size=51200) == {
        **GOOD,
        "type": ["USER"],
        "config": {"delay": "2s", "max_package_size": 51200},
    }
    assert _create(delay="1s") == {**GOOD, "config": {"delay": "1s"}}
    body = _create(types=["ALL"], extras={"exclude_type": ["USER"], "config": {"retry": "x"}})
    assert body == {
        **GOOD,
        "type": ["ALL"],
        "exclude_type": ["USER"],
        "config": {"retry": "x"},
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"unknown": {"colour": "red"}}, "colour"),
        ({"unknown": {"enabled": True}}, "enabled"),
        ({"extras": {"title": "x"}}, "title"),
        ({"extras": {"id": "x"}}, "id"),
        ({"extras": {"created_at": "x"}}, "created_at"),
        ({"extras": {"config": {"delay": "5s"}}}, "config.delay"),
        ({"extras": {"x": object()}}, "extras"),
        ({"extras": {"x": float("nan")}}, "extras"),
        ({"extras": {3: "x"}}, "extras"),
        ({"extras": ["x"]}, "extras"),
    ],
)
def test_unknown_fields_are_refused_unless_extras(kwargs: dict[str, Any], field: str) -> None:
    """Keyword arguments the client does not know, and extras that clash or are not JSON."""
    with pytest.raises(WebhookValidationError) as info:
        _create(**kwargs)
    assert info.value.field == field
    if "unknown" in kwargs:
        assert isinstance(info.value, UnknownFields)
        assert "extras" in str(info.value)


def test_update_body_changed_fields_only() -> None:
    """PATCH carries only what was given; nothing given is an error naming it."""
    common = {"unknown": {}, "allow_localhost": False, "allow_unknown_types": False}
    assert update_body(title="Users", **common) == {"title": "Users"}
    assert update_body(enabled=False, **common) == {"enabled": False}
    assert update_body(max_package_size=100, **common) == {"config": {"max_package_size": 100}}
    assert update_body(extras={"exclude_type": []}, **common) == {"exclude_type": []}
    with pytest.raises(WebhookValidationError, match="nothing to change"):
        update_body(**common)
    with pytest.raises(WebhookValidationError) as info:
        update_body(enabled="yes", **common)
    assert info.value.field == "enabled"


def _calls(client: Any) -> list[tuple[type[Exception], Any]]:
    hooks = client.webhooks
    return [
        (InvalidTitle, lambda: hooks.create(title="", url=GOOD["url"])),
        (InvalidURL, lambda: hooks.create(title="t", url="http://tenant.example/h")),
        (InvalidURL, lambda: hooks.create(title="t", url="https://192.168.0.1/h")),
        (InvalidEventTypes, lambda: hooks.create(**GOOD, types=["NOPE"])),
        (InvalidDelay, lambda: hooks.create(**GOOD, delay="45s")),
        (InvalidMaxPackageSize, lambda: hooks.create(**GOOD, max_package_size=50)),
        (UnknownFields, lambda: hooks.create(**GOOD, colour="red")),
        (InvalidTitle, lambda: hooks.update(HOOK_ID, title="x" * 101)),
        (UnknownFields, lambda: hooks.update(HOOK_ID, colour="red")),
        (WebhookValidationError, lambda: hooks.update(HOOK_ID)),
        (InvalidWebhookId, lambda: hooks.get("../auth/token")),
        (InvalidWebhookId, lambda: hooks.update("a/b", title="x")),
        (InvalidWebhookId, lambda: hooks.delete("")),
        (InvalidWebhookId, lambda: hooks.test("a?b")),
        (InvalidWebhookId, lambda: hooks.enable("a#b")),
        (InvalidListParameter, lambda: hooks.list(sort="colour")),
        (InvalidListParameter, lambda: hooks.list(order="UP")),
        (InvalidListParameter, lambda: hooks.list(offset=-1)),
        (InvalidListParameter, lambda: hooks.list(limit=1001)),
        (InvalidListParameter, lambda: hooks.list(limit=True)),
    ]


def test_nothing_is_sent_for_invalid_input(driver: Driver) -> None:
    """Each invalid call raises before any request (not even a token request) is made."""
    server = ScriptedUpvest()
    with driver.scripted(server) as client:
        for expected, call in _calls(client):
            with pytest.raises(expected):
                driver.run(call())
        with pytest.raises(InvalidListParameter) as info:
            driver.collect(client.webhooks.iter(page_size=0))
        assert info.value.field == "page_size"
        with pytest.raises(InvalidListParameter):
            driver.collect(client.webhooks.iter(sort="nope"))
    assert server.requests == []


def test_list_order_is_case_insensitive(driver: Driver) -> None:
    """order="desc" is sent as DESC."""
    server = ScriptedUpvest(
        default=lambda request: __import__("httpx").Response(
            200, json={"meta": {"offset": 0, "limit": 5, "count": 0, "total_count": 0}, "data": []}
        )
    )
    with driver.scripted(server) as client:
        driver.run(client.webhooks.list(order="desc", limit=5))
    assert server.api_requests()[0].url.query == b"order=DESC&offset=0&limit=5"
