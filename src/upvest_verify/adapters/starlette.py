"""Verify Upvest webhooks in Starlette, FastAPI or any ASGI app (pure ASGI middleware).

Requires ``pip install 'upvest-verify[starlette]'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable

try:
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.starlette needs Starlette and anyio: "
        "pip install 'upvest-verify[starlette]'"
    ) from e

from upvest_verify import VerifiedWebhook, Verifier
from upvest_verify.adapters._asgi import ASGIHead, asgi_log_path, asgi_route_path, read_head
from upvest_verify.adapters._body import BodyReader, refuse_declared
from upvest_verify.adapters._delivery import Answer, Delivery, aadmit, afinish, aqueue, check_ledger
from upvest_verify.adapters._reject import (
    METHOD_NOT_ALLOWED,
    Rejection,
    log_rejection,
    rejection_for,
    security_logger,
)
from upvest_verify.adapters._run import (
    DEFAULT_MAX_THREADS,
    DELIVERY_SCOPE_KEY,
    DELIVERY_STATE_KEY,
    SCOPE_KEY,
    STATE_KEY,
    ASGIVerification,
    Offloader,
    store_delivery,
    store_result,
)
from upvest_verify.adapters._url import DEFAULT_PATHS, PathMatcher
from upvest_verify.ledger import BaseLedger

__all__ = [
    "DEFAULT_MAX_THREADS",
    "DELIVERY_SCOPE_KEY",
    "DELIVERY_STATE_KEY",
    "SCOPE_KEY",
    "STATE_KEY",
    "Delivery",
    "OnError",
    "UpvestWebhookMiddleware",
    "get_delivery",
    "get_webhook",
]

OnError = Callable[[Request, Exception], Response | Awaitable[Response]]
"""``on_error(request, exc) -> Response``: ``exc`` is a ``VerificationError``, an
``IncompleteBody`` (body shorter than its ``Content-Length``), a
``ConfigurationError``, or an unexpected exception from the verifier."""


def get_webhook(request: HTTPConnection) -> VerifiedWebhook | None:
    """The webhook :class:`UpvestWebhookMiddleware` verified for this request.

    Args:
        request: The request (or any connection built on its scope).

    Returns:
        The verified webhook, or ``None`` when the middleware did not verify this
        request (not installed, or the path is not among its ``paths``).
    """
    webhook = request.scope.get(SCOPE_KEY)
    return webhook if isinstance(webhook, VerifiedWebhook) else None


def get_delivery(request: HTTPConnection) -> Delivery | None:
    """The events still to process for this request, when the middleware has a ledger.

    Args:
        request: The request (or any connection built on its scope).

    Returns:
        The :class:`Delivery`, or ``None`` when the middleware has no ledger or did
        not verify this request.
    """
    delivery = request.scope.get(DELIVERY_SCOPE_KEY)
    return delivery if isinstance(delivery, Delivery) else None


async def _send_answer(scope: Scope, receive: Receive, send: Send, answer: Answer) -> None:
    response = Response(answer.body, answer.status, headers=dict(answer.headers))
    await response(scope, receive, send)


async def _run_finishing(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    verifier: Verifier,
    webhook: VerifiedWebhook,
    delivery: Delivery | None,
) -> None:
    """Run the app; settle the delivery's open claims and record the signature by its answer.

    This happens before the response starts, so a retry that Upvest sends after
    reading the answer finds the claims completed or released.
    """
    path = asgi_log_path(scope)
    finished = False

    async def finishing_send(message: Message) -> None:
        nonlocal finished
        if message["type"] == "http.response.start" and not finished:
            finished = True
            await afinish(verifier, webhook, delivery, int(message["status"]), path=path)
        await send(message)

    try:
        await app(scope, receive, finishing_send)
    finally:
        if not finished:  # the app raised, or never answered
            finished = True
            await afinish(verifier, webhook, delivery, None, path=path)


class _Disconnected(Exception):
    """The client went away before the whole body arrived."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body downstream, then defers to the server.

    After the body, the app's next ``receive()`` waits for ``http.disconnect`` from
    the real server, as it would without this middleware.
    """
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class UpvestWebhookMiddleware:
    """Pure ASGI middleware that verifies Upvest webhooks before the app sees them.

    On the protected paths, a ``POST`` body is buffered (up to ``max_body_size``),
    verified, and replayed unchanged, so ``await request.body()`` and
    ``await request.json()`` work in the endpoint. The result is stored in
    ``scope["upvest_verify"]`` and ``request.state.upvest_webhook``. Failures are
    answered with ``application/problem+json`` and never reach the app: a body that
    ends before its ``Content-Length`` is 400 ``incomplete_body``, like in every
    adapter; a client that disconnects mid-body gets no answer (nobody is left to
    read it). Other paths and websockets pass through untouched.

    **Offloading.** A verification costs about 0.5 ms of CPU, nearly all of it the
    P-521 verify, during which ``cryptography`` releases the GIL. With
    ``offload=True`` (the default) it runs on a small pool of long-lived worker
    threads (``max_threads``, one per core), handed over through a queue: the event
    loop keeps serving other requests meanwhile. ``offload=False`` verifies on the
    event loop: no thread hand-off (offloading costs 13-15 % more CPU per webhook),
    but every other request waits behind the verifications. Measured on 2 cores with
    uvicorn, 10 KiB webhooks and ``hey -c 16`` (``benchmarks/bench_receivers.py``;
    docs/guides/deployment.md has the tables): offloading served 0.91-1.37 x the
    webhooks per second of inline verification (medians of three runs 0.97, 1.11,
    1.11; the lowest with other work on the second core), with the loop's lag p99 at
    9-22 ms against 27-57 ms inline and 7-38 ms for the same server without any
    verification; anyio's ``to_thread.run_sync``, used before the pool, reached
    0.63-0.85 x. ``offload=False`` only pays off where every core is busy anyway.

    **Start-up.** On ``lifespan.startup`` the middleware calls
    :meth:`Verifier.warm_up <upvest_verify.Verifier.warm_up>` (in a worker thread
    when offloading, which also starts the pool) before passing the message on
    unchanged, so that the first webhook costs about what later ones do (medians
    1.26-1.44 x a warm one over fresh interpreters, against 3.2-5.5 x without). A warm-up
    that fails is logged on ``upvest_verify.security`` and start-up goes on. Lifespan
    messages reach the app unchanged, whether it has a lifespan of its own or not.

    With a ``ledger``, each event is processed once across retries and workers: a
    delivery whose events are all done is answered 200 ``already_processed`` without
    calling the app; one with an event held by another worker is answered 503
    ``in_progress``; otherwise the app gets the claimed events as a
    :class:`Delivery` (:func:`get_delivery`, ``request.state.upvest_delivery``), and
    the claims it leaves open are completed by a 2xx answer and released otherwise.

    Example::

        from starlette.middleware import Middleware
        from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

        app = Starlette(
            routes=[Route("/webhooks/upvest", receive_webhook, methods=["POST"])],
            middleware=[Middleware(UpvestWebhookMiddleware, verifier=verifier)],
        )

    Args:
        app: The ASGI app to protect.
        verifier: The :class:`~upvest_verify.Verifier` (a ``KeySet`` or an async-capable
            key provider such as ``JWKSCache``).
        paths: Protected paths (decoded, relative to ``root_path``); a final ``/*``
            protects everything below.
        max_body_size: Largest body read; defaults to the verifier policy's limit.
        on_error: ``on_error(request, exc) -> Response`` to answer failures yourself.
        offload: Verify in a worker thread (default) rather than on the event loop.
        max_threads: Worker threads verifying at once (default: one per CPU core),
            shared by every middleware of the process with the same value; ``None``
            uses anyio's worker threads and its shared default limiter (40 threads).
        public_url: The public ``https://host[/prefix]`` registered with Upvest.
        trusted_proxies: Proxy addresses/networks whose forwarding fields are believed.
        proxy_headers: ``"x-forwarded"`` or ``"forwarded"`` (RFC 7239).
        path_prefix: A path prefix a proxy strips before the app sees the path.
        ledger: An event ledger (:mod:`upvest_verify.ledger`) for exactly-once
            processing per event id, or ``None``.
        inbox: Acknowledge each verified delivery at once: put its events in the
            ledger's queue (``ledger.enqueue``) and answer 200 ``{"status": "queued"}``
            without calling the app; workers handle them (``ledger.work``).

    Raises:
        ConfigurationError: An option is invalid.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        paths: Iterable[str] = DEFAULT_PATHS,
        max_body_size: int | None = None,
        on_error: OnError | None = None,
        offload: bool = True,
        max_threads: int | None = DEFAULT_MAX_THREADS,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
        ledger: BaseLedger | None = None,
        inbox: bool = False,
    ) -> None:
        self.app = app
        self._ledger = check_ledger(ledger, inbox)
        self._inbox = inbox
        self._check = ASGIVerification.create(
            verifier,
            max_body_size=max_body_size,
            offload=offload,
            max_threads=max_threads,
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            proxy_headers=proxy_headers,
            path_prefix=path_prefix,
        )
        self._paths = PathMatcher.create(paths)
        self._on_error = on_error
        # No ledger and no replay store: nothing to settle once the app has answered.
        self._plain = self._ledger is None and verifier.replay_store is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Verify webhook requests; pass everything else through."""
        kind = scope["type"]
        if kind != "http" or not self._paths(asgi_route_path(scope)):
            if kind == "lifespan":
                receive = self._warming(receive)
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            # G9: only POST delivers webhooks; never run the handler for anything else.
            await self._answer(scope, receive, send, Rejection(405, METHOD_NOT_ALLOWED))
            return
        body: bytes | None = None
        try:
            head = read_head(scope)  # the header lines, walked once for everything below
            body = await self._read_body(head, receive)
            webhook = await self._check.verify(scope, body, head)
        except _Disconnected:
            # G2: never verify a partial body; nobody is left to answer.
            security_logger.warning(
                "Upvest webhook aborted: client disconnected before the body was complete path=%r",
                asgi_log_path(scope),
            )
            return
        except Exception as exc:  # G13: every failure fails closed
            await self._fail(scope, receive, send, body, exc)
            return
        store_result(scope, webhook)
        if self._plain:
            await self.app(scope, _replay(body, receive), send)  # nothing to do afterwards
            return
        verifier = self._check.verifier
        delivery: Delivery | None = None
        if self._ledger is not None:
            path = asgi_log_path(scope)
            if self._inbox:
                outcome: Delivery | Answer = await aqueue(self._ledger, webhook, path=path)
            else:
                outcome = await aadmit(self._ledger, webhook, path=path)
            if isinstance(outcome, Answer):
                await afinish(verifier, webhook, None, outcome.status, path=path)
                await _send_answer(scope, receive, send, outcome)
                return
            delivery = outcome
            store_delivery(scope, delivery)
        await _run_finishing(
            self.app, scope, _replay(body, receive), send, verifier, webhook, delivery
        )

    async def _read_body(self, head: ASGIHead, receive: Receive) -> bytes:
        limit = self._check.max_body_size
        refuse_declared(limit, head.declared)  # 413 before anything is read
        message = await receive()
        reader: BodyReader | None = None
        while True:
            kind = message["type"]
            if kind == "http.disconnect":
                raise _Disconnected
            if kind == "http.request":  # anything else is not in the ASGI spec: skipped
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if reader is None and not more:
                    # The usual case: the whole body in one message.
                    return BodyReader.whole(limit, head.declared, chunk)
                if reader is None:
                    reader = BodyReader(limit, head.declared)
                # G3: stops at the first byte over the limit; memory stays bounded.
                reader.feed(chunk)
                if not more:
                    return reader.finish()  # IncompleteBody when shorter than Content-Length
            message = await receive()

    def _warming(self, receive: Receive) -> Receive:
        """``receive`` for a lifespan scope: warm up on ``lifespan.startup``, then pass it on."""

        async def warming() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._warm_up()
            return message

        return warming

    async def _warm_up(self) -> None:
        # Verifier.warm_up() takes a few milliseconds of CPU (more with the deferred
        # imports): in a worker thread, unless the middleware must stay on the loop,
        # which also starts the worker threads before the first webhook.
        run_sync = self._check.run_sync
        try:
            if run_sync is None:
                self._check.verifier.warm_up()
            else:
                if isinstance(run_sync, Offloader):
                    run_sync.start()
                await run_sync(self._check.verifier.warm_up)  # type: ignore[arg-type]
        except Exception:  # the app starts anyway; every webhook fails closed if it is broken
            security_logger.exception("Upvest webhook verification could not warm up")

    async def _fail(
        self, scope: Scope, receive: Receive, send: Send, body: bytes | None, exc: Exception
    ) -> None:
        rejection = rejection_for(exc)
        log_rejection(rejection, asgi_log_path(scope), exc)
        if self._on_error is not None:
            try:
                outcome = self._on_error(Request(scope, _replay(body or b"", receive)), exc)
                response = await outcome if inspect.isawaitable(outcome) else outcome
            except Exception:  # a broken hook must not fail open
                security_logger.exception("on_error hook failed; sending the default answer")
            else:
                await response(scope, receive, send)
                return
        await self._answer(scope, receive, send, rejection, logged=True)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, rejection: Rejection, logged: bool = False
    ) -> None:
        if not logged:
            log_rejection(rejection, asgi_log_path(scope))
        response = Response(rejection.body(), rejection.status, headers=dict(rejection.headers()))
        await response(scope, receive, send)
