"""Running the check from async code (private).

- :func:`verify_async`: verify from a coroutine, offloading the CPU-bound P-521
  check (and a synchronous key provider's I/O) through a ``run_sync`` callable.
- :class:`Offloader`: that callable for ASGI servers: a pool of long-lived worker
  threads fed through a queue (anyio's worker threads under trio).
- :class:`ASGIVerification`: the wiring the Starlette middleware and FastAPI's
  stand-alone dependency share (verifier, body limit, URL rebuilder, offloader),
  and :func:`store_result`, which puts the verified webhook where both look for it.

No web framework is imported here; anyio is imported only when a check is
offloaded outside asyncio or with ``max_threads=None`` (the Starlette and FastAPI
extras bring it, the Django adapter offloads through asgiref instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from upvest_verify import KeySet, VerifiedWebhook, Verifier
from upvest_verify.adapters._asgi import ASGIHead, read_head
from upvest_verify.adapters._body import BodyReader, resolve_limit
from upvest_verify.adapters._url import URLRebuilder
from upvest_verify.errors import ConfigurationError
from upvest_verify.types import AsyncKeyProvider

__all__ = [
    "DEFAULT_MAX_THREADS",
    "DELIVERY_SCOPE_KEY",
    "DELIVERY_STATE_KEY",
    "SCOPE_KEY",
    "STATE_KEY",
    "ASGIVerification",
    "Offloader",
    "RunSync",
    "store_delivery",
    "store_result",
    "verify_async",
]

RunSync = Callable[[Callable[[], VerifiedWebhook]], Awaitable[VerifiedWebhook]]
"""Runs a callable in a worker thread and returns its result."""

SCOPE_KEY: Final = "upvest_verify"
"""``scope[SCOPE_KEY]`` holds the :class:`~upvest_verify.VerifiedWebhook` of a verified request."""

STATE_KEY: Final = "upvest_webhook"
"""The same result under ``scope["state"]``: ``request.state.upvest_webhook``."""

DELIVERY_SCOPE_KEY: Final = "upvest_verify.delivery"
"""``scope[DELIVERY_SCOPE_KEY]`` holds the :class:`~upvest_verify.adapters.starlette.Delivery`
of a request admitted through an event ledger."""

DELIVERY_STATE_KEY: Final = "upvest_delivery"
"""The same delivery under ``scope["state"]``: ``request.state.upvest_delivery``."""

DEFAULT_MAX_THREADS: Final = os.cpu_count() or 2
"""Worker threads verifying at once: one per core.

The check is CPU-bound: more threads than cores add no throughput, and every
busy thread competes with the event loop for a core and the GIL. On 2 cores under
saturating load (``benchmarks/bench_receivers.py``), one thread instead of two
left the loop more of a core: lag p99 5-10 ms instead of 11-17 ms (medians of two
runs), at 0.81-0.92 x instead of 0.97-1.11 x the webhooks per second of verifying
on the loop."""


async def verify_async(
    verifier: Verifier,
    method: str,
    url: str,
    headers: Any,
    body: bytes,
    run_sync: RunSync | None,
) -> VerifiedWebhook:
    """Verify from async code, offloading through ``run_sync`` when given.

    With a key set or an async key provider this is :meth:`Verifier.averify`. A
    provider with only a synchronous interface may do network I/O, so the whole
    :meth:`Verifier.verify` then runs through ``run_sync`` (or inline if offloading
    is off).

    Args:
        verifier: The verifier.
        method: The request method.
        url: The rebuilt URL.
        headers: Header field lines.
        body: The raw body.
        run_sync: Runs a callable in a worker thread, or ``None`` to stay inline.

    Returns:
        The verified webhook.

    Raises:
        VerificationError: The webhook is not acceptable.
    """
    keys = verifier.keys
    if isinstance(keys, KeySet) or (
        isinstance(keys, AsyncKeyProvider) and inspect.iscoroutinefunction(keys.acurrent)
    ):
        return await verifier.averify(method, url, headers, body, run_sync=run_sync)
    if run_sync is None:
        return verifier.verify(method, url, headers, body)
    return await run_sync(lambda: verifier.verify(method, url, headers, body))


class _Pool:
    """Long-lived worker threads fed by one queue; results go back through the loop.

    A check is put on a :class:`queue.SimpleQueue` with an asyncio future; a worker
    runs it and settles the future with ``loop.call_soon_threadsafe``. That is all
    the hand-off costs: 7.5-20 µs of CPU per empty check with 16 callers, against
    52-115 µs through ``anyio.to_thread.run_sync`` under a capacity limiter (which
    also checks for cancellation and wakes an idle thread per call) and 20-45 µs
    through ``loop.run_in_executor``. Threads start on first use, up to the pool's size, and
    live as long as the process; a forked child starts its own.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._reset()

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0

    def put(self, item: _Item) -> None:
        """Queue ``(run, check, future, loop)``; start a thread while fewer than ``size`` run."""
        self._queue.put(item)
        if self._threads < self.size:
            self.start(1)

    def start(self, count: int | None = None) -> None:
        """Start up to ``count`` more threads (all of them for ``None``), never past ``size``."""
        with self._lock:
            wanted = self.size if count is None else min(self.size, self._threads + count)
            while self._threads < wanted:
                self._threads += 1
                threading.Thread(
                    target=self._work,
                    args=(self._queue,),
                    name=f"upvest-verify-{self.size}-{self._threads}",
                    daemon=True,
                ).start()

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Item]) -> None:
        get = jobs.get
        while True:
            run, check, future, loop = get()
            try:
                outcome: tuple[VerifiedWebhook | None, BaseException | None] = (run(check), None)
            except BaseException as error:  # delivered to the awaiting task, like anyio does
                outcome = (None, error)
            # RuntimeError: the loop closed meanwhile, so nobody waits for the result.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)
            # Hold nothing (a body, a result) while waiting for the next check.
            run = check = future = loop = outcome = None  # type: ignore[assignment]


_Item = tuple[
    Callable[[Callable[[], VerifiedWebhook]], VerifiedWebhook],
    Callable[[], VerifiedWebhook],
    "asyncio.Future[VerifiedWebhook]",
    asyncio.AbstractEventLoop,
]


def _settle(
    future: asyncio.Future[VerifiedWebhook],
    result: VerifiedWebhook | None,
    error: BaseException | None,
) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is None:
        future.set_result(result)  # type: ignore[arg-type]  # None only with an error
    elif isinstance(error, StopIteration):  # a future cannot hold it
        future.set_exception(RuntimeError(f"the check raised {error!r}"))
    else:
        future.set_exception(error)


_POOLS: dict[int, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(size: int) -> _Pool:
    """The process's pool of ``size`` threads, shared by every offloader of that size."""
    with _POOLS_LOCK:
        pool = _POOLS.get(size)
        if pool is None:
            pool = _POOLS[size] = _Pool(size)
        return pool


def _after_fork() -> None:  # pragma: no cover - runs in a forked child
    # The threads did not survive the fork; the queue may hold the parent's checks,
    # and a lock may have been held by a thread of the parent.
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    for pool in _POOLS.values():
        pool._reset()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork)


class Offloader:
    """Runs checks in worker threads, off the event loop.

    Under asyncio (uvloop included) the checks go to a pool of ``max_threads``
    long-lived threads through a queue (see :class:`_Pool`), shared by every
    offloader with the same ``max_threads`` in the process. ``max_threads=None``,
    and any event loop other than asyncio's (trio), use ``anyio.to_thread.run_sync``
    with anyio's shared default limiter (40 threads).

    Why a pool of its own: on a 2-core machine under load (uvicorn, ``hey -c 16``,
    10 KiB webhooks) offloading through anyio's hand-off served 0.63-0.85 x the
    webhooks per second of verifying on the loop; through the pool 0.91-1.37 x, with
    the loop's lag p99 within 1-2.5 x that of a server without any verification
    (``benchmarks/bench_receivers.py``; benchmarks/README.md has the figures).

    Args:
        max_threads: Worker threads; ``None`` for anyio's default limiter.

    Raises:
        ConfigurationError: ``max_threads`` is not a positive int or ``None``.
    """

    def __init__(self, max_threads: int | None) -> None:
        if max_threads is not None and (
            isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1
        ):
            raise ConfigurationError(
                f"max_threads must be an int >= 1 or None, got {max_threads!r}"
            )
        self._pool = None if max_threads is None else _pool(max_threads)

    @property
    def max_threads(self) -> int | None:
        """The pool's size, or ``None`` for anyio's default limiter."""
        return None if self._pool is None else self._pool.size

    def start(self) -> None:
        """Start every worker thread now rather than on first use (at start-up)."""
        if self._pool is not None:
            self._pool.start()

    async def __call__(self, check: Callable[[], VerifiedWebhook]) -> VerifiedWebhook:
        """Run ``check`` in a worker thread and return its result (or raise its error).

        The check runs in a copy of the caller's context. Cancelling the caller
        stops the wait, not the check, which has no effect beyond its result.
        """
        # cryptography releases the GIL during the P-521 verify, so worker threads
        # verify in parallel and the event loop keeps serving (threat-model.md §5 K8).
        if self._pool is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio (trio): anyio's threads below
                pass
            else:
                future: asyncio.Future[VerifiedWebhook] = loop.create_future()
                self._pool.put((contextvars.copy_context().run, check, future, loop))
                return await future
        import anyio.to_thread

        return await anyio.to_thread.run_sync(check)


def store_result(scope: MutableMapping[str, Any], webhook: VerifiedWebhook) -> None:
    """Put a verified webhook into an ASGI scope: ``scope["upvest_verify"]`` and the state.

    Args:
        scope: The ASGI HTTP scope.
        webhook: The verified webhook.
    """
    scope[SCOPE_KEY] = webhook
    state = scope.get("state")
    if state is None:
        scope["state"] = state = {}
    state[STATE_KEY] = webhook


def store_delivery(scope: MutableMapping[str, Any], delivery: object) -> None:
    """Put an admitted delivery into an ASGI scope: its own key and the state.

    Args:
        scope: The ASGI HTTP scope.
        delivery: The :class:`~upvest_verify.adapters._delivery.Delivery`.
    """
    scope[DELIVERY_SCOPE_KEY] = delivery
    scope.setdefault("state", {})[DELIVERY_STATE_KEY] = delivery


@dataclass(frozen=True, slots=True)
class ASGIVerification:
    """How an ASGI adapter verifies: one set of options, built and validated once.

    The Starlette middleware and FastAPI's stand-alone dependency take the same
    options; both build them with :meth:`create`. Holds no per-request state.

    Attributes:
        verifier: The verifier.
        max_body_size: The body limit in bytes.
        url: How to rebuild the URL Upvest called.
        run_sync: The offloader, or ``None`` to verify on the event loop.
        direct: The verifier has a key set and no replay store, so nothing in a
            verification awaits I/O: :meth:`Verifier.verify` runs as one call, on
            the loop or in a worker thread, without :meth:`Verifier.averify`'s
            coroutines around it (unless a subclass overrides ``averify``, which
            then runs as before).
    """

    verifier: Verifier
    max_body_size: int
    url: URLRebuilder
    run_sync: RunSync | None
    direct: bool = False

    @classmethod
    def create(
        cls,
        verifier: Verifier,
        *,
        max_body_size: int | None = None,
        offload: bool = True,
        max_threads: int | None = DEFAULT_MAX_THREADS,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
    ) -> ASGIVerification:
        """Validate the options (see the Starlette middleware for their meaning).

        Returns:
            The verification setup.

        Raises:
            ConfigurationError: An option is invalid.
        """
        limit = resolve_limit(verifier, max_body_size)
        if not isinstance(offload, bool):
            raise ConfigurationError(f"offload must be True or False, got {offload!r}")
        run_sync = Offloader(max_threads) if offload else None
        url = URLRebuilder.create(
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            proxy_headers=proxy_headers,
            path_prefix=path_prefix,
        )
        direct = (
            isinstance(verifier.keys, KeySet)
            and verifier.replay_store is None
            and type(verifier).averify is Verifier.averify
        )
        return cls(verifier, limit, url, run_sync, direct)

    def body_reader(self, scope: Mapping[str, Any], head: ASGIHead | None = None) -> BodyReader:
        """Start reading the body of an ASGI request under the limit.

        Only a single ``Content-Length`` line counts as declared; with none or
        several, the limit is enforced while reading.

        Args:
            scope: The ASGI HTTP scope.
            head: Its header lines, if already read (:func:`read_head`).

        Returns:
            A fresh reader for this request.

        Raises:
            VerificationError: ``body_too_large`` for a declared length above the limit.
        """
        declared = (read_head(scope) if head is None else head).declared
        return BodyReader(self.max_body_size, declared)

    async def verify(
        self, scope: Mapping[str, Any], body: bytes, head: ASGIHead | None = None
    ) -> VerifiedWebhook:
        """Verify an ASGI request whose body has been read.

        Args:
            scope: The ASGI HTTP scope.
            body: The complete body.
            head: Its header lines, if already read (:func:`read_head`).

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable.
        """
        if head is None:
            head = read_head(scope)
        url = self.url.from_asgi(scope, head)
        # The scope's method is the request line's, as received (RFC 9421 §2.2.1).
        method = scope["method"]
        if self.direct:
            verify = self.verifier.verify
            if self.run_sync is None:
                return verify(method, url, head.fields, body)
            return await self.run_sync(partial(verify, method, url, head.fields, body))
        return await verify_async(self.verifier, method, url, head.fields, body, self.run_sync)
