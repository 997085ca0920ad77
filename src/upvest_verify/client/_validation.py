"""Checks on what the client sends to ``/webhooks``, before anything is sent (pure).

The rules are Upvest's (upvest-protocol.md §5.2, OpenAPI 1.9.0 with the newer docs'
30 s cap on ``delay``), made a little stricter where Upvest would only fail later:
a webhook URL must be one Upvest can call (https, a public DNS name, no IP literal),
and a title may not hold control characters. Every failure is a
:class:`~upvest_verify.client.WebhookValidationError` subclass naming the field.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import (
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

__all__ = [
    "EVENT_CATEGORIES",
    "MAX_LIMIT",
    "SORT_FIELDS",
    "check_delay",
    "check_event_types",
    "check_list_params",
    "check_max_package_size",
    "check_title",
    "check_url",
    "check_webhook_id",
    "create_body",
    "update_body",
]

EVENT_CATEGORIES: frozenset[str] = frozenset(
    {
        "ACCOUNT",
        "ACCOUNT_GROUP",
        "ACCOUNT_LIQUIDATION",
        "ACCOUNT_RETURNS",
        "ACCOUNT_VALUATION",
        "CASH_BALANCE",
        "CASH_TRANSACTION",
        "CORPORATE_ACTION",
        "DIRECT_DEBIT",
        "EXECUTION",
        "FEE_COLLECTION",
        "INTRADAY_ACCOUNT_VALUATION",
        "ORDER",
        "ORDER_CANCELLATION",
        "PORTFOLIO",
        "PORTFOLIO_ALLOCATION",
        "PORTFOLIO_ORDER",
        "POSITION",
        "REPORT",
        "SECURITY_TRANSACTION",
        "TREASURY_REPORT",
        "USER",
        "USER_CHECK",
        "VIRTUAL_CASH_DECREASE",
        "VIRTUAL_CASH_INCREASE",
        "WITHDRAWAL",
    }
)
"""The event categories Upvest documents for ``type`` (OpenAPI 1.9.0), besides ``ALL``."""

SORT_FIELDS: frozenset[str] = frozenset({"created_at", "updated_at", "title", "url", "enabled"})
"""What ``GET /webhooks`` sorts by."""
MAX_LIMIT = 1000
"""The largest page ``GET /webhooks`` returns."""

MAX_TITLE = 100
MAX_URL = 1000
MIN_PACKAGE_SIZE = 100
MAX_PACKAGE_SIZE = 1_048_576
MAX_DELAY_SECONDS = 30
_MAX_TYPES = 64
_MAX_OFFSET = 2**31 - 1  # the OpenAPI's int32

# OpenAPI: pattern ^[1-9][0-9]?[sm]$ (the "$" of a JSON Schema pattern matches only at the end).
_DELAY = re.compile(r"[1-9][0-9]?[sm]")
# A category a future Upvest release may add: upper-case words joined by "_".
_CATEGORY = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
# RFC 1123 §2.1 host name label, lower-cased (urlsplit lower-cases hostname).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Unicode categories a title may not hold: controls, format characters (bidi overrides,
# zero-width characters), surrogates, private use, unassigned, line/paragraph separators.
_BAD_TITLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_CREATE_FIELDS = ("title", "url", "type", "config")
_PATCH_FIELDS = ("title", "url", "enabled", "type", "config")
_READ_ONLY = ("id", "created_at", "updated_at")
_CONFIG_FIELDS = ("delay", "max_package_size")


def check_title(title: object) -> str:
    """``title``: 1 to 100 characters, not blank, no control or invisible characters.

    Raises:
        InvalidTitle: It is not.
    """
    if not isinstance(title, str):
        raise InvalidTitle("title", f"must be a string, not {type(title).__name__}")
    if not title.strip():
        raise InvalidTitle("title", "must not be empty or blank")
    if len(title) > MAX_TITLE:
        raise InvalidTitle("title", f"is {len(title)} characters long; at most {MAX_TITLE}")
    for ch in title:
        if unicodedata.category(ch) in _BAD_TITLE_CATEGORIES:
            raise InvalidTitle("title", f"holds the control or invisible character U+{ord(ch):04X}")
    return title


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: object, *, allow_localhost: bool = False) -> str:
    """``url``: an https URL Upvest can call, at most 1,000 characters.

    The host must be a DNS name with at least two labels (no IP literal, no
    ``localhost``); no credentials, no fragment, no spaces or non-ASCII characters
    (percent-encode them). With ``allow_localhost``, ``http://localhost:<port>``
    (or ``127.0.0.1``, ``[::1]``) passes too: a receiver next to the local emulator.

    Raises:
        InvalidURL: It is not such a URL.
    """
    if not isinstance(url, str):
        raise InvalidURL("url", f"must be a string, not {type(url).__name__}")
    if len(url) > MAX_URL:
        raise InvalidURL("url", f"is {len(url)} characters long; at most {MAX_URL}")
    if not url.isascii() or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidURL(
            "url", "holds spaces, control or non-ASCII characters; percent-encode them"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidURL("url", f"does not parse: {e}") from e
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http"):
        raise InvalidURL("url", f"must be https://, not {parts.scheme or 'a relative URL'}")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("url", "must not carry a user name or password")
    if parts.fragment or url.endswith("#"):
        raise InvalidURL("url", "must not have a fragment ('#...'); it is never sent")
    if not host:
        raise InvalidURL("url", "has no host")
    local = host in _LOCAL_HOSTS or host.endswith(".localhost")
    if local and allow_localhost:
        if parts.scheme == "http" and port is None:
            raise InvalidURL("url", "a plain http URL to localhost needs an explicit port")
        return url
    if parts.scheme != "https":
        raise InvalidURL("url", "must be https:// (allow_localhost=True for the local emulator)")
    if _is_ip_literal(host):
        raise InvalidURL("url", "must name a DNS host, not an IP address")
    if local:
        raise InvalidURL(
            "url", "localhost is not reachable by Upvest (allow_localhost=True for the emulator)"
        )
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(lb) for lb in labels):
        raise InvalidURL("url", f"host {host!r} is not a DNS name like 'hooks.example.com'")
    if labels[-1].isdigit():
        raise InvalidURL("url", f"host {host!r} is a numeric address, not a DNS name")
    return url


def check_event_types(types: object, *, allow_unknown: bool = False) -> list[str]:
    """``type``: a non-empty list of distinct event categories, or ``["ALL"]``.

    Categories are the part of an event type before the dot (``USER`` for
    ``USER.CREATED``). Ones Upvest does not document yet pass only with
    ``allow_unknown`` (and must still look like ``NEW_CATEGORY``).

    Raises:
        InvalidEventTypes: The list is empty, not a list, repeats a category, or
            names an event type or an unknown category.
    """
    if isinstance(types, (str, bytes)) or not isinstance(types, Iterable):
        raise InvalidEventTypes("types", "must be a list of categories like ['USER'], not a string")
    items = list(types)
    if not items:
        raise InvalidEventTypes("types", "must name at least one category (or 'ALL')")
    if len(items) > _MAX_TYPES:
        raise InvalidEventTypes("types", f"names {len(items)} categories; at most {_MAX_TYPES}")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise InvalidEventTypes("types", f"entries are strings, not {type(item).__name__}")
        if item in seen:
            raise InvalidEventTypes("types", f"{item!r} is listed twice")
        seen.add(item)
        if item == "ALL" or item in EVENT_CATEGORIES:
            continue
        if "." in item:
            category = item.split(".", 1)[0]
            raise InvalidEventTypes(
                "types", f"{item!r} is an event type; subscribe to its category {category!r}"
            )
        if not allow_unknown:
            raise InvalidEventTypes(
                "types",
                f"{item!r} is not a documented category (allow_unknown_types=True "
                "sends categories Upvest added since)",
            )
        if not _CATEGORY.fullmatch(item):
            raise InvalidEventTypes("types", f"{item!r} does not look like a category")
    return items


def check_delay(delay: object) -> str:
    """``config.delay``: ``^[1-9][0-9]?[sm]$``, from ``1s`` to ``30s``.

    Raises:
        InvalidDelay: It is not.
    """
    if not isinstance(delay, str) or not _DELAY.fullmatch(delay):
        raise InvalidDelay(
            "delay", f"must look like '1s' to '30s' (^[1-9][0-9]?[sm]$), not {delay!r}"
        )
    seconds = int(delay[:-1]) * (60 if delay.endswith("m") else 1)
    if seconds > MAX_DELAY_SECONDS:
        raise InvalidDelay("delay", f"{delay!r} is longer than {MAX_DELAY_SECONDS}s")
    return delay


def check_max_package_size(size: object) -> int:
    """``config.max_package_size``: an integer number of bytes, 100 to 1,048,576.

    Raises:
        InvalidMaxPackageSize: It is not.
    """
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidMaxPackageSize(
            "max_package_size", f"must be an integer (bytes), not {type(size).__name__}"
        )
    if not MIN_PACKAGE_SIZE <= size <= MAX_PACKAGE_SIZE:
        raise InvalidMaxPackageSize(
            "max_package_size", f"{size} is outside {MIN_PACKAGE_SIZE} to {MAX_PACKAGE_SIZE} bytes"
        )
    return size


def check_webhook_id(webhook_id: object) -> str:
    """A webhook id: a UUID, or at least one safe path segment.

    Raises:
        InvalidWebhookId: It is not a string of letters, digits, ``-`` and ``_``.
    """
    if not isinstance(webhook_id, str) or not _WEBHOOK_ID.fullmatch(webhook_id):
        raise InvalidWebhookId("webhook_id", f"must be a webhook id (a UUID), not {webhook_id!r}")
    return webhook_id


def check_list_params(
    sort: str | None, order: str | None, offset: int, limit: int
) -> dict[str, str]:
    """The query of ``GET /webhooks``.

    Returns:
        The query parameters; ``sort`` and ``order`` only when given.

    Raises:
        InvalidListParameter: ``sort`` is not a sortable field, ``order`` not
            ``ASC``/``DESC``, ``offset`` negative, ``limit`` outside 0 to 1,000.
    """
    params: dict[str, str] = {}
    if sort is not None:
        if sort not in SORT_FIELDS:
            raise InvalidListParameter(
                "sort", f"must be one of {sorted(SORT_FIELDS)}, not {sort!r}"
            )
        params["sort"] = sort
    if order is not None:
        if not isinstance(order, str) or order.upper() not in ("ASC", "DESC"):
            raise InvalidListParameter("order", f"must be 'ASC' or 'DESC', not {order!r}")
        params["order"] = order.upper()
    for name, value, top in (("offset", offset, _MAX_OFFSET), ("limit", limit, MAX_LIMIT)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise InvalidListParameter(name, f"must be an integer from 0 to {top}, not {value!r}")
        params[name] = str(value)
    return params


def _refuse_unknown(unknown: Mapping[str, object]) -> None:
    if unknown:
        names = ", ".join(sorted(unknown))
        raise UnknownFields(
            sorted(unknown)[0],
            f"unknown field(s) {names}; pass extras={{...}} to send fields this client "
            "does not know yet",
        )


def _merge_extras(
    body: dict[str, Any], extras: Mapping[str, Any] | None, known: tuple[str, ...]
) -> dict[str, Any]:
    if not extras:
        return body
    if not isinstance(extras, Mapping):
        raise WebhookValidationError("extras", "must be a mapping of field names to values")
    for name, value in extras.items():
        if not isinstance(name, str) or not name:
            raise WebhookValidationError("extras", f"field names are strings, not {name!r}")
        if name in _READ_ONLY:
            raise WebhookValidationError(name, "is set by Upvest and cannot be sent")
        if name == "config" and isinstance(value, Mapping):
            clash = sorted(set(value) & set(_CONFIG_FIELDS))
            if clash:
                raise WebhookValidationError(
                    f"config.{clash[0]}", f"pass it as {clash[0]}=..., not in extras"
                )
            body["config"] = {**body.get("config", {}), **value}
        elif name in known:
            raise WebhookValidationError(name, "is a known field; pass it as an argument")
        else:
            body[name] = value
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise WebhookValidationError("extras", f"must be JSON-serialisable: {e}") from e
    return body


def _config(delay: str | None, max_package_size: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if delay is not None:
        config["delay"] = check_delay(delay)
    if max_package_size is not None:
        config["max_package_size"] = check_max_package_size(max_package_size)
    return config


def create_body(
    *,
    title: object,
    url: object,
    types: Iterable[str] | None,
    delay: str | None,
    max_package_size: int | None,
    extras: Mapping[str, Any] | None,
    unknown: Mapping[str, object],
    allow_localhost: bool,
    allow_unknown_types: bool,
) -> dict[str, Any]:
    """The body of ``POST /webhooks``, every field checked.

    ``type`` and ``config`` are sent only when given (Upvest's defaults: ``["ALL"]``
    and its own batching).

    Raises:
        WebhookValidationError: A subclass naming the first field found wrong.
    """
    _refuse_unknown(unknown)
    body: dict[str, Any] = {
        "title": check_title(title),
        "url": check_url(url, allow_localhost=allow_localhost),
    }
    if types is not None:
        body["type"] = check_event_types(types, allow_unknown=allow_unknown_types)
    config = _config(delay, max_package_size)
    if config:
        body["config"] = config
    return _merge_extras(body, extras, _CREATE_FIELDS)


def update_body(
    *,
    title: object = None,
    url: object = None,
    enabled: object = None,
    types: Iterable[str] | None = None,
    delay: str | None = None,
    max_package_size: int | None = None,
    extras: Mapping[str, Any] | None = None,
    unknown: Mapping[str, object],
    allow_localhost: bool,
    allow_unknown_types: bool,
) -> dict[str, Any]:
    """The body of ``PATCH /webhooks/{id}``: only the fields given (``None`` = unchanged).

    Raises:
        WebhookValidationError: A subclass naming the first field found wrong, or
            nothing to change.
    """
    _refuse_unknown(unknown)
    body: dict[str, Any] = {}
    if title is not None:
        body["title"] = check_title(title)
    if url is not None:
        body["url"] = check_url(url, allow_localhost=allow_localhost)
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise WebhookValidationError("enabled", f"must be True or False, not {enabled!r}")
        body["enabled"] = enabled
    if types is not None:
        body["type"] = check_event_types(types, allow_unknown=allow_unknown_types)
    config = _config(delay, max_package_size)
    if config:
        body["config"] = config
    body = _merge_extras(body, extras, _PATCH_FIELDS)
    if not body:
        raise WebhookValidationError("update", "nothing to change: give at least one field")
    return body
