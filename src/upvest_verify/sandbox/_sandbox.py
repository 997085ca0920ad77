"""The :class:`Sandbox`: the emulator's Python API, its server thread and event loop."""

from __future__ import annotations

import asyncio
import datetime as _dt
import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

from upvest_verify import KeySet
from upvest_verify.signing import SigningKey

from ._app import create_app
from ._deliver import DeliveryOptions, Dispatcher, WebhookDialect
from ._relay import Relay
from ._rules import InvalidRequest, check_create, check_patch
from ._samples import build_events
from ._state import Delivery, State, Tamper, TamperKind, Tenant, Webhook, rfc3339

__all__ = ["Sandbox"]

STARTUP_TIMEOUT = 15.0
_T = TypeVar("_T")


class Sandbox:
    """A running emulator of the Investment API: tenants, webhooks, signed deliveries.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Sandbox(port=0, time_scale=0.01) as sb:
            sb.base_url, sb.tenant.client_id, sb.tenant.signing_key
            sb.emit("ORDER.FILLED")
            sb.wait_for_deliveries(1)

    Args:
        host: The address to listen on; loopback by default.
        port: The port; 0 picks a free one (see :attr:`base_url`).
        time_scale: Multiplies every batching delay, retry back-off and key overlap
            (0.01 runs a hundred times faster). Token lifetimes are not scaled.
        dialect: How webhooks are signed: a :class:`WebhookDialect` or its text form
            (``"upvest-v6"``, ``"rfc9421"``, ``"rfc9421/raw/content-digest"``...). The
            default is Upvest's expected shape: v6 base, DER, ``Digest``.
        allow_http: Accept subscriptions to ``http://localhost:<port>/...`` besides
            HTTPS URLs.
        resign_retries: Sign each retry afresh (new ``created`` and nonce, the current
            key) rather than resending the first attempt's headers.
        ca_file: A CA bundle (PEM) trusted for HTTPS deliveries, besides the system's.
        token_ttl: Seconds an access token lives (Upvest: 1799); also settable later.
        key_overlap: Seconds (scaled) a rotated-out key stays published.
        delivery_timeout: Seconds one delivery attempt may take.
        relay: Serve the ``/events-acceptor-service/`` relay.
        relay_poll_timeout: Longest wait of one relay poll, in seconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        time_scale: float = 1.0,
        dialect: str | WebhookDialect = "upvest-v6",
        allow_http: bool = False,
        resign_retries: bool = True,
        ca_file: str | Path | None = None,
        token_ttl: float = 1799.0,
        key_overlap: float = 86400.0,
        delivery_timeout: float = 10.0,
        relay: bool = True,
        relay_poll_timeout: float = 5.0,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.host = host
        self._port = port
        self.allow_http = allow_http
        self.token_ttl = float(token_ttl)
        self.key_overlap = float(key_overlap)
        self._ca_file = Path(ca_file) if ca_file is not None else None
        self._options = DeliveryOptions(
            dialect=WebhookDialect.parse(dialect),
            time_scale=float(time_scale),
            resign_retries=resign_retries,
            timeout=delivery_timeout,
            ca_file=self._ca_file,
        )
        if self._ca_file is not None:
            self._options.ssl_context()  # an unreadable CA file fails here, not in the loop
        self.state = State()
        self._tenant = self.state.add_tenant()
        self._relay = Relay(self, poll_timeout=relay_poll_timeout) if relay else None
        extra = self._relay.routes() if self._relay is not None else []
        self._app = create_app(self, extra)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Start the server and the delivery engine; returns ``self``.

        Raises:
            RuntimeError: Already started, or the server did not come up in time.
            OSError: The address cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("this Sandbox is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="upvest-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox server did not start: {self._failure!r}")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by start()
            self._failure = e

    async def _main(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        dispatcher = Dispatcher(self.state, self._options, time.monotonic, time.time)
        task = asyncio.create_task(dispatcher.run())
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def stop(self) -> None:
        """Stop the server and the deliveries (pending ones are abandoned). Idempotent."""
        if self._relay is not None:
            self._relay.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STARTUP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and settings --------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the API's base URL."""
        host = self.host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"http://{host}:{self._port}"

    @property
    def app(self) -> ASGIApp:
        """The ASGI app the server runs (to call in-process, e.g. with httpx.ASGITransport)."""
        return self._app

    @property
    def jwks_url(self) -> str:
        """An unsigned copy of ``/auth/verify_keys`` for receivers under test."""
        return self.base_url + "/_sandbox/verify_keys"

    @property
    def ca_file(self) -> Path | None:
        """The CA bundle trusted for HTTPS deliveries, if one was given."""
        return self._ca_file

    @property
    def time_scale(self) -> float:
        """The factor applied to delays, back-offs and key overlaps."""
        return self._options.time_scale

    @property
    def dialect(self) -> WebhookDialect:
        """How webhooks are signed; settable (text or :class:`WebhookDialect`)."""
        return self._options.dialect

    @dialect.setter
    def dialect(self, value: str | WebhookDialect) -> None:
        self._options.dialect = WebhookDialect.parse(value)

    @property
    def resign_retries(self) -> bool:
        """Whether retries are signed afresh; settable."""
        return self._options.resign_retries

    @resign_retries.setter
    def resign_retries(self, value: bool) -> None:
        self._options.resign_retries = bool(value)

    # -- Host protocol (used by the app) ------------------------------------------------------

    def monotonic(self) -> float:
        """The monotonic clock (token lifetimes, key overlaps, batching)."""
        return time.monotonic()

    def now_stamp(self) -> str:
        """The current UTC time, RFC 3339 with microseconds."""
        return rfc3339(_dt.datetime.now(_dt.timezone.utc))

    def url_prefixes(self) -> Sequence[str]:
        """Subscription URLs accepted whatever ``allow_http`` says: the relay's own."""
        return [self._relay.inbox_prefix] if self._relay is not None else []

    def emit_events(
        self, specs: object, *, client_id: str | None = None, webhook_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Create events from specs and queue them (see :meth:`emit`).

        Raises:
            ValueError: A spec is malformed or the tenant is unknown.
        """
        tenant = self.state.tenant(client_id) if client_id else self._tenant
        if tenant is None:
            raise ValueError(f"no tenant with client id {client_id!r}")
        events = build_events(specs, _dt.datetime.now(_dt.timezone.utc))
        self.state.enqueue(tenant.client_id, events, self.monotonic(), webhook_id=webhook_id)
        return events

    # -- tenants and keys -----------------------------------------------------------------------

    @property
    def tenant(self) -> Tenant:
        """The tenant created at start-up."""
        return self._tenant

    @property
    def tenants(self) -> list[Tenant]:
        """Every tenant."""
        return self.state.tenants()

    def add_tenant(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        signing_key: SigningKey | None = None,
    ) -> Tenant:
        """Add a tenant; what is not given is generated (a P-521 key with a UUID key id).

        Raises:
            ValueError: The client id is taken.
        """
        return self.state.add_tenant(client_id, client_secret, signing_key)

    @property
    def signing_key(self) -> SigningKey:
        """The private key new webhook signatures use."""
        return self.state.signing_key()

    @property
    def webhook_keys(self) -> list[SigningKey]:
        """The published webhook-signing keys, oldest first."""
        return self.state.webhook_keys(self.monotonic())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The document ``GET /auth/verify_keys`` serves now."""
        return self.state.jwks(self.monotonic())

    def key_set(self) -> KeySet:
        """The published keys as a :class:`~upvest_verify.KeySet`."""
        return KeySet.from_jwks(self.jwks())

    def rotate_keys(
        self, overlap: float | None = None, *, key: SigningKey | None = None
    ) -> SigningKey:
        """Publish a new webhook-signing key and sign with it from now on.

        The keys published before stay for ``overlap`` seconds (default
        :attr:`key_overlap`), times the time scale; 0 drops them at once.

        Returns:
            The new current key.
        """
        seconds = self.key_overlap if overlap is None else float(overlap)
        return self.state.rotate(self.monotonic(), seconds * self.time_scale, key)

    # -- subscriptions without the signed API -----------------------------------------------------

    def add_webhook(
        self,
        url: str,
        *,
        title: str = "sandbox webhook",
        type: Sequence[str] = ("ALL",),
        delay: str = "1s",
        max_package_size: int = 10240,
        enabled: bool = True,
        tenant: Tenant | str | None = None,
    ) -> dict[str, Any]:
        """Register a subscription directly, validated as ``POST /webhooks`` is.

        Unlike the API (whose new subscriptions start disabled) it is enabled unless
        ``enabled=False``.

        Returns:
            The webhook object, as the API shows it.

        Raises:
            ValueError: A field breaks the API's rules.
        """
        owner = self._owner(tenant)
        body = {
            "title": title,
            "url": url,
            "type": list(type),
            "config": {"delay": delay, "max_package_size": max_package_size},
        }
        fields = check_create(body, allow_http=self.allow_http, extra_prefixes=self.url_prefixes())
        stamp = self.now_stamp()
        hook = Webhook(
            id=str(uuid.uuid4()),
            client_id=owner.client_id,
            enabled=enabled,
            created_at=stamp,
            updated_at=stamp,
            **fields,
        )
        return self.state.add_webhook(hook).to_json()

    def update_webhook(self, webhook_id: str, **changes: Any) -> dict[str, Any]:
        """Change a subscription as ``PATCH /webhooks/{id}`` would (``enabled=False``...).

        Raises:
            KeyError: No such subscription.
            ValueError: A change breaks the API's rules.
        """
        if self.state.webhook(webhook_id) is None:
            raise KeyError(webhook_id)
        checked = check_patch(
            changes, allow_http=self.allow_http, extra_prefixes=self.url_prefixes()
        )
        return self.state.update_webhook(webhook_id, checked, self.now_stamp()).to_json()

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a subscription (its undelivered package is abandoned); whether it existed."""
        return self.state.delete_webhook(webhook_id)

    def webhooks(self, tenant: Tenant | str | None = None) -> list[dict[str, Any]]:
        """The subscriptions of a tenant (all tenants' when ``tenant`` is ``None``)."""
        client_id = None if tenant is None else self._owner(tenant).client_id
        return [w.to_json() for w in self.state.webhooks(client_id)]

    def _owner(self, tenant: Tenant | str | None) -> Tenant:
        if tenant is None:
            return self._tenant
        client_id = tenant.client_id if isinstance(tenant, Tenant) else tenant
        found = self.state.tenant(client_id)
        if found is None:
            raise InvalidRequest(f"no tenant with client id {client_id!r}")
        return found

    # -- events and deliveries -----------------------------------------------------------

    def emit(
        self,
        event: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        object: Mapping[str, Any] | None = None,
        *,
        created_at: str | None = None,
        tenant: Tenant | str | None = None,
    ) -> list[dict[str, Any]]:
        """Create events and queue them for the tenant's matching, enabled subscriptions.

        Args:
            event: An event type (``"ORDER.FILLED"``), one ``{"type": ..., "object":
                ...}`` mapping, or a list of them. A missing object becomes a realistic
                sample for the type; ``created_at`` and ``id`` may be set.
            object: The object, when ``event`` is a type.
            created_at: The timestamp, when ``event`` is a type (default: now).
            tenant: Whose events (default: :attr:`tenant`).

        Returns:
            The events (``id``, ``created_at``, ``type``, ``object``); each delivery
            adds its subscription's ``webhook_id``.

        Raises:
            ValueError: A malformed event.
        """
        specs: Any
        if isinstance(event, str):
            spec: dict[str, Any] = {"type": event}
            if object is not None:
                spec["object"] = dict(object)
            if created_at is not None:
                spec["created_at"] = created_at
            specs = spec
        elif isinstance(event, Mapping):
            specs = dict(event)
        else:
            specs = [dict(e) for e in event]
        return self.emit_events(specs, client_id=self._owner(tenant).client_id)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery so far, oldest first (snapshots)."""
        return self.state.deliveries()

    def wait_for(self, predicate: Callable[[list[Delivery]], _T], timeout: float = 10.0) -> _T:
        """Wait until ``predicate(deliveries)`` is truthy and return its value.

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.state.changed:
            while True:
                result = predicate(self.state.deliveries())
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(d.webhook_id[:8], d.state, d.status_codes) for d in self.deliveries]
                    raise TimeoutError(f"not within {timeout} s; deliveries: {summary}")
                self.state.changed.wait(left)

    def wait_for_deliveries(
        self,
        n: int = 1,
        *,
        timeout: float = 10.0,
        webhook_id: str | None = None,
        delivered: bool = True,
    ) -> list[Delivery]:
        """Wait for ``n`` deliveries (successful ones unless ``delivered=False``).

        Args:
            n: How many.
            timeout: The longest wait, in seconds.
            webhook_id: Count only this subscription's.
            delivered: Count only deliveries a 2xx answered; ``False`` counts every
                delivery with at least one attempt.

        Returns:
            The first ``n`` matching deliveries, oldest first.

        Raises:
            TimeoutError: Fewer came within ``timeout``.
        """

        def enough(found: list[Delivery]) -> list[Delivery]:
            chosen = [
                d
                for d in found
                if webhook_id in (None, d.webhook_id)
                and (d.delivered if delivered else bool(d.attempts))
            ]
            return chosen[:n] if len(chosen) >= n else []

        return self.wait_for(enough, timeout)

    def tamper_next(self, kind: TamperKind = "body", *, webhook_id: str | None = None) -> None:
        """Spoil the next delivery attempt (to ``webhook_id``, or to any subscription).

        Kinds: ``"body"`` (a body byte changed after signing: ``digest_mismatch``),
        ``"digest"`` (body and digest changed: ``bad_signature``), ``"signature"`` (a
        bit flipped: ``bad_signature``), ``"key"`` (an unpublished key:
        ``unknown_key``), ``"expired"`` (signed an hour ago: ``expired``). The retry
        that follows a rejection is sound.

        Raises:
            ValueError: An unknown kind.
        """
        self.state.add_tamper(Tamper(kind, webhook_id))

    def __repr__(self) -> str:
        running = "running" if self._thread is not None else "stopped"
        return f"Sandbox({self.base_url!r}, {running}, dialect={str(self.dialect)!r})"
