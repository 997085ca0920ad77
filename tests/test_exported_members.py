"""The public surface: ``__all__`` is complete, sorted and presented as the package's own."""

from __future__ import annotations

import upvest_verify


def test_all_is_sorted_and_unique() -> None:
    """__all__ lists each public name once, in sorted order."""
    names = upvest_verify.__all__
    assert list(names) == sorted(set(names))


def test_every_public_name_is_exported() -> None:
    """Every public attribute of the package is in __all__, and every name exists."""
    for name in upvest_verify.__all__:  # first: most names are imported on first access
        assert hasattr(upvest_verify, name)
    public = {
        name
        for name, value in vars(upvest_verify).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "upvest_verify"
    }
    assert public == set(upvest_verify.__all__) - {"__version__"}


def test_contract_names_from_the_issue() -> None:
    """The names other code builds on are importable from the package root."""
    from upvest_verify import (  # noqa: F401
        KeySet,
        Policy,
        Reason,
        VerificationError,
        VerifiedWebhook,
        Verifier,
        verify,
    )


def test_reason_values_are_the_stable_codes() -> None:
    """Reason values are exactly the fifteen documented codes."""
    assert [r.value for r in upvest_verify.Reason] == [
        "missing_signature",
        "malformed_header",
        "label_mismatch",
        "missing_component",
        "component_unavailable",
        "unknown_key",
        "unsupported_key",
        "unsupported_algorithm",
        "bad_signature",
        "digest_mismatch",
        "expired",
        "created_in_future",
        "replayed",
        "body_too_large",
        "keys_unavailable",
    ]
