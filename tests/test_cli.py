"""The upvest-verify command line: the demo and the verify command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the CLI needs the [cli] extra")
pytest.importorskip("rich", reason="the CLI needs the [cli] extra")

from click.testing import CliRunner

from upvest_verify import cli
from upvest_verify.testing import generate_key, make_jwks, sample_events, sign_webhook


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI in-process and return (exit code, output)."""
    result = CliRunner().invoke(cli._build_cli(), list(args))
    return result.exit_code, result.output


def test_demo_runs_every_scenario_end_to_end() -> None:
    """The demo serves keys and a receiver on loopback and every scenario behaves."""
    code, out = invoke("demo")
    assert code == 0, out
    assert "all scenarios behaved as expected" in out
    for verdict in ("digest_mismatch", "expired", "missing_component", "unknown_key"):
        assert verdict in out


def _capture(tmp_path: Path, body_change: bytes | None = None) -> tuple[Path, Path, int]:
    key = generate_key()
    signed = sign_webhook(sample_events(2), key=key, url="https://hooks.example.com/upvest?x=1")
    body = signed.body if body_change is None else body_change
    head = "POST /upvest?x=1 HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.headers)
    request = tmp_path / "request.http"
    request.write_bytes(head.encode() + b"\r\n" + body)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(make_jwks(key)))
    created = int((signed.header("signature-input") or "").split("created=")[1].split(";")[0])
    return request, jwks, created


def test_verify_command_reports_the_dialect(tmp_path: Path) -> None:
    """A captured valid request verifies and the matched dialect is printed."""
    request, jwks, created = _capture(tmp_path)
    code, out = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert code == 0, out
    assert "verified" in out
    assert "upvest-v6/der/digest" in out


def test_verify_command_reports_the_reason(tmp_path: Path) -> None:
    """A tampered captured request is rejected with its reason code and exit status 1."""
    request, jwks, created = _capture(tmp_path, body_change=b'{"payload":[]}')
    code, out = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert code == 1
    assert "digest_mismatch" in out
