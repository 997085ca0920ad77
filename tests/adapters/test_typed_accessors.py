"""Every adapter has a typed, documented accessor for the verified webhook and its delivery.

``request.state.upvest_webhook``, ``flask.g.upvest_webhook`` and
``request.upvest_webhook`` are ``Any`` to a type checker; ``get_webhook(...)`` and
``get_delivery(...)`` are not. A small module is type-checked with ``mypy --strict``
(``assert_type`` fails the run on any other type), and the documentation names the
accessors.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

for _module in ("starlette", "fastapi", "flask", "django"):
    pytest.importorskip(_module, reason=f"the {_module} extra is not installed")
mypy_api = pytest.importorskip("mypy.api", reason="the typing test needs mypy (group typing)")

DOCS = Path(__file__).resolve().parents[2] / "docs"

SAMPLE = textwrap.dedent(
    """
    from __future__ import annotations

    from typing import Any

    from typing_extensions import assert_type

    from starlette.requests import Request

    from upvest_verify import VerifiedWebhook
    from upvest_verify.adapters import django as dj
    from upvest_verify.adapters import fastapi as fa
    from upvest_verify.adapters import flask as fl
    from upvest_verify.adapters import starlette as st


    def starlette_and_fastapi(
        request: Request, webhook: fa.UpvestWebhook, delivery: fa.UpvestDelivery
    ) -> None:
        assert_type(st.get_webhook(request), VerifiedWebhook | None)
        assert_type(st.get_delivery(request), st.Delivery | None)
        assert_type(fa.get_webhook(request), VerifiedWebhook | None)
        assert_type(fa.get_delivery(request), fa.Delivery | None)
        assert_type(webhook, VerifiedWebhook)
        assert_type(delivery, fa.Delivery)


    def flask_view() -> None:
        assert_type(fl.get_webhook(), VerifiedWebhook | None)
        assert_type(fl.get_delivery(), fl.Delivery | None)
        assert_type(fl.current_webhook(), VerifiedWebhook)


    def django_view(request: Any) -> None:
        assert_type(dj.get_webhook(request), VerifiedWebhook | None)
        assert_type(dj.get_delivery(request), dj.Delivery | None)


    reveal_type(fl.get_webhook())
    """
)


def test_accessors_are_typed_for_mypy(tmp_path: Path) -> None:
    """``mypy --strict`` accepts every ``assert_type`` and reveals ``VerifiedWebhook | None``."""
    sample = tmp_path / "accessors.py"
    sample.write_text(SAMPLE, encoding="utf-8")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n", encoding="utf-8")
    out, err, status = mypy_api.run(
        [
            str(sample),
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert status == 0, out + err
    assert 'Revealed type is "upvest_verify._result.VerifiedWebhook | None"' in out


@pytest.mark.parametrize(
    ("page", "accessors"),
    [
        ("starlette.md", ["get_webhook(request)"]),
        ("fastapi.md", ["get_webhook(request)"]),
        ("flask.md", ["get_webhook()"]),
        ("django.md", ["get_webhook(request)"]),
        ("index.md", ["get_webhook(request)", "get_webhook()", "get_delivery(request)"]),
    ],
)
def test_accessors_are_documented(page: str, accessors: list[str]) -> None:
    """Each adapter's getting-started page (and the overview) names its typed accessor."""
    text = (DOCS / "getting-started" / page).read_text(encoding="utf-8")
    for accessor in accessors:
        assert re.search(re.escape(accessor), text), f"{page} does not name {accessor}"
