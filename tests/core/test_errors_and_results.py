"""Errors, policy validation and the result/event types."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle

import pytest

from upvest_verify import (
    ConfigurationError,
    Dialect,
    Event,
    InvalidSignature,
    KeyNotFound,
    KeySetUnavailable,
    PayloadError,
    Policy,
    Reason,
    RequestTooLarge,
    VerificationError,
    VerifiedWebhook,
)
from upvest_verify._result import new_verified_webhook, parse_timestamp


@pytest.mark.parametrize(
    ("reason", "cls", "status"),
    [
        (Reason.BAD_SIGNATURE, InvalidSignature, 401),
        (Reason.MALFORMED_HEADER, InvalidSignature, 400),
        (Reason.UNKNOWN_KEY, KeyNotFound, 401),
        (Reason.UNSUPPORTED_KEY, KeyNotFound, 401),
        (Reason.KEYS_UNAVAILABLE, KeySetUnavailable, 503),
        (Reason.BODY_TOO_LARGE, RequestTooLarge, 413),
    ],
)
def test_error_subclass_follows_reason(reason: Reason, cls: type, status: int) -> None:
    """Constructing VerificationError picks the subclass and status that fit the reason."""
    err = VerificationError(reason, "why", key_id="k")
    assert type(err) is cls
    assert err.status_code == status == reason.status_code
    assert str(err) == f"{reason.value}: why"
    assert err.key_id == "k"


def test_errors_pickle_round_trip() -> None:
    """Errors survive pickling (multiprocessing, task queues) with reason and key id."""
    err = VerificationError("unknown_key", "gone", key_id="k1")
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(back) is KeyNotFound
    assert (back.reason, back.message, back.key_id) == (Reason.UNKNOWN_KEY, "gone", "k1")


def test_error_default_message_and_repr() -> None:
    """Without a message the reason is spelled out; repr names the class."""
    err = VerificationError(Reason.EXPIRED)
    assert err.message == "expired"
    assert repr(err) == "InvalidSignature('expired', 'expired')"


def test_unknown_reason_is_rejected() -> None:
    """A reason string outside the enum is a programming error (ValueError)."""
    with pytest.raises(ValueError, match="not_a_reason"):
        VerificationError("not_a_reason")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dialect": "v7"},
        {"signature_encoding": "pem"},
        {"key_types": frozenset({"RSA"})},
        {"key_types": frozenset()},
        {"skew": -1},
        {"max_age": "5"},
        {"max_window": 0},
        {"max_body_size": 0},
        {"max_signatures": True},
        {"labels": "sig1"},
        {"labels": ("",)},
        {"required_components": 5},
    ],
)
def test_bad_policy_fails_at_construction(kwargs: dict[str, object]) -> None:
    """A bad policy raises ConfigurationError at start-up, not on the first webhook."""
    with pytest.raises(ConfigurationError):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_policy_normalises_iterables() -> None:
    """Lists become tuples and sets become frozensets, so a Policy stays hashable."""
    policy = Policy(labels=["a"], required_components=["@method"], key_types={"P-521", "P-256"})  # type: ignore[arg-type]
    assert policy.labels == ("a",)
    assert policy.required_components == ("@method",)
    assert policy.key_types == frozenset({"P-521", "P-256"})
    assert hash(policy) == hash(
        Policy(
            labels=("a",), required_components=("@method",), key_types=frozenset({"P-521", "P-256"})
        )
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2021-07-21T14:10:51.980159529Z",
            dt.datetime(2021, 7, 21, 14, 10, 51, 980159, dt.timezone.utc),
        ),
        ("2021-07-21T14:10:00.00Z", dt.datetime(2021, 7, 21, 14, 10, 0, 0, dt.timezone.utc)),
        ("2021-07-21T14:10:42Z", dt.datetime(2021, 7, 21, 14, 10, 42, 0, dt.timezone.utc)),
        (
            "2021-07-21T16:10:42.5+02:00",
            dt.datetime(2021, 7, 21, 16, 10, 42, 500000, dt.timezone(dt.timedelta(hours=2))),
        ),
    ],
)
def test_timestamps_of_every_precision(text: str, expected: dt.datetime) -> None:
    """Upvest's created_at values parse to aware datetimes, nanoseconds truncated."""
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text", ["2021-07-21", "2021-07-21T14:10:42", "yesterday", "2021-13-01T00:00:00Z"]
)
def test_bad_timestamps(text: str) -> None:
    """Strings that are not RFC 3339 date-times raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011
        parse_timestamp(text)


def _webhook(body: bytes) -> VerifiedWebhook:
    return VerifiedWebhook(
        "k", "sig1", ('"@method"',), 1, 2, None, Dialect("rfc9421", "der", None), body
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"payload": {}}',
        b'{"payload": [1]}',
        b'{"payload": [{"id": "x"}]}',
        b'{"payload": [{"id": 1, "type": "A.B", "created_at": "2021-07-21T14:10:42Z", "webhook_id": "w", "object": {}}]}',
        b'{"payload": [{"id": "1", "type": "A.B", "created_at": "2021-07-21T14:10:42Z", "webhook_id": 5, "object": {}}]}',
        b'{"payload": [{"id": "1", "type": "A.B", "created_at": "2021-07-21T14:10:42Z", "webhook_id": "w", "object": []}]}',
        b'{"payload": [{"id": "1", "type": "A.B", "created_at": "soon", "webhook_id": "w", "object": {}}]}',
    ],
)
def test_events_of_a_foreign_body(body: bytes) -> None:
    """A verified body that is not an Upvest envelope raises PayloadError only when read."""
    webhook = _webhook(body)
    with pytest.raises(PayloadError):
        _ = webhook.events


def test_unknown_event_types_parse() -> None:
    """Event types the library has never heard of parse like any other."""
    body = b'{"payload": [{"id": "1", "type": "NEW_THING.HAPPENED", "created_at": "2021-07-21T14:10:42Z", "webhook_id": "w", "object": {"x": 1}}]}'
    (event,) = _webhook(body).events
    assert isinstance(event, Event)
    assert event.category == "NEW_THING"
    assert _webhook(body).json()["payload"][0]["object"] == {"x": 1}


def test_dialect_str_and_component_names() -> None:
    """Dialect prints as layout/encoding/digest; component_names strips quotes."""
    assert str(Dialect("upvest-v6", "raw", None)) == "upvest-v6/raw/no-digest"
    webhook = VerifiedWebhook(
        "k",
        "sig1",
        ('"@method"', '"@query-param";name="a"'),
        1,
        2,
        None,
        Dialect("rfc9421", "der", "digest"),
        b"",
    )
    assert webhook.component_names == ("@method", "@query-param")


def test_fast_constructor_builds_the_same_webhook() -> None:
    """new_verified_webhook() (the verify path's constructor) equals the dataclass one."""
    args = ("k", "sig1", ('"@method"',), 1, 2, "n", Dialect("rfc9421", "der", None), b"{}")
    fast, slow = new_verified_webhook(*args), VerifiedWebhook(*args)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert hash(fast) == hash(slow)
    assert [getattr(fast, f.name) for f in dataclasses.fields(fast)] == [
        getattr(slow, f.name) for f in dataclasses.fields(slow)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.key_id = "other"  # type: ignore[misc]


def test_events_are_parsed_once_and_the_webhook_pickles() -> None:
    """events is cached on first read; the webhook round-trips through pickle either way."""
    body = b'{"payload": [{"id": "1", "type": "A.B", "created_at": "2021-07-21T14:10:42Z", "webhook_id": "w", "object": {}}]}'
    webhook = new_verified_webhook(
        "k", "sig1", (), 1, 2, None, Dialect("rfc9421", "der", None), body
    )
    assert pickle.loads(pickle.dumps(webhook)) == webhook  # noqa: S301 (our own object)
    first = webhook.events
    assert webhook.events is first
    clone = pickle.loads(pickle.dumps(webhook))  # noqa: S301 (our own object)
    assert clone == webhook
    assert clone.events == first
