"""``upvest-verify demo``: the whole webhook flow on this machine, with no account.

It starts the local emulator of Upvest's API (:class:`upvest_verify.sandbox.Sandbox`)
and a sample receiver: a Starlette app behind
:class:`~upvest_verify.adapters.starlette.UpvestWebhookMiddleware`, on uvicorn, whose
keys come from a :class:`~upvest_verify.jwks.JWKSCache` fetching ``/auth/verify_keys``
through the management client, and which processes each event once through a
:class:`~upvest_verify.ledger.MemoryLedger`. Through that client it registers and enables a
webhook, asks for a test event, then has the emulator deliver batches in each
dialect, spoil three deliveries (each retry is sound) and rotate its signing key.
Every verdict is the receiver's own HTTP answer, as the emulator recorded it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import click
from rich import box
from rich.console import Console
from rich.table import Table

from upvest_verify import __version__

from ._common import CommandError, console, quiet_library_logs, require, safe, serve_asgi

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from upvest_verify import Verifier
    from upvest_verify.ledger import BaseLedger
    from upvest_verify.sandbox import Delivery, Sandbox

__all__ = ["DemoResult", "demo_command", "run_demo"]


def _is_test(delivery: Delivery) -> bool:
    """Matches the delivery of a test event."""
    return delivery.test


def _carrying(ids: set[str]) -> Callable[[Delivery], bool]:
    """Matches the delivery that carries every event in ``ids``."""
    return lambda delivery: ids <= set(delivery.event_ids)


RECEIVER_PATH = "/webhooks/upvest"
DIALECTS = ("upvest-v6", "rfc9421", "rfc9421/raw/content-digest")
TAMPERS: tuple[tuple[Literal["body", "signature", "expired"], str, str], ...] = (
    ("body", "body changed in transit", "digest_mismatch"),
    ("signature", "signature bit flipped", "bad_signature"),
    ("expired", "signed an hour ago", "expired"),
)
BATCH = ("ORDER.NEW", "ORDER.FILLED", "POSITION.UPDATED")
REFRESH_COOLDOWN = 0.1  # seconds between key refetches caused by unknown key ids
WAIT = 10.0  # seconds any one delivery may take


@dataclass(slots=True)
class _Row:
    delivery: str
    events: int
    attempt: int
    status: str
    verdict: str
    expected: str
    ok: bool


@dataclass(slots=True)
class DemoResult:
    """What the demo saw: one row per delivery attempt, and the elapsed time."""

    rows: list[_Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every verdict was the expected one."""
        return bool(self.rows) and all(row.ok for row in self.rows)


def _verdict(status: int | None, body: bytes) -> str:
    """The receiver's answer as one word: the dialect that verified, or the reason code."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    if status is not None and 200 <= status < 300:
        return str(doc.get("dialect", "?"))
    return str(doc.get("detail", "no answer" if status is None else "?"))


def _receiver(verifier: Verifier, ledger: BaseLedger) -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from upvest_verify import Event
    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware, get_delivery

    async def receive(request: Request) -> JSONResponse:
        delivery = get_delivery(request)  # the events of this delivery not processed before
        assert delivery is not None
        handled: list[str] = []

        async def handle(event: Event) -> None:
            handled.append(event.type)  # a real receiver does its work here, once per event

        await delivery.aprocess(handle)
        webhook = delivery.webhook
        return JSONResponse(
            {"dialect": str(webhook.dialect), "key_id": webhook.key_id, "events": handled}
        )

    middleware = Middleware(
        UpvestWebhookMiddleware, verifier=verifier, paths=[RECEIVER_PATH], ledger=ledger
    )
    return Starlette(
        routes=[Route(RECEIVER_PATH, receive, methods=["POST"])], middleware=[middleware]
    )


class _Run:
    """One demo run: the emulator, the client, and the rows seen so far."""

    def __init__(self, sb: Sandbox, out: Console, result: DemoResult) -> None:
        self.sb = sb
        self.out = out
        self.result = result

    def wait(self, webhook_id: str, match: Callable[[Delivery], bool], what: str) -> Delivery:
        def done(found: list[Delivery]) -> Delivery | None:
            for delivery in found:
                if (
                    delivery.webhook_id == webhook_id
                    and delivery.state != "pending"
                    and match(delivery)
                ):
                    return delivery
            return None

        with self.out.status(f"waiting for {what}"):
            try:
                found = self.sb.wait_for(done, WAIT)
            except TimeoutError:
                self.result.rows.append(_Row(what, 0, 0, "-", "not delivered", "a delivery", False))
                raise
        assert found is not None  # wait_for returns a truthy value
        return found

    def record(self, delivery: Delivery, what: str, expected: list[str]) -> None:
        """Add one row per attempt (and per expected attempt that never came)."""
        attempts = list(delivery.attempts)
        for i in range(max(len(attempts), len(expected))):
            want = expected[i] if i < len(expected) else "no such attempt"
            attempt = attempts[i] if i < len(attempts) else None
            status = attempt.status_code if attempt is not None else None
            verdict = _verdict(status, attempt.response_body) if attempt else "no attempt"
            ok = verdict == want
            self.result.rows.append(
                _Row(what, len(delivery.events), i + 1, str(status or "-"), verdict, want, ok)
            )
            accepted = status is not None and 200 <= status < 300
            mark = "[green]ok[/]" if ok else f"[red]FAIL, expected {safe(want)}[/]"
            word = "[green]verified[/]" if accepted else "[yellow]rejected[/]"
            self.out.print(
                f"  {safe(what)}, try {i + 1}: HTTP {status or '-'} {word} {safe(verdict)} {mark}"
            )


def _table(result: DemoResult) -> Table:
    table = Table(
        title=f"upvest-verify {__version__}: summary",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    for column in ("delivery", "ev.", "try", "HTTP", "verdict", "ok?"):
        table.add_column(column, no_wrap=True)
    for row in result.rows:
        table.add_row(
            safe(row.delivery),
            str(row.events or "-"),
            str(row.attempt or "-"),
            row.status,
            safe(row.verdict),
            "[green]ok[/]" if row.ok else "[red]FAIL[/]",
        )
    return table


def run_demo(out: Console, *, time_scale: float = 0.01) -> DemoResult:
    """Run the demo, printing as it goes; return what it saw.

    Raises:
        CommandError: An extra is missing.
    """
    require("starlette", "uvicorn", "httpx", "anyio", extra="all")
    from upvest_verify import Verifier
    from upvest_verify.client import UpvestClient
    from upvest_verify.jwks import JWKSCache
    from upvest_verify.ledger import MemoryLedger
    from upvest_verify.sandbox import Sandbox, WebhookDialect

    started = time.monotonic()
    result = DemoResult()
    out.print(f"[bold]upvest-verify {__version__} demo[/]: everything runs on 127.0.0.1")
    with out.status("starting the emulator of Upvest's API"):
        sb = Sandbox(port=0, time_scale=time_scale, allow_http=True).start()
    try:
        out.print(f"- emulator of Upvest's API at {sb.base_url} (time x{time_scale})")
        client = UpvestClient(
            base_url=sb.base_url,
            client_id=sb.tenant.client_id,
            client_secret=sb.tenant.client_secret,
            signing_key=sb.tenant.signing_key,
        )
        cache = JWKSCache(client.key_source(), ttl=300, refresh_cooldown=REFRESH_COOLDOWN)
        receiver = _receiver(Verifier(cache), MemoryLedger())
        with client, serve_asgi(receiver) as port:
            url = f"http://localhost:{port}{RECEIVER_PATH}"
            out.print(
                f"- receiver at {url}: Starlette + UpvestWebhookMiddleware on uvicorn, "
                "each event processed once (event ledger)"
            )
            run = _Run(sb, out, result)
            with out.status("registering the webhook through the management client"):
                hook = client.webhooks.create(
                    title="upvest-verify demo",
                    url=url,
                    types=["ALL"],
                    delay="1s",
                    allow_localhost=True,
                )
                was = "enabled" if hook.enabled else "disabled"
                hook = client.webhooks.enable(hook.id)
            out.print(
                f"- webhook {hook.id[:8]} created ({was}), then enabled: "
                "signed v15 calls with an OAuth2 token"
            )
            default = str(WebhookDialect.parse("upvest-v6"))

            client.webhooks.test(hook.id)
            found = run.wait(hook.id, _is_test, "test event")
            run.record(found, "test event", [default])

            for dialect in DIALECTS:
                sb.dialect = dialect
                out.print(f"- emulator now signs as {dialect}")
                ids = {e["id"] for e in sb.emit([{"type": t} for t in BATCH])}
                found = run.wait(hook.id, _carrying(ids), "batch")
                run.record(found, "batch", [str(WebhookDialect.parse(dialect))])
            sb.dialect = "upvest-v6"

            for kind, how, reason in TAMPERS:
                sb.tamper_next(kind, webhook_id=hook.id)
                ids = {e["id"] for e in sb.emit("ORDER.CANCELLED")}
                found = run.wait(hook.id, _carrying(ids), how)
                run.record(found, how, [reason, default])

            time.sleep(REFRESH_COOLDOWN)  # one refetch per cooldown: let it pass
            before = cache.stats.fetches
            old = sb.signing_key.key_id
            new = sb.rotate_keys(overlap=0)
            out.print(f"- emulator rotated its webhook key {old[:8]} -> {new.key_id[:8]}")
            ids = {e["id"] for e in sb.emit("USER.UPDATED")}
            found = run.wait(hook.id, _carrying(ids), "rotated key")
            run.record(found, "rotated key", [default])
            fetched = cache.stats.fetches - before
            picked = new.key_id in set(cache.current())
            rotated_ok = picked and fetched == 1
            result.rows.append(
                _Row(
                    "key cache",
                    0,
                    0,
                    "-",
                    f"{fetched} refetch, {'knows' if picked else 'lacks'} new key",
                    "1 refetch, knows new key",
                    rotated_ok,
                )
            )
            mark = "[green]ok[/]" if rotated_ok else "[red]FAIL[/]"
            out.print(
                f"  key cache refetched /auth/verify_keys {fetched} time(s) through the client "
                f"and now knows {new.key_id[:8]}  {mark}"
            )
            client.webhooks.delete(hook.id)
            out.print(f"- webhook {hook.id[:8]} deleted")
    except TimeoutError:
        out.print("[red]a delivery did not arrive in time[/]")
    finally:
        sb.stop()
    result.seconds = time.monotonic() - started
    out.print(_table(result))
    return result


@click.command("demo")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0001, max=1.0),
    default=0.01,
    show_default=True,
    help="Factor on the emulator's delays and retry back-off.",
)
def demo_command(time_scale: float) -> None:
    """Run the emulator, a receiver and the management client on 127.0.0.1.

    Registers a webhook, delivers a test event and batches in each dialect,
    spoils three deliveries (rejected with their reason, then retried), rotates
    the signing key, and prints every verdict. Exit status 1 if any verdict is
    not the expected one.
    """
    out = console()
    try:
        with quiet_library_logs():
            result = run_demo(out, time_scale=time_scale)
    except CommandError:
        raise
    except Exception as e:  # the demo reports, it never shows a traceback
        raise CommandError(f"the demo failed: {type(e).__name__}: {e}") from e
    attempts = sum(1 for row in result.rows if row.attempt)
    if not result.ok:
        out.print(f"[red]some verdicts were not the expected ones[/] ({result.seconds:.1f} s)")
        raise SystemExit(1)
    out.print(
        f"[green]all {attempts} verdicts as expected[/] in {result.seconds:.1f} s: "
        "valid deliveries verified, spoiled ones rejected, the rotated key picked up"
    )
