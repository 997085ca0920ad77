"""Shared helpers for the adversarial tests: signing, hand-built bases, verdicts, counters.

Every verdict goes through the public entry points, :func:`upvest_verify.verify` and
:class:`upvest_verify.Verifier`, inside :func:`no_swallowed_errors`, so a crash the
verifier turned into a reject fails the test instead of passing it.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from upvest_verify import KeySet, Policy, VerificationError, VerifiedWebhook, Verifier, verify
from upvest_verify.testing import SignedWebhook, SigningKey, sign_webhook

_TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    # The shared test modules live in folders without __init__.py; load them by path
    # (once: a module already imported under that name is reused).
    module = sys.modules.get(name)
    if module is not None and Path(str(module.__file__)).resolve() == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_core_helpers = _load("core_helpers", _TESTS / "core" / "core_helpers.py")
_root_conftest = _load("_upvest_tests_root_conftest", _TESTS / "conftest.py")

no_swallowed_errors: Callable[[], Any] = _core_helpers.no_swallowed_errors
"""Fail if verify() met an exception it did not anticipate (see tests/core/core_helpers.py)."""
shared_vectors: Callable[..., Path] = _root_conftest.shared_vectors
"""A path under ../shared/vectors; skips the test when the folder is absent."""

REFERENCE_NOW: int = _root_conftest.REFERENCE_NOW
URL = "https://receiver.example/webhooks/upvest"
PATH = "/webhooks/upvest"
BODY = (
    b'{"payload":[{"id":"8962b496-9a3c-4a5b-8f1c-2d3e4f5a6b7c",'
    b'"created_at":"2021-07-21T14:10:00.980159529Z","type":"CASH_BALANCE.UPDATED",'
    b'"object":{"currency":"EUR","balance":"100.25"},'
    b'"webhook_id":"9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b"}]}'
)

# The two dialects the plan runs every base and digest case in: Upvest v6 with the
# RFC 3230 Digest field, RFC 9421 with Content-Digest.
DIALECTS = [
    pytest.param("upvest-v6", "digest", id="v6"),
    pytest.param("rfc9421", "content-digest", id="rfc9421"),
]
# Signature-parameter line name per layout (the v6 dialect drops the quotes).
PARAMS_LINE = {"upvest-v6": "@signature-params", "rfc9421": '"@signature-params"'}


def sign(
    key: SigningKey, dialect: str = "upvest-v6", body: bytes = BODY, **kwargs: Any
) -> SignedWebhook:
    """Sign a webhook created at REFERENCE_NOW for URL, in ``dialect`` with its own digest."""
    kwargs.setdefault("created", REFERENCE_NOW)
    kwargs.setdefault("url", URL)
    kwargs.setdefault("digest", "digest" if dialect == "upvest-v6" else "content-digest")
    return sign_webhook(body, key=key, dialect=dialect, **kwargs)  # type: ignore[arg-type]


def header(headers: Sequence[tuple[str, str]], name: str) -> str:
    """The first value of header ``name`` (case-insensitive); fails if absent."""
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    raise AssertionError(f"no {name} header")


def with_headers(signed: SignedWebhook, **replace: str | None) -> list[tuple[str, str]]:
    """The header pairs with some replaced (``None`` removes); underscores become dashes."""
    result: list[tuple[str, str]] = _core_helpers.with_headers(signed, **replace)
    return result


def without_signature(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header pairs without Signature and Signature-Input."""
    return [(k, v) for k, v in headers if k.lower() not in ("signature", "signature-input")]


def b64(data: bytes) -> str:
    """Standard, padded base64."""
    return base64.b64encode(data).decode("ascii")


def manual_base(layout: str, lines: Sequence[tuple[str, str]], signature_params: str) -> bytes:
    """Write a signature base by hand (RFC 9421 §2.5), independently of the library.

    Args:
        layout: ``rfc9421`` (quoted line names) or ``upvest-v6`` (unquoted).
        lines: ``(identifier, value)`` per line; the identifier as serialised
            (``'"@method"'``, ``'"x-dict";key="a"'``); the v6 layout unquotes the name.
        signature_params: The ``@signature-params`` value.

    Returns:
        The base as bytes (lines joined with LF, no trailing LF).
    """
    out = []
    for ident, value in lines:
        if layout == "upvest-v6" and ident.startswith('"'):
            name, _, params = ident[1:].partition('"')
            ident = name + params
        out.append(f"{ident}: {value}")
    out.append(f"{PARAMS_LINE[layout]}: {signature_params}")
    return "\n".join(out).encode("latin-1")


def signature_fields(
    key: SigningKey,
    signature_params: str,
    base: bytes,
    *,
    label: str = "sig1",
    encoding: str = "der",
) -> list[tuple[str, str]]:
    """Sign ``base`` and return the Signature-Input and Signature fields for it."""
    sig = key.sign(base, encoding=encoding)  # type: ignore[arg-type]
    return [
        ("signature-input", f"{label}={signature_params}"),
        ("signature", f"{label}=:{b64(sig)}:"),
    ]


def resign(
    key: SigningKey,
    signed: SignedWebhook,
    signature_params: str,
    *,
    layout: str,
    extra: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Headers of ``signed`` with its base's last line replaced by ``signature_params``, re-signed.

    The component lines are kept as signed, so the result is a correctly signed
    webhook whose ``Signature-Input`` says ``signature_params``.
    """
    component_lines = signed.base.rsplit(b"\n", 1)[0]
    base = component_lines + f"\n{PARAMS_LINE[layout]}: {signature_params}".encode()
    return [
        *without_signature(signed.headers),
        *extra,
        *signature_fields(key, signature_params, base),
    ]


def signature_params_of(signed: SignedWebhook, label: str = "sig1") -> str:
    """The Signature-Input value without ``label=``."""
    return header(signed.headers, "signature-input").removeprefix(f"{label}=")


def _run_function(
    method: str, url: str, headers: Any, body: Any, keys: KeySet, now: float, policy: Policy | None
) -> VerifiedWebhook:
    return verify(method, url, headers, body, keys=keys, now=now, policy=policy)


def _run_verifier(
    method: str, url: str, headers: Any, body: Any, keys: KeySet, now: float, policy: Policy | None
) -> VerifiedWebhook:
    return Verifier(keys, policy=policy, clock=lambda: now).verify(method, url, headers, body)


ENTRY_POINTS = (_run_function, _run_verifier)


def _parts(
    signed: SignedWebhook,
    headers: Any,
    body: Any,
    method: str | None,
    url: str | None,
) -> tuple[str, str, Any, Any]:
    return (
        signed.method if method is None else method,
        signed.url if url is None else url,
        list(signed.headers) if headers is None else headers,
        signed.body if body is None else body,
    )


def accept(
    signed: SignedWebhook,
    keys: KeySet,
    *,
    headers: Any = None,
    body: Any = None,
    method: str | None = None,
    url: str | None = None,
    now: float = REFERENCE_NOW,
    policy: Policy | None = None,
) -> VerifiedWebhook:
    """Verify through verify() and a Verifier; both must accept. Returns verify()'s result."""
    parts = _parts(signed, headers, body, method, url)
    results = []
    with no_swallowed_errors():
        for run in ENTRY_POINTS:
            results.append(run(*parts, keys, now, policy))
    assert results[0].key_id == results[1].key_id
    return results[0]


def rejection(
    signed: SignedWebhook,
    keys: KeySet,
    *,
    headers: Any = None,
    body: Any = None,
    method: str | None = None,
    url: str | None = None,
    now: float = REFERENCE_NOW,
    policy: Policy | None = None,
) -> VerificationError:
    """Verify through verify() and a Verifier; both must reject with the same reason.

    Runs inside :func:`no_swallowed_errors`. Returns the error verify() raised.
    """
    parts = _parts(signed, headers, body, method, url)
    errors: list[VerificationError] = []
    with no_swallowed_errors():
        for run in ENTRY_POINTS:
            with pytest.raises(VerificationError) as info:
                run(*parts, keys, now, policy)
            errors.append(info.value)
    assert errors[0].reason is errors[1].reason, errors
    return errors[0]


def reason(signed: SignedWebhook, keys: KeySet, **kwargs: Any) -> str:
    """The reason code (``exc.reason.value``) a rejected webhook gets; fails if accepted."""
    return rejection(signed, keys, **kwargs).reason.value


@contextmanager
def counting(
    monkeypatch: pytest.MonkeyPatch, targets: Sequence[tuple[object, str]]
) -> Iterator[list[tuple[Any, ...]]]:
    """Wrap each ``(module, attribute)`` function so its calls (arguments) are recorded.

    One list collects the calls of all targets; each wrapper calls the original.
    """
    calls: list[tuple[Any, ...]] = []
    for owner, name in targets:
        real = getattr(owner, name)

        def wrapper(*args: Any, __real: Any = real, **kwargs: Any) -> Any:
            calls.append(args)
            return __real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
    yield calls


def ecdsa_verifies(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Count calls of the ECDSA verify primitive on the strict and the fast path."""
    import upvest_verify._fast as fast_module
    import upvest_verify._verify as verify_module

    return counting(
        monkeypatch, [(verify_module, "verify_signature"), (fast_module, "verify_signature")]
    )


def sf_parses(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Count calls of the structured-field parser's entry points."""
    from upvest_verify import _sfv

    return counting(
        monkeypatch, [(_sfv, "parse_dictionary"), (_sfv, "parse_list"), (_sfv, "parse_item")]
    )


def hand_signed(
    key: SigningKey,
    signed: SignedWebhook,
    lines: Sequence[tuple[str, str]],
    layout: str,
    *,
    params: str | None = None,
    label: str = "sig1",
    encoding: str = "der",
    inner: str | None = None,
) -> list[tuple[str, str]]:
    """Headers of ``signed`` with a new signature over a base written by hand.

    Args:
        key: The signing key.
        signed: The webhook whose other header fields are kept.
        lines: ``(identifier, value)`` per base line (see :func:`manual_base`); one
            identifier per covered component, repeated for several values.
        layout: ``rfc9421`` or ``upvest-v6``.
        params: The signature parameters (``;keyid=...``); Upvest's usual ones by default.
        label: The signature label.
        encoding: ``der`` or ``raw``.
        inner: The inner list as sent; by default the identifiers, in order, once each.

    Returns:
        The header pairs.
    """
    if params is None:
        params = f';keyid="{key.kid}";created={REFERENCE_NOW};expires={REFERENCE_NOW + 60}'
    if inner is None:
        idents: list[str] = []
        for ident, _ in lines:
            if not idents or idents[-1] != ident:
                idents.append(ident)
        inner = "(" + " ".join(idents) + ")"
    signature_params = inner + params
    base = manual_base(layout, lines, signature_params)
    fields = signature_fields(key, signature_params, base, label=label, encoding=encoding)
    return [*without_signature(signed.headers), *fields]


def standard_lines(signed: SignedWebhook, digest: str) -> list[tuple[str, str]]:
    """Base lines for ``@method``, ``@path`` and the digest field of a webhook to URL."""
    return [
        ('"@method"', signed.method),
        ('"@path"', PATH),
        (f'"{digest}"', header(signed.headers, digest)),
    ]
