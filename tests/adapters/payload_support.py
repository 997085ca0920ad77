"""Bodies that are signed but are not envelopes, and what every adapter must answer (not a test module).

``test_payload.py`` and ``test_fastapi.py`` serve receivers whose views read
``webhook.events``; the ``check_*`` helpers here send them each odd body.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
from adapter_support import SIGNING_KEY, LogWaiter, assert_problem, wire_headers

from upvest_verify.testing import sample_events, sign_webhook

MARKER = "S3CR3T-BODY-VALUE"
"""In every odd body: it must never reach a log line."""

ODD_BODIES: dict[str, bytes] = {
    "other-object": json.dumps({"event": "TEST", "note": MARKER}).encode(),
    "list": json.dumps([MARKER]).encode(),
    "not-json": f"{MARKER} \xff".encode("latin-1"),
    "bad-event": json.dumps(
        {
            "payload": [
                {"id": "e1", "type": "A.B", "created_at": MARKER, "webhook_id": "w", "object": {}}
            ]
        }
    ).encode(),
}


def send(base_url: str, path: str, body: bytes) -> Any:
    """POST ``body``, signed for ``path`` with the trusted key."""
    signed = sign_webhook(body, key=SIGNING_KEY, url=base_url + path)
    with httpx.Client(base_url=base_url, timeout=15) as client:
        return client.post(signed.path, content=signed.body, headers=wire_headers(signed))


def assert_refused_and_logged(answer: Any, log: LogWaiter, body: bytes) -> None:
    """400 invalid_payload, and one ERROR line with key id and length but no body."""
    assert_problem(answer, 400, "invalid_payload")
    record = log.wait_for(f"body_length={len(body)}")
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "reason=invalid_payload" in message
    assert f"key_id={SIGNING_KEY.kid!r}" in message
    assert MARKER not in message
    log.records.clear()


def check_receiver(url: str, paths: list[str], log: LogWaiter, calls: list[Any]) -> None:
    """Each odd body on each path is refused 400; an envelope still passes; the view ran."""
    for path in paths:
        for body in ODD_BODIES.values():
            assert_refused_and_logged(send(url, path, body), log, body)
        envelope = json.dumps(sample_events(2)).encode()
        answer = send(url, path, envelope)
        assert (answer.status_code, answer.json()) == (200, {"events": 2}), answer.text
    assert len(calls) == len(paths) * (len(ODD_BODIES) + 1)


def check_lenient_and_own(url: str, prefix: str) -> None:
    """A handler checking envelope_error acknowledges on purpose; its own PayloadError is 500."""
    body = ODD_BODIES["other-object"]
    answer = send(url, f"{prefix}/lenient", body)
    assert (answer.status_code, answer.json()) == (200, {"other_shape": json.loads(body)})
    envelope = json.dumps(sample_events(1)).encode()
    assert send(url, f"{prefix}/own-error", envelope).status_code == 500


@contextlib.contextmanager
def delivery_log_capture() -> Iterator[LogWaiter]:
    """Capture ``upvest_verify.delivery`` records (waitable across server threads)."""
    logger = logging.getLogger("upvest_verify.delivery")
    handler = LogWaiter()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
