"""Typed, lazily read settings of the Django adapter: ``settings.UPVEST_VERIFY``.

``UPVEST_VERIFY`` is a dict with the keys of
:func:`upvest_verify.adapters._settings.load_settings` (``JWKS``, ``JWKS_URL``,
``KEYS`` or ``VERIFIER``; policy fields such as ``SKEW``; ``PATHS``,
``PUBLIC_URL``, ``TRUSTED_PROXIES``, ``PROXY_HEADERS``, ``PATH_PREFIX``; ``LEDGER``
and ``INBOX``). One ledger built from ``LEDGER`` serves the whole process.

Without ``MAX_BODY_SIZE`` (and without ``POLICY`` or ``VERIFIER``, which bring their
own), the webhook body limit is Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB by
default) where that is below the library's 4 MiB: Django refuses larger bodies
anyway, and one limit for both keeps ``manage.py check`` quiet.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from django.conf import settings  # type: ignore[import-untyped,unused-ignore]
from django.core.signals import setting_changed  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import Policy
from upvest_verify.adapters._settings import AdapterSettings, load_settings, settings_problems

__all__ = [
    "DJANGO_UPLOAD_LIMIT",
    "SETTING_NAME",
    "django_upload_limit",
    "get_settings",
    "problems",
    "raw_settings",
]

SETTING_NAME = "UPVEST_VERIFY"

DJANGO_UPLOAD_LIMIT = 2621440
"""Django's default ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB)."""

# Settings that decide the body limit themselves: then no default is filled in.
_OWN_LIMIT = ("MAX_BODY_SIZE", "POLICY", "VERIFIER")
_LIBRARY_LIMIT = Policy().max_body_size

_lock = threading.Lock()
_cache: list[AdapterSettings] = []


def raw_settings() -> object:
    """Return ``settings.UPVEST_VERIFY`` as configured (``None`` if absent)."""
    return getattr(settings, SETTING_NAME, None)


def django_upload_limit() -> object:
    """Return Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``None`` means unlimited)."""
    return getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", DJANGO_UPLOAD_LIMIT)


def _values() -> object:
    """``UPVEST_VERIFY`` with the Django default body limit filled in where it applies."""
    values = raw_settings()
    if not isinstance(values, Mapping) or any(key in values for key in _OWN_LIMIT):
        return values
    limit = django_upload_limit()
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        return values  # None (unlimited: check W002) or a value Django itself rejects
    if limit >= _LIBRARY_LIMIT:
        return values
    return {**values, "MAX_BODY_SIZE": limit}


def get_settings() -> AdapterSettings:
    """Return the adapter settings, built once and shared by middleware and decorators.

    One verifier (and so one key cache) serves the whole process. The cache is
    dropped when ``UPVEST_VERIFY`` changes (``override_settings`` in tests).

    Returns:
        The verifier and adapter options.

    Raises:
        ConfigurationError: ``UPVEST_VERIFY`` is missing or invalid.
    """
    if _cache:
        return _cache[0]
    with _lock:
        if not _cache:
            _cache.append(load_settings(_values(), origin=f"settings.{SETTING_NAME}"))
        return _cache[0]


def problems() -> list[tuple[str, str]]:
    """List configuration problems as ``(code, message)`` pairs, for system checks."""
    return settings_problems(_values(), origin=f"settings.{SETTING_NAME}")


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting in (SETTING_NAME, "DATA_UPLOAD_MAX_MEMORY_SIZE"):
        with _lock:
            _cache.clear()


setting_changed.connect(_reset, dispatch_uid="upvest_verify_settings_reset")
