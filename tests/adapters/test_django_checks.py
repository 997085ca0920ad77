"""Django system checks and the default body limit: quiet when configured as documented.

Django refuses bodies above ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB by default)
itself; without a limit of its own the adapter takes that one, so ``W001`` is left
for a limit someone chose above Django's. Every check id is documented.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django", reason="the django extra is not installed")
pytest.importorskip("asgiref", reason="the django extra is not installed")

os.environ["DJANGO_SETTINGS_MODULE"] = "django_settings"

import django  # type: ignore[import-untyped,unused-ignore]

django.setup()

from adapter_support import SIGNING_KEY  # noqa: E402
from django.test import override_settings  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

import upvest_verify.adapters._settings as adapter_settings  # noqa: E402
from upvest_verify import Policy, Verifier  # noqa: E402
from upvest_verify.adapters.django import checks as checks_module  # noqa: E402
from upvest_verify.adapters.django.checks import check_settings  # noqa: E402
from upvest_verify.adapters.django.conf import get_settings  # noqa: E402
from upvest_verify.testing import make_jwks, make_key_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
DJANGO_UPLOAD_LIMIT = 2621440  # Django's default DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB)
LIBRARY_LIMIT = Policy().max_body_size
# The Django page's settings: a key source and the path, nothing about sizes.
DOCUMENTED = {"JWKS": make_jwks(SIGNING_KEY), "PATHS": ["/webhooks/upvest"]}


def ids(**overrides: Any) -> list[str]:
    """The ids check_settings() reports under these settings."""
    with override_settings(**overrides):
        return [message.id for message in check_settings()]


def limit(**overrides: Any) -> int:
    """The webhook body limit the adapter uses under these settings."""
    with override_settings(**overrides):
        return get_settings().max_body_size


def test_settings_as_documented_are_quiet() -> None:
    """The documented UPVEST_VERIFY with Django's default upload limit: no W001, no error."""
    assert DJANGO_UPLOAD_LIMIT < LIBRARY_LIMIT  # the mismatch this is about
    assert ids(UPVEST_VERIFY=DOCUMENTED) == []
    assert ids(UPVEST_VERIFY=DOCUMENTED, DATA_UPLOAD_MAX_MEMORY_SIZE=DJANGO_UPLOAD_LIMIT) == []
    assert limit(UPVEST_VERIFY=DOCUMENTED) == DJANGO_UPLOAD_LIMIT


def test_the_default_limit_follows_djangos() -> None:
    """Without MAX_BODY_SIZE the limit is Django's where lower, the library's otherwise."""
    assert limit(UPVEST_VERIFY=DOCUMENTED, DATA_UPLOAD_MAX_MEMORY_SIZE=1000) == 1000
    assert limit(UPVEST_VERIFY=DOCUMENTED, DATA_UPLOAD_MAX_MEMORY_SIZE=64 * MIB) == LIBRARY_LIMIT
    assert limit(UPVEST_VERIFY={**DOCUMENTED, "MAX_BODY_SIZE": 3000}) == 3000


def test_a_limit_chosen_above_djangos_warns() -> None:
    """W001 names a contradiction someone configured: MAX_BODY_SIZE, POLICY or VERIFIER."""
    explicit = {**DOCUMENTED, "MAX_BODY_SIZE": 8 * MIB}
    assert ids(UPVEST_VERIFY=explicit) == ["upvest_verify.W001"]
    assert ids(UPVEST_VERIFY={**DOCUMENTED, "MAX_BODY_SIZE": LIBRARY_LIMIT}) == [
        "upvest_verify.W001"
    ]
    policy = {"JWKS": DOCUMENTED["JWKS"], "POLICY": Policy(max_body_size=8 * MIB)}
    assert ids(UPVEST_VERIFY=policy) == ["upvest_verify.W001"]
    big = Verifier(make_key_set(SIGNING_KEY), policy=Policy(max_body_size=8 * MIB))
    assert ids(UPVEST_VERIFY={"VERIFIER": big}) == ["upvest_verify.W001"]
    # A verifier with the library's default limit chose nothing: quiet.
    assert ids(UPVEST_VERIFY={"VERIFIER": Verifier(make_key_set(SIGNING_KEY))}) == []
    assert ids(UPVEST_VERIFY=explicit, DATA_UPLOAD_MAX_MEMORY_SIZE=16 * MIB) == []


def test_an_unlimited_django_upload_warns() -> None:
    """DATA_UPLOAD_MAX_MEMORY_SIZE = None is W002; the library's limit applies."""
    assert ids(UPVEST_VERIFY=DOCUMENTED, DATA_UPLOAD_MAX_MEMORY_SIZE=None) == ["upvest_verify.W002"]
    assert limit(UPVEST_VERIFY=DOCUMENTED, DATA_UPLOAD_MAX_MEMORY_SIZE=None) == LIBRARY_LIMIT


def _ids_in_source() -> set[str]:
    """Check ids the adapter's code can report (E00x from the settings, W00x from the checks)."""
    found = set()
    for module in (adapter_settings, checks_module):
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        found |= {f"upvest_verify.{code}" for code in re.findall(r'"([EW]00[0-9])"', source)}
        found |= set(re.findall(r"upvest_verify\.[EW]00[0-9]", source))
    return found


def test_every_check_id_is_listed_and_documented() -> None:
    """CHECK_IDS holds every id the code reports; the Django page explains each one."""
    from upvest_verify.adapters.django.checks import CHECK_IDS
    from upvest_verify.adapters.django.conf import DJANGO_UPLOAD_LIMIT as ADAPTER_DEFAULT

    assert ADAPTER_DEFAULT == DJANGO_UPLOAD_LIMIT
    assert _ids_in_source() <= set(CHECK_IDS)
    page = (ROOT / "docs" / "getting-started" / "django.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(upvest_verify\.[EW]\d{3})` \| (.+) \|$", page, re.MULTILINE))
    assert set(rows) == set(CHECK_IDS), "the Django page lists exactly the check ids"
    assert all(meaning.strip() for meaning in rows.values())
    docstring = checks_module.__doc__ or ""
    assert all(check.split(".")[1] in docstring for check in CHECK_IDS)
