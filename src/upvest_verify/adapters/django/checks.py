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
W001        ``DATA_UPLOAD_MAX_MEMORY_SIZE`` below a body limit you chose
W002        ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is ``None`` (unlimited)
==========  ======================================================

W001 is about a limit you set: ``MAX_BODY_SIZE``, or a ``POLICY``/``VERIFIER`` whose
limit is not the library's default. Without one the adapter takes Django's limit
where it is lower (:mod:`.conf`), so a project configured as documented is quiet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.checks import Error, Warning  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import Policy
from upvest_verify.adapters.django import conf

__all__ = ["CHECK_IDS", "check_settings"]

CHECK_IDS = (
    *(f"upvest_verify.E00{n}" for n in range(1, 9)),
    "upvest_verify.W001",
    "upvest_verify.W002",
)
"""Every id these checks can report."""

_LIBRARY_LIMIT = Policy().max_body_size

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
    django_limit = conf.django_upload_limit()
    raw = conf.raw_settings()
    chosen = (isinstance(raw, Mapping) and "MAX_BODY_SIZE" in raw) or limit != _LIBRARY_LIMIT
    if django_limit is None:
        messages.append(
            Warning(
                "DATA_UPLOAD_MAX_MEMORY_SIZE is None: Django reads a chunked body of any size "
                f"into memory before the webhook body limit ({limit}) can refuse it.",
                hint="Set DATA_UPLOAD_MAX_MEMORY_SIZE to at least UPVEST_VERIFY['MAX_BODY_SIZE'].",
                id="upvest_verify.W002",
            )
        )
    elif isinstance(django_limit, int) and django_limit < limit and chosen:
        messages.append(
            Warning(
                f"DATA_UPLOAD_MAX_MEMORY_SIZE ({django_limit}) is below the webhook body limit "
                f"({limit}); larger webhooks are answered 413 body_too_large.",
                hint="Raise DATA_UPLOAD_MAX_MEMORY_SIZE or lower UPVEST_VERIFY['MAX_BODY_SIZE'].",
                id="upvest_verify.W001",
            )
        )
    return messages
