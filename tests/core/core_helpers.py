"""Helpers for core tests: sign arbitrary bases, edit header lists, catch swallowed errors."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager

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


class _SwallowedErrors(logging.Handler):
    """Collects the records verify() logs when it turns an unexpected exception into a reject."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.swallowed: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.swallowed.append(record.exc_info[1])


@contextmanager
def no_swallowed_errors() -> Iterator[None]:
    """Fail if verify() met an exception it did not anticipate inside the block.

    ``verify()`` fails closed: any unexpected exception becomes ``malformed_header``
    and is logged with its traceback on the ``upvest_verify`` logger. A test that
    only expects a ``VerificationError`` would pass even when parsing crashes, so the
    fuzz and garbage tests run inside this block.
    """
    handler = _SwallowedErrors()
    logger = logging.getLogger("upvest_verify")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.swallowed, f"verify() swallowed {handler.swallowed[0]!r}"
