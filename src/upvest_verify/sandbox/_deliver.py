"""Webhook delivery: batching, signing, retries (upvest-protocol.md §3-4).

Pure parts first (:func:`backoff`, :func:`pack`, :func:`sign_delivery`,
:func:`tamper`), then :class:`Dispatcher`, the asyncio driver that runs in the
emulator's event loop and sends with httpx.

Per subscription, events wait in a queue. A package goes out ``delay`` after the
first waiting event arrived, or at once when the waiting events no longer fit into
``max_package_size``. Events are sorted by ``created_at`` and packed greedily into
``{"payload": [...]}`` bodies of at most ``max_package_size`` bytes; a single larger
event still goes out, alone. A non-2xx answer (or none) is retried, the whole
package, after 1, 2, 3, 5, 8 ... 600 s (Handler: "1,2,3,5,8...600 sec", no attempt
limit), and nothing else goes to that subscription until a retry succeeds. Every
delay and back-off is multiplied by the time scale.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import email.utils
import functools
import json
import logging
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from upvest_verify.signing import SignedRequest, SigningKey, digest_fields, sign_request

from ._rules import delay_seconds
from ._state import TEST_EVENT_TYPE, Attempt, Delivery, State, TamperKind, Webhook, event_sort_key

__all__ = [
    "DEFAULT_DIALECT",
    "USER_AGENT",
    "DeliveryOptions",
    "Dispatcher",
    "WebhookDialect",
    "backoff",
    "body_of",
    "pack",
    "pending_too_large",
    "sign_delivery",
    "tamper",
]

logger = logging.getLogger("upvest_verify.sandbox")

_MAX_BACKOFF = 600.0
_RESPONSE_BYTES = 4096
USER_AGENT = "upvest-verify-sandbox"


@dataclass(frozen=True, slots=True)
class WebhookDialect:
    """How the emulator signs webhooks: every variant the verifier accepts.

    Written as text too: ``"upvest-v6"``, ``"rfc9421"`` or
    ``"<layout>/<encoding>/<digest>"`` such as ``"rfc9421/raw/content-digest"``, the
    form ``str(VerifiedWebhook.dialect)`` takes.

    Attributes:
        layout: ``"upvest-v6"`` (unquoted base lines) or ``"rfc9421"`` (quoted).
        encoding: ``"der"`` or ``"raw"`` r||s signature bytes.
        digest: ``"digest"`` (``SHA-256=``), ``"content-digest"`` (``sha-512=:...:``) or
            ``"both"``; ``None`` takes the layout's own.
        version_header: Send an uncovered ``upvest-signature-version`` (6 or 15).
        ttl: Seconds between ``created`` and ``expires``; ``None`` omits ``expires``.
        label: The signature label.
    """

    layout: Literal["upvest-v6", "rfc9421"] = "upvest-v6"
    encoding: Literal["der", "raw"] = "der"
    digest: Literal["digest", "content-digest", "both"] | None = None
    version_header: bool = False
    ttl: int | None = 60
    label: str = "sig1"

    @property
    def digest_field(self) -> Literal["digest", "content-digest", "both"]:
        """The digest field(s) written."""
        if self.digest is not None:
            return self.digest
        return "digest" if self.layout == "upvest-v6" else "content-digest"

    def __str__(self) -> str:
        return f"{self.layout}/{self.encoding}/{self.digest_field}"

    @classmethod
    def parse(cls, value: str | WebhookDialect) -> WebhookDialect:
        """Read ``"upvest-v6"``, ``"rfc9421"`` or ``"layout/encoding/digest"``.

        Raises:
            ValueError: Not one of those forms.
        """
        if isinstance(value, WebhookDialect):
            return value
        parts: list[str | None] = [*str(value).split("/"), None, None]
        layout, encoding, digest = parts[:3] if len(parts) <= 5 else ["", None, None]
        if layout not in ("upvest-v6", "rfc9421"):
            raise ValueError(f"dialect layout must be 'upvest-v6' or 'rfc9421': {value!r}")
        if encoding not in (None, "der", "raw"):
            raise ValueError(f"dialect encoding must be 'der' or 'raw': {value!r}")
        if digest not in (None, "digest", "content-digest", "both"):
            raise ValueError(f"dialect digest must be digest, content-digest or both: {value!r}")
        return cls(layout, encoding or "der", digest)  # type: ignore[arg-type]


DEFAULT_DIALECT = WebhookDialect()
"""Upvest's expected webhook shape (upvest-protocol.md §2.3): v6 base, DER, ``Digest``."""


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (1, 2, 3, 5, 8, 13 ... capped at 600)."""
    a, b = 1, 2
    for _ in range(max(retry, 1) - 1):
        a, b = b, a + b
        if a >= _MAX_BACKOFF:
            return _MAX_BACKOFF
    return float(min(a, _MAX_BACKOFF))


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def body_of(events: Sequence[dict[str, Any]]) -> bytes:
    """The ``{"payload": [...]}`` body of a package (compact JSON, UTF-8)."""
    return _dump({"payload": list(events)})


def pack(events: Sequence[dict[str, Any]], max_size: int) -> list[list[dict[str, Any]]]:
    """Sort events by ``created_at`` and split them into packages of at most ``max_size``
    body bytes; an event too large on its own forms a package by itself."""
    ordered = sorted(events, key=lambda e: event_sort_key(str(e["created_at"])))
    empty = len(body_of([]))
    packages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = empty
    for event in ordered:
        extra = len(_dump(event)) + (1 if current else 0)  # the comma between events
        if current and size + extra > max_size:
            packages.append(current)
            current, size, extra = [], empty, extra - 1
        current.append(event)
        size += extra
    if current:
        packages.append(current)
    return packages


def pending_too_large(events: Sequence[dict[str, Any]], max_size: int) -> bool:
    """Whether waiting events already fill more than one package."""
    total = len(body_of([])) + sum(len(_dump(e)) + 1 for e in events) - (1 if events else 0)
    return len(events) > 1 and total > max_size


def sign_delivery(
    url: str,
    body: bytes,
    *,
    key: SigningKey,
    dialect: WebhookDialect,
    client_id: str,
    created: int,
) -> SignedRequest:
    """Sign one webhook request as the emulator sends it.

    Header fields: ``content-type``, ``content-length``, ``date``, the digest field(s)
    and ``upvest-client-id`` (uncovered), plus ``user-agent``. Covered, as this
    library's :func:`~upvest_verify.testing.sign_webhook`: ``@method``, ``@path``,
    ``@query`` when there is one, ``content-type``, ``content-length``, the digest(s)
    and ``date`` (upvest-protocol.md §2.3).
    """
    digest = dialect.digest_field
    digests = ["digest", "content-digest"] if digest == "both" else [digest]
    has_query = "?" in url and not url.endswith("?")
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("date", email.utils.formatdate(created, usegmt=True)),
        ("upvest-client-id", client_id),
        ("user-agent", USER_AGENT),
    ]
    components = ["@method", "@path", *(["@query"] if has_query else [])]
    components += ["content-type", "content-length", *digests, "date"]
    return sign_request(
        "POST",
        url,
        headers,
        body,
        key=key,
        components=components,
        layout=dialect.layout,
        encoding=dialect.encoding,
        digest=digest,
        created=created,
        ttl=dialect.ttl,
        label=dialect.label,
        version_header=dialect.version_header,
    )


def _changed_body(body: bytes, events: Sequence[dict[str, Any]]) -> bytes:
    # Same length, still JSON: the last character of the first event's id changes.
    needle = _dump(str(events[0]["id"]))
    at = body.find(needle)
    if at < 0 or len(needle) < 3:
        return body[:-1] + b" "
    last = at + len(needle) - 2
    swap = b"0" if body[last : last + 1] != b"0" else b"1"
    return body[:last] + swap + body[last + 1 :]


def tamper(
    signed: SignedRequest,
    kind: TamperKind,
    events: Sequence[dict[str, Any]],
    resign: Callable[..., SignedRequest],
) -> SignedRequest:
    """Spoil a signed delivery the way ``kind`` says.

    ``body``: one body byte changed after signing (the receiver sees
    ``digest_mismatch``); ``digest``: body and digest fields changed together, the
    signature kept (``bad_signature``); ``signature``: one signature bit flipped
    (``bad_signature``); ``key``: signed by a key absent from the key set
    (``unknown_key``); ``expired``: signed an hour ago (``expired``).
    ``resign(**changes)`` signs again with changes.
    """
    if kind == "body":
        return signed.replace_body(_changed_body(signed.body, events))
    if kind == "digest":
        body = _changed_body(signed.body, events)
        for name, value in digest_fields(body, "both"):
            if signed.header(name) is not None:
                signed = _replace(signed, name, value)
        return signed.replace_body(body)
    if kind == "signature":
        value = signed.header("signature") or ""
        label, _, rest = value.partition("=:")
        raw = bytearray(base64.b64decode(rest.rstrip(":")))
        raw[len(raw) // 2] ^= 0x01
        flipped = base64.b64encode(bytes(raw)).decode("ascii")
        return _replace(signed, "signature", f"{label}=:{flipped}:")
    if kind == "key":
        return resign(key=SigningKey.generate("P-521"))
    return resign(created_offset=-3600)


def _replace(signed: SignedRequest, name: str, value: str) -> SignedRequest:
    # Keep the field where it was, so nothing but its value changes.
    headers = [(k, value if k == name else v) for k, v in signed.headers]
    return dataclasses.replace(signed, headers=headers)


@dataclass
class DeliveryOptions:
    """The delivery settings of one emulator (mutable: the emulator may change them)."""

    dialect: WebhookDialect = DEFAULT_DIALECT
    time_scale: float = 1.0
    resign_retries: bool = True
    timeout: float = 10.0
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings of deliveries: system CAs plus ``ca_file``, TLS 1.2 or later."""
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # Registration: TLS >= 1.2
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


class Dispatcher:
    """Sends queued events: one supervisor task, one worker task per busy subscription.

    Args:
        state: The emulator state.
        options: Delivery settings.
        monotonic: The monotonic clock.
        wall: The wall clock (Unix seconds), for ``created`` and attempt times.
    """

    def __init__(
        self,
        state: State,
        options: DeliveryOptions,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._state = state
        self._options = options
        self._monotonic = monotonic
        self._wall = wall
        self._workers: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def listener() -> None:
            loop.call_soon_threadsafe(wake.set)

        self._state.add_listener(listener)
        context = self._options.ssl_context()
        try:
            async with httpx.AsyncClient(
                verify=context,
                trust_env=False,  # never through a proxy: deliveries stay where the URL says
                follow_redirects=False,  # a 3xx is a failure (Registration: no redirects)
                timeout=self._options.timeout,
            ) as client:
                while True:
                    wake.clear()
                    wait = self._start_due(client)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=wait)
        finally:
            self._state.remove_listener(listener)
            for task in list(self._workers):
                task.cancel()
            if self._workers:
                await asyncio.gather(*self._workers, return_exceptions=True)

    def _start_due(self, client: httpx.AsyncClient) -> float | None:
        """Start a worker for every subscription whose package is due; seconds to the next."""
        now = self._monotonic()
        scale = self._options.time_scale
        nearest: float | None = None
        with self._state.lock:
            for hook, queue in self._state.queues():
                if queue.busy or not queue.pending or queue.first_at is None:
                    continue
                due = queue.first_at + delay_seconds(hook.config["delay"]) * scale
                size = int(hook.config["max_package_size"])
                if due <= now or pending_too_large(queue.pending, size):
                    events = self._state.take(hook.id)
                    task = asyncio.create_task(self._work(client, hook, events))
                    self._workers.add(task)
                    task.add_done_callback(self._workers.discard)
                else:
                    nearest = due - now if nearest is None else min(nearest, due - now)
        return nearest

    async def _work(
        self, client: httpx.AsyncClient, hook: Webhook, events: list[dict[str, Any]]
    ) -> None:
        try:
            for package in pack(events, int(hook.config["max_package_size"])):
                delivery = Delivery(
                    id=str(uuid.uuid4()),
                    webhook_id=hook.id,
                    url=hook.url,
                    client_id=hook.client_id,
                    events=tuple(package),
                    body=body_of(package),
                    test=all(e["type"] == TEST_EVENT_TYPE for e in package),
                )
                self._state.new_delivery(delivery)
                try:
                    delivered = await self._deliver(client, delivery)
                except Exception:  # a bug must not stop the engine: log it, drop the package
                    logger.exception("delivery %s to %s failed", delivery.id, delivery.url)
                    self._state.abandon(delivery.id)
                    delivered = False
                if not delivered:
                    break
        finally:
            self._state.release(hook.id)

    def _sign(self, delivery: Delivery, **changes: Any) -> SignedRequest:
        created = int(self._wall()) + int(changes.get("created_offset", 0))
        return sign_delivery(
            delivery.url,
            changes.get("body", delivery.body),
            key=changes.get("key") or self._state.signing_key(),
            dialect=self._options.dialect,
            client_id=delivery.client_id,
            created=created,
        )

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> bool:
        """Attempt until a 2xx; ``False`` when the subscription went away or was disabled."""
        clean: SignedRequest | None = None
        number = 0
        try:
            while True:
                number += 1
                hook = self._state.webhook(delivery.webhook_id)
                if hook is None or not (hook.enabled or delivery.test):
                    self._state.abandon(delivery.id)
                    return False
                if clean is None or self._options.resign_retries:
                    clean = self._sign(delivery)
                kind = self._state.pop_tamper(delivery.webhook_id)
                sent = clean
                if kind is not None:
                    resign = functools.partial(self._sign, delivery)
                    sent = tamper(clean, kind, delivery.events, resign)
                attempt = await self._send(client, delivery, sent, number, kind)
                if self._state.add_attempt(delivery.id, attempt).delivered:
                    return True
                await asyncio.sleep(backoff(number) * self._options.time_scale)
        except asyncio.CancelledError:
            self._state.abandon(delivery.id)
            raise

    async def _send(
        self,
        client: httpx.AsyncClient,
        delivery: Delivery,
        sent: SignedRequest,
        number: int,
        kind: TamperKind | None,
    ) -> Attempt:
        started = self._wall()
        status: int | None = None
        error: str | None = None
        answer = b""
        try:
            async with client.stream(
                "POST", delivery.url, content=sent.body, headers=sent.headers
            ) as response:
                status = response.status_code
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= _RESPONSE_BYTES:
                        break
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        key_id = _keyid(sent)
        return Attempt(
            number=number,
            started_at=started,
            status_code=status,
            error=error,
            headers=tuple(sent.headers),
            body=sent.body,
            response_body=answer[:_RESPONSE_BYTES],
            key_id=key_id,
            tampered=kind,
        )


def _keyid(signed: SignedRequest) -> str:
    params = signed.header("signature-input") or ""
    _, _, rest = params.partition(';keyid="')
    return rest.partition('"')[0]
