"""The webhook relay of Upvest's ``events-acceptor-service``, as Upvest's proxy uses it.

Upvest's signing proxy (``upvestco/httpsignature-proxy``) shows real webhooks without
a public endpoint. Its tunnel (``service/tunnels/tunnel.go``, ``start``) checks
``GET /events-acceptor-service/health``, takes a ``webhooks:admin`` token, opens a
relay endpoint with ``POST /events-acceptor-service/endpoints`` (201 with ``id`` and
``url``; ``service/tunnels/client.go``, ``OpenEndpoint``), subscribes that URL
(``delay: "1s"``, ``max_package_size: 12400``), PATCHes it enabled, then calls
``GET /events-acceptor-service/endpoints/{id}`` in a loop (``doPulling``); each answer
is a JSON list of ``{"headers", "payload", "created_at"}`` (``service/ui/ui.go``,
``PullItem``: Go ``http.Header``, the body as a string, a timestamp). A 401 makes it
fetch a new token; 404, 502 and 503 mean "not available"
(``serviceIsNotAccessible``). On exit it deletes the subscription and
``DELETE``\\ s the endpoint (204 expected, ``client.go``, ``delete``).

The API is undocumented; this emulation follows that code. The endpoints are signed
API calls like the rest (the proxy signs everything it forwards); ``health`` and the
inbox, where deliveries arrive, are not. Each ``GET`` waits up to
``poll_timeout`` seconds for items (a long poll, so ``doPulling`` does not spin) and
answers ``[]`` when none came.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._app import ADMIN, Host, Problem, SignatureChecker, authenticate
from ._state import rfc3339

__all__ = ["Relay", "RelayHost"]

PREFIX = "/events-acceptor-service"
_MAX_ITEMS = 1000  # items kept per endpoint while nobody polls


class RelayHost(Host, Protocol):
    """Protocol: an emulator that also knows its port."""

    @property
    def port(self) -> int:
        """The port the emulator listens on."""


def _canonical(name: str) -> str:
    # Go's http.CanonicalHeaderKey: "content-type" -> "Content-Type".
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass
class _Endpoint:
    id: str
    client_id: str
    items: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Relay:
    """The relay's endpoints and the items waiting in them.

    Args:
        host: The emulator.
        poll_timeout: Longest wait of one ``GET .../endpoints/{id}``, in seconds.
    """

    def __init__(self, host: RelayHost, *, poll_timeout: float = 5.0) -> None:
        self._host = host
        self._endpoints: dict[str, _Endpoint] = {}
        self._signatures = SignatureChecker()
        self.poll_timeout = poll_timeout
        self.closed = False

    @property
    def inbox_prefix(self) -> str:
        """Where relay endpoints receive deliveries: ``http://localhost:<port>/...``."""
        return f"http://localhost:{self._host.port}{PREFIX}/inbox/"

    def close(self) -> None:
        """Make waiting polls answer at once (the emulator is stopping)."""
        self.closed = True

    def _owned(self, endpoint_id: str, client_id: str) -> _Endpoint:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.client_id != client_id:
            raise Problem(404, "Endpoint not found")
        return endpoint

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _open(self, request: Request) -> Response:
        tenant, _ = await authenticate(self._host, self._signatures, request, ADMIN)
        endpoint = _Endpoint(str(uuid.uuid4()), tenant.client_id)
        self._endpoints[endpoint.id] = endpoint
        return JSONResponse(
            {"id": endpoint.id, "url": self.inbox_prefix + endpoint.id}, status_code=201
        )

    async def _poll(self, request: Request) -> Response:
        tenant, _ = await authenticate(self._host, self._signatures, request, ADMIN)
        endpoint = self._owned(request.path_params["endpoint_id"], tenant.client_id)
        deadline = self._host.monotonic() + self.poll_timeout
        while not endpoint.items and not self.closed:
            left = deadline - self._host.monotonic()
            if left <= 0:
                break
            endpoint.arrived.clear()
            # Short steps, so a stopping emulator never waits for a whole poll.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(endpoint.arrived.wait(), min(left, 0.1))
        items, endpoint.items = endpoint.items, []
        return JSONResponse(items)

    async def _close(self, request: Request) -> Response:
        tenant, _ = await authenticate(self._host, self._signatures, request, ADMIN)
        endpoint = self._owned(request.path_params["endpoint_id"], tenant.client_id)
        del self._endpoints[endpoint.id]
        endpoint.arrived.set()
        return Response(status_code=204)

    async def _inbox(self, request: Request) -> Response:
        endpoint = self._endpoints.get(request.path_params["endpoint_id"])
        if endpoint is None:
            raise Problem(404, "Endpoint not found")
        body = await request.body()
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(_canonical(name), []).append(value)
        endpoint.items.append(
            {
                "headers": headers,
                "payload": body.decode("utf-8", "replace"),
                "created_at": rfc3339(_dt.datetime.now(_dt.timezone.utc)),
            }
        )
        del endpoint.items[:-_MAX_ITEMS]
        endpoint.arrived.set()
        return Response(status_code=200)

    def routes(self) -> list[BaseRoute]:
        """The relay's routes, for :func:`~._app.create_app`."""
        return [
            Route(f"{PREFIX}/health", self._health, methods=["GET"]),
            Route(f"{PREFIX}/endpoints", self._open, methods=["POST"]),
            Route(f"{PREFIX}/endpoints/{{endpoint_id}}", self._poll, methods=["GET"]),
            Route(f"{PREFIX}/endpoints/{{endpoint_id}}", self._close, methods=["DELETE"]),
            Route(f"{PREFIX}/inbox/{{endpoint_id}}", self._inbox, methods=["POST"]),
        ]
