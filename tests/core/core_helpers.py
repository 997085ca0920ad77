"""Helpers for core tests: sign arbitrary bases and edit header lists."""

from __future__ import annotations

import base64

from upvest_verify.testing import SignedWebhook, SigningKey

REFERENCE_NOW = 1_700_000_000


def with_headers(signed: SignedWebhook, **replace: str | None) -> list[tuple[str, str]]:
    """Return the header pairs with some replaced (``None`` removes); underscores become dashes."""
    wanted = {k.replace("_", "-"): v for k, v in replace.items()}
    out = [(k, v) for k, v in signed.headers if k.lower() not in wanted]
    out += [(k, v) for k, v in wanted.items() if v is not None]
    return out


def signature_headers(
    key: SigningKey, signature_input: str, base: str, *, label: str = "sig1", encoding: str = "der"
) -> list[tuple[str, str]]:
    """Sign ``base`` with ``key`` and return Signature-Input/Signature headers for it."""
    sig = key.sign(base.encode("ascii"), encoding=encoding)  # type: ignore[arg-type]
    return [
        ("signature-input", f"{label}={signature_input}"),
        ("signature", f"{label}=:{base64.b64encode(sig).decode()}:"),
    ]
