"""Django app config: registers the ``UPVEST_VERIFY`` system checks."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped,unused-ignore]
from django.core import checks  # type: ignore[import-untyped,unused-ignore]

__all__ = ["UpvestVerifyConfig"]


class UpvestVerifyConfig(AppConfig):  # type: ignore[misc,unused-ignore]
    """Add ``"upvest_verify.adapters.django"`` to ``INSTALLED_APPS`` to get system checks."""

    name = "upvest_verify.adapters.django"
    label = "upvest_verify"
    verbose_name = "Upvest webhook verification"

    def ready(self) -> None:
        """Register the checks (``upvest_verify.E001``...)."""
        from upvest_verify.adapters.django.checks import check_settings

        checks.register(check_settings, checks.Tags.security)
