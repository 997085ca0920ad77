"""``upvest-verify sandbox`` runs the emulator; ``upvest-verify trigger`` feeds it events.

``sandbox`` serves the emulated API in the foreground, shows its deliveries in a live
table, writes the tenant's credentials to ``--credentials-out`` once the server
answers (mode 0600; removed again on exit, when they stop working) and stops on
Ctrl-C. ``trigger`` posts an event to a running emulator's ``/_sandbox/events``.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.live import Live
from rich.table import Table

from ._common import CommandError, UsageMistake, console, require, safe
from ._credentials import credentials_json, read_credentials_file, write_credentials_file

if TYPE_CHECKING:
    from upvest_verify.sandbox import Delivery, Sandbox

__all__ = ["apply_settings", "deliveries_table", "sandbox_command", "trigger_command"]

_ROWS = 15  # deliveries shown in the live table


def _answers(base_url: str, timeout: float = 10.0) -> bool:
    """Whether the emulator answers its unsigned key endpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(  # noqa: S310 - the emulator's own http URL
                base_url + "/_sandbox/verify_keys", timeout=2
            ) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def deliveries_table(sb: Sandbox) -> Table:
    """The latest deliveries: events, attempts with their status codes, state."""
    found: list[Delivery] = sb.deliveries
    table = Table(
        title=f"upvest-verify sandbox at {sb.base_url}",
        caption=(
            f"{len(found)} deliveries, {len(sb.webhooks())} webhooks, key "
            f"{sb.signing_key.key_id[:8]}, dialect {sb.dialect}; Ctrl-C stops"
        ),
    )
    for column in ("time", "webhook", "events", "attempts (HTTP)", "state", "url"):
        table.add_column(column, overflow="fold")
    for delivery in found[-_ROWS:]:
        first = delivery.attempts[0].started_at if delivery.attempts else None
        stamp = _dt.datetime.fromtimestamp(first).strftime("%H:%M:%S") if first else "-"
        types = [str(e["type"]) for e in delivery.events]
        codes = []
        for attempt in delivery.attempts:
            code = str(attempt.status_code) if attempt.status_code is not None else "-"
            codes.append(code + (f" ({attempt.tampered})" if attempt.tampered else ""))
        colour = {"delivered": "green", "abandoned": "red"}.get(delivery.state, "yellow")
        table.add_row(
            stamp,
            delivery.webhook_id[:8],
            safe(", ".join(types)),
            " ".join(codes) or "-",
            f"[{colour}]{delivery.state}[/]",
            safe(delivery.url),
        )
    return table


def apply_settings(
    host: str, port: int, time_scale: float, dialect: str, allow_http: bool
) -> Sandbox:
    """A started emulator with these settings.

    Raises:
        CommandError: A bad dialect or time scale, or the address cannot be bound.
    """
    require("starlette", "uvicorn", "httpx", extra="sandbox")
    from upvest_verify.sandbox import Sandbox

    try:
        sb = Sandbox(host, port, time_scale=time_scale, dialect=dialect, allow_http=allow_http)
    except ValueError as e:
        raise UsageMistake(
            str(e), "--dialect takes upvest-v6, rfc9421 or layout/encoding/digest"
        ) from e
    try:
        return sb.start()
    except OSError as e:
        raise CommandError(
            f"cannot listen on {host}:{port}: {e.strerror}", "pick another --port (0: any free)"
        ) from e


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port; 0 picks a free one.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Factor on batching delays, retry back-off, key overlap.",
)
@click.option(
    "--dialect",
    default="upvest-v6",
    show_default=True,
    help="How webhooks are signed: upvest-v6, rfc9421, or layout/encoding/digest.",
)
@click.option(
    "--allow-http", is_flag=True, help="Accept subscriptions to http://localhost:<port>/... too."
)
@click.option(
    "--credentials-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the tenant's credentials here (JSON, mode 0600) once serving.",
)
def sandbox_command(
    host: str,
    port: int,
    time_scale: float,
    dialect: str,
    allow_http: bool,
    credentials_out: Path | None,
) -> None:
    """Run the emulator of Upvest's API in the foreground; Ctrl-C stops it.

    upvest-verify sandbox --port 8321 --allow-http --credentials-out creds.json
    upvest-verify webhooks list --credentials creds.json
    """
    out = console()
    sb = apply_settings(host, port, time_scale, dialect, allow_http)
    written = False
    try:
        if not _answers(sb.base_url):
            raise CommandError(f"the emulator at {sb.base_url} does not answer", "try again")
        out.print(f"emulator of Upvest's API at [bold]{sb.base_url}[/]")
        out.print(f"  client id {sb.tenant.client_id}, signing key id {sb.tenant.key_id}")
        if credentials_out is not None:
            try:
                write_credentials_file(credentials_out, credentials_json(sb))
            except OSError as e:
                raise CommandError(
                    f"cannot write {credentials_out}: {e.strerror}", "pick another path"
                ) from e
            written = True
            out.print(f"  credentials (secret, private key) in {safe(credentials_out)}")
        else:
            out.print("  secret and private key: --credentials-out FILE, or GET /_sandbox/tenants")
        with Live(deliveries_table(sb), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(0.25)
                live.update(deliveries_table(sb))
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
        if written and credentials_out is not None:
            credentials_out.unlink(missing_ok=True)
    out.print("emulator stopped")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dictionaries, creating the missing ones.

    Raises:
        CommandError: A part of the path is empty or names a non-object.
    """
    parts = path.split(".")
    if not all(parts):
        raise UsageMistake(f"bad --set path {path!r}", "write --set field.sub=value")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageMistake(f"--set {path}: {part!r} is not an object", "set a leaf field")
        node = child
    node[parts[-1]] = value


def _event(event_type: str, sets: Sequence[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": event_type}
    if not sets:
        return spec  # the emulator makes up a realistic object
    from upvest_verify.sandbox import sample_object

    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    obj = sample_object(event_type, stamp)
    for item in sets:
        path, eq, value = item.partition("=")
        if not eq:
            raise UsageMistake(f"bad --set {item!r}", "write --set path=value")
        set_path(obj, path.strip(), _parse_value(value))
    spec["object"] = obj
    return spec


@click.command("trigger")
@click.argument("event_type")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="Set a field of the event's object (JSON value, else text); repeatable.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="How many such events.",
)
@click.option(
    "--base-url",
    envvar="UPVEST_BASE_URL",
    show_envvar=True,
    help="The running emulator (http://127.0.0.1:<port>).",
)
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file 'sandbox --credentials-out' wrote (for its base URL).",
)
@click.option("--tenant", help="Client id of another tenant of the emulator.")
def trigger_command(
    event_type: str,
    sets: tuple[str, ...],
    count: int,
    base_url: str | None,
    credentials: Path | None,
    tenant: str | None,
) -> None:
    """Emit an event on a running emulator (its /_sandbox/events endpoint).

    upvest-verify trigger ORDER.FILLED --set status=FILLED --set quantity=3
    """
    if base_url is None and credentials is not None:
        base_url = read_credentials_file(credentials).get("base_url")
    if not base_url or not base_url.startswith("http://"):
        raise UsageMistake(
            "trigger needs the emulator's http:// base URL",
            "pass --base-url, set UPVEST_BASE_URL, or --credentials FILE",
        )
    specs = [_event(event_type, sets) for _ in range(count)]
    query = "?" + urllib.parse.urlencode({"client_id": tenant}) if tenant else ""
    request = urllib.request.Request(  # noqa: S310 - an http URL checked above
        base_url.rstrip("/") + "/_sandbox/events" + query,
        data=json.dumps(specs).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            events = json.loads(response.read())
    except urllib.error.HTTPError as e:
        detail = _problem_detail(e.read())
        raise CommandError(f"the emulator refused the event: {e.code} {detail}") from e
    except OSError as e:
        raise CommandError(
            f"no answer from {base_url}: {e}", "is 'upvest-verify sandbox' running there?"
        ) from e
    out = console()
    for event in events:
        out.print(f"emitted {safe(event['type'])} {event['id']} at {event['created_at']}")


def _problem_detail(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    return str(doc.get("detail", "")) if isinstance(doc, dict) else ""
