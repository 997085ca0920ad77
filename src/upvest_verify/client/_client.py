"""``UpvestClient`` and ``AsyncUpvestClient``: one description of each call, two drivers.

:class:`_BaseClient` is pure: configuration, the auth, and turning a
:class:`~upvest_verify.client._api.Call` into an ``httpx.Request``. The two
clients add only sending and waiting (after httpx's ``BaseClient``/``Client``/
``AsyncClient`` split). What an endpoint sends, how its answer is read, when it
is retried and how errors are mapped live in ``_api`` (and ``_validation``), once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx

from upvest_verify import KeySet
from upvest_verify.jwks import FetchResult
from upvest_verify.signing import SigningKey

from . import _api as api
from ._auth import UPVEST_SIGNATURE_TTL, UpvestAuth
from ._errors import UpvestAPIError
from ._keysource import AsyncUpvestKeySource, UpvestKeySource
from ._models import Webhook, WebhookPage
from ._retry import RetryPolicy
from ._validation import create_body, update_body

__all__ = ["AsyncUpvestClient", "AsyncWebhooks", "UpvestClient", "Webhooks"]

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Connect within 5 s, and no read or write waits more than 10 s (threat-model K3)."""

_Self = TypeVar("_Self", bound="_BaseClient")


class _BaseClient:
    """What both clients share; does no I/O."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        signing_key: SigningKey,
        scopes: str | Iterable[str] | None,
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy | None,
        signature_ttl: int,
        token_refresh_margin: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        nonce: Callable[[], str],
    ) -> None:
        self._base_url = api.resolve_base_url(base_url)
        self._auth = UpvestAuth(
            client_id=client_id,
            client_secret=client_secret,
            signing_key=signing_key,
            token_url=self._base_url + "/auth/token",
            scopes=scopes,
            signature_ttl=signature_ttl,
            refresh_margin=token_refresh_margin,
            clock=clock,
            monotonic=monotonic,
            nonce=nonce,
        )
        self._retry = RetryPolicy.off() if retry is None else retry
        self._timeout = timeout
        self._clock = clock
        self._monotonic = monotonic

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._base_url

    @property
    def auth(self) -> UpvestAuth:
        """The httpx auth signing this client's requests (usable with other httpx clients)."""
        return self._auth

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, auth={self._auth!r})"

    def _request(
        self, http: httpx.Client | httpx.AsyncClient, call: api.Call[Any]
    ) -> httpx.Request:
        headers = {"content-type": call.content_type} if call.content_type else None
        request = http.build_request(
            call.method,
            self._base_url + call.path,
            params=dict(call.params) or None,
            content=call.body or None,
            headers=headers,
        )
        if self._timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(self._timeout).as_dict()
        return request

    def _flow(self, call: api.Call[T]) -> Generator[api.Step, api.Outcome | None, T]:
        return api.call_flow(call, self._retry, monotonic=self._monotonic, clock=self._clock)


class UpvestClient(_BaseClient):
    """Manage webhook subscriptions and fetch webhook keys (blocking).

    Every request is signed (Upvest v15) and carries an OAuth2 token fetched with
    the client credentials; see :class:`~upvest_verify.client.UpvestAuth`.

    Args:
        base_url: ``"sandbox"``, ``"live"`` or a URL (``https://``; ``http://`` only to
            a loopback host such as the local emulator).
        client_id: The OAuth2 client id.
        client_secret: The OAuth2 client secret.
        signing_key: The key registered with Upvest for request signing
            (:meth:`SigningKey.from_pem <upvest_verify.signing.SigningKey.from_pem>`).
        scopes: One scope set for every request; by default reads use
            ``webhooks:read`` and writes ``webhooks:admin``.
        http_client: An ``httpx.Client`` to send with (proxies, mTLS, transports);
            not closed by :meth:`close`. Redirects are never followed.
        timeout: Seconds or an ``httpx.Timeout``; default 5 s to connect, 10 s per
            read or write (or ``http_client``'s own).
        retry: The retry policy; ``None`` never retries.
        signature_ttl: Seconds a request signature is valid (``expires - created``).
        token_refresh_margin: Refresh tokens this many seconds before they expire.
        sleep: Waits between retries (``time.sleep``).
        clock: Wall clock for ``created`` and ``Retry-After`` dates (``time.time``).
        monotonic: Clock for token lifetimes and the retry budget.
        nonce: Makes each signature's nonce (a random UUID4).

    Raises:
        ConfigurationError: A bad base URL, empty credentials, or a setting out of range.
    """

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        signing_key: SigningKey,
        scopes: str | Iterable[str] | None = None,
        http_client: httpx.Client | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - immutable
        signature_ttl: int = UPVEST_SIGNATURE_TTL,
        token_refresh_margin: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        super().__init__(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            signing_key=signing_key,
            scopes=scopes,
            timeout=timeout,
            retry=retry,
            signature_ttl=signature_ttl,
            token_refresh_margin=token_refresh_margin,
            clock=clock,
            monotonic=monotonic,
            nonce=nonce,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout or DEFAULT_TIMEOUT)
        self._sleep = sleep
        self.webhooks = Webhooks(self)
        """The ``/webhooks`` endpoints."""

    def _run(self, call: api.Call[T]) -> T:
        flow = self._flow(call)
        step = next(flow)
        while True:  # the flow ends after the retry policy's last attempt
            outcome: api.Outcome | None = None
            if isinstance(step, api.Sleep):
                self._sleep(step.seconds)
            else:
                try:
                    outcome = self._http.send(
                        self._request(self._http, call), auth=self._auth, follow_redirects=False
                    )
                except (httpx.TransportError, UpvestAPIError) as e:
                    outcome = e
            try:
                step = flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)

    def fetch_jwks(self) -> FetchResult:
        """``GET /auth/verify_keys``: the webhook-signing JWKS and its cache lifetime.

        Raises:
            UpvestAPIError: An error answer (subclass by meaning).
            UpvestConnectionError: No answer.
        """
        return self._run(api.get_verify_keys())

    def verify_keys(self) -> KeySet:
        """The keys Upvest signs webhooks with, as a :class:`~upvest_verify.KeySet` (P-521).

        Raises:
            UpvestAPIError: An error answer.
            UpvestConnectionError: No answer.
            JWKSError: The document is not a usable JWKS.
        """
        return KeySet.from_jwks(self.fetch_jwks().body)

    def key_source(self) -> UpvestKeySource:
        """A key source for :class:`~upvest_verify.jwks.JWKSCache` (sync and async)."""
        return UpvestKeySource(self)

    def close(self) -> None:
        """Close the connection pool (not that of an ``http_client`` passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncUpvestClient(_BaseClient):
    """:class:`UpvestClient` for asyncio: the same calls, awaited.

    Takes the same arguments, with ``http_client`` an ``httpx.AsyncClient`` and
    ``sleep`` a coroutine function (``asyncio.sleep``).
    """

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        signing_key: SigningKey,
        scopes: str | Iterable[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - immutable
        signature_ttl: int = UPVEST_SIGNATURE_TTL,
        token_refresh_margin: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        super().__init__(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            signing_key=signing_key,
            scopes=scopes,
            timeout=timeout,
            retry=retry,
            signature_ttl=signature_ttl,
            token_refresh_margin=token_refresh_margin,
            clock=clock,
            monotonic=monotonic,
            nonce=nonce,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout or DEFAULT_TIMEOUT)
        self._sleep = sleep
        self.webhooks = AsyncWebhooks(self)
        """The ``/webhooks`` endpoints."""

    async def _run(self, call: api.Call[T]) -> T:
        flow = self._flow(call)
        step = next(flow)
        while True:  # the flow ends after the retry policy's last attempt
            outcome: api.Outcome | None = None
            if isinstance(step, api.Sleep):
                await self._sleep(step.seconds)
            else:
                try:
                    outcome = await self._http.send(
                        self._request(self._http, call), auth=self._auth, follow_redirects=False
                    )
                except (httpx.TransportError, UpvestAPIError) as e:
                    outcome = e
            try:
                step = flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)

    async def fetch_jwks(self) -> FetchResult:
        """Like :meth:`UpvestClient.fetch_jwks`."""
        return await self._run(api.get_verify_keys())

    async def verify_keys(self) -> KeySet:
        """Like :meth:`UpvestClient.verify_keys`."""
        return KeySet.from_jwks((await self.fetch_jwks()).body)

    def key_source(self) -> AsyncUpvestKeySource:
        """A key source for :class:`~upvest_verify.jwks.JWKSCache`'s async methods."""
        return AsyncUpvestKeySource(self)

    async def aclose(self) -> None:
        """Close the connection pool (not that of an ``http_client`` passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Webhooks:
    """``client.webhooks``: the ``/webhooks`` endpoints, blocking.

    Every argument is checked before anything is sent; a bad one raises a
    :class:`~upvest_verify.client.WebhookValidationError` subclass naming it.
    """

    def __init__(self, client: UpvestClient) -> None:
        self._client = client

    def create(
        self,
        *,
        title: str,
        url: str,
        types: Iterable[str] | None = None,
        delay: str | None = None,
        max_package_size: int | None = None,
        extras: Mapping[str, Any] | None = None,
        allow_localhost: bool = False,
        allow_unknown_types: bool = False,
        **unknown: object,
    ) -> Webhook:
        """``POST /webhooks``: subscribe; the new webhook starts disabled.

        Args:
            title: Up to 100 characters.
            url: Where Upvest delivers: https, a DNS host, at most 1,000 characters.
            types: Event categories (``["USER"]``); Upvest's default is ``["ALL"]``.
            delay: How long Upvest collects events into one request, ``"1s"`` to ``"30s"``.
            max_package_size: Largest request body Upvest batches up to, 100 to 1,048,576 bytes.
            extras: Fields this client does not know (``{"exclude_type": [...]}``).
            allow_localhost: Accept ``http://localhost:<port>`` (the local emulator).
            allow_unknown_types: Accept categories Upvest added after this release.
            unknown: Refused with :class:`UnknownFields` (use ``extras``).
        """
        body = create_body(
            title=title,
            url=url,
            types=types,
            delay=delay,
            max_package_size=max_package_size,
            extras=extras,
            unknown=unknown,
            allow_localhost=allow_localhost,
            allow_unknown_types=allow_unknown_types,
        )
        return self._client._run(api.create_webhook(body))

    def get(self, webhook_id: str) -> Webhook:
        """``GET /webhooks/{id}``."""
        return self._client._run(api.get_webhook(webhook_id))

    def update(
        self,
        webhook_id: str,
        *,
        title: str | None = None,
        url: str | None = None,
        enabled: bool | None = None,
        types: Iterable[str] | None = None,
        delay: str | None = None,
        max_package_size: int | None = None,
        extras: Mapping[str, Any] | None = None,
        allow_localhost: bool = False,
        allow_unknown_types: bool = False,
        **unknown: object,
    ) -> Webhook:
        """``PATCH /webhooks/{id}`` with only the fields given (``None`` leaves one as is)."""
        body = update_body(
            title=title,
            url=url,
            enabled=enabled,
            types=types,
            delay=delay,
            max_package_size=max_package_size,
            extras=extras,
            unknown=unknown,
            allow_localhost=allow_localhost,
            allow_unknown_types=allow_unknown_types,
        )
        return self._client._run(api.update_webhook(webhook_id, body))

    def enable(self, webhook_id: str) -> Webhook:
        """``PATCH {"enabled": true}``: Upvest starts delivering."""
        return self.update(webhook_id, enabled=True)

    def disable(self, webhook_id: str) -> Webhook:
        """``PATCH {"enabled": false}``: Upvest stops delivering."""
        return self.update(webhook_id, enabled=False)

    def list(
        self,
        *,
        sort: str | None = None,
        order: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> WebhookPage:
        """``GET /webhooks``: one page (``.data``, ``.meta``)."""
        return self._client._run(
            api.list_webhooks(sort=sort, order=order, offset=offset, limit=limit)
        )

    def iter(
        self, *, sort: str | None = None, order: str | None = None, page_size: int = 100
    ) -> Iterator[Webhook]:
        """Every webhook, page after page."""
        pages = api.Pages(sort=sort, order=order, page_size=page_size)
        call: api.Call[WebhookPage] | None = pages.first()
        while call is not None:  # Pages stops after MAX_PAGES
            page = self._client._run(call)
            yield from page.data
            call = pages.after(page)

    def test(self, webhook_id: str) -> None:
        """``POST /webhooks/{id}/test``: Upvest sends a test event (accepted: 202)."""
        self._client._run(api.test_webhook(webhook_id))

    def delete(self, webhook_id: str) -> None:
        """``DELETE /webhooks/{id}``."""
        self._client._run(api.delete_webhook(webhook_id))


class AsyncWebhooks:
    """``client.webhooks`` of :class:`AsyncUpvestClient`: :class:`Webhooks`, awaited."""

    def __init__(self, client: AsyncUpvestClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        title: str,
        url: str,
        types: Iterable[str] | None = None,
        delay: str | None = None,
        max_package_size: int | None = None,
        extras: Mapping[str, Any] | None = None,
        allow_localhost: bool = False,
        allow_unknown_types: bool = False,
        **unknown: object,
    ) -> Webhook:
        """Like :meth:`Webhooks.create`."""
        body = create_body(
            title=title,
            url=url,
            types=types,
            delay=delay,
            max_package_size=max_package_size,
            extras=extras,
            unknown=unknown,
            allow_localhost=allow_localhost,
            allow_unknown_types=allow_unknown_types,
        )
        return await self._client._run(api.create_webhook(body))

    async def get(self, webhook_id: str) -> Webhook:
        """Like :meth:`Webhooks.get`."""
        return await self._client._run(api.get_webhook(webhook_id))

    async def update(
        self,
        webhook_id: str,
        *,
        title: str | None = None,
        url: str | None = None,
        enabled: bool | None = None,
        types: Iterable[str] | None = None,
        delay: str | None = None,
        max_package_size: int | None = None,
        extras: Mapping[str, Any] | None = None,
        allow_localhost: bool = False,
        allow_unknown_types: bool = False,
        **unknown: object,
    ) -> Webhook:
        """Like :meth:`Webhooks.update`."""
        body = update_body(
            title=title,
            url=url,
            enabled=enabled,
            types=types,
            delay=delay,
            max_package_size=max_package_size,
            extras=extras,
            unknown=unknown,
            allow_localhost=allow_localhost,
            allow_unknown_types=allow_unknown_types,
        )
        return await self._client._run(api.update_webhook(webhook_id, body))

    async def enable(self, webhook_id: str) -> Webhook:
        """Like :meth:`Webhooks.enable`."""
        return await self.update(webhook_id, enabled=True)

    async def disable(self, webhook_id: str) -> Webhook:
        """Like :meth:`Webhooks.disable`."""
        return await self.update(webhook_id, enabled=False)

    async def list(
        self,
        *,
        sort: str | None = None,
        order: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> WebhookPage:
        """Like :meth:`Webhooks.list`."""
        return await self._client._run(
            api.list_webhooks(sort=sort, order=order, offset=offset, limit=limit)
        )

    async def iter(
        self, *, sort: str | None = None, order: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Webhook]:
        """Like :meth:`Webhooks.iter`, with ``async for``."""
        pages = api.Pages(sort=sort, order=order, page_size=page_size)
        call: api.Call[WebhookPage] | None = pages.first()
        while call is not None:  # Pages stops after MAX_PAGES
            page = await self._client._run(call)
            for webhook in page.data:
                yield webhook
            call = pages.after(page)

    async def test(self, webhook_id: str) -> None:
        """Like :meth:`Webhooks.test`."""
        await self._client._run(api.test_webhook(webhook_id))

    async def delete(self, webhook_id: str) -> None:
        """Like :meth:`Webhooks.delete`."""
        await self._client._run(api.delete_webhook(webhook_id))
