"""Pure rules of the emulator: validation, filters, state bookkeeping (no server, no extra)."""

from __future__ import annotations

import pytest

from upvest_verify.sandbox._rules import (
    CATEGORIES,
    InvalidRequest,
    check_config,
    check_token_form,
    check_url,
    delay_seconds,
    matches_filter,
    parse_list_query,
)
from upvest_verify.sandbox._samples import EVENT_TYPES, build_events, sample_object
from upvest_verify.sandbox._state import State, Token, event_sort_key


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://receiver.example/h", False, True),
        ("https://localhost:8443/h", False, True),
        ("https://receiver/h", False, False),
        ("https://10.0.0.1/h", False, False),
        ("https://[2001:db8::1]/h", False, False),
        ("http://localhost:8000/h", True, True),
        ("http://localhost:8000/h", False, False),
        ("http://localhost/h", True, False),
        ("http://127.0.0.1:8000/h", True, False),
        ("http://receiver.example:80/h", True, False),
        ("ftp://receiver.example/h", True, False),
        ("https://receiver.example:99999/h", False, False),
        ("https://receiver.example/h#part", False, False),
    ],
)
def test_url_rule(url: str, allow_http: bool, ok: bool) -> None:
    """HTTPS to a DNS name; plain HTTP only to localhost with a port, and only when allowed."""
    if ok:
        assert check_url(url, allow_http=allow_http) == url
    else:
        with pytest.raises(InvalidRequest):
            check_url(url, allow_http=allow_http)


def test_url_rule_extra_prefixes() -> None:
    """URLs under an extra prefix (the relay's inbox) pass whatever the scheme."""
    prefix = "http://localhost:1234/events-acceptor-service/inbox/"
    assert check_url(prefix + "x", allow_http=False, extra_prefixes=[prefix]) == prefix + "x"


@pytest.mark.parametrize(
    ("event_type", "types", "exclude", "expected"),
    [
        ("ORDER.FILLED", ["ALL"], [], True),
        ("ORDER.FILLED", ["ORDER"], [], True),
        ("ORDER_CANCELLATION.REJECTED", ["ORDER"], [], False),
        ("PORTFOLIO_ORDER.NEW", ["PORTFOLIO"], [], True),
        ("POSITION.UPDATED", ["ORDER", "CASH_BALANCE"], [], False),
        ("ORDER.FILLED", ["ALL"], ["ORDER"], False),
        ("ORDER.FILLED", ["ORDER"], ["ORDER"], True),
        ("WEBHOOK.TEST", ["ORDER"], [], False),
    ],
)
def test_type_filter(event_type: str, types: list[str], exclude: list[str], expected: bool) -> None:
    """Categories match the part before the dot; exclusions count only with ALL."""
    assert matches_filter(event_type, types, exclude) is expected


def test_config_and_delay() -> None:
    """Delays are ``1s``-``99m``; create fills defaults, patch only what was given."""
    assert check_config({}, partial=False) == {"delay": "5s", "max_package_size": 10240}
    assert check_config({"delay": "3m"}, partial=True) == {"delay": "3m"}
    assert (delay_seconds("1s"), delay_seconds("3m"), delay_seconds("99s")) == (1, 180, 99)
    with pytest.raises(InvalidRequest):
        check_config({"max_package_size": True}, partial=True)


def test_list_query_defaults() -> None:
    """Missing or empty list parameters take their defaults."""
    query = parse_list_query({"offset": "", "limit": ""})
    assert (query.sort, query.order, query.offset, query.limit) == ("created_at", "ASC", 0, 100)


def test_token_form() -> None:
    """All four fields, once each; scopes split on spaces."""
    form = {
        "client_id": ["c"],
        "client_secret": ["s"],
        "grant_type": ["client_credentials"],
        "scope": ["webhooks:read  webhooks:admin"],
    }
    assert check_token_form(form) == ("c", "s", ["webhooks:read", "webhooks:admin"])
    with pytest.raises(InvalidRequest, match="once"):
        check_token_form({**form, "scope": ["a", "b"]})


def test_admin_scope_covers_read() -> None:
    """``webhooks:admin`` allows reads; ``webhooks:read`` does not allow admin calls."""
    admin = Token("t", "c", frozenset({"webhooks:admin"}), 0)
    read = Token("t", "c", frozenset({"webhooks:read"}), 0)
    assert admin.allows("webhooks:read")
    assert admin.allows("webhooks:admin")
    assert read.allows("webhooks:read")
    assert not read.allows("webhooks:admin")


def test_event_sort_key_orders_instants() -> None:
    """Timestamps compare as instants, offsets and nanoseconds included."""
    stamps = [
        "2024-01-01T00:00:00.000000002Z",
        "2024-01-01T01:00:00+01:00",
        "2024-01-01T00:00:00.000000001Z",
    ]
    assert sorted(stamps, key=event_sort_key) == [stamps[1], stamps[2], stamps[0]]
    with pytest.raises(ValueError, match="RFC 3339"):
        event_sort_key("2024-01-01")


def test_samples_cover_documented_types() -> None:
    """Every documented type gets an object; statuses follow the action where they exist."""
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 67  # OpenAPI 1.9.0
    categories = {t.partition(".")[0] for t in EVENT_TYPES}
    assert categories == set(CATEGORIES) - {"ALL", "PORTFOLIO", "CORPORATE_ACTION"}
    for event_type in EVENT_TYPES:
        obj = sample_object(event_type, "2024-05-01T12:00:00.000000Z")
        assert obj
    assert sample_object("ORDER.CANCELLED", "2024-05-01T12:00:00Z")["status"] == "CANCELLED"
    assert sample_object("CASH_BALANCE.UPDATED", "2024-05-01T12:00:00Z")["balance"] == "100.25"


def test_build_events_keeps_list_order() -> None:
    """A list of specs gets increasing timestamps, so it keeps its order when sorted."""
    import datetime as dt

    now = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    events = build_events([{"type": "ORDER.NEW"}] * 3, now)
    assert [e["created_at"] for e in events] == sorted(
        (e["created_at"] for e in events), key=event_sort_key
    )
    assert len({e["created_at"] for e in events}) == 3


def test_key_rotation_overlap() -> None:
    """Rotated-out keys stay published for the overlap, then disappear."""
    state = State()
    first = state.signing_key()
    second = state.rotate(now=100.0, overlap=10.0)
    assert [k.key_id for k in state.webhook_keys(105.0)] == [first.key_id, second.key_id]
    assert [k.key_id for k in state.webhook_keys(110.0)] == [second.key_id]
    assert state.signing_key() == second


def test_tokens_expire() -> None:
    """A token is found until its expiry, then forgotten."""
    state = State()
    token = state.issue_token("client", ["webhooks:read"], expires_at=50.0)
    assert token.value.startswith("ory_at_")
    assert state.token(token.value, now=49.9) == token
    assert state.token(token.value, now=50.0) is None
    assert state.token(token.value, now=1.0) is None
