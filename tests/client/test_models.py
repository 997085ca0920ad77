"""Webhook, PageMeta and WebhookPage: documented fields typed, unknown ones kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")

from upvest_verify.client import PageMeta, Webhook, WebhookPage
from upvest_verify.client._models import parse_datetime

from .client_support import webhook_doc

UTC = dt.timezone.utc


def test_openapi_example_webhook() -> None:
    """The OpenAPI create response example parses into typed fields."""
    webhook = Webhook.from_json(webhook_doc())
    assert webhook.id == "a8eb3540-5a84-40f9-b2bb-7f99f282fc5a"
    assert webhook.types == ("USER",)
    assert (webhook.delay, webhook.max_package_size, webhook.enabled) == ("5s", 10240, False)
    assert webhook.created_at == dt.datetime(2021, 7, 21, 14, 10, tzinfo=UTC)
    assert webhook.extras == {}


def test_unknown_members_are_kept() -> None:
    """Top-level and config members this release does not know land in extras."""
    doc = webhook_doc(exclude_type=["ORDER"], owner={"team": "x"})
    doc["config"] = {**doc["config"], "retry_policy": "fast"}
    webhook = Webhook.from_json(doc)
    assert webhook.extras == {
        "exclude_type": ["ORDER"],
        "owner": {"team": "x"},
        "config": {"retry_policy": "fast"},
    }
    assert webhook.delay == "5s"


def test_webhook_is_frozen_and_comparable() -> None:
    """A value object: immutable, equal by value."""
    one, two = Webhook.from_json(webhook_doc()), Webhook.from_json(webhook_doc())
    assert one == two
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.title = "x"  # type: ignore[misc]
    assert hash(one) == hash(two)


def test_config_may_be_absent() -> None:
    """A response without config gives None for delay and size."""
    doc = webhook_doc()
    del doc["config"]
    webhook = Webhook.from_json(doc)
    assert (webhook.delay, webhook.max_package_size) == (None, None)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"id": None}, "webhook.id"),
        ({"enabled": "yes"}, "webhook.enabled"),
        ({"type": "USER"}, "webhook.type"),
        ({"type": [1]}, "non-string"),
        ({"created_at": "yesterday"}, "RFC 3339"),
        ({"config": {"delay": 5}}, "delay"),
        ({"config": {"max_package_size": True}}, "max_package_size"),
        ({"config": []}, "config"),
    ],
)
def test_malformed_webhooks(change: dict[str, Any], fragment: str) -> None:
    """A documented member missing or of the wrong type is a ValueError naming it."""
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        Webhook.from_json(webhook_doc(**change))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-07-21T14:10:00Z", dt.datetime(2021, 7, 21, 14, 10, tzinfo=UTC)),
        ("2021-07-21T14:10:00.00Z", dt.datetime(2021, 7, 21, 14, 10, tzinfo=UTC)),
        (
            "2021-07-21T14:10:51.980159529Z",
            dt.datetime(2021, 7, 21, 14, 10, 51, 980159, tzinfo=UTC),
        ),
        (
            "2021-07-21T16:10:00.5+02:00",
            dt.datetime(2021, 7, 21, 14, 10, 0, 500000, tzinfo=UTC),
        ),
        ("2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2021-07-21t14:10:00z", dt.datetime(2021, 7, 21, 14, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_are_aware(text: str, expected: dt.datetime) -> None:
    """RFC 3339 with any precision and offset, on every supported Python."""
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["2021-07-21T14:10:00", "2021-07-21", "", None, 5])
def test_timestamps_need_an_offset(text: Any) -> None:
    """Naive or partial timestamps are refused."""
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_datetime(text)


def test_page_and_meta() -> None:
    """meta's four counts are required; sort and order are reported as given."""
    doc = {
        "meta": {
            "offset": 0,
            "limit": 100,
            "count": 1,
            "total_count": 1,
            "sort": "id",
            "order": "ASC",
            "next": None,
        },
        "data": [webhook_doc()],
        "links": {},
    }
    page = WebhookPage.from_json(doc)
    assert len(page) == 1
    assert page.meta == PageMeta(0, 100, 1, 1, "id", "ASC", {"next": None})
    assert page.extras == {"links": {}}
    for broken in ({"meta": {"offset": 0}, "data": []}, {"meta": doc["meta"]}, []):
        with pytest.raises(ValueError):  # noqa: PT011 - the shape varies
            WebhookPage.from_json(broken)
    with pytest.raises(ValueError, match="negative"):
        PageMeta.from_json({"offset": -1, "limit": 1, "count": 0, "total_count": 0})
