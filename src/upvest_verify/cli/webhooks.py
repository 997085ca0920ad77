"""``upvest-verify webhooks ...`` and ``upvest-verify keys``: the management API.

Each subcommand makes one call through :class:`~upvest_verify.client.UpvestClient`
(signed v15 requests, OAuth2 tokens) with the credentials of
:func:`~upvest_verify.cli._credentials.credential_options`. Output is a table, or
JSON with ``--json``; neither ever holds the secret, a token or a private key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from ._common import CommandError, console, safe
from ._credentials import api_errors, credential_options, open_client

if TYPE_CHECKING:
    from upvest_verify.client import UpvestClient, Webhook

__all__ = ["keys_command", "webhook_json", "webhooks_group"]

_F = TypeVar("_F", bound=Callable[..., Any])


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    """A webhook as the API shows it (plus members this release does not know)."""
    doc: dict[str, Any] = {
        "id": webhook.id,
        "title": webhook.title,
        "url": webhook.url,
        "enabled": webhook.enabled,
        "type": list(webhook.types),
        "config": {"delay": webhook.delay, "max_package_size": webhook.max_package_size},
        "created_at": webhook.created_at.isoformat(),
        "updated_at": webhook.updated_at.isoformat(),
    }
    for name, value in webhook.extras.items():
        if name == "config" and isinstance(value, dict):
            doc["config"].update(value)
        else:
            doc[name] = value
    return doc


def _json_option(command: _F) -> _F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


def _show(webhooks: Iterable[Webhook], as_json: bool, *, many: bool = True) -> None:
    found = list(webhooks)
    if as_json:
        docs = [webhook_json(w) for w in found]
        click.echo(json.dumps(docs if many else docs[0], indent=2))
        return
    table = Table()
    for column in ("id", "title", "url", "enabled", "type", "delay", "max size", "created"):
        table.add_column(column, overflow="fold")
    for w in found:
        table.add_row(
            w.id,
            safe(w.title),
            safe(w.url),
            "[green]yes[/]" if w.enabled else "no",
            safe(",".join(w.types)),
            w.delay or "-",
            str(w.max_package_size or "-"),
            w.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console().print(table)


def _run(
    ctx: click.Context, call: Callable[[UpvestClient], Any], *, scopes: str | None = None
) -> Any:
    client = open_client(ctx, scopes=scopes)
    with client, api_errors(client.base_url):
        return call(client)


@click.group("webhooks")
def webhooks_group() -> None:
    """Manage webhook subscriptions (GET/POST/PATCH/DELETE /webhooks).

    Credentials: options, UPVEST_* environment variables, or --credentials FILE.

        upvest-verify webhooks list --credentials creds.json
    """


@webhooks_group.command("list")
@credential_options
@_json_option
@click.option("--sort", type=click.Choice(["created_at", "updated_at", "title", "url", "enabled"]))
@click.option("--order", type=click.Choice(["ASC", "DESC"], case_sensitive=False))
@click.option("--limit", type=click.IntRange(0, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--all", "every", is_flag=True, help="Every page, not just one.")
@click.pass_context
def list_command(
    ctx: click.Context,
    as_json: bool,
    sort: str | None,
    order: str | None,
    limit: int,
    offset: int,
    every: bool,
) -> None:
    """List webhook subscriptions."""
    upper = order.upper() if order else None

    def call(client: UpvestClient) -> list[Webhook]:
        if every:
            return list(client.webhooks.iter(sort=sort, order=upper))
        return list(client.webhooks.list(sort=sort, order=upper, limit=limit, offset=offset))

    _show(_run(ctx, call), as_json)


def _fields(command: _F) -> _F:
    options = [
        click.option("--title", help="Up to 100 characters."),
        click.option("--url", help="Where deliveries go (https; see --allow-localhost)."),
        click.option(
            "--type",
            "types",
            multiple=True,
            help="Event category (USER, ORDER, ... or ALL); repeatable.",
        ),
        click.option("--delay", help="Batching delay, 1s to 30s."),
        click.option("--max-package-size", type=int, help="Bytes per delivery, 100-1048576."),
        click.option(
            "--allow-localhost",
            is_flag=True,
            help="Accept http://localhost:<port> URLs (the local emulator).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@webhooks_group.command("create")
@credential_options
@_json_option
@_fields
@click.option("--enable", is_flag=True, help="Enable it right away (new webhooks start disabled).")
@click.pass_context
def create_command(
    ctx: click.Context,
    as_json: bool,
    title: str | None,
    url: str | None,
    types: tuple[str, ...],
    delay: str | None,
    max_package_size: int | None,
    allow_localhost: bool,
    enable: bool,
) -> None:
    """Subscribe a URL (POST /webhooks); it starts disabled unless --enable."""
    if not title or not url:
        raise click.UsageError("create needs --title and --url")

    def call(client: UpvestClient) -> Webhook:
        created = client.webhooks.create(
            title=title,
            url=url,
            types=list(types) or None,
            delay=delay,
            max_package_size=max_package_size,
            allow_localhost=allow_localhost,
        )
        return client.webhooks.enable(created.id) if enable else created

    _show([_run(ctx, call)], as_json, many=False)


@webhooks_group.command("get")
@credential_options
@_json_option
@click.argument("webhook_id")
@click.pass_context
def get_command(ctx: click.Context, as_json: bool, webhook_id: str) -> None:
    """Show one webhook (GET /webhooks/{id})."""
    _show([_run(ctx, lambda c: c.webhooks.get(webhook_id))], as_json, many=False)


@webhooks_group.command("update")
@credential_options
@_json_option
@_fields
@click.argument("webhook_id")
@click.pass_context
def update_command(
    ctx: click.Context,
    as_json: bool,
    webhook_id: str,
    title: str | None,
    url: str | None,
    types: tuple[str, ...],
    delay: str | None,
    max_package_size: int | None,
    allow_localhost: bool,
) -> None:
    """Change the given fields of a webhook (PATCH /webhooks/{id})."""
    if not any((title, url, types, delay, max_package_size)):
        raise click.UsageError("nothing to change: pass --title, --url, --type, --delay or more")

    def call(client: UpvestClient) -> Webhook:
        return client.webhooks.update(
            webhook_id,
            title=title,
            url=url,
            types=list(types) or None,
            delay=delay,
            max_package_size=max_package_size,
            allow_localhost=allow_localhost,
        )

    _show([_run(ctx, call)], as_json, many=False)


def _switch(name: str, enabled: bool) -> click.Command:
    @click.command(name)
    @credential_options
    @_json_option
    @click.argument("webhook_id")
    @click.pass_context
    def switch(ctx: click.Context, as_json: bool, webhook_id: str) -> None:
        def call(client: UpvestClient) -> Webhook:
            return client.webhooks.update(webhook_id, enabled=enabled)

        _show([_run(ctx, call)], as_json, many=False)

    switch.help = f"{name.capitalize()} deliveries to a webhook (PATCH enabled={enabled})."
    return switch


webhooks_group.add_command(_switch("enable", True))
webhooks_group.add_command(_switch("disable", False))


@webhooks_group.command("delete")
@credential_options
@_json_option
@click.argument("webhook_id")
@click.pass_context
def delete_command(ctx: click.Context, as_json: bool, webhook_id: str) -> None:
    """Delete a webhook (DELETE /webhooks/{id})."""
    _run(ctx, lambda c: c.webhooks.delete(webhook_id))
    if as_json:
        click.echo(json.dumps({"id": webhook_id, "deleted": True}))
    else:
        console().print(f"deleted webhook {safe(webhook_id)}")


@webhooks_group.command("test")
@credential_options
@_json_option
@click.argument("webhook_id")
@click.pass_context
def test_command(ctx: click.Context, as_json: bool, webhook_id: str) -> None:
    """Ask Upvest to send a test event to a webhook (POST /webhooks/{id}/test)."""
    _run(ctx, lambda c: c.webhooks.test(webhook_id))
    if as_json:
        click.echo(json.dumps({"id": webhook_id, "test": "accepted"}))
    else:
        console().print(f"test event requested for webhook {safe(webhook_id)} (202 Accepted)")


@click.command("keys")
@credential_options
@_json_option
@click.pass_context
def keys_command(ctx: click.Context, as_json: bool) -> None:
    """Show the keys Upvest signs webhooks with (GET /auth/verify_keys).

    upvest-verify keys --credentials creds.json --json > verify_keys.json
    """
    result = _run(ctx, lambda c: c.fetch_jwks())
    try:
        doc = json.loads(result.body)
    except ValueError as e:
        raise CommandError("the key endpoint did not answer JSON") from e
    keys = [k for k in doc.get("keys", []) if isinstance(k, dict)] if isinstance(doc, dict) else []
    # A JWKS is public, but never echo private members should a server send any.
    public = [{k: v for k, v in key.items() if k != "d"} for key in keys]
    if as_json:
        click.echo(json.dumps({"keys": public}, indent=2))
        return
    table = Table(title="webhook signing keys")
    for column in ("kid", "kty", "crv", "alg", "use"):
        table.add_column(column, overflow="fold")
    for key in public:
        table.add_row(*(safe(key.get(name, "-")) for name in ("kid", "kty", "crv", "alg", "use")))
    console().print(table)
