"""``upvest-verify verify``: check a captured raw HTTP request against a JWKS.

The capture is the request as it came off the wire: request line, header lines, a
blank line, the body. The command prints the dialect that matched, or the reason
code and a hint for the usual mistakes (an old capture checked without ``--now``, a
newline an editor appended to the body). For ``bad_signature`` and
``digest_mismatch`` it also prints what was rebuilt (method, URL, covered components,
the bases tried, the body length against ``Content-Length``) and hints for a wrong
``--base-url`` or a changed body; ``--show-base`` prints the signature bases too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click

from upvest_verify import KeySet, Policy, VerificationError, Verifier
from upvest_verify.diagnosis import URLSetup, diagnose
from upvest_verify.errors import ConfigurationError, Reason
from upvest_verify.jwks import load_jwks

from ._common import CommandError, UsageMistake, console, safe

__all__ = ["Capture", "parse_capture", "verify_command"]

_FORMAT_HINT = (
    "a capture is the raw request: 'POST /path HTTP/1.1', header lines, a blank line, the body"
)


@dataclass(frozen=True, slots=True)
class Capture:
    """A captured request, split into its parts."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header field ``name``, or ``None``."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


def parse_capture(data: bytes) -> Capture:
    """Split a raw HTTP/1.1 request into method, target, header fields and body.

    Raises:
        ValueError: No request line, or a header line without a colon.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError("the capture is empty")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[0].isalpha() or not parts[1]:
        raise ValueError(f"the first line is not a request line: {lines[0][:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # obs-fold continuation
            name, value = headers[-1]
            headers[-1] = (name, value + "\r\n" + line)
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"not a header line: {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return Capture(parts[0], parts[1], headers, body)


def _key_set(value: str) -> KeySet:
    hint = "--jwks takes a JWKS file (the body of GET /auth/verify_keys) or JSON text"
    try:
        return KeySet.from_jwks(load_jwks(value))
    except (ConfigurationError, ValueError) as e:
        raise UsageMistake(f"unusable --jwks: {e}", hint) from e


def _created(capture: Capture) -> int | None:
    value = capture.header("signature-input") or ""
    _, found, rest = value.partition("created=")
    digits = rest.split(";")[0].strip()
    return int(digits) if found and digits.isdigit() else None


def _hint(error: VerificationError, capture: Capture) -> str | None:
    if error.reason in (Reason.EXPIRED, Reason.CREATED_IN_FUTURE):
        created = _created(capture)
        if created is not None:
            age = int(time.time()) - created
            return (
                f"it was signed at {created} ({age} s ago); "
                f"to check a capture as of then, pass --now {created}"
            )
    return None


def _setup(base_url: str | None) -> URLSetup | None:
    """What ``--base-url`` imposes on the URL: its origin and path prefix."""
    if base_url is None or "://" not in base_url:
        return None
    scheme, _, rest = base_url.partition("://")
    authority, slash, path = rest.partition("/")
    return URLSetup(
        public_url=f"{scheme.lower()}://{authority}", path_prefix=(slash + path).rstrip("/")
    )


def _explain(error: VerificationError, base_url: str | None, show_base: bool) -> list[str]:
    """What was rebuilt, the hints and (with ``--show-base``) the bases, as output lines."""
    found = diagnose(error, setup=_setup(base_url), surface="cli", show_base=show_base)
    if found is None:
        return []
    lines = found.lines()
    for name, base in found.bases:
        lines.append(f"signature base ({name}):")
        lines.extend(f"  {line}" for line in base.split("\n"))
    return lines


@click.command("verify")
@click.argument("request_file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--jwks", required=True, help="JWKS file, or JSON text starting with '{'.")
@click.option("--base-url", help="Scheme and authority the request was sent to.")
@click.option("--now", type=float, help="Unix time to verify at (default: now).")
@click.option("--skew", type=float, default=60.0, show_default=True)
@click.option("--max-age", type=float, default=300.0, show_default=True)
@click.option(
    "--show-base",
    is_flag=True,
    envvar="UPVEST_VERIFY_SHOW_BASE",
    help="On bad_signature or digest_mismatch, print the signature bases (header values).",
)
def verify_command(
    request_file: Path,
    jwks: str,
    base_url: str | None,
    now: float | None,
    skew: float,
    max_age: float,
    show_base: bool,
) -> None:
    """Verify a captured raw HTTP request (request line, headers, blank line, body).

    Exit status 0 when it verifies, 1 when it is rejected, 2 for a usage mistake.

        upvest-verify verify captured.http --jwks verify_keys.json --now 1700000000
    """
    try:
        data = request_file.read_bytes()
    except OSError as e:
        raise UsageMistake(
            f"cannot read {request_file}: {e.strerror}",
            "pass the file holding the captured request",
        ) from e
    try:
        capture = parse_capture(data)
    except ValueError as e:
        raise CommandError(f"{request_file} is not an HTTP request: {e}", _FORMAT_HINT) from e
    keys = _key_set(jwks)
    given_base_url = base_url
    if base_url is None:
        host = capture.header("host")
        base_url = f"https://{host}" if host else ""
    url = base_url.rstrip("/") + capture.target if base_url else capture.target
    try:
        policy = Policy(skew=skew, max_age=max_age)
    except ConfigurationError as e:
        raise UsageMistake(str(e), "--skew and --max-age take seconds") from e
    verifier = Verifier(keys, policy=policy, clock=(lambda: now) if now is not None else time.time)
    out = console()
    try:
        webhook = verifier.verify(capture.method, url, capture.headers, capture.body)
    except VerificationError as e:
        out.print(f"[red]rejected[/] {e.reason.value} (HTTP {e.status_code}): {safe(e.message)}")
        hint = _hint(e, capture)
        if hint:
            out.print(f"hint: {safe(hint)}")
        for line in _explain(e, given_base_url, show_base):
            out.print(safe(line), soft_wrap=True)
        raise SystemExit(1) from None
    out.print(
        f"[green]verified[/] key {safe(webhook.key_id)}, label {safe(webhook.label)}, "
        f"dialect {webhook.dialect}, covers {safe(' '.join(webhook.covered_components))}, "
        f"{len(webhook.events)} event(s)"
    )
