"""Pure rules of the emulated ``/webhooks`` API: validation, filters, listing.

Each check raises :class:`InvalidRequest` with the text of a 400 answer. Sources:
Upvest's OpenAPI 1.9.0 (``Webhook - Create - Request``, ``Webhook - Update - Request``,
``Webhooks - List - Response``, the ``issue_token`` form) and upvest-protocol.md §5.2.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CATEGORIES",
    "DEFAULT_CONFIG",
    "InvalidRequest",
    "ListQuery",
    "check_config",
    "check_create",
    "check_patch",
    "check_token_form",
    "check_url",
    "delay_seconds",
    "matches_filter",
    "parse_list_query",
]


class InvalidRequest(ValueError):
    """A request the API answers with 400; the message is the problem's ``detail``."""


# OpenAPI 1.9.0: the ``type`` enum of a subscription (event categories and ALL).
CATEGORIES: tuple[str, ...] = (
    "ALL",
    "USER",
    "USER_CHECK",
    "ORDER",
    "ORDER_CANCELLATION",
    "EXECUTION",
    "POSITION",
    "CASH_BALANCE",
    "ACCOUNT",
    "ACCOUNT_GROUP",
    "REPORT",
    "TREASURY_REPORT",
    "DIRECT_DEBIT",
    "WITHDRAWAL",
    "PORTFOLIO",
    "PORTFOLIO_ALLOCATION",
    "PORTFOLIO_ORDER",
    "CORPORATE_ACTION",
    "ACCOUNT_VALUATION",
    "INTRADAY_ACCOUNT_VALUATION",
    "CASH_TRANSACTION",
    "SECURITY_TRANSACTION",
    "ACCOUNT_LIQUIDATION",
    "ACCOUNT_RETURNS",
    "VIRTUAL_CASH_INCREASE",
    "VIRTUAL_CASH_DECREASE",
    "FEE_COLLECTION",
)

# The OpenAPI examples answer with this configuration; the create request may omit it.
DEFAULT_CONFIG: dict[str, Any] = {"delay": "5s", "max_package_size": 10240}

_CREATE_FIELDS = frozenset({"title", "url", "type", "config", "exclude_type"})
_PATCH_FIELDS = frozenset({"title", "url", "enabled", "type", "config", "exclude_type"})
_CONFIG_FIELDS = frozenset({"delay", "max_package_size"})
_DELAY = re.compile(r"[1-9][0-9]?[sm]")  # OpenAPI: ^[1-9][0-9]?[sm]$
_SORTS = ("created_at", "updated_at", "title", "url", "enabled")
_ORDERS = ("ASC", "DESC")
_TOKEN_FIELDS = ("client_id", "client_secret", "grant_type", "scope")


def delay_seconds(delay: str) -> int:
    """``"5s"`` -> 5, ``"2m"`` -> 120."""
    return int(delay[:-1]) * (60 if delay.endswith("m") else 1)


def matches_filter(event_type: str, types: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    """Whether a subscription with ``type`` (and ``exclude_type``) receives ``event_type``.

    A category is the part of the event type before the dot (``ORDER.FILLED`` is an
    ``ORDER`` event). ``PORTFOLIO`` is taken to cover the ``PORTFOLIO_*`` categories
    (an assumption: the API reference lists it without saying). ``exclude_type``
    (newer docs) counts only together with ``ALL``.
    """
    category = event_type.partition(".")[0]
    wanted = set(types)
    if "ALL" in wanted:
        return category not in set(exclude) and event_type not in set(exclude)
    if category in wanted or event_type in wanted:
        return True
    return "PORTFOLIO" in wanted and category.startswith("PORTFOLIO_")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_url(url: object, *, allow_http: bool, extra_prefixes: Iterable[str] = ()) -> str:
    """A subscription URL: HTTPS to a DNS name (no IP address), at most 1,000 characters.

    With ``allow_http``, ``http://localhost:<port>/...`` is accepted too: still a DNS
    name, and one that resolves to loopback. URLs starting with one of
    ``extra_prefixes`` (the emulator's own relay endpoints) are always accepted.
    """
    if not isinstance(url, str) or not url:
        raise InvalidRequest("url must be a non-empty string")
    if len(url) > 1000:
        raise InvalidRequest("url must be at most 1000 characters")
    if any(url.startswith(prefix) for prefix in extra_prefixes):
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidRequest(f"url is not a valid URL: {e}") from e
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("url must not carry credentials")
    if parts.fragment or url.endswith("#"):
        raise InvalidRequest("url must not have a fragment")
    if not host:
        raise InvalidRequest("url must have a host")
    if parts.scheme == "https":
        if _is_ip(host):
            raise InvalidRequest("url must name its host by DNS name, not by IP address")
        if "." not in host and host != "localhost":
            raise InvalidRequest("url host must be a fully qualified DNS name")
        return url
    if parts.scheme == "http" and allow_http:
        if host != "localhost" or port is None:
            raise InvalidRequest("plain HTTP is accepted only as http://localhost:<port>/...")
        return url
    raise InvalidRequest("url must use https")


def _check_title(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("title must be a non-empty string")
    if len(value) > 100:
        raise InvalidRequest("title must be at most 100 characters")
    return value


def _check_types(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidRequest(f"{name} must be an array of strings")
    unknown = [t for t in value if t not in CATEGORIES]
    if unknown:
        raise InvalidRequest(f"{name} holds unknown event types: {', '.join(unknown)}")
    if name == "type" and not value:
        raise InvalidRequest("type must not be empty")
    return list(dict.fromkeys(value))


def check_config(value: object, *, partial: bool) -> dict[str, Any]:
    """``config``: ``delay`` ``^[1-9][0-9]?[sm]$`` (at least 1 s) and ``max_package_size``
    100-1,048,576 bytes; on create the missing ones take :data:`DEFAULT_CONFIG`."""
    if not isinstance(value, dict):
        raise InvalidRequest("config must be an object")
    extra = sorted(set(value) - _CONFIG_FIELDS)
    if extra:
        raise InvalidRequest(f"config has unknown fields: {', '.join(extra)}")
    out = {} if partial else dict(DEFAULT_CONFIG)
    if "delay" in value:
        delay = value["delay"]
        if not isinstance(delay, str) or not _DELAY.fullmatch(delay):
            raise InvalidRequest("config.delay must match ^[1-9][0-9]?[sm]$ (e.g. '1s', '5m')")
        out["delay"] = delay
    if "max_package_size" in value:
        size = value["max_package_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 100 <= size <= 1048576:
            raise InvalidRequest("config.max_package_size must be an integer, 100 to 1048576")
        out["max_package_size"] = size
    return out


def _check_fields(body: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    extra = sorted(set(body) - allowed)
    if extra:
        raise InvalidRequest(f"unknown fields: {', '.join(extra)}")
    return body


def check_create(
    body: object, *, allow_http: bool, extra_prefixes: Iterable[str] = ()
) -> dict[str, Any]:
    """Validate ``POST /webhooks``; returns the new subscription's fields."""
    doc = _check_fields(body, _CREATE_FIELDS)
    if "title" not in doc or "url" not in doc:
        raise InvalidRequest("title and url are required")
    out: dict[str, Any] = {
        "title": _check_title(doc["title"]),
        "url": check_url(doc["url"], allow_http=allow_http, extra_prefixes=extra_prefixes),
        "type": _check_types(doc.get("type", ["ALL"]), "type"),
        "config": check_config(doc.get("config", {}), partial=False),
        "exclude_type": None,
    }
    if "exclude_type" in doc:
        out["exclude_type"] = _check_types(doc["exclude_type"], "exclude_type")
    return out


def check_patch(
    body: object, *, allow_http: bool, extra_prefixes: Iterable[str] = ()
) -> dict[str, Any]:
    """Validate ``PATCH /webhooks/{id}``; returns only the fields to change."""
    doc = _check_fields(body, _PATCH_FIELDS)
    out: dict[str, Any] = {}
    if "title" in doc:
        out["title"] = _check_title(doc["title"])
    if "url" in doc:
        out["url"] = check_url(doc["url"], allow_http=allow_http, extra_prefixes=extra_prefixes)
    if "enabled" in doc:
        if not isinstance(doc["enabled"], bool):
            raise InvalidRequest("enabled must be a boolean")
        out["enabled"] = doc["enabled"]
    if "type" in doc:
        out["type"] = _check_types(doc["type"], "type")
    if "exclude_type" in doc:
        out["exclude_type"] = _check_types(doc["exclude_type"], "exclude_type")
    if "config" in doc:
        out["config"] = check_config(doc["config"], partial=True)
    return out


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parameters of ``GET /webhooks``."""

    sort: str = "created_at"
    order: str = "ASC"
    offset: int = 0
    limit: int = 100


def _int(params: Mapping[str, str], name: str, default: int, high: int | None) -> int:
    text = params.get(name, "")
    if text == "":  # allowEmptyValue: an empty value means the default
        return default
    if not text.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer")
    value = int(text)
    if high is not None and value > high:
        raise InvalidRequest(f"{name} must be at most {high}")
    return value


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Validate ``sort`` (enum), ``order`` (``ASC``/``DESC``), ``offset`` >= 0, ``limit`` 0-1000."""
    sort = params.get("sort") or "created_at"
    if sort not in _SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(_SORTS)}")
    order = params.get("order") or "ASC"
    if order not in _ORDERS:
        raise InvalidRequest("order must be ASC or DESC")
    return ListQuery(sort, order, _int(params, "offset", 0, None), _int(params, "limit", 100, 1000))


def check_token_form(form: Mapping[str, list[str]]) -> tuple[str, str, list[str]]:
    """Validate the ``POST /auth/token`` form; returns client id, secret and scopes.

    All four fields are required, none may repeat, no other field is allowed
    (``additionalProperties: false``) and ``grant_type`` is ``client_credentials``.
    """
    extra = sorted(set(form) - set(_TOKEN_FIELDS))
    if extra:
        raise InvalidRequest(f"unknown fields: {', '.join(extra)}")
    missing = [name for name in _TOKEN_FIELDS if not form.get(name)]
    if missing:
        raise InvalidRequest(f"missing fields: {', '.join(missing)}")
    if any(len(form[name]) != 1 for name in _TOKEN_FIELDS):
        raise InvalidRequest("each field may be given once")
    client_id, secret, grant, scope = (form[name][0] for name in _TOKEN_FIELDS)
    if grant != "client_credentials":
        raise InvalidRequest("grant_type must be client_credentials")
    if len(secret) > 1000 or len(scope) > 1000:
        raise InvalidRequest("client_secret and scope must be at most 1000 characters")
    scopes = scope.split()
    if not scopes:
        raise InvalidRequest("scope must name at least one scope")
    return client_id, secret, scopes
