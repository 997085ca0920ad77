"""The adapters' own codes (not verification outcomes, so no ``Reason``) are documented.

``docs/reference/reasons.md`` lists them beside the reason codes with their HTTP
status; the Failures overview and the README name ``method_not_allowed``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from upvest_verify import Reason

_reject = pytest.importorskip("upvest_verify.adapters._reject")

DOCS = Path(__file__).resolve().parents[2] / "docs"

STATUS = {
    "method_not_allowed": 405,
    "incomplete_body": 400,
    "invalid_payload": 400,
    "configuration_error": 500,
    "internal_error": 500,
    "in_progress": 503,
    "ledger_unavailable": 503,
}
"""Each adapter code and the status every adapter answers it with."""


def adapter_codes() -> set[str]:
    """The string constants of the refusal module: every code an adapter can send."""
    return {
        value
        for name in _reject.__all__
        if isinstance(value := getattr(_reject, name), str) and re.fullmatch(r"[a-z_]+", value)
    }


def documented() -> dict[str, int]:
    """The rows of the "Adapter codes" table of the reason reference: code -> status."""
    text = (DOCS / "reference" / "reasons.md").read_text(encoding="utf-8")
    section = text.split("## Adapter codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", section, re.MULTILINE)
    assert all(meaning.strip() for _, _, meaning in rows)
    return {code: int(status) for code, status, _ in rows}


def test_every_adapter_code_is_documented_with_its_status() -> None:
    """The table lists exactly the adapters' codes, none of them a Reason, with their status."""
    assert adapter_codes() == set(STATUS)
    assert not set(STATUS) & {reason.value for reason in Reason}
    assert documented() == STATUS


def test_method_not_allowed_is_documented_beside_the_reasons() -> None:
    """405 ``method_not_allowed`` is in the reason reference and in the Failures overview."""
    assert _reject.METHOD_NOT_ALLOWED == "method_not_allowed"
    assert documented()["method_not_allowed"] == 405
    overview = (DOCS / "getting-started" / "index.md").read_text(encoding="utf-8")
    failures = overview.split("### Failures", 1)[1].split("\n### ", 1)[0]
    assert re.search(r"^\| 405 \| `method_not_allowed`", failures, re.MULTILINE)
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "`method_not_allowed`" in readme
