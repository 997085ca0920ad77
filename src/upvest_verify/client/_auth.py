"""OAuth2 client credentials and Upvest v15 request signing in one httpx auth flow.

:meth:`UpvestAuth._steps` is the flow, written once, after httpx's ``auth_flow``:
a generator that yields requests to send (the token request, the API request, the
API request again after a 401) or a :class:`_Wait` for a token another thread or
task is fetching. :meth:`UpvestAuth.sync_auth_flow` and
:meth:`UpvestAuth.async_auth_flow` drive it, blocking or awaiting.

Tokens are cached per scope set and refreshed before they expire; one token
request per scope set is in flight at a time, shared by threads *and* asyncio
tasks (a :class:`concurrent.futures.Future` is the rendezvous, as in the JWKS
cache). Every request is signed afresh: a new ``created`` and nonce per attempt.
The client secret, tokens and signatures never reach a ``repr``, a log line or an
exception message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from upvest_verify.errors import ConfigurationError
from upvest_verify.signing import (
    SignedRequest,
    SigningKey,
    sign_upvest_request,
)

from ._api import error_from_response
from ._errors import UnexpectedResponse, UpvestAPIError, UpvestConnectionError

__all__ = [
    "ADMIN_SCOPE",
    "READ_SCOPE",
    "UPVEST_SIGNATURE_TTL",
    "Token",
    "UpvestAuth",
    "sign_api_request",
    "signing_headers",
    "token_form",
]

logger = logging.getLogger("upvest_verify.client")

READ_SCOPE = "webhooks:read"
ADMIN_SCOPE = "webhooks:admin"
UPVEST_SIGNATURE_TTL = 10
"""``expires - created`` of Upvest's Python signer and :func:`sign_upvest_request`."""

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Header fields the flow writes itself; a stale copy from an earlier attempt is replaced.
_MANAGED = frozenset(
    {
        "accept",
        "authorization",
        "upvest-client-id",
        "upvest-api-version",
        "content-type",
        "content-length",
        "content-digest",
        "digest",
        "date",
        "signature",
        "signature-input",
        "upvest-signature-version",
    }
)
_ACCEPTED = ("application/json", "application/pdf")  # what Upvest serves (§7.1)


# ---- pure parts ---------------------------------------------------------------------------


def sign_api_request(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    key: SigningKey,
    created: int,
    nonce: str,
    ttl: int = UPVEST_SIGNATURE_TTL,
    deterministic: bool = False,
) -> SignedRequest:
    """Sign an API request with Upvest's v15 profile (upvest-protocol.md §7).

    :func:`~upvest_verify.signing.sign_upvest_request` with ``expires = created + ttl``.

    Returns:
        The signed request; its ``headers`` add ``date``, ``content-length`` and
        ``content-digest`` (with a body), ``signature-input``, ``signature`` and
        ``upvest-signature-version: 15``.
    """
    return sign_upvest_request(
        method, url, headers, body, key=key, created=created, nonce=nonce, ttl=ttl,
        deterministic=deterministic,
    )  # fmt: skip


def signing_headers(
    request: httpx.Request, *, client_id: str, token: str | None
) -> list[tuple[str, str]]:
    """The header fields to sign, in the order they are covered.

    ``accept`` (``application/json`` unless the request asks for PDF),
    ``authorization`` (not on the token request), ``upvest-client-id``,
    ``upvest-api-version: 1``, ``content-type`` (with a body), then any other field
    the request carries (the signer skips the ones Upvest never covers:
    ``user-agent``, ``host``, ``x-*``...). The signer adds ``date``,
    ``content-length`` and ``content-digest``.
    """
    accept = request.headers.get("accept", "")
    pairs = [("accept", accept if accept in _ACCEPTED else "application/json")]
    if token is not None:
        pairs.append(("authorization", f"Bearer {token}"))
    pairs += [("upvest-client-id", client_id), ("upvest-api-version", "1")]
    if request.content and "content-type" in request.headers:
        pairs.append(("content-type", request.headers["content-type"]))
    pairs += [(k.lower(), v) for k, v in request.headers.multi_items() if k.lower() not in _MANAGED]
    return pairs


def token_form(client_id: str, client_secret: str, scope: str) -> bytes:
    """The ``application/x-www-form-urlencoded`` body of ``POST /auth/token`` (§6)."""
    return urllib.parse.urlencode(
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
            "scope": scope,
        }
    ).encode("ascii")


@dataclass(frozen=True, slots=True)
class Token:
    """An access token (its value never in ``repr``).

    Attributes:
        value: The bearer token.
        scope: The scope set it was requested for (space-separated).
        granted: The scope Upvest reports granting.
        refresh_at: Monotonic time from which a new token is fetched first.
        expires_at: Monotonic time it expires.
    """

    value: str = field(repr=False)
    scope: str
    granted: str
    refresh_at: float
    expires_at: float


def parse_token(body: bytes, *, scope: str, obtained: float, margin: float) -> Token:
    """Read a token response; refresh ``margin`` seconds early (at most half the lifetime).

    Raises:
        ValueError: The body is not the documented token object (the message never
            holds the token).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ValueError("the token response is not JSON") from e
    if not isinstance(data, dict):
        raise ValueError("the token response is not a JSON object")
    value, expires_in = data.get("access_token"), data.get("expires_in")
    if not isinstance(value, str) or not value or any(c in value for c in " \r\n\t"):
        raise ValueError("the token response has no usable access_token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in < 0:
        raise ValueError("the token response has no usable expires_in")
    kind = data.get("token_type", "bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise ValueError(f"the token type is {kind!r}, not bearer")
    granted = data.get("scope")
    lifetime = float(expires_in)
    return Token(
        value=value,
        scope=scope,
        granted=granted if isinstance(granted, str) else scope,
        refresh_at=obtained + max(lifetime - margin, lifetime / 2),
        expires_at=obtained + lifetime,
    )


# ---- the token cache: one fetch in flight per scope set ---------------------------------------


@dataclass(eq=False)
class _Flight:
    """A token request in flight; waiters wait for ``future`` (``None``: abandoned)."""

    scope: str
    future: concurrent.futures.Future[Token | None] = field(
        default_factory=concurrent.futures.Future
    )


@dataclass(frozen=True, slots=True)
class _Wait:
    """Step: wait until another thread or task finished ``flight``."""

    flight: _Flight


class _TokenCache:
    """Tokens per scope set and the flights fetching them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._flights: dict[str, _Flight] = {}

    def plan(self, scope: str, now: float) -> Token | _Wait | _Flight:
        """A fresh token, a flight to wait for, or a new flight this caller leads."""
        with self._lock:
            token = self._tokens.get(scope)
            if token is not None and now < token.refresh_at:
                return token
            flight = self._flights.get(scope)
            if flight is not None:
                return _Wait(flight)
            flight = self._flights[scope] = _Flight(scope)
            return flight

    def finish(self, flight: _Flight, token: Token | None, error: BaseException | None) -> None:
        with self._lock:
            if self._flights.get(flight.scope) is flight:
                del self._flights[flight.scope]
            if token is not None:
                self._tokens[flight.scope] = token
        if error is not None:
            flight.future.set_exception(error)
        else:
            flight.future.set_result(token)

    def invalidate(self, token: Token) -> None:
        """Forget ``token`` (after a 401), unless a newer one replaced it already."""
        with self._lock:
            if self._tokens.get(token.scope) is token:
                del self._tokens[token.scope]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


# ---- the auth -------------------------------------------------------------------------------


def _scope_text(scopes: str | Iterable[str]) -> str:
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not items or not all(isinstance(s, str) and s and " " not in s for s in items):
        raise ConfigurationError(f"scopes must name at least one scope, got {scopes!r}")
    return " ".join(dict.fromkeys(items))


class UpvestAuth(httpx.Auth):
    """httpx auth for the Upvest Investment API: OAuth2 client credentials + v15 signing.

    Usable on its own with any ``httpx.Client``/``httpx.AsyncClient``; the
    management clients build one. Reads (GET) use a ``webhooks:read`` token and
    writes a ``webhooks:admin`` token, unless ``scopes`` names one scope set for
    every request. A 401 answer drops the token, fetches a new one and retries
    the request once.

    Args:
        client_id: The OAuth2 client id (sent on every request as ``upvest-client-id``).
        client_secret: The OAuth2 client secret (sent in the token request only).
        signing_key: The tenant's registered request-signing key.
        token_url: ``<base URL>/auth/token``.
        scopes: One scope set for every request, e.g. ``"webhooks:admin"``.
        signature_ttl: Seconds a signature is valid (``expires - created``).
        refresh_margin: Refresh a token this many seconds before it expires (at most
            half its lifetime).
        token_wait: Longest wait, in seconds, for a token another caller is fetching.
        clock: Wall clock for ``created`` (Unix seconds).
        monotonic: Clock for token lifetimes.
        nonce: Makes a nonce per signature (a random UUID4 by default).

    Raises:
        ConfigurationError: An argument is empty or out of range.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        signing_key: SigningKey,
        token_url: str,
        scopes: str | Iterable[str] | None = None,
        signature_ttl: int = UPVEST_SIGNATURE_TTL,
        refresh_margin: float = 5.0,
        token_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string")
        if not isinstance(signing_key, SigningKey):
            raise ConfigurationError("signing_key must be an upvest_verify.signing.SigningKey")
        if isinstance(signature_ttl, bool) or not isinstance(signature_ttl, int):
            raise ConfigurationError(f"signature_ttl must be an integer, got {signature_ttl!r}")
        if not 1 <= signature_ttl <= 300:
            raise ConfigurationError(f"signature_ttl must be 1 to 300 seconds, got {signature_ttl}")
        if not (refresh_margin >= 0 and token_wait > 0):
            raise ConfigurationError("refresh_margin must be >= 0 and token_wait > 0")
        self._client_id = client_id
        self._secret = client_secret
        self._key = signing_key
        self._token_url = token_url
        self._scopes = None if scopes is None else _scope_text(scopes)
        self._ttl = signature_ttl
        self._margin = float(refresh_margin)
        self._wait = float(token_wait)
        self._clock = clock
        self._monotonic = monotonic
        self._nonce = nonce
        self._cache = _TokenCache()

    def __repr__(self) -> str:
        return (
            f"UpvestAuth(client_id={self._client_id!r}, key_id={self._key.key_id!r},"
            f" scopes={self._scopes or 'read/admin'!r})"
        )

    @property
    def client_id(self) -> str:
        """The OAuth2 client id."""
        return self._client_id

    def scope_for(self, method: str) -> str:
        """The scope set a request with ``method`` is sent with."""
        if self._scopes is not None:
            return self._scopes
        return READ_SCOPE if method.upper() in _READ_METHODS else ADMIN_SCOPE

    def clear_tokens(self) -> None:
        """Forget every cached token (the next request fetches new ones)."""
        self._cache.clear()

    # -- the flow -------------------------------------------------------------------------

    def _sign(self, request: httpx.Request, token: str | None) -> None:
        headers = signing_headers(request, client_id=self._client_id, token=token)
        signed = sign_api_request(
            request.method,
            str(request.url),
            headers,
            request.content,
            key=self._key,
            created=int(self._clock()),
            nonce=self._nonce(),
            ttl=self._ttl,
        )
        for name in _MANAGED:
            if name in request.headers:
                del request.headers[name]
        for name, value in signed.headers:
            if name.lower() in _MANAGED:
                request.headers[name] = value

    def _token_request(self, scope: str, template: httpx.Request) -> httpx.Request:
        request = httpx.Request(
            "POST",
            self._token_url,
            content=token_form(self._client_id, self._secret, scope),
            headers={"content-type": "application/x-www-form-urlencoded"},
            extensions=dict(template.extensions),  # the timeouts
        )
        self._sign(request, None)
        return request

    def _read_token(self, response: httpx.Response, scope: str, obtained: float) -> Token:
        if response.status_code != 200:
            raise error_from_response(
                response, method="POST", path="/auth/token", now=self._clock(),
                secrets=(self._secret,),
            )  # fmt: skip
        try:
            token = parse_token(
                response.content, scope=scope, obtained=obtained, margin=self._margin
            )
        except ValueError as e:
            raise UnexpectedResponse(
                response.status_code,
                method="POST",
                path="/auth/token",
                detail=str(e),
                request_id=response.headers.get("upvest-request-id"),
            ) from None
        logger.debug(
            "access token for %r obtained, valid %.0f s", scope, token.expires_at - obtained
        )
        return token

    def _token(
        self, scope: str, template: httpx.Request
    ) -> Generator[httpx.Request | _Wait, httpx.Response | None, Token]:
        for _ in range(3):  # a flight abandoned by its leader (cancelled, connection lost)
            plan = self._cache.plan(scope, self._monotonic())
            if isinstance(plan, Token):
                return plan
            if isinstance(plan, _Wait):
                yield plan
                future = plan.flight.future
                if not future.done():
                    raise UpvestConnectionError(
                        f"no access token after waiting {self._wait:.0f} s for another request",
                        method="POST",
                        path="/auth/token",
                    )
                error = future.exception()
                if error is not None:
                    raise copy.copy(error)
                token = future.result()
                if token is not None:
                    return token
                continue
            return (yield from self._lead(plan, template))
        raise UpvestConnectionError(
            "the access token request was abandoned repeatedly", method="POST", path="/auth/token"
        )

    def _lead(
        self, flight: _Flight, template: httpx.Request
    ) -> Generator[httpx.Request | _Wait, httpx.Response | None, Token]:
        token: Token | None = None
        failure: UpvestAPIError | None = None
        try:
            obtained = self._monotonic()
            response = yield self._token_request(flight.scope, template)
            assert response is not None
            token = self._read_token(response, flight.scope, obtained)
        except UpvestAPIError as e:
            failure = e
            raise
        finally:  # also when the flow is closed: waiters then plan again
            self._cache.finish(flight, token, failure)
        return token

    def _steps(
        self, request: httpx.Request
    ) -> Generator[httpx.Request | _Wait, httpx.Response | None, None]:
        scope = self.scope_for(request.method)
        token = yield from self._token(scope, request)
        self._sign(request, token.value)
        response = yield request
        if response is not None and response.status_code == 401:
            logger.debug("%s %s: 401, retrying once with a new token", request.method, scope)
            self._cache.invalidate(token)
            token = yield from self._token(scope, request)
            self._sign(request, token.value)
            yield request

    # -- the drivers ------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Drive the flow in this thread (``httpx.Client``)."""
        flow = self._steps(request)
        try:
            step = next(flow)
            while True:
                reply: httpx.Response | None = None
                if isinstance(step, _Wait):
                    concurrent.futures.wait([step.flight.future], timeout=self._wait)
                else:
                    reply = yield step
                    reply.read()
                step = flow.send(reply)
        except StopIteration:
            return
        finally:
            flow.close()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Drive the flow in a task (``httpx.AsyncClient``); waiting never blocks the loop."""
        flow = self._steps(request)
        try:
            step = next(flow)
            while True:
                reply: httpx.Response | None = None
                if isinstance(step, _Wait):
                    waiter = asyncio.wrap_future(step.flight.future)
                    # shield: a timeout or a cancelled waiter never cancels the flight itself
                    done, _ = await asyncio.wait([asyncio.shield(waiter)], timeout=self._wait)
                    for task in done:
                        task.exception()  # retrieved here; the flow reads the future itself
                else:
                    reply = yield step
                    await reply.aread()
                step = flow.send(reply)
        except StopIteration:
            return
        finally:
            flow.close()
