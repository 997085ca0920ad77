"""Credentials for the commands that call the API, and the file ``sandbox`` writes.

Each value comes from its option, else its environment variable (``UPVEST_BASE_URL``,
``UPVEST_CLIENT_ID``, ``UPVEST_CLIENT_SECRET``, ``UPVEST_SIGNING_KEY`` (a PEM file),
``UPVEST_SIGNING_KEY_ID``, ``UPVEST_SIGNING_KEY_PASSWORD``), else the
``--credentials`` file (JSON: ``base_url``, ``client_id``, ``client_secret``,
``signing_key_id``, ``signing_key_pem``). The secret, tokens and the private key are
never printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from upvest_verify.errors import ConfigurationError

from ._common import CommandError, UsageMistake, require

if TYPE_CHECKING:
    from upvest_verify.client import UpvestClient
    from upvest_verify.sandbox import Sandbox

__all__ = [
    "Credentials",
    "api_errors",
    "credential_options",
    "credentials_json",
    "open_client",
    "read_credentials_file",
    "write_credentials_file",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_META = "upvest_verify.credentials"
_FIELDS = ("base_url", "client_id", "client_secret", "signing_key_id", "signing_key_pem")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the management client needs; ``repr`` shows no secret."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    signing_key_id: str
    signing_key_pem: bytes = field(repr=False)
    signing_key_password: str | None = field(default=None, repr=False)


def credentials_json(sandbox: Sandbox) -> dict[str, str]:
    """The credentials of a running emulator's tenant, as the file holds them."""
    tenant = sandbox.tenant
    return {
        "base_url": sandbox.base_url,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "signing_key_id": tenant.key_id,
        "signing_key_pem": tenant.private_key_pem(),
    }


def write_credentials_file(path: Path, document: dict[str, str]) -> None:
    """Write ``document`` to ``path`` readable by its owner only (mode 0600).

    The file is created with mode 0600 before anything is written into it.
    """
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
        out.write("\n")


def read_credentials_file(path: Path) -> dict[str, str]:
    """Read a credentials file.

    Raises:
        CommandError: Unreadable, not JSON, or not an object of strings.
    """
    hint = "pass the file 'upvest-verify sandbox --credentials-out FILE' wrote"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CommandError(f"cannot read credentials file {path}: {e.strerror}", hint) from e
    except ValueError as e:
        raise CommandError(f"credentials file {path} is not JSON", hint) from e
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, ""), str) for k in _FIELDS):
        raise CommandError(f"credentials file {path} is not an object of strings", hint)
    return {k: doc[k] for k in _FIELDS if doc.get(k)}


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if param.name is not None and value is not None:
        ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def credential_options(command: _F) -> _F:
    """Add the credential options (read back by :func:`open_client`) to a command."""
    specs: list[tuple[str, dict[str, Any]]] = [
        (
            "--credentials",
            {
                "type": click.Path(dir_okay=False, path_type=Path),
                "help": "JSON credentials file, as 'upvest-verify sandbox --credentials-out' "
                "writes.",
            },
        ),
        (
            "--base-url",
            {"envvar": "UPVEST_BASE_URL", "help": "'sandbox', 'live' or a URL (http: loopback)."},
        ),
        ("--client-id", {"envvar": "UPVEST_CLIENT_ID", "help": "OAuth2 client id."}),
        (
            "--client-secret",
            {
                "envvar": "UPVEST_CLIENT_SECRET",
                "help": "OAuth2 client secret (prefer the environment variable).",
            },
        ),
        (
            "--signing-key",
            {
                "envvar": "UPVEST_SIGNING_KEY",
                "type": click.Path(dir_okay=False, path_type=Path),
                "help": "PEM file of your request-signing private key.",
            },
        ),
        ("--signing-key-id", {"envvar": "UPVEST_SIGNING_KEY_ID", "help": "Its registered key id."}),
        (
            "--signing-key-password",
            {"envvar": "UPVEST_SIGNING_KEY_PASSWORD", "help": "Passphrase of an encrypted PEM."},
        ),
    ]
    for name, settings in reversed(specs):
        show = "envvar" in settings
        option = click.option(
            name, callback=_store, expose_value=False, show_envvar=show, **settings
        )
        command = option(command)
    return command


def _resolve(given: dict[str, Any]) -> Credentials:
    stored: dict[str, str] = {}
    if given.get("credentials") is not None:
        stored = read_credentials_file(given["credentials"])
    pem: bytes | None = None
    if given.get("signing_key") is not None:
        path: Path = given["signing_key"]
        try:
            pem = path.read_bytes()
        except OSError as e:
            raise CommandError(
                f"cannot read signing key {path}: {e.strerror}",
                "--signing-key (UPVEST_SIGNING_KEY) names a PEM file",
            ) from e
    elif "signing_key_pem" in stored:
        pem = stored["signing_key_pem"].encode("utf-8")
    values = {
        name: given.get(name) or stored.get(name)
        for name in ("base_url", "client_id", "client_secret", "signing_key_id")
    }
    missing = [
        f"--{name.replace('_', '-')} (UPVEST_{name.upper()})"
        for name, value in values.items()
        if not value
    ]
    if pem is None:
        missing.append("--signing-key (UPVEST_SIGNING_KEY)")
    if missing:
        raise UsageMistake(
            "missing credentials: " + ", ".join(missing),
            "pass them as options or environment variables, or --credentials FILE",
        )
    assert pem is not None
    return Credentials(
        base_url=str(values["base_url"]),
        client_id=str(values["client_id"]),
        client_secret=str(values["client_secret"]),
        signing_key_id=str(values["signing_key_id"]),
        signing_key_pem=pem,
        signing_key_password=given.get("signing_key_password"),
    )


def open_client(ctx: click.Context, *, scopes: str | None = None) -> UpvestClient:
    """A management client built from the context's credential options.

    Raises:
        CommandError: A credential is missing or unusable, or httpx is not installed.
    """
    require("httpx", extra="client")
    from upvest_verify.client import UpvestClient
    from upvest_verify.signing import SigningKey

    creds = _resolve(dict(ctx.meta.get(_META, {})))
    try:
        key = SigningKey.from_pem(
            creds.signing_key_pem,
            key_id=creds.signing_key_id,
            password=creds.signing_key_password,
        )
        return UpvestClient(
            base_url=creds.base_url,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            signing_key=key,
            scopes=scopes,
        )
    except ConfigurationError as e:
        raise UsageMistake(str(e), "check the signing key, its password and the base URL") from e


@contextmanager
def api_errors(base_url: str) -> Iterator[None]:
    """Turn the management client's errors into one-line :class:`CommandError`\\ s."""
    from upvest_verify.client import (
        Forbidden,
        Unauthorised,
        UpvestAPIError,
        UpvestConnectionError,
        WebhookValidationError,
    )

    try:
        yield
    except WebhookValidationError as e:
        raise UsageMistake(str(e), "see 'upvest-verify webhooks --help'") from e
    except UpvestConnectionError as e:
        raise CommandError(
            f"no answer from {base_url}: {e}", "is the base URL right and the server up?"
        ) from e
    except (Unauthorised, Forbidden) as e:
        raise CommandError(
            str(e), "check the client id, secret, signing key id and the client's scopes"
        ) from e
    except UpvestAPIError as e:
        raise CommandError(str(e)) from e
