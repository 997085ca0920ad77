"""The management client's key source from configuration (the adapters' ``CLIENT_ID`` keys)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from upvest_verify.errors import ConfigurationError
from upvest_verify.signing import SigningKey

from ._client import UpvestClient
from ._keysource import UpvestKeySource

__all__ = ["key_source_from_settings"]

_NEEDED = ("CLIENT_ID", "CLIENT_SECRET", "SIGNING_KEY", "BASE_URL")


def _pem(value: object) -> bytes:
    """PEM text or bytes (``\\n`` escapes from an env file allowed), or a PEM file path."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        if "\n" not in value.strip():
            value = value.replace("\\n", "\n")
        return value.encode()
    if isinstance(value, (str, os.PathLike)):
        try:
            return Path(value).read_bytes()
        except OSError as e:
            raise ConfigurationError(f"SIGNING_KEY file cannot be read: {e}") from e
    raise ConfigurationError("SIGNING_KEY must be PEM text, a PEM file path or a SigningKey")


def key_source_from_settings(settings: Mapping[str, Any]) -> UpvestKeySource:
    """An :class:`UpvestKeySource` from framework-style settings; nothing is fetched yet.

    Keys: ``CLIENT_ID``, ``CLIENT_SECRET``, ``SIGNING_KEY`` (PEM text, a PEM file path
    or a :class:`~upvest_verify.signing.SigningKey`), ``SIGNING_KEY_ID`` (unless
    ``SIGNING_KEY`` is a ``SigningKey``), ``SIGNING_KEY_PASSWORD`` (for an encrypted
    PEM) and ``BASE_URL`` (``"sandbox"``, ``"live"`` or a URL). Other keys are ignored.
    The adapters' settings (Flask ``UPVEST_VERIFY_CLIENT_ID``..., Django
    ``UPVEST_VERIFY["CLIENT_ID"]``...) call this.

    Raises:
        ConfigurationError: A key is missing, the PEM cannot be read, or the client
            refuses a value (a non-https base URL...). Messages never hold secrets.
    """
    key = settings.get("SIGNING_KEY")
    needed = [*_NEEDED, *(() if isinstance(key, SigningKey) else ("SIGNING_KEY_ID",))]
    missing = [name for name in needed if settings.get(name) is None]
    if missing:
        raise ConfigurationError(f"the management client also needs {', '.join(missing)}")
    if not isinstance(key, SigningKey):
        key = SigningKey.from_pem(
            _pem(key),
            key_id=str(settings["SIGNING_KEY_ID"]),
            password=settings.get("SIGNING_KEY_PASSWORD") or None,
        )
    client = UpvestClient(
        base_url=settings["BASE_URL"],
        client_id=settings["CLIENT_ID"],
        client_secret=settings["CLIENT_SECRET"],
        signing_key=key,
    )
    return client.key_source()
