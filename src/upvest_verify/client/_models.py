"""Value objects the management client returns (pure).

Upvest documents every object with ``additionalProperties: false``, but adds
fields over time: members this release does not know are kept in ``extras``,
never dropped, and never make parsing fail.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PageMeta", "Webhook", "WebhookPage", "parse_datetime"]

# RFC 3339 §5.6 date-time with any number of fraction digits (Upvest sends 0 to 9).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_datetime(text: object) -> dt.datetime:
    """Parse an RFC 3339 timestamp into an aware datetime (on Python 3.10 too).

    Fraction digits beyond microseconds are dropped; a leap second becomes ``:59``.

    Raises:
        ValueError: ``text`` is not an RFC 3339 date-time with an offset.
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if match.group(8):
        tz = dt.timezone.utc
    else:
        offset = dt.timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        tz = dt.timezone(-offset if match.group(9) == "-" else offset)
    return dt.datetime(year, month, day, hour, minute, min(second, 59), micros, tzinfo=tz)


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return data


def _member(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if name not in data:
        raise ValueError(f"{what} has no {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{what}.{name} has the wrong type ({type(value).__name__})")
    return value


_WEBHOOK_KNOWN = frozenset(
    {"id", "title", "url", "enabled", "type", "config", "created_at", "updated_at"}
)


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook subscription, as Upvest returns it.

    Attributes:
        id: The subscription id (a UUID).
        title: The tenant's title for it.
        url: Where Upvest delivers.
        enabled: Whether Upvest delivers (new subscriptions start disabled).
        types: The event categories (``("ALL",)``, ``("USER", "ORDER")``...).
        delay: ``config.delay``: how long Upvest collects events into one request
            (``"1s"``), or ``None`` if absent.
        max_package_size: ``config.max_package_size`` in bytes, or ``None`` if absent.
        created_at: When it was created (aware datetime).
        updated_at: When it last changed (aware datetime).
        extras: Members this release does not know, unknown ``config`` members under
            ``"config"``; kept as sent.
    """

    id: str
    title: str
    url: str
    enabled: bool
    types: tuple[str, ...]
    delay: str | None
    max_package_size: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, data: object) -> Webhook:
        """Build a webhook from a decoded response object.

        Raises:
            ValueError: A documented member is missing or of the wrong type.
        """
        what = "webhook"
        obj = _object(data, what)
        types = _member(obj, "type", list, what)
        if not all(isinstance(t, str) for t in types):
            raise ValueError("webhook.type holds a non-string")
        config = _object(obj.get("config", {}), "webhook.config")
        delay = config.get("delay")
        size = config.get("max_package_size")
        if delay is not None and not isinstance(delay, str):
            raise ValueError("webhook.config.delay is not a string")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ValueError("webhook.config.max_package_size is not an integer")
        extras = {k: v for k, v in obj.items() if k not in _WEBHOOK_KNOWN}
        config_extras = {k: v for k, v in config.items() if k not in ("delay", "max_package_size")}
        if config_extras:
            extras["config"] = config_extras
        return cls(
            id=_member(obj, "id", str, what),
            title=_member(obj, "title", str, what),
            url=_member(obj, "url", str, what),
            enabled=_member(obj, "enabled", bool, what),
            types=tuple(types),
            delay=delay,
            max_package_size=size,
            created_at=parse_datetime(_member(obj, "created_at", str, what)),
            updated_at=parse_datetime(_member(obj, "updated_at", str, what)),
            extras=extras,
        )


_META_KNOWN = frozenset({"offset", "limit", "count", "total_count", "sort", "order"})


@dataclass(frozen=True, slots=True)
class PageMeta:
    """The ``meta`` of a list response.

    Attributes:
        offset: Where this page starts.
        limit: The page size asked for.
        count: How many items this page holds.
        total_count: How many items there are in all.
        sort: The field sorted by, as Upvest reports it (not checked), or ``None``.
        order: ``"ASC"`` or ``"DESC"`` as reported, or ``None``.
        extras: Members this release does not know.
    """

    offset: int
    limit: int
    count: int
    total_count: int
    sort: str | None = None
    order: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, data: object) -> PageMeta:
        """Build the metadata from a decoded ``meta`` object.

        Raises:
            ValueError: A required member is missing or not a non-negative integer.
        """
        what = "meta"
        obj = _object(data, what)
        offset, limit, count, total = (
            _member(obj, n, int, what) for n in ("offset", "limit", "count", "total_count")
        )
        if min(offset, limit, count, total) < 0:
            raise ValueError("meta holds a negative number")
        sort, order = obj.get("sort"), obj.get("order")
        return cls(
            offset=offset,
            limit=limit,
            count=count,
            total_count=total,
            sort=sort if isinstance(sort, str) else None,
            order=order if isinstance(order, str) else None,
            extras={k: v for k, v in obj.items() if k not in _META_KNOWN},
        )


@dataclass(frozen=True, slots=True)
class WebhookPage:
    """One page of ``GET /webhooks``.

    Attributes:
        data: The webhooks on this page.
        meta: Offset, limit and counts.
        extras: Top-level members this release does not know.
    """

    data: tuple[Webhook, ...]
    meta: PageMeta
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __iter__(self) -> Iterator[Webhook]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def from_json(cls, data: object) -> WebhookPage:
        """Build a page from a decoded list response.

        Raises:
            ValueError: ``meta`` or ``data`` is missing or malformed.
        """
        obj = _object(data, "list response")
        items = _member(obj, "data", list, "list response")
        return cls(
            data=tuple(Webhook.from_json(item) for item in items),
            meta=PageMeta.from_json(obj.get("meta")),
            extras={k: v for k, v in obj.items() if k not in ("data", "meta")},
        )
