"""The emulator's state: tenants, tokens, webhook-signing keys, subscriptions, queues.

Pure bookkeeping: no I/O and no clock reads. Every method that depends on time takes
``now`` (monotonic seconds) or ``stamp`` (an RFC 3339 string) from its caller. One
re-entrant lock guards everything, because the HTTP app and the delivery engine run
in the server's event loop while the Python API runs in the caller's thread; the
:attr:`State.changed` condition wakes threads waiting for deliveries, and listeners
wake the delivery engine.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from upvest_verify.signing import SigningKey
from upvest_verify.testing import make_jwks

from ._rules import matches_filter

__all__ = [
    "TEST_EVENT_TYPE",
    "Attempt",
    "Delivery",
    "DeliveryState",
    "Queue",
    "State",
    "Tamper",
    "TamperKind",
    "Tenant",
    "Token",
    "Webhook",
    "event_sort_key",
    "rfc3339",
]

SCOPES = ("webhooks:read", "webhooks:admin")
"""Scopes the emulator grants; ``webhooks:admin`` covers reads (upvest-protocol.md §5.1)."""

TEST_EVENT_TYPE = "WEBHOOK.TEST"
"""The type of the event ``POST /webhooks/{id}/test`` sends (Upvest's own is unknown)."""

DeliveryState = Literal["pending", "delivered", "abandoned"]
TamperKind = Literal["body", "signature", "digest", "key", "expired"]
TAMPER_KINDS: tuple[TamperKind, ...] = ("body", "signature", "digest", "key", "expired")


def rfc3339(moment: _dt.datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: the UTC form Upvest writes (microseconds)."""
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# RFC 3339 §5.6 date-time; Upvest writes from zero to nine fraction digits.
_STAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def event_sort_key(stamp: str) -> tuple[_dt.datetime, int]:
    """Sort key of an event's ``created_at``: the instant, then the nanoseconds.

    Raises:
        ValueError: ``stamp`` is not an RFC 3339 date-time.
    """
    m = _STAMP.fullmatch(stamp)
    if m is None:
        raise ValueError(f"created_at is not an RFC 3339 date-time: {stamp!r}")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    tz = _dt.timezone.utc
    if not zulu:
        offset = _dt.timedelta(hours=int(oh), minutes=int(om))
        tz = _dt.timezone(-offset if sign == "-" else offset)
    nanos = int((frac or "0").ljust(9, "0"))
    moment = _dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), 0, tz
    )
    return moment.astimezone(_dt.timezone.utc), nanos


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant of the emulated Investment API.

    Attributes:
        client_id: The OAuth client id, also sent as ``upvest-client-id``.
        client_secret: The OAuth client secret.
        signing_key: The private key the tenant signs its API requests with; the
            emulator checks every request against its public half.
    """

    client_id: str
    client_secret: str = field(repr=False)
    signing_key: SigningKey

    @property
    def key_id(self) -> str:
        """The id of the registered request-signing key."""
        return self.signing_key.key_id

    def private_key_pem(self) -> str:
        """The request-signing private key as unencrypted PKCS#8 PEM."""
        return self.signing_key.to_pem().decode("ascii")


@dataclass(frozen=True, slots=True)
class Token:
    """An issued access token."""

    value: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float

    def allows(self, scope: str) -> bool:
        """Whether the token carries ``scope`` (``webhooks:admin`` covers ``webhooks:read``)."""
        if scope in self.scopes:
            return True
        return scope.endswith(":read") and scope.replace(":read", ":admin") in self.scopes


@dataclass(slots=True)
class Webhook:
    """A webhook subscription (``Webhook`` object of the API reference, plus its owner)."""

    id: str
    client_id: str
    title: str
    url: str
    enabled: bool
    type: list[str]
    config: dict[str, Any]
    created_at: str
    updated_at: str
    exclude_type: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        doc: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "title": self.title,
            "url": self.url,
            "enabled": self.enabled,
            "type": list(self.type),
            "config": dict(self.config),
        }
        if self.exclude_type is not None:
            doc["exclude_type"] = list(self.exclude_type)
        return doc

    def accepts(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` goes to this subscription."""
        return matches_filter(event_type, self.type, self.exclude_type or ())


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt at a delivery.

    Attributes:
        number: 1 for the first attempt, then 2, 3...
        started_at: Unix time the attempt started.
        status_code: The receiver's status, or ``None`` when no answer came.
        error: Why no answer came (connection refused, TLS failure, timeout).
        headers: The header fields sent, as ``(name, value)`` pairs.
        body: The body sent (differs from the delivery's body only when tampered).
        response_body: The first 4 KiB of the answer.
        key_id: The webhook-signing key the attempt was signed with.
        tampered: The deliberate defect of this attempt, if any.
    """

    number: int
    started_at: float
    status_code: int | None
    error: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    response_body: bytes = field(repr=False)
    key_id: str
    tampered: TamperKind | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300

    def header(self, name: str) -> str | None:
        """The first value of a sent header field, or ``None``."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One package of events for one webhook, with every attempt made so far.

    Attributes:
        id: The delivery's id (the emulator's own; Upvest publishes none).
        webhook_id: The subscription.
        url: Where it was sent.
        client_id: The tenant.
        events: The events, in ``created_at`` order, as sent.
        body: The ``{"payload": [...]}`` body.
        attempts: The attempts so far.
        state: ``"pending"`` (being delivered or waiting for a retry),
            ``"delivered"`` (a 2xx came) or ``"abandoned"`` (the subscription was
            deleted or disabled, or the emulator stopped).
        test: Whether ``POST /webhooks/{id}/test`` caused it.
    """

    id: str
    webhook_id: str
    url: str
    client_id: str
    events: tuple[dict[str, Any], ...]
    body: bytes = field(repr=False)
    attempts: tuple[Attempt, ...] = ()
    state: DeliveryState = "pending"
    test: bool = False

    @property
    def delivered(self) -> bool:
        """Whether an attempt succeeded."""
        return self.state == "delivered"

    @property
    def status_codes(self) -> list[int | None]:
        """The status code of each attempt (``None`` where no answer came)."""
        return [a.status_code for a in self.attempts]

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields of the last attempt."""
        return self.attempts[-1].headers if self.attempts else ()

    @property
    def event_ids(self) -> list[str]:
        """The ids of the events, in order."""
        return [str(e["id"]) for e in self.events]

    def to_json(self) -> dict[str, Any]:
        """The control endpoint's representation (headers as pairs, bodies as text)."""
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "url": self.url,
            "client_id": self.client_id,
            "state": self.state,
            "test": self.test,
            "events": list(self.events),
            "attempts": [
                {
                    "number": a.number,
                    "started_at": a.started_at,
                    "status_code": a.status_code,
                    "error": a.error,
                    "key_id": a.key_id,
                    "tampered": a.tampered,
                    "headers": [list(h) for h in a.headers],
                    "response_body": a.response_body.decode("utf-8", "replace"),
                }
                for a in self.attempts
            ],
        }


@dataclass(frozen=True, slots=True)
class Tamper:
    """A request to spoil the next delivery attempt (of one webhook, or of any)."""

    kind: TamperKind
    webhook_id: str | None = None


@dataclass(slots=True)
class Queue:
    """Events waiting for one webhook, and whether a delivery to it is under way."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    first_at: float | None = None
    busy: bool = False


@dataclass(slots=True)
class _KeyEntry:
    key: SigningKey
    retire_at: float | None = None


class State:
    """Everything the emulator knows; every method is thread-safe.

    Args:
        webhook_key: The first webhook-signing key (generated when ``None``).
    """

    def __init__(self, webhook_key: SigningKey | None = None) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._listeners: list[Callable[[], None]] = []
        self._tenants: dict[str, Tenant] = {}
        self._tokens: dict[str, Token] = {}
        self._webhooks: dict[str, Webhook] = {}
        self._queues: dict[str, Queue] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._tampers: list[Tamper] = []
        self._keys = [_KeyEntry(webhook_key or SigningKey.generate("P-521"))]

    # -- notification -----------------------------------------------------------

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from any thread) whenever queues or webhooks change."""
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self) -> None:
        self.changed.notify_all()
        for listener in list(self._listeners):
            listener()

    # -- tenants and tokens -------------------------------------------------------

    def add_tenant(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        signing_key: SigningKey | None = None,
    ) -> Tenant:
        """Register a tenant; missing credentials and key are generated."""
        tenant = Tenant(
            client_id=client_id or str(uuid.uuid4()),
            client_secret=client_secret or secrets.token_urlsafe(24),
            signing_key=signing_key or SigningKey.generate("P-521", key_id=str(uuid.uuid4())),
        )
        with self.lock:
            if tenant.client_id in self._tenants:
                raise ValueError(f"a tenant with client id {tenant.client_id!r} exists")
            self._tenants[tenant.client_id] = tenant
        return tenant

    def tenant(self, client_id: str) -> Tenant | None:
        """The tenant with this client id, if any."""
        with self.lock:
            return self._tenants.get(client_id)

    def tenants(self) -> list[Tenant]:
        """Every tenant, in the order they were added."""
        with self.lock:
            return list(self._tenants.values())

    def issue_token(self, client_id: str, scopes: Iterable[str], expires_at: float) -> Token:
        """Issue an opaque access token (shaped like the ``ory_at_...`` tokens Upvest issues)."""
        token = Token(
            "ory_at_" + secrets.token_urlsafe(32), client_id, frozenset(scopes), expires_at
        )
        with self.lock:
            self._tokens[token.value] = token
        return token

    def token(self, value: str, now: float) -> Token | None:
        """The live token ``value`` (expired ones are forgotten)."""
        with self.lock:
            for stale in [k for k, t in self._tokens.items() if t.expires_at <= now]:
                del self._tokens[stale]
            return self._tokens.get(value)

    # -- webhook-signing keys -----------------------------------------------------

    def signing_key(self) -> SigningKey:
        """The key new webhook signatures use."""
        with self.lock:
            return self._keys[-1].key

    def webhook_keys(self, now: float) -> list[SigningKey]:
        """The published keys, oldest first (retired ones are dropped)."""
        with self.lock:
            self._keys = [e for e in self._keys if e.retire_at is None or e.retire_at > now]
            return [e.key for e in self._keys]

    def jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """The ``GET /auth/verify_keys`` document."""
        return make_jwks(*self.webhook_keys(now))

    def rotate(self, now: float, overlap: float, key: SigningKey | None = None) -> SigningKey:
        """Make a new key current; the others retire ``overlap`` seconds from now at the latest."""
        new = key or SigningKey.generate("P-521")
        with self.lock:
            for entry in self._keys:
                retire = now + overlap
                entry.retire_at = (
                    retire if entry.retire_at is None else min(entry.retire_at, retire)
                )
            self._keys.append(_KeyEntry(new))
            self.webhook_keys(now)
        return new

    # -- subscriptions --------------------------------------------------------------

    def add_webhook(self, webhook: Webhook) -> Webhook:
        """Store a new subscription."""
        with self.lock:
            self._webhooks[webhook.id] = webhook
            self._queues[webhook.id] = Queue()
            self._notify()
        return webhook

    def webhook(self, webhook_id: str, client_id: str | None = None) -> Webhook | None:
        """A copy of the subscription (``None`` if absent or owned by another tenant)."""
        with self.lock:
            found = self._webhooks.get(webhook_id)
            if found is None or (client_id is not None and found.client_id != client_id):
                return None
            return dataclasses.replace(found, type=list(found.type), config=dict(found.config))

    def webhooks(self, client_id: str | None = None) -> list[Webhook]:
        """Copies of the subscriptions (of one tenant), in creation order."""
        with self.lock:
            ids = [w.id for w in self._webhooks.values() if client_id in (None, w.client_id)]
            return [w for w in (self.webhook(i) for i in ids) if w is not None]

    def update_webhook(self, webhook_id: str, changes: Mapping[str, Any], stamp: str) -> Webhook:
        """Apply validated changes; a disabled subscription drops its pending events."""
        with self.lock:
            hook = self._webhooks[webhook_id]
            for name, value in changes.items():
                if name == "config":
                    hook.config = {**hook.config, **value}
                else:
                    setattr(hook, name, value)
            hook.updated_at = stamp
            if not hook.enabled:
                queue = self._queues[webhook_id]
                queue.pending.clear()
                queue.first_at = None
            self._notify()
            found = self.webhook(webhook_id)
        assert found is not None
        return found

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a subscription and its queue; whether it existed."""
        with self.lock:
            existed = self._webhooks.pop(webhook_id, None) is not None
            self._queues.pop(webhook_id, None)
            self._notify()
        return existed

    # -- events and queues ----------------------------------------------------------

    def enqueue(
        self,
        client_id: str,
        events: Sequence[Mapping[str, Any]],
        now: float,
        *,
        webhook_id: str | None = None,
    ) -> int:
        """Queue each event for the tenant's enabled subscriptions whose filter matches.

        With ``webhook_id``, the events go to that subscription only, whatever its
        filter and whether it is enabled (the test endpoint). Returns how many
        (event, subscription) pairs were queued.
        """
        queued = 0
        with self.lock:
            for hook in self._webhooks.values():
                if hook.client_id != client_id:
                    continue
                if webhook_id is not None and hook.id != webhook_id:
                    continue
                queue = self._queues[hook.id]
                for event in events:
                    if webhook_id is None and not (hook.enabled and hook.accepts(event["type"])):
                        continue
                    queue.pending.append(
                        {
                            "id": event["id"],
                            "created_at": event["created_at"],
                            "type": event["type"],
                            "object": event["object"],
                            "webhook_id": hook.id,
                        }
                    )
                    queued += 1
                    if queue.first_at is None:
                        queue.first_at = now
            self._notify()
        return queued

    def queue(self, webhook_id: str) -> Queue | None:
        """The live queue of a subscription (hold :attr:`lock` while reading it)."""
        return self._queues.get(webhook_id)

    def queues(self) -> list[tuple[Webhook, Queue]]:
        """Every subscription with its live queue (hold :attr:`lock` while reading)."""
        return [(w, self._queues[w.id]) for w in self._webhooks.values()]

    def take(self, webhook_id: str) -> list[dict[str, Any]]:
        """Take every pending event of a subscription and mark it busy."""
        with self.lock:
            queue = self._queues[webhook_id]
            events, queue.pending = queue.pending, []
            queue.first_at = None
            queue.busy = True
            return events

    def release(self, webhook_id: str) -> None:
        """Mark a subscription's delivery finished."""
        with self.lock:
            queue = self._queues.get(webhook_id)
            if queue is not None:
                queue.busy = False
            self._notify()

    # -- deliveries -------------------------------------------------------------------

    def new_delivery(self, delivery: Delivery) -> None:
        """Record a delivery about to be attempted."""
        with self.lock:
            self._deliveries[delivery.id] = delivery
            self._notify()

    def add_attempt(self, delivery_id: str, attempt: Attempt) -> Delivery:
        """Record an attempt; a 2xx marks the delivery delivered."""
        with self.lock:
            old = self._deliveries[delivery_id]
            state: DeliveryState = "delivered" if attempt.ok else old.state
            new = dataclasses.replace(old, attempts=(*old.attempts, attempt), state=state)
            self._deliveries[delivery_id] = new
            self._notify()
        return new

    def abandon(self, delivery_id: str) -> None:
        """Mark an undelivered delivery abandoned."""
        with self.lock:
            old = self._deliveries[delivery_id]
            if old.state == "pending":
                self._deliveries[delivery_id] = dataclasses.replace(old, state="abandoned")
            self._notify()

    def deliveries(self) -> list[Delivery]:
        """Every delivery so far, oldest first."""
        with self.lock:
            return list(self._deliveries.values())

    # -- tampering ----------------------------------------------------------------------

    def add_tamper(self, tamper: Tamper) -> None:
        """Spoil the next attempt matching ``tamper.webhook_id`` (any webhook when ``None``)."""
        if tamper.kind not in TAMPER_KINDS:
            raise ValueError(f"kind must be one of {TAMPER_KINDS}, got {tamper.kind!r}")
        with self.lock:
            self._tampers.append(tamper)

    def pop_tamper(self, webhook_id: str) -> TamperKind | None:
        """The defect to put into the next attempt to ``webhook_id``, if one was asked for."""
        with self.lock:
            for i, tamper in enumerate(self._tampers):
                if tamper.webhook_id in (None, webhook_id):
                    del self._tampers[i]
                    return tamper.kind
        return None
