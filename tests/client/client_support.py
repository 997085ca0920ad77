"""Helpers for the management-client tests: request recorders, a fake Upvest, clocks.

Imported only by test modules that already checked httpx is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from upvest_verify.client import AsyncUpvestClient, RetryPolicy, UpvestClient
from upvest_verify.signing import SigningKey
from upvest_verify.testing import ManualClock as FakeClock  # noqa: F401  # re-exported

TOKEN_PATH = "/auth/token"


@dataclass
class Seen:
    """One request a client sent, and the status it got."""

    method: str
    path: str
    query: str
    headers: httpx.Headers
    body: bytes
    status: int | None = None

    @property
    def form(self) -> dict[str, list[str]]:
        from urllib.parse import parse_qs

        return parse_qs(self.body.decode("ascii"), keep_blank_values=True)

    def signature_params(self) -> str:
        value = self.headers["signature-input"]
        assert value.startswith("sig1=")
        return value[len("sig1=") :]


@dataclass
class Recorder:
    """httpx event hooks recording every request on the wire (token requests included)."""

    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _request(self, request: httpx.Request) -> None:
        with self.lock:
            self.seen.append(
                Seen(
                    request.method,
                    request.url.path,
                    request.url.query.decode(),
                    httpx.Headers(request.headers),
                    request.content,
                )
            )

    def _response(self, response: httpx.Response) -> None:
        with self.lock:
            for seen in reversed(self.seen):
                if seen.status is None and seen.path == response.request.url.path:
                    seen.status = response.status_code
                    break

    async def _arequest(self, request: httpx.Request) -> None:
        self._request(request)

    async def _aresponse(self, response: httpx.Response) -> None:
        self._response(response)

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self._request], "response": [self._response]}

    def ahooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self._arequest], "response": [self._aresponse]}

    def token_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == TOKEN_PATH]

    def api_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path != TOKEN_PATH]


class Sleeps:
    """Records the waits a client asks for instead of waiting (sync and async)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def tenant_kwargs(tenant: Any) -> dict[str, Any]:
    """The credentials of an emulator tenant as client arguments."""
    return {
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "signing_key": tenant.signing_key,
    }


@contextlib.contextmanager
def sync_client(
    base_url: str, tenant: Any, recorder: Recorder | None = None, **kwargs: Any
) -> Iterator[UpvestClient]:
    """An ``UpvestClient`` on its own ``httpx.Client`` (recording), closed afterwards."""
    with httpx.Client(event_hooks=recorder.hooks() if recorder else None, timeout=10) as http:
        yield UpvestClient(
            base_url=base_url, http_client=http, **{**tenant_kwargs(tenant), **kwargs}
        )


@contextlib.asynccontextmanager
async def async_client(
    base_url: str, tenant: Any, recorder: Recorder | None = None, **kwargs: Any
) -> AsyncIterator[AsyncUpvestClient]:
    """An ``AsyncUpvestClient`` on its own ``httpx.AsyncClient``, closed afterwards."""
    hooks = recorder.ahooks() if recorder else None
    async with httpx.AsyncClient(event_hooks=hooks, timeout=10) as http:
        yield AsyncUpvestClient(
            base_url=base_url, http_client=http, **{**tenant_kwargs(tenant), **kwargs}
        )


# ---- a scripted Upvest for the error paths the emulator cannot produce -----------------------

Reply = httpx.Response | Exception


@dataclass
class FakeTenant:
    """Credentials for the scripted server (it does not check signatures)."""

    client_id: str = "7c8f0e32-8d47-4c8e-9d4a-0c1e1c2d3e4f"
    client_secret: str = "s3cr3t-Value-that-must-not-leak"
    signing_key: SigningKey = field(default_factory=lambda: SigningKey.generate())


class ScriptedUpvest:
    """An ``httpx.MockTransport`` handler: tokens on demand, scripted API answers.

    ``script`` holds replies (responses or exceptions to raise) handed out in order
    to API requests; when it runs out, ``default`` answers.
    """

    def __init__(
        self,
        script: Iterable[Reply] = (),
        *,
        default: Callable[[httpx.Request], httpx.Response] | None = None,
        token_replies: Iterable[Reply] = (),
    ) -> None:
        self.script = list(script)
        self.token_replies = list(token_replies)
        self.default = default or (lambda request: json_response(200, {}))
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.url.path == TOKEN_PATH:
            if self.token_replies:
                return _reply(self.token_replies.pop(0))
            self.tokens_issued += 1
            return json_response(
                200,
                {
                    "access_token": f"tok-{self.tokens_issued}-{uuid.uuid4().hex}",
                    "expires_in": 1799,
                    "token_type": "bearer",
                    "scope": "webhooks:read",
                },
            )
        if self.script:
            return _reply(self.script.pop(0))
        return self.default(request)

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != TOKEN_PATH]


def _reply(reply: Reply) -> httpx.Response:
    if isinstance(reply, Exception):
        raise reply
    return reply


def json_response(
    status: int, doc: object, headers: dict[str, str] | None = None, media: str = "application/json"
) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(doc).encode(),
        headers={"content-type": media, "upvest-request-id": str(uuid.uuid4()), **(headers or {})},
    )


def problem(status: int, detail: str, **headers: str) -> httpx.Response:
    doc = {"type": "error", "status": status, "title": "Error", "detail": detail}
    return json_response(status, doc, headers, media="application/problem+json")


def webhook_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "a8eb3540-5a84-40f9-b2bb-7f99f282fc5a",
        "created_at": "2021-07-21T14:10:00.00Z",
        "updated_at": "2021-07-21T14:10:00.00Z",
        "title": "User webhook",
        "url": "https://tenant.tld/webhooks/users",
        "type": ["USER"],
        "enabled": False,
        "config": {"delay": "5s", "max_package_size": 10240},
    }
    doc.update(overrides)
    return doc


NO_JITTER = RetryPolicy(jitter=False, backoff=0.5, max_attempts=4)


@contextlib.contextmanager
def scripted_client(
    server: ScriptedUpvest, tenant: FakeTenant | None = None, **kwargs: Any
) -> Iterator[UpvestClient]:
    """An ``UpvestClient`` whose requests reach ``server`` (``httpx.MockTransport``)."""
    tenant = tenant or FakeTenant()
    kwargs.setdefault("retry", NO_JITTER)
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        yield UpvestClient(
            base_url="https://sandbox.upvest.co",
            http_client=http,
            **tenant_kwargs(tenant),
            **kwargs,
        )


@contextlib.asynccontextmanager
async def scripted_async_client(
    server: ScriptedUpvest, tenant: FakeTenant | None = None, **kwargs: Any
) -> AsyncIterator[AsyncUpvestClient]:
    """An ``AsyncUpvestClient`` whose requests reach ``server``."""
    tenant = tenant or FakeTenant()
    kwargs.setdefault("retry", NO_JITTER)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        yield AsyncUpvestClient(
            base_url="https://sandbox.upvest.co",
            http_client=http,
            **tenant_kwargs(tenant),
            **kwargs,
        )


# ---- one scenario, both clients ---------------------------------------------------------------


class Driver:
    """Runs one scenario on ``UpvestClient`` (``"sync"``) or ``AsyncUpvestClient`` (``"async"``).

    ``run(x)`` returns ``x`` for the blocking client and runs the coroutine ``x`` to
    completion on the driver's event loop for the async one, so a test reads the
    same either way: ``webhook = run(client.webhooks.get(webhook_id))``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def run(self, value: Any) -> Any:
        if self.loop is None:
            return value
        return self.loop.run_until_complete(value)

    def collect(self, iterable: Any) -> list[Any]:
        if self.loop is None:
            return list(iterable)

        async def collect() -> list[Any]:
            return [item async for item in iterable]

        return self.loop.run_until_complete(collect())

    @contextlib.contextmanager
    def _enter(self, manager: Any) -> Iterator[Any]:
        if self.loop is None:
            with manager as client:
                yield client
            return
        client = self.run(manager.__aenter__())
        try:
            yield client
        finally:
            self.run(manager.__aexit__(None, None, None))

    def client(
        self, base_url: str, tenant: Any, recorder: Recorder | None = None, **kwargs: Any
    ) -> Any:
        """A client for the emulator (a context manager)."""
        maker = async_client if self.is_async else sync_client
        if self.is_async and "sleep" in kwargs and isinstance(kwargs["sleep"], Sleeps):
            kwargs["sleep"] = kwargs["sleep"].asleep
        return self._enter(maker(base_url, tenant, recorder, **kwargs))

    def scripted(self, server: ScriptedUpvest, **kwargs: Any) -> Any:
        """A client for a scripted server (a context manager)."""
        maker = scripted_async_client if self.is_async else scripted_client
        if self.is_async and "sleep" in kwargs and isinstance(kwargs["sleep"], Sleeps):
            kwargs["sleep"] = kwargs["sleep"].asleep
        return self._enter(maker(server, **kwargs))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
