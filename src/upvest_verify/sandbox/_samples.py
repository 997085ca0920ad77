"""Realistic ``object`` values for the documented event types.

Shaped after the event examples in Upvest's OpenAPI 1.9.0 (``x-webhooks``): the
fields a handler reads, fresh UUIDs, decimal amounts as strings, the status taken
from the event's action (``ORDER.FILLED`` -> ``"FILLED"``). Unknown types get a
small generic object.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Callable
from typing import Any

from ._state import event_sort_key, rfc3339

__all__ = ["EVENT_TYPES", "build_events", "sample_object"]

_TYPE = re.compile(r"[A-Z][A-Z0-9_]*\.[A-Z][A-Z0-9_]*")

# upvest-protocol.md §3: the event types of OpenAPI 1.9.0.
EVENT_TYPES: tuple[str, ...] = (
    *(f"USER.{a}" for a in ("CREATED", "ACTIVATED", "DEACTIVATED", "DATA_CHANGED")),
    *(f"USER.{a}" for a in ("DATA_CHANGE_FAILED", "OFFBOARDING_INITIATED", "OFFBOARDED")),
    *(f"USER_CHECK.{a}" for a in ("CREATED", "PASSED", "FAILED")),
    *(f"ORDER.{a}" for a in ("NEW", "PROCESSING", "FILLED", "CANCELLED")),
    "ORDER_CANCELLATION.REJECTED",
    *(f"EXECUTION.{a}" for a in ("FILLED", "SETTLED", "CANCELLED")),
    "POSITION.UPDATED",
    "CASH_BALANCE.UPDATED",
    "CASH_TRANSACTION.EXECUTED",
    "SECURITY_TRANSACTION.EXECUTED",
    "TREASURY_REPORT.CREATED",
    "REPORT.CREATED",
    *(f"ACCOUNT.{a}" for a in ("CREATED", "ACTIVATED", "UPDATED", "LOCKED")),
    *(f"ACCOUNT.{a}" for a in ("CLOSING_INITIATED", "CLOSED")),
    *(f"ACCOUNT_GROUP.{a}" for a in ("CREATED", "ACTIVATED", "LOCKED")),
    *(f"ACCOUNT_GROUP.{a}" for a in ("CLOSING_INITIATED", "CLOSED")),
    *(f"DIRECT_DEBIT.{a}" for a in ("NEW", "PROCESSING", "CONFIRMED", "CANCELLED")),
    *(f"WITHDRAWAL.{a}" for a in ("NEW", "PROCESSING", "CONFIRMED", "CANCELLED")),
    *(f"PORTFOLIO_ORDER.{a}" for a in ("NEW", "PROCESSING", "FILLED", "SETTLED", "CANCELLED")),
    *(f"PORTFOLIO_ALLOCATION.{a}" for a in ("CREATED", "CHANGED")),
    "ACCOUNT_VALUATION.CREATED",
    "INTRADAY_ACCOUNT_VALUATION.CREATED",
    *(f"ACCOUNT_LIQUIDATION.{a}" for a in ("NEW", "PROCESSING", "FILLED", "SETTLED", "CANCELLED")),
    "ACCOUNT_RETURNS.CREATED",
    *(f"VIRTUAL_CASH_INCREASE.{a}" for a in ("ISSUED", "CONFIRMED")),
    *(f"VIRTUAL_CASH_DECREASE.{a}" for a in ("QUEUED", "ISSUED", "CONFIRMED", "CANCELLED")),
    *(f"FEE_COLLECTION.{a}" for a in ("CREATED", "FINALISED", "CANCELLED")),
)

_ISIN = "US0378331005"


def _id() -> str:
    return str(uuid.uuid4())


def _instrument() -> dict[str, str]:
    return {"uuid": _id(), "isin": _ISIN}


def _user(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "first_name": "Jane",
        "last_name": "Doe",
        "salutation": "SALUTATION_FEMALE",
        "birth_date": "1990-01-01",
        "birth_city": "Berlin",
        "birth_country": "DE",
        "nationalities": ["DE"],
        "address": {
            "address_line1": "Torstrasse",
            "address_line2": "12a",
            "city": "Berlin",
            "country": "DE",
            "postcode": "10115",
        },
        "status": status,
    }


def _user_check(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "user_id": _id(),
        "type": "KYC",
        "status": status,
        "provider": "IDNOW",
        "method": "VIDEO_ID",
        "document_type": "PASSPORT",
        "check_confirmed_at": now,
    }


def _order(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "user_id": _id(),
        "account_id": _id(),
        "cash_amount": "56.65",
        "currency": "EUR",
        "side": "BUY",
        "instrument_id": _ISIN,
        "instrument_id_type": "ISIN",
        "order_type": "MARKET",
        "quantity": "0.05",
        "status": status,
        "fee": "0.5",
        "executions": [],
    }


def _execution(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "order_id": _id(),
        "status": status,
        "side": "BUY",
        "price": "85.22",
        "share_quantity": "10",
        "cash_amount": "852.20",
        "currency": "EUR",
        "taxes": [{"type": "TOTAL", "amount": "0"}],
        "transaction_time": now,
    }


def _cancellation(status: str, now: str) -> dict[str, Any]:
    return {"order_id": _id(), "status": status, "reason": "Cancellation not possible"}


def _position(status: str, now: str) -> dict[str, Any]:
    return {
        "account_id": _id(),
        "instrument": _instrument(),
        "quantity": "10.4",
        "locked_for_trading": "5",
        "pending_settlement": "0",
        "available_for_trading": "5.4",
    }


def _cash_balance(status: str, now: str) -> dict[str, Any]:
    return {
        "account_group_id": _id(),
        "currency": "EUR",
        "balance": "100.25",
        "locked_for_trading": "10",
        "pending_settlement": "10",
        "available_for_withdrawal": "80.25",
        "available_for_trading": "80.25",
    }


def _transaction(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "account_group_id": _id(),
        "account_id": _id(),
        "booking_date": now,
        "created_at": now,
        "value_date": now[:10],
        "delta": {"amount": "25.00", "currency": "EUR"},
        "instrument": _instrument(),
        "references": [{"id": _id(), "type": "ORDER_EXECUTION"}],
        "type": "ORDER_EXECUTION",
    }


def _security_transaction(status: str, now: str) -> dict[str, Any]:
    doc = _transaction(status, now)
    doc["delta"] = {"amount": "-2.5234543879"}
    return doc


def _treasury_report(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "type": "TRADING",
        "settlement_amount": "123.12",
        "report_date": now[:10],
        "direction": "OUTGOING",
        "filename": "trading_buy.csv",
    }


def _report(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "user_id": _id(),
        "type": "BUY_ORDER",
        "substituted_report_id": None,
        "data": {"account": {"id": _id()}},
    }


def _account(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "account_group_id": _id(),
        "type": "TRADING",
        "users": [{"id": _id(), "type": "OWNER"}],
        "account_number": 1,
        "name": "Main account",
        "status": status if status != "CREATED" else "ACTIVE",
    }


def _account_group(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "type": "PERSONAL",
        "status": status if status != "CREATED" else "ACTIVE",
        "users": [{"id": _id(), "type": "OWNER"}],
        "securities_account_number": "123456789",
    }


def _money_movement(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "user_id": _id(),
        "account_group_id": _id(),
        "amount": "200.00",
        "currency": "EUR",
        "remittance_information": "Sandbox transfer",
        "status": status,
    }


def _direct_debit(status: str, now: str) -> dict[str, Any]:
    doc = _money_movement(status, now)
    doc["mandate_id"] = _id()
    doc["cash_amount"] = doc.pop("amount")
    return doc


def _portfolio_order(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "account_id": _id(),
        "allocation_id": _id(),
        "cash_amount": "1000",
        "currency": "EUR",
        "status": status,
        "type": "BUY",
        "orders": [{"id": _id(), "side": "BUY", "status": status}],
    }


def _allocation(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "name": "Allocation 1",
        "allocation": [
            {"instrument_id": "IE00B0M62Q58", "instrument_id_type": "ISIN", "weight": "0.7"},
            {"instrument_id": _ISIN, "instrument_id_type": "ISIN", "weight": "0.3"},
        ],
    }


def _valuation(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "valuation_time": now,
        "account_id": _id(),
        "price_quality": "EOD",
        "total_security_value": {"amount": "142.29", "currency": "EUR"},
        "security_positions": [
            {
                "instrument": _instrument(),
                "value": {"amount": "142.29", "currency": "EUR", "price_time": now},
                "quantity": "0.65",
                "weight": "1",
            }
        ],
    }


def _liquidation(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "account_id": _id(),
        "user_id": _id(),
        "cash_amount": "1000",
        "currency": "EUR",
        "status": status,
        "orders": [],
    }


def _returns(status: str, now: str) -> dict[str, Any]:
    return {
        "account_id": _id(),
        "date": now,
        "twr": {
            "daily": "0.0132434142",
            "cumulative": "0.0324353234",
            "cumulative_start_date": now,
        },
    }


def _virtual_cash(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "account_group_id": _id(),
        "amount": "200.00",
        "currency": "EUR",
        "status": status,
    }


def _fee_collection(status: str, now: str) -> dict[str, Any]:
    return {
        "id": _id(),
        "created_at": now,
        "updated_at": now,
        "account_group_id": _id(),
        "account_id": _id(),
        "collection_amount": "12.41",
        "currency": "EUR",
        "period_start": now[:8] + "01",
        "period_end": now[:10],
        "processed_amount": {"cash_balance": "0", "sell_to_cover": "0"},
        "status": "PROCESSING" if status == "CREATED" else status,
        "type": "SERVICE_FEE",
    }


_BUILDERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "USER": _user,
    "USER_CHECK": _user_check,
    "ORDER": _order,
    "ORDER_CANCELLATION": _cancellation,
    "EXECUTION": _execution,
    "POSITION": _position,
    "CASH_BALANCE": _cash_balance,
    "CASH_TRANSACTION": _transaction,
    "SECURITY_TRANSACTION": _security_transaction,
    "TREASURY_REPORT": _treasury_report,
    "REPORT": _report,
    "ACCOUNT": _account,
    "ACCOUNT_GROUP": _account_group,
    "DIRECT_DEBIT": _direct_debit,
    "WITHDRAWAL": _money_movement,
    "PORTFOLIO_ORDER": _portfolio_order,
    "PORTFOLIO_ALLOCATION": _allocation,
    "ACCOUNT_VALUATION": _valuation,
    "INTRADAY_ACCOUNT_VALUATION": _valuation,
    "ACCOUNT_LIQUIDATION": _liquidation,
    "ACCOUNT_RETURNS": _returns,
    "VIRTUAL_CASH_INCREASE": _virtual_cash,
    "VIRTUAL_CASH_DECREASE": _virtual_cash,
    "FEE_COLLECTION": _fee_collection,
}


def sample_object(event_type: str, now: str) -> dict[str, Any]:
    """A realistic ``object`` for an event of ``event_type``.

    Args:
        event_type: ``CATEGORY.ACTION``, e.g. ``"ORDER.FILLED"``.
        now: The RFC 3339 time to put into timestamps.

    Returns:
        A fresh object (new ids each call).
    """
    category, _, action = event_type.partition(".")
    builder = _BUILDERS.get(category)
    if builder is None:
        return {"id": _id(), "created_at": now, "status": action or "UNKNOWN"}
    return builder(action, now)


def build_events(specs: object, now: _dt.datetime) -> list[dict[str, Any]]:
    """Turn emit requests into events (``id``, ``created_at``, ``type``, ``object``).

    Args:
        specs: One ``{"type": ..., "object": ...}`` mapping or a list of them; ``object``
            is optional (a sample is made), ``created_at`` and ``id`` may be given to
            set them (to test ordering and idempotency).
        now: The creation time; the n-th event of a list gets ``now`` plus n
            microseconds, so a list keeps its order.

    Returns:
        The events.

    Raises:
        ValueError: A spec is malformed.
    """
    items = specs if isinstance(specs, list) else [specs]
    if not items:
        raise ValueError("no events to emit")
    events = []
    for i, spec in enumerate(items):
        if not isinstance(spec, dict):
            raise ValueError("each event is an object with a 'type'")
        extra = sorted(set(spec) - {"type", "object", "created_at", "id"})
        if extra:
            raise ValueError(f"unknown event fields: {', '.join(extra)}")
        kind = spec.get("type")
        if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
            raise ValueError(f"type must look like CATEGORY.ACTION, got {kind!r}")
        stamp = rfc3339(now + _dt.timedelta(microseconds=i))
        created = spec.get("created_at", stamp)
        if not isinstance(created, str):
            raise ValueError("created_at must be an RFC 3339 string")
        event_sort_key(created)  # ValueError when it is not RFC 3339
        event_id = spec.get("id", str(uuid.uuid4()))
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("id must be a non-empty string")
        obj = spec.get("object")
        if obj is None:
            obj = sample_object(kind, stamp)
        elif not isinstance(obj, dict):
            raise ValueError("object must be a JSON object")
        events.append({"id": event_id, "created_at": created, "type": kind, "object": obj})
    return events
