"""The README's "Managing webhooks" examples run as written against the emulator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")

from upvest_verify.testing import sign_webhook

from .client_support import sync_client

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Managing webhooks\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def _fill(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"the README example no longer contains {old!r}"
        code = code.replace(old, new)
    return code


def test_management_example(sandbox: Any, tenant: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The first example, with the emulator's URL and a tenant's credentials filled in."""
    code = _fill(
        _examples()[0],
        {
            '"<key id registered with Upvest>"': "KEY_ID",
            'base_url="sandbox"': "base_url=BASE_URL",
            'client_id="..."': "client_id=CLIENT_ID",
            'client_secret="..."': "client_secret=CLIENT_SECRET",
        },
    )
    namespace: dict[str, Any] = {
        "pem_bytes": tenant.signing_key.to_pem(),
        "KEY_ID": tenant.signing_key.key_id,
        "BASE_URL": sandbox.base_url,
        "CLIENT_ID": tenant.client_id,
        "CLIENT_SECRET": tenant.client_secret,
    }
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    first, second = capsys.readouterr().out.splitlines()
    assert first == "1 ['Users']"
    assert " True ('USER',) " in second
    assert sandbox.webhooks(tenant) == []  # created, enabled, renamed, tested, deleted


def test_key_source_example(sandbox: Any, tenant: Any) -> None:
    """The key-source example verifies a webhook signed with the emulator's current key."""
    signed = sign_webhook({"payload": []}, key=sandbox.signing_key)
    with sync_client(sandbox.base_url, tenant) as client:
        namespace: dict[str, Any] = {
            "client": client,
            "method": signed.method,
            "url": signed.url,
            "headers": signed.headers,
            "body": signed.body,
        }
        exec(compile(_examples()[1], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["webhook"].key_id == sandbox.signing_key.key_id
