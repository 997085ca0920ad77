"""``upvest-verify verify``: captured requests, verdicts, and one-line answers to mistakes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")

from upvest_verify.testing import generate_key, make_jwks, sample_events, sign_webhook

from .helpers import invoke


def _capture(
    tmp_path: Path, body: bytes | None = None, tail: bytes = b"", age: int = 0
) -> tuple[Path, Path, int]:
    key = generate_key()
    signed = sign_webhook(
        sample_events(2),
        key=key,
        url="https://hooks.example.com/upvest?x=1",
        created=int(time.time()) - age,
    )
    head = "POST /upvest?x=1 HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.headers)
    request = tmp_path / "request.http"
    request.write_bytes(head.encode() + b"\r\n" + (signed.body if body is None else body) + tail)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(make_jwks(key)))
    created = int((signed.header("signature-input") or "").split("created=")[1].split(";")[0])
    return request, jwks, created


def _one_line_answer(output: str) -> None:
    assert "Traceback" not in output
    assert "error: " in output
    assert "hint: " in output


def test_verify_reports_the_dialect(tmp_path: Path) -> None:
    """A captured valid request verifies and the matched dialect is printed."""
    request, jwks, created = _capture(tmp_path)
    done = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert done.code == 0, done.output
    assert "verified" in done.output
    assert "upvest-v6/der/digest" in done.output


def test_verify_reports_the_reason(tmp_path: Path) -> None:
    """A tampered captured request is rejected with its reason code and exit status 1."""
    request, jwks, created = _capture(tmp_path, body=b'{"payload":[]}')
    done = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert done.code == 1
    assert "rejected digest_mismatch" in done.output


def test_missing_capture_file(tmp_path: Path) -> None:
    """A capture file that does not exist is a usage mistake, named in one line."""
    _, jwks, _ = _capture(tmp_path)
    done = invoke("verify", str(tmp_path / "nope.http"), "--jwks", str(jwks))
    assert done.code == 2
    assert "cannot read" in done.output
    _one_line_answer(done.output)


def test_missing_jwks_option(tmp_path: Path) -> None:
    """Without --jwks click names the missing option."""
    request, _, _ = _capture(tmp_path)
    done = invoke("verify", str(request))
    assert done.code == 2
    assert "Missing option '--jwks'" in done.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "unusable --jwks"), ("not json", "unusable --jwks"), ('{"nokeys": 1}', "keys")],
    ids=["missing-file", "not-json", "no-keys"],
)
def test_bad_jwks(tmp_path: Path, content: str | None, expected: str) -> None:
    """A missing or unusable JWKS file is a usage mistake answered in one line."""
    request, _, created = _capture(tmp_path)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    done = invoke("verify", str(request), "--jwks", str(bad), "--now", str(created))
    assert done.code == 2
    assert expected in done.output
    _one_line_answer(done.output)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello\r\n\r\n{}", b"POST /x HTTP/1.1\r\nno colon here\r\n\r\n{}"],
    ids=["empty", "no-request-line", "bad-header"],
)
def test_malformed_capture(tmp_path: Path, data: bytes) -> None:
    """A file that is not an HTTP request gets one line and the format as the hint."""
    _, jwks, _ = _capture(tmp_path)
    request = tmp_path / "broken.http"
    request.write_bytes(data)
    done = invoke("verify", str(request), "--jwks", str(jwks))
    assert done.code == 1
    assert "is not an HTTP request" in done.output
    _one_line_answer(done.output)


def test_old_capture_without_now(tmp_path: Path) -> None:
    """An old capture checked at the current time is expired, and the hint gives --now."""
    request, jwks, created = _capture(tmp_path, age=3600)
    done = invoke("verify", str(request), "--jwks", str(jwks))
    assert done.code == 1
    assert "rejected expired" in done.output
    assert f"--now {created}" in done.output
    assert invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created)).code == 0
    assert "Traceback" not in done.output


def test_trailing_newline_breaks_the_digest(tmp_path: Path) -> None:
    """A newline appended to the body is rejected, and the hint says to remove it."""
    request, jwks, created = _capture(tmp_path, tail=b"\n")
    done = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert done.code == 1
    assert "digest_mismatch" in done.output
    assert "newline" in done.output


def test_a_real_digest_mismatch_gets_no_newline_hint(tmp_path: Path) -> None:
    """A body changed beyond a trailing newline gets no newline hint."""
    request, jwks, created = _capture(tmp_path, body=b'{"payload":[]}', tail=b"\n")
    done = invoke("verify", str(request), "--jwks", str(jwks), "--now", str(created))
    assert done.code == 1
    assert "digest_mismatch" in done.output
    assert "newline" not in done.output


# --------------------------------------------------------------------------- diagnoses

URL_COMPONENTS = ["@method", "@scheme", "@authority", "@path", "digest"]


def _proxied_capture(
    tmp_path: Path,
    *,
    signed_url: str = "https://hooks.example.com/webhooks/upvest",
    target: str = "/webhooks/upvest",
    host: str = "hooks.example.com",
    extra: tuple[tuple[str, str], ...] = (),
    components: list[str] | None = None,
    body: bytes | None = None,
    forged: bool = False,
) -> tuple[Path, Path, int]:
    """A capture taken behind a proxy: signed for ``signed_url``, received as ``target``."""
    key = generate_key(kid="capture-key")
    signer = generate_key(kid="capture-key") if forged else key
    signed = sign_webhook(
        sample_events(1), key=signer, url=signed_url, components=components or URL_COMPONENTS
    )
    lines = [(k, v) for k, v in signed.headers if k != "host"] + [("host", host), *extra]
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines)
    request = tmp_path / "proxied.http"
    request.write_bytes(head.encode() + b"\r\n" + (signed.body if body is None else body))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(make_jwks(key)))
    created = int((signed.header("signature-input") or "").split("created=")[1].split(";")[0])
    return request, jwks, created


def _run(request: Path, jwks: Path, created: int, *args: str, **env: str) -> str:
    done = invoke(
        "verify", str(request), "--jwks", str(jwks), "--now", str(created), *args, env=env
    )
    assert done.code == 1, done.output
    assert "Traceback" not in done.output
    return " ".join(done.output.split())  # rich wraps long lines


def test_internal_host_in_the_capture(tmp_path: Path) -> None:
    """A capture whose Host is the app server's: the rebuilt URL and a --base-url hint."""
    output = _run(*_proxied_capture(tmp_path, host="127.0.0.1:8000"))
    assert "rejected bad_signature" in output
    assert "rebuilt: POST https://127.0.0.1:8000/webhooks/upvest (query: none)" in output
    assert "tried: upvest-v6/exact rfc9421/exact, signature encoding der" in output
    assert (
        "hint: the URL was rebuilt as 'https://127.0.0.1:8000' (a loopback address, port 8000)"
        in output
    )
    assert "pass --base-url https://<your public host>[/prefix]" in output


def test_full_webhook_url_as_base_url(tmp_path: Path) -> None:
    """--base-url with the webhook path doubles it; the hint gives the right --base-url."""
    request, jwks, created = _proxied_capture(tmp_path)
    output = _run(request, jwks, created, "--base-url", "https://hooks.example.com/webhooks/upvest")
    assert "rebuilt: POST https://hooks.example.com/webhooks/upvest/webhooks/upvest" in output
    assert "--base-url takes scheme://host[/prefix] only" in output
    assert "--base-url https://hooks.example.com" in output


def test_prefix_stripped_before_the_capture(tmp_path: Path) -> None:
    """X-Forwarded-Prefix in the capture: the hint puts the prefix into --base-url."""
    request, jwks, created = _proxied_capture(
        tmp_path,
        signed_url="https://hooks.example.com/api/webhooks/upvest",
        extra=(("x-forwarded-prefix", "/api"),),
    )
    output = _run(request, jwks, created)
    assert "a proxy stripped the path prefix '/api'" in output
    assert "pass --base-url https://<your public host>/api" in output
    done = invoke(
        "verify", str(request), "--jwks", str(jwks), "--now", str(created),
        "--base-url", "https://hooks.example.com/api",
    )  # fmt: skip
    assert done.code == 0, done.output


def test_reformatted_body_in_the_capture(tmp_path: Path) -> None:
    """A capture whose JSON was pretty-printed: the hint says so, the body is not printed."""
    request, jwks, created = _proxied_capture(tmp_path)
    # The same capture with its body reformatted (the digest is still the original's).
    head, _, original = request.read_bytes().partition(b"\r\n\r\n")
    pretty = json.dumps(json.loads(original), indent=2).encode()
    request.write_bytes(head + b"\r\n\r\n" + pretty)
    output = _run(request, jwks, created)
    assert "rejected digest_mismatch" in output
    assert "its JSON was parsed and serialised again" in output
    assert "tried: none (the digest is checked first)" in output
    assert f"body: {len(pretty)} bytes, Content-Length {len(original)}" in output
    assert original.decode()[:20] not in output


def test_forged_capture_gets_no_hint(tmp_path: Path) -> None:
    """A forgery with the right --base-url: what was rebuilt, and no hint."""
    request, jwks, created = _proxied_capture(tmp_path, forged=True)
    output = _run(request, jwks, created, "--base-url", "https://hooks.example.com")
    assert "rebuilt: POST https://hooks.example.com/webhooks/upvest" in output
    assert "hint:" not in output


def test_show_base_prints_the_bases(tmp_path: Path) -> None:
    """Only --show-base (or UPVEST_VERIFY_SHOW_BASE) prints the signature bases."""
    request, jwks, created = _proxied_capture(tmp_path, forged=True)
    assert "@signature-params" not in _run(request, jwks, created)
    shown = _run(request, jwks, created, "--show-base")
    assert "signature base (upvest-v6/exact): @method: POST @scheme: https" in shown
    assert "@signature-params" in shown
    assert "signature base (" in _run(request, jwks, created, UPVEST_VERIFY_SHOW_BASE="1")
