"""``VerifiedWebhook.envelope_error``: read a verified body of another shape without a ``try``."""

from __future__ import annotations

import json
import re

import pytest

from upvest_verify import PayloadError, VerifiedWebhook, verify
from upvest_verify.testing import generate_key, make_key_set, sample_events, sign_webhook

KEY = generate_key()
MARKER = "S3CR3T-BODY-VALUE"


def verified(body: bytes) -> VerifiedWebhook:
    """``body``, signed and verified."""
    signed = sign_webhook(body, key=KEY)
    return verify(signed.method, signed.url, signed.headers, signed.body, keys=make_key_set(KEY))


def test_an_envelope_has_no_error_and_its_events_are_parsed_once() -> None:
    """``None`` for an envelope; ``events`` is then cached and cannot raise."""
    webhook = verified(json.dumps(sample_events(2)).encode())
    assert webhook.envelope_error is None
    events = webhook.events
    assert len(events) == 2
    assert webhook.events is events
    assert webhook.envelope_error is None


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"event": MARKER}).encode(),
        json.dumps([MARKER]).encode(),
        f"{MARKER}\xff".encode("latin-1"),
        json.dumps({"payload": [{"id": MARKER}]}).encode(),
        json.dumps(
            {
                "payload": [
                    {
                        "id": "e",
                        "type": "A.B",
                        "created_at": MARKER,
                        "webhook_id": "w",
                        "object": {},
                    }
                ]
            }
        ).encode(),
        "\xff".encode("latin-1"),
    ],
    ids=["other-object", "list", "not-json", "event-lacks-fields", "bad-created-at", "not-utf8"],
)
def test_another_shape_is_named_without_quoting_the_body(body: bytes) -> None:
    """The error ``events`` would raise, returned; its message quotes nothing of the body."""
    webhook = verified(body)
    error = webhook.envelope_error
    assert isinstance(error, PayloadError)
    assert error.__traceback__ is None
    assert MARKER not in str(error)
    assert "\\xff" not in str(error)
    with pytest.raises(PayloadError, match=re.escape(str(error))):
        _ = webhook.events
    if body.startswith(b"{"):
        assert webhook.json() == json.loads(body)  # the body, read in its own shape
