"""The in-process contenders of ``bench_receivers.py``: ASGI apps for one signed webhook.

``floor`` (body, SHA-512, one P-521 verify of the precomputed base), ``hand-written``
(the real headers split by hand, nothing validated), ``verify`` (``Verifier.verify`` on
the scope's byte lines) and ``middleware`` (``UpvestWebhookMiddleware(offload=False)``),
with the scope, the message and a batch timer. ``bench_instructions.py`` counts them
too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

SIZE = 10 * 1024
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
END = {"type": "http.response.body", "body": b"ok"}
REFUSED = {**START, "status": 401}


def hand_written(
    keys: dict[str, Callable[[bytes, bytes, Any], None]], algorithm: Any, clock: Callable[[], float]
) -> App:
    """A receiver written by hand for this one webhook shape, checking nothing else.

    It reads the scope's byte header lines into a dict, takes the component list and
    ``keyid``, ``created`` and ``expires`` out of ``Signature-Input`` by splitting,
    rebuilds the signature base, compares ``Content-Digest`` with the body's SHA-512,
    decodes the signature and verifies it: the work any receiver of the real headers
    does, without the parsing rules, limits and refusals of the threat model. It shows
    how much of the gap to the floor is left for those.

    Args:
        keys: ``keyid`` to the key's ``verify(signature, data, algorithm)``.
        algorithm: ``ec.ECDSA(hashes.SHA512())``.
        clock: The current time in seconds.

    Returns:
        The ASGI app (200, or 401 for a digest or time mismatch).
    """
    sha512, b64encode, b64decode = hashlib.sha512, base64.b64encode, base64.b64decode

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        fields = dict(scope["headers"])
        params = str(fields[b"signature-input"], "latin-1").partition("=")[2]
        inner, _, rest = params[1:].partition(")")
        named = dict(item.split("=", 1) for item in rest.split(";") if item)
        now = clock()
        digest = b"sha-512=:" + b64encode(sha512(body).digest()) + b":"
        if not (
            int(named["created"]) - 60 <= now <= int(named["expires"])
            and fields[b"content-digest"] == digest
        ):
            await send(REFUSED)
            await send(END)
            return
        lines = []
        for quoted in inner.split():
            name = quoted[1:-1]
            if name == "@method":
                value = scope["method"]
            elif name == "@path":
                value = str(scope["raw_path"], "latin-1")
            else:
                value = str(fields[name.encode()], "latin-1")
            lines.append(f"{quoted}: {value}\n")
        base = ("".join(lines) + '"@signature-params": ' + params).encode()
        signature = b64decode(fields[b"signature"].split(b":")[1])
        keys[named["keyid"][1:-1]](signature, base, algorithm)  # InvalidSignature: a bug here
        await send(START)
        await send(END)

    return app


class Receivers:
    """The in-process contenders for one signed webhook, and how to call them."""

    def __init__(self) -> None:
        from _cases import URL, build_case
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from upvest_verify import Verifier
        from upvest_verify.adapters.starlette import UpvestWebhookMiddleware
        from upvest_verify.testing import generate_key

        key = generate_key()
        case = build_case(SIZE, key)
        self.body = case.body
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": "/webhooks/upvest",
            "raw_path": b"/webhooks/upvest",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in case.rfc_headers],
            "server": ("hooks.example.com", 443),
            "client": ("127.0.0.1", 50000),
        }
        self.message = {"type": "http.request", "body": self.body, "more_body": False}
        public = key.private_key.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        ecdsa = public.verify
        algorithm = ec.ECDSA(hashes.SHA512())
        sha512 = hashlib.sha512
        base, der = case.rfc_base, case.rfc_der
        self.answers: list[int] = []

        async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = (await receive())["body"]
            sha512(body).digest()
            ecdsa(der, base, algorithm)
            await send(START)
            await send(END)

        async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await receive()
            await send(START)
            await send(END)

        verifier = Verifier(case.keys)

        async def verify(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = (await receive())["body"]
            verifier.verify("POST", URL, scope["headers"], body)
            await send(START)
            await send(END)

        middleware = UpvestWebhookMiddleware(inner, verifier=Verifier(case.keys), offload=False)
        self.hand_written_keys = {key.key_id: ecdsa}
        self.apps: dict[str, App] = {
            "floor": floor,
            "hand-written": hand_written(self.hand_written_keys, algorithm, time.time),
            "middleware": middleware,
            "verify": verify,
        }
        self.middleware = middleware
        self.verifier = verifier
        self.url = URL

    async def receive(self) -> dict[str, Any]:
        return self.message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.answers.append(message["status"])

    async def batch(self, app: App, n: int) -> float:
        """Per-call nanoseconds of ``n`` requests (a fresh scope each), after one untimed."""
        scope, receive, send = self.scope, self.receive, self.send
        await app(dict(scope), receive, send)
        clock = time.perf_counter_ns
        start = clock()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (clock() - start) / n

    async def check(self) -> list[str]:
        """Every contender answers 200; the middleware and the hand-written receiver refuse a
        tampered body (401)."""
        problems = []
        for name, app in self.apps.items():
            self.answers.clear()
            await app(dict(self.scope), self.receive, self.send)
            if self.answers != [200]:
                problems.append(f"{name} answered {self.answers}")
        tampered = {**self.message, "body": self.body[:-2] + b"y}"}

        async def receive_tampered() -> dict[str, Any]:
            return tampered

        self.answers.clear()
        security = logging.getLogger("upvest_verify.security")
        level = security.level
        security.setLevel(logging.CRITICAL)  # the expected refusal need not be printed
        try:
            await self.middleware(dict(self.scope), receive_tampered, self.send)
        finally:
            security.setLevel(level)
        if self.answers != [401]:
            problems.append(f"the middleware answered a tampered body with {self.answers}")
        self.answers.clear()
        await self.apps["hand-written"](dict(self.scope), receive_tampered, self.send)
        if self.answers != [401]:
            problems.append(
                f"the hand-written receiver answered a tampered body with {self.answers}"
            )
        return problems
