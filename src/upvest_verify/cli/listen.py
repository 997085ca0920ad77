"""``upvest-verify listen``: receive webhooks with no public endpoint, as Upvest's proxy does.

Upvest's signing proxy (``upvestco/httpsignature-proxy``) shows webhooks through a
relay of the ``events-acceptor-service``; this command follows its code:

- ``service/tunnels/tunnel.go`` (``start``): ``GET /events-acceptor-service/health``
  (404, 502 or 503: not available, ``serviceIsNotAccessible``), a ``webhooks:admin``
  token, a relay endpoint, a subscription to its URL (``type: ["ALL"]``, ``delay:
  "1s"``, ``max_package_size: 12400``), PATCHed enabled, then ``doPulling`` until
  stopped; on exit the subscription is deleted and the endpoint closed.
- ``service/tunnels/client.go``: ``OpenEndpoint`` is ``POST .../endpoints`` answering
  201 ``{"id", "url"}``; ``GetEvents`` is ``GET .../endpoints/{id}`` answering a JSON
  list; ``CloseEndpoint`` is ``DELETE .../endpoints/{id}`` answering 204. Every call
  carries ``upvest-client-id`` and the bearer token (and, through the proxy, a v15
  signature, which :class:`~upvest_verify.client.UpvestAuth` adds here).
- ``service/ui/ui.go`` (``PullItem``): each item is ``{"headers": {name: [values]},
  "payload": "<body>", "created_at": "<RFC 3339>"}``.

Each relayed request is verified against the relay endpoint's URL (the URL Upvest
signed for) with keys fetched through the management client, and, with
``--forward-to``, sent on unchanged (same body, same header fields but ``Host``,
``Content-Length`` and the hop-by-hop ones) to a local receiver, whose answer is printed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from upvest_verify import VerificationError, Verifier

from ._common import CommandError, console, safe
from ._credentials import api_errors, credential_options, open_client

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

    from upvest_verify.client import UpvestClient

__all__ = ["RELAY_PREFIX", "RelayItem", "forward_headers", "listen_command", "relay_items"]

RELAY_PREFIX = "/events-acceptor-service"
ADMIN_SCOPE = "webhooks:admin"
_UNAVAILABLE = (404, 502, 503)  # tunnel.go, serviceIsNotAccessible
_HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True, slots=True)
class RelayItem:
    """One relayed delivery (``PullItem`` in ``service/ui/ui.go``)."""

    headers: list[tuple[str, str]]
    body: bytes
    created_at: str


def relay_items(document: object) -> list[RelayItem]:
    """Read a ``GET .../endpoints/{id}`` answer.

    Raises:
        ValueError: Not a list of ``{"headers", "payload", "created_at"}`` objects.
    """
    if not isinstance(document, list):
        raise ValueError("the relay answered something other than a list")
    items = []
    for entry in document:
        if not isinstance(entry, dict) or not isinstance(entry.get("payload"), str):
            raise ValueError("a relayed item has no payload")
        raw = entry.get("headers") or {}
        if not isinstance(raw, dict):
            raise ValueError("a relayed item's headers are not an object")
        headers = [
            (str(name), str(value))
            for name, values in raw.items()
            for value in (values if isinstance(values, list) else [values])
        ]
        body = entry["payload"].encode("utf-8")
        items.append(RelayItem(headers, body, str(entry.get("created_at", ""))))
    return items


def forward_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header fields to forward: all but ``Host``, ``Content-Length`` and hop-by-hop ones."""
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]


class _Relay:
    """The relay calls, signed and authorised by the management client's auth."""

    def __init__(self, client: UpvestClient, http: httpx.Client) -> None:
        self._base = client.base_url + RELAY_PREFIX
        self._client = client
        self._http = http

    def _fail(self, response: httpx.Response, doing: str) -> CommandError:
        if response.status_code in _UNAVAILABLE:
            return CommandError(
                f"the webhook relay is not available at {self._client.base_url} "
                f"({doing}: HTTP {response.status_code})",
                "Upvest's sandbox or 'upvest-verify sandbox' serve it; live may not",
            )
        if response.status_code in (401, 403):
            return CommandError(
                f"{doing}: HTTP {response.status_code}",
                f"the client needs the '{ADMIN_SCOPE}' scope and a registered signing key",
            )
        return CommandError(f"{doing}: unexpected HTTP {response.status_code}")

    def health(self) -> None:
        response = self._http.get(self._base + "/health")
        if response.status_code != 200:
            raise self._fail(response, "relay health")

    def open(self) -> tuple[str, str]:
        # client.go marshals "" as the body of this POST.
        response = self._http.post(self._base + "/endpoints", json="", auth=self._client.auth)
        if response.status_code != 201:
            raise self._fail(response, "opening a relay endpoint")
        doc = response.json()
        if not isinstance(doc, dict) or not doc.get("id") or not doc.get("url"):
            raise CommandError("the relay answered no endpoint id or url")
        return str(doc["id"]), str(doc["url"])

    def poll(self, endpoint_id: str) -> list[RelayItem]:
        response = self._http.get(f"{self._base}/endpoints/{endpoint_id}", auth=self._client.auth)
        if response.status_code != 200:
            raise self._fail(response, "polling the relay")
        try:
            return relay_items(response.json())
        except ValueError as e:
            raise CommandError(f"unreadable relay answer: {e}") from e

    def close(self, endpoint_id: str) -> bool:
        response = self._http.delete(
            f"{self._base}/endpoints/{endpoint_id}", auth=self._client.auth
        )
        return response.status_code == 204


def _show(
    out: Console, n: int, item: RelayItem, verifier: Verifier, url: str, show_headers: bool
) -> bool:
    out.print(f"[bold]#{n}[/] relayed at {safe(item.created_at)}, {len(item.body)} bytes")
    if show_headers:
        for name, value in item.headers:
            out.print(f"    {safe(name)}: {safe(value)}")
    try:
        webhook = verifier.verify("POST", url, item.headers, item.body)
    except VerificationError as e:
        out.print(f"  [red]rejected[/] {e.reason.value} (HTTP {e.status_code}): {safe(e.message)}")
        return False
    types = ", ".join(event.type for event in webhook.events)
    out.print(
        f"  [green]verified[/] dialect {webhook.dialect}, key {webhook.key_id[:8]}, "
        f"{len(webhook.events)} event(s): {safe(types)}"
    )
    return True


def _forward(out: Console, http: httpx.Client, target: str, item: RelayItem) -> None:
    import httpx

    try:
        response = http.post(target, content=item.body, headers=forward_headers(item.headers))
    except httpx.HTTPError as e:
        out.print(f"  [red]forward to {safe(target)} failed[/]: {safe(e)}")
        return
    excerpt = response.text[:200].replace("\n", " ")
    colour = "green" if response.is_success else "yellow"
    out.print(f"  -> {safe(target)}: [{colour}]HTTP {response.status_code}[/] {safe(excerpt)}")


def run_listen(
    client: UpvestClient,
    out: Console,
    *,
    forward_to: str | None,
    count: int | None,
    show_headers: bool,
) -> tuple[int, int]:
    """Relay, verify and forward deliveries until ``count`` came or Ctrl-C.

    Returns:
        How many deliveries came, and how many verified.
    """
    import httpx

    from upvest_verify.jwks import JWKSCache

    verifier = Verifier(JWKSCache(client.key_source()))
    seen = verified = 0
    with httpx.Client(timeout=httpx.Timeout(90.0, connect=10.0)) as http:
        relay = _Relay(client, http)
        relay.health()
        endpoint_id, url = relay.open()
        hook_id: str | None = None
        try:
            hook = client.webhooks.create(
                title="upvest-verify listen " + secrets.token_hex(4),
                url=url,
                types=["ALL"],
                delay="1s",
                max_package_size=12400,
                allow_localhost=True,
            )
            hook_id = hook.id
            client.webhooks.enable(hook.id)
            out.print(f"listening: webhook {hook.id} -> relay endpoint {safe(url)}")
            if forward_to:
                out.print(f"forwarding each delivery to {safe(forward_to)}")
            out.print("Ctrl-C stops (the webhook is deleted on the way out)")
            while count is None or seen < count:
                for item in relay.poll(endpoint_id):
                    seen += 1
                    verified += _show(out, seen, item, verifier, url, show_headers)
                    if forward_to:
                        _forward(out, http, forward_to, item)
        except KeyboardInterrupt:
            pass
        finally:
            if hook_id is not None:
                client.webhooks.delete(hook_id)
            closed = relay.close(endpoint_id)
            out.print("webhook deleted, relay endpoint " + ("closed" if closed else "left open"))
    return seen, verified


@click.command("listen")
@credential_options
@click.option(
    "--forward-to", metavar="URL", help="Local receiver to send each delivery to, unchanged."
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="Stop after this many deliveries (default: run until Ctrl-C).",
)
@click.option("--show-headers", is_flag=True, help="Print the relayed header fields.")
@click.pass_context
def listen_command(
    ctx: click.Context, forward_to: str | None, count: int | None, show_headers: bool
) -> None:
    """Receive webhooks through Upvest's relay, verify them and forward them locally.

    Needs a client with the webhooks:admin scope. The forwarded request keeps the
    signature, which covers the relay endpoint's path, not your receiver's. Exit
    status 1 if a delivery did not verify.

        upvest-verify listen --credentials creds.json --forward-to http://localhost:8000/hooks
    """
    import httpx

    client = open_client(ctx, scopes=ADMIN_SCOPE)
    out = console()
    with client, api_errors(client.base_url):
        try:
            seen, verified = run_listen(
                client, out, forward_to=forward_to, count=count, show_headers=show_headers
            )
        except httpx.HTTPError as e:
            raise CommandError(
                f"no answer from {client.base_url}: {e}", "is the base URL right and the server up?"
            ) from e
    out.print(f"{seen} deliveries relayed, {verified} verified")
    if seen != verified:
        raise SystemExit(1)
