"""Typed, lazily read settings of the Django adapter: ``settings.UPVEST_VERIFY``.

``UPVEST_VERIFY`` is a dict with the keys of
:func:`upvest_verify.adapters._settings.load_settings` (``JWKS``, ``JWKS_URL``,
``KEYS`` or ``VERIFIER``; policy fields such as ``SKEW``; ``PATHS``,
``PUBLIC_URL``, ``TRUSTED_PROXIES``, ``PROXY_HEADERS``, ``PATH_PREFIX``; ``LEDGER``
and ``INBOX``). One ledger built from ``LEDGER`` serves the whole process.
"""

from __future__ import annotations

import threading

from django.conf import settings  # type: ignore[import-untyped,unused-ignore]
from django.core.signals import setting_changed  # type: ignore[import-untyped,unused-ignore]

from upvest_verify.adapters._settings import AdapterSettings, load_settings, settings_problems

__all__ = ["SETTING_NAME", "get_settings", "problems", "raw_settings"]

SETTING_NAME = "UPVEST_VERIFY"

_lock = threading.Lock()
_cache: list[AdapterSettings] = []


def raw_settings() -> object:
    """Return ``settings.UPVEST_VERIFY`` as configured (``None`` if absent)."""
    return getattr(settings, SETTING_NAME, None)


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
            _cache.append(load_settings(raw_settings(), origin=f"settings.{SETTING_NAME}"))
        return _cache[0]


def problems() -> list[tuple[str, str]]:
    """List configuration problems as ``(code, message)`` pairs, for system checks."""
    return settings_problems(raw_settings(), origin=f"settings.{SETTING_NAME}")


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING_NAME:
        with _lock:
            _cache.clear()


setting_changed.connect(_reset, dispatch_uid="upvest_verify_settings_reset")
