"""Django system checks for ``settings.UPVEST_VERIFY`` (ids ``upvest_verify.E001``...).

==========  ======================================================
E001        ``UPVEST_VERIFY`` missing or not a dict
E002        unknown keys (typos)
E003        no key source, several, or one next to a given verifier
E004        the key source cannot be used (bad JWKS, import error)
E005        invalid policy setting
E006        invalid ``PATHS``
E007        invalid proxy options (``PUBLIC_URL``, ``TRUSTED_PROXIES``...)
E008        invalid ``LEDGER`` (bad URL, not a ledger) or ``INBOX`` (without a ledger)
W001        ``DATA_UPLOAD_MAX_MEMORY_SIZE`` below the body limit
==========  ======================================================
"""

from __future__ import annotations

from typing import Any

from django.conf import settings  # type: ignore[import-untyped,unused-ignore]
from django.core.checks import Error, Warning  # type: ignore[import-untyped,unused-ignore]

from upvest_verify.adapters.django import conf

__all__ = ["check_settings"]

_HINT = "See the upvest_verify.adapters.django documentation for UPVEST_VERIFY."


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Report invalid ``UPVEST_VERIFY`` settings at start-up.

    Args:
        app_configs: Passed by Django; unused.
        **kwargs: Passed by Django; unused.

    Returns:
        Django ``CheckMessage`` objects; empty when the settings are usable.
    """
    messages: list[Any] = [
        Error(message, hint=_HINT, id=f"upvest_verify.{code}") for code, message in conf.problems()
    ]
    if messages:
        return messages
    limit = conf.get_settings().max_body_size
    django_limit = getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", 2621440)
    if django_limit is None:
        messages.append(
            Warning(
                "DATA_UPLOAD_MAX_MEMORY_SIZE is None: Django reads a chunked body of any size "
                f"into memory before the webhook body limit ({limit}) can refuse it.",
                hint="Set DATA_UPLOAD_MAX_MEMORY_SIZE to at least UPVEST_VERIFY['MAX_BODY_SIZE'].",
                id="upvest_verify.W002",
            )
        )
    elif isinstance(django_limit, int) and django_limit < limit:
        messages.append(
            Warning(
                f"DATA_UPLOAD_MAX_MEMORY_SIZE ({django_limit}) is below the webhook body limit "
                f"({limit}); larger webhooks are answered 413 body_too_large.",
                hint="Raise DATA_UPLOAD_MAX_MEMORY_SIZE or lower UPVEST_VERIFY['MAX_BODY_SIZE'].",
                id="upvest_verify.W001",
            )
        )
    return messages
