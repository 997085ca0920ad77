"""Rejections: problem documents, exception mapping and the security log (``adapters/_reject.py``)."""

from __future__ import annotations

import json
import logging

import pytest

from upvest_verify import ConfigurationError, Reason, VerificationError
from upvest_verify.adapters._body import IncompleteBody
from upvest_verify.adapters._reject import Rejection, log_rejection, rejection_for


def test_rejections() -> None:
    """Exceptions map to status and code; the body is a problem document without internals."""
    rejection = rejection_for(VerificationError(Reason.EXPIRED, "secret detail"))
    assert rejection == Rejection(401, "expired")
    assert json.loads(rejection.body()) == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "expired",
    }
    assert rejection_for(ConfigurationError("x")) == Rejection(500, "configuration_error")
    assert rejection_for(KeyError("x")) == Rejection(500, "internal_error")
    assert ("allow", "POST") in Rejection(405, "method_not_allowed").headers()
    assert Rejection(599, "x").title == "Error"


def test_incomplete_body_is_a_400() -> None:
    """A body shorter than its Content-Length maps to 400 incomplete_body, for every adapter."""
    rejection = rejection_for(IncompleteBody("short"))
    assert rejection == Rejection(400, "incomplete_body")
    assert json.loads(rejection.body())["title"] == "Bad Request"


def test_log_rejection_levels_and_path(caplog: pytest.LogCaptureFixture) -> None:
    """Client failures log a warning, server failures an error with traceback; no query logged."""
    caplog.set_level(logging.DEBUG, logger="upvest_verify.security")
    error = VerificationError(Reason.BAD_SIGNATURE, "no match", key_id="k1")
    log_rejection(Rejection(401, "bad_signature"), "/webhooks/upvest?token=secret", error)
    try:
        raise KeyError("boom")
    except KeyError as crash:
        log_rejection(Rejection(500, "internal_error"), "/webhooks/upvest", crash)
    warning, failure = caplog.records
    assert warning.name == "upvest_verify.security"
    assert (warning.levelname, warning.exc_info) == ("WARNING", None)
    assert "reason=bad_signature status=401 path='/webhooks/upvest'" in warning.getMessage()
    assert "key_id='k1'" in warning.getMessage()
    assert "secret" not in warning.getMessage()
    assert failure.levelname == "ERROR"
    assert failure.exc_info is not None
