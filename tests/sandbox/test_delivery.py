"""Webhook delivery over real HTTP: batching, filters, retries, rotation, dialects, HTTPS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import (
    Recorder,
    payload_ids,
    serve,
    verify_received,
)

from upvest_verify import Reason, VerificationError
from upvest_verify.sandbox import Delivery, Sandbox, WebhookDialect

EVENT_FIELDS = {"id", "type", "created_at", "webhook_id", "object"}


def _fixed(i: int, kind: str = "CASH_BALANCE.UPDATED", pad: int = 0) -> dict[str, Any]:
    """An event spec whose JSON size depends only on ``pad``."""
    return {"type": kind, "object": {"n": f"{i:04d}", "pad": "x" * pad}}


# --------------------------------------------------------------------------- dialects


@pytest.fixture(scope="module")
def dialect_rig() -> Iterator[tuple[Sandbox, Recorder, str]]:
    """One emulator and one recording receiver shared by the dialect cases."""
    recorder = Recorder()
    with serve(recorder) as port, Sandbox(time_scale=0.01, allow_http=True) as sandbox:
        origin = f"http://localhost:{port}"
        sandbox.add_webhook(origin + "/hooks/upvest?tenant=7", delay="1s")
        yield sandbox, recorder, origin


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("upvest-v6", "upvest-v6/der/digest"),
        ("upvest-v6/raw", "upvest-v6/raw/digest"),
        ("upvest-v6/der/content-digest", "upvest-v6/der/content-digest"),
        ("rfc9421", "rfc9421/der/content-digest"),
        ("rfc9421/raw/content-digest", "rfc9421/raw/content-digest"),
        ("rfc9421/der/digest", "rfc9421/der/digest"),
        ("rfc9421/raw/both", "rfc9421/raw/"),
        (WebhookDialect("rfc9421", version_header=True), "rfc9421/der/content-digest"),
    ],
    ids=str,
)
def test_every_dialect_verifies(
    dialect_rig: tuple[Sandbox, Recorder, str], dialect: str | WebhookDialect, expected: str
) -> None:
    """Each signing dialect produces webhooks this library verifies, in that dialect."""
    sandbox, recorder, origin = dialect_rig
    sandbox.dialect = dialect
    before = len(sandbox.deliveries)
    [event] = sandbox.emit("ORDER.FILLED")
    delivery = sandbox.wait_for(lambda ds: len(ds) > before and ds[before].delivered and ds)[before]
    received = recorder.requests[-1]
    result = verify_received(received, origin, sandbox.key_set())
    assert str(result.dialect).startswith(expected)
    assert result.key_id == sandbox.signing_key.key_id
    [parsed] = result.events
    assert parsed.id == event["id"]
    assert set(json.loads(received.body)["payload"][0]) == EVENT_FIELDS
    assert delivery.events[0]["webhook_id"] == json.loads(received.body)["payload"][0]["webhook_id"]
    version = dict(received.headers).get("upvest-signature-version")
    assert version == ("15" if isinstance(dialect, WebhookDialect) else None)


# --------------------------------------------------------------------------- batching


def test_events_within_the_delay_share_a_package() -> None:
    """Events queued within ``delay`` go out together; a later one goes in the next package."""
    recorder = Recorder()
    with serve(recorder) as port, Sandbox(time_scale=0.1, allow_http=True) as sb:
        sb.add_webhook(f"http://localhost:{port}/hook", delay="5s")  # 0.5 s scaled
        first = [sb.emit("ORDER.NEW")[0], sb.emit("ORDER.FILLED")[0], *sb.emit("POSITION.UPDATED")]
        [one] = sb.wait_for_deliveries(1)
        later = sb.emit("CASH_BALANCE.UPDATED")
        two = sb.wait_for_deliveries(2)[1]
    assert payload_ids(one) == [e["id"] for e in first]
    assert payload_ids(two) == [later[0]["id"]]
    assert len(recorder.requests) == 2


def test_packages_respect_max_package_size(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """Events are packed into bodies of at most ``max_package_size``; an oversized event
    still goes out, alone."""
    recorder, origin = receiver
    # Measure one real event (ids are UUIDs, so every such event has the same size),
    # then allow exactly two per package.
    probe = sb.add_webhook(origin + "/probe", delay="1s")
    sb.emit([_fixed(0)])
    [probe_delivery] = sb.wait_for_deliveries(1)
    one_event = len(probe_delivery.body)  # {"payload":[E]}
    limit = 2 * one_event - len('{"payload":[]}') + 1  # {"payload":[E,E]}
    sb.update_webhook(probe["id"], enabled=False)
    hook = sb.add_webhook(origin + "/sized", delay="1s", max_package_size=limit)
    emitted = sb.emit([_fixed(i) for i in range(1, 6)])
    big = sb.emit([_fixed(9, pad=limit)])
    deliveries = sb.wait_for_deliveries(4, webhook_id=hook["id"])
    ids = [e["id"] for e in emitted]
    assert [payload_ids(d) for d in deliveries[:3]] == [ids[0:2], ids[2:4], ids[4:5]]
    assert [len(d.body) for d in deliveries[:3]] == [limit, limit, one_event]
    assert payload_ids(deliveries[3]) == [big[0]["id"]]
    assert len(deliveries[3].body) > limit
    assert len(recorder.requests) == 5


def test_package_is_sorted_by_created_at(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """Events in a package are in ``created_at`` order, whatever precision and offset."""
    recorder, origin = receiver
    sb.add_webhook(origin + "/hook", delay="1s")
    stamps = [
        "2024-05-01T12:00:03Z",
        "2024-05-01T13:00:01.5+01:00",  # 12:00:01.5 UTC
        "2024-05-01T12:00:02.000000001Z",
        "2024-05-01T12:00:01.49Z",
    ]
    events = sb.emit([{"type": "ORDER.NEW", "created_at": s} for s in stamps])
    [delivery] = sb.wait_for_deliveries(1)
    by_stamp = {e["created_at"]: e["id"] for e in events}
    expected = [by_stamp[s] for s in (stamps[3], stamps[1], stamps[2], stamps[0])]
    assert payload_ids(delivery) == expected
    assert [e["id"] for e in recorder.requests[0].json()["payload"]] == expected


def test_type_filters(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """Subscriptions get the categories they name; ALL gets everything but exclusions."""
    _, origin = receiver
    orders = sb.add_webhook(origin + "/orders", type=["ORDER"])
    everything = sb.add_webhook(origin + "/all", type=["ALL"])
    some = sb.add_webhook(origin + "/some", type=["POSITION", "CASH_BALANCE"])
    hook = sb.add_webhook(origin + "/no-orders")
    sb.update_webhook(hook["id"], exclude_type=["ORDER"])
    emitted = sb.emit([{"type": t} for t in ("ORDER.FILLED", "POSITION.UPDATED", "USER.CREATED")])
    ids = {e["type"]: e["id"] for e in emitted}
    deliveries = sb.wait_for_deliveries(4)
    got = {d.webhook_id: sorted(payload_ids(d)) for d in deliveries}
    assert got == {
        orders["id"]: [ids["ORDER.FILLED"]],
        everything["id"]: sorted(ids.values()),
        some["id"]: [ids["POSITION.UPDATED"]],
        hook["id"]: sorted([ids["POSITION.UPDATED"], ids["USER.CREATED"]]),
    }


def test_disabled_webhook_receives_nothing(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """A disabled subscription gets no events, also not those emitted before enabling it."""
    recorder, origin = receiver
    active = sb.add_webhook(origin + "/active")
    disabled = sb.add_webhook(origin + "/disabled", enabled=False)
    sb.emit("ORDER.FILLED")
    sb.wait_for_deliveries(1, webhook_id=active["id"])
    sb.update_webhook(disabled["id"], enabled=True)
    sb.update_webhook(active["id"], enabled=False)
    late = sb.emit("ORDER.CANCELLED")
    [delivery] = sb.wait_for_deliveries(1, webhook_id=disabled["id"])
    assert payload_ids(delivery) == [late[0]["id"]]
    assert [r.target for r in recorder.requests] == ["/active", "/disabled"]
    assert [d.webhook_id for d in sb.deliveries] == [active["id"], disabled["id"]]


# --------------------------------------------------------------------------- retries


def test_failures_are_retried_and_block_the_queue(sb: Sandbox) -> None:
    """A non-2xx answer retries the whole package; later events wait until it succeeds."""
    recorder = Recorder(statuses=[503, 404], gate=threading.Event())
    with serve(recorder) as port:
        hook = sb.add_webhook(f"http://localhost:{port}/hook")
        first = sb.emit("ORDER.NEW")
        sb.wait_for(lambda ds: ds and ds[0].attempts)
        second = sb.emit("ORDER.FILLED")
        # Two more failed attempts at the first package pass; the second waits behind it.
        sb.wait_for(lambda ds: len(ds[0].attempts) >= 3)
        assert [len(d.attempts) for d in sb.deliveries[1:]] in ([], [0])
        assert {r.body for r in recorder.requests} == {sb.deliveries[0].body}
        assert recorder.gate is not None
        recorder.gate.set()
        one, two = sb.wait_for_deliveries(2, webhook_id=hook["id"])
    assert one.status_codes[-3:] == [503, 404, 200]
    assert set(one.status_codes[:-3]) == {500}
    assert payload_ids(one) == [first[0]["id"]]
    assert payload_ids(two) == [second[0]["id"]]
    assert two.status_codes == [200]
    bodies = [r.body for r in recorder.requests]
    assert bodies == [one.body] * len(one.attempts) + [two.body]
    assert two.attempts[0].started_at >= one.attempts[-1].started_at


def test_unreachable_receiver_is_retried_until_the_webhook_goes(sb: Sandbox) -> None:
    """Connection failures count as failed attempts; deleting the webhook abandons them."""
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    hook = sb.add_webhook(f"http://localhost:{port}/hook")
    sb.emit("ORDER.NEW")
    [delivery] = sb.wait_for(lambda ds: len(ds) == 1 and len(ds[0].attempts) >= 3 and ds)
    assert delivery.state == "pending"
    assert all(a.status_code is None and a.error for a in delivery.attempts[:3])
    assert sb.delete_webhook(hook["id"])
    assert sb.webhooks() == []
    [gone] = sb.wait_for(lambda ds: ds[0].state == "abandoned" and ds)
    assert not gone.delivered


@pytest.mark.parametrize("resign", [True, False], ids=["resigned", "resent"])
def test_retries_are_resigned_or_resent(resign: bool) -> None:
    """With ``resign_retries`` a retry carries a fresh signature; without, the same one."""
    recorder = Recorder(statuses=[500])
    with (
        serve(recorder) as port,
        Sandbox(time_scale=0.01, allow_http=True, resign_retries=resign) as sb,
    ):
        sb.add_webhook(f"http://localhost:{port}/hook")
        sb.emit("ORDER.NEW")
        [delivery] = sb.wait_for_deliveries(1)
        origin = f"http://localhost:{port}"
        for received in recorder.requests:
            verify_received(received, origin, sb.key_set())
    first, second = (a.header("signature-input") for a in delivery.attempts)
    assert (first != second) is resign
    assert delivery.attempts[0].body == delivery.attempts[1].body


# --------------------------------------------------------------------------- keys


def test_rotation_while_delivering(sb: Sandbox) -> None:
    """A retry after a rotation is signed with the new key; both verify during the overlap."""
    recorder = Recorder(gate=threading.Event())
    with serve(recorder) as port:
        sb.add_webhook(f"http://localhost:{port}/hook")
        old = sb.signing_key
        sb.emit("ORDER.NEW")
        sb.wait_for(lambda ds: ds and ds[0].attempts)
        new = sb.rotate_keys(overlap=3600)
        assert recorder.gate is not None
        recorder.gate.set()
        [delivery] = sb.wait_for_deliveries(1)
        sb.emit("ORDER.FILLED")
        later = sb.wait_for_deliveries(2)[1]
    used = [a.key_id for a in delivery.attempts]
    assert used[0] == old.key_id
    assert used[-1] == new.key_id
    assert used == sorted(used, key=lambda kid: kid == new.key_id)  # old ones, then new ones
    assert later.attempts[0].key_id == new.key_id
    keys = sb.key_set()
    assert sorted(keys) == sorted([old.key_id, new.key_id])
    origin = f"http://localhost:{port}"
    verified = [verify_received(r, origin, keys).key_id for r in recorder.requests]
    assert verified == [*used, new.key_id]
    sb.rotate_keys(overlap=0)
    with pytest.raises(VerificationError) as caught:
        verify_received(recorder.requests[0], origin, sb.key_set())
    assert caught.value.reason is Reason.UNKNOWN_KEY


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("body", Reason.DIGEST_MISMATCH),
        ("digest", Reason.BAD_SIGNATURE),
        ("signature", Reason.BAD_SIGNATURE),
        ("key", Reason.UNKNOWN_KEY),
        ("expired", Reason.EXPIRED),
    ],
)
def test_tampered_delivery_is_rejected(
    sb: Sandbox, receiver: tuple[Recorder, str], kind: str, reason: Reason
) -> None:
    """A deliberately spoiled attempt fails verification with the expected reason."""
    recorder, origin = receiver
    recorder.statuses.append(401)  # the receiver refuses it, so the emulator retries
    sb.add_webhook(origin + "/hook")
    sb.tamper_next(kind)  # type: ignore[arg-type]
    sb.emit("ORDER.NEW")
    [delivery] = sb.wait_for_deliveries(1)
    assert [a.tampered for a in delivery.attempts] == [kind, None]
    spoiled, sound = recorder.requests
    with pytest.raises(VerificationError) as caught:
        verify_received(spoiled, origin, sb.key_set())
    assert caught.value.reason is reason
    verify_received(sound, origin, sb.key_set())


def test_tamper_targets_one_webhook(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """``tamper_next(webhook_id=...)`` spoils that subscription's next attempt only."""
    _, origin = receiver
    plain = sb.add_webhook(origin + "/plain", type=["ORDER"])
    target = sb.add_webhook(origin + "/target", type=["POSITION"])
    sb.tamper_next("signature", webhook_id=target["id"])
    sb.emit("ORDER.NEW")
    [first] = sb.wait_for_deliveries(1, webhook_id=plain["id"])
    sb.emit("POSITION.UPDATED")
    [second] = sb.wait_for_deliveries(1, webhook_id=target["id"])
    assert [a.tampered for a in first.attempts] == [None]
    assert second.attempts[0].tampered == "signature"
    with pytest.raises(ValueError, match="kind"):
        sb.tamper_next("nonsense")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- HTTPS


def test_https_delivery_with_a_test_ca(tls_files: dict[str, Any]) -> None:
    """Deliveries go over HTTPS to ``https://localhost``, trusting the given CA file."""
    recorder = Recorder()
    server = str(tls_files["server"])
    with (
        serve(recorder, certfile=server) as port,
        Sandbox(time_scale=0.01, ca_file=tls_files["ca"]) as sb,
    ):
        assert sb.ca_file == tls_files["ca"]
        sb.add_webhook(f"https://localhost:{port}/hook")
        [event] = sb.emit("ORDER.FILLED")
        [delivery] = sb.wait_for_deliveries(1)
        result = verify_received(recorder.requests[0], f"https://localhost:{port}", sb.key_set())
    assert delivery.url.startswith("https://")
    assert [e.id for e in result.events] == [event["id"]]
    with pytest.raises(ValueError, match="http"):
        sb.add_webhook(f"http://localhost:{port}/hook")  # allow_http is off


def test_https_delivery_refuses_an_untrusted_certificate(tls_files: dict[str, Any]) -> None:
    """Without the CA the TLS handshake fails: attempts record the error and no answer."""
    recorder = Recorder()
    server = str(tls_files["server"])
    with (
        serve(recorder, certfile=server) as port,
        Sandbox(time_scale=0.01) as sb,
    ):
        sb.add_webhook(f"https://localhost:{port}/hook")
        sb.emit("ORDER.FILLED")
        [delivery] = sb.wait_for(lambda ds: ds and ds[0].attempts and ds)
    attempt = delivery.attempts[0]
    assert attempt.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in (attempt.error or "")
    assert recorder.requests == []


# --------------------------------------------------------------------------- waiting


def test_wait_for_deliveries_times_out(sb: Sandbox) -> None:
    """Waiting for deliveries that cannot come raises ``TimeoutError``."""
    sb.emit("ORDER.NEW")  # no subscription: nothing to deliver
    with pytest.raises(TimeoutError):
        sb.wait_for_deliveries(1, timeout=0.05)
    assert sb.deliveries == []


def test_delivery_records(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """A delivery records its webhook, url, events, attempts, codes and signed headers."""
    recorder, origin = receiver
    hook = sb.add_webhook(origin + "/hook?x=1")
    [event] = sb.emit("USER.CREATED")
    [delivery] = sb.wait_for_deliveries(1)
    assert isinstance(delivery, Delivery)
    assert (delivery.webhook_id, delivery.url) == (hook["id"], origin + "/hook?x=1")
    assert delivery.client_id == sb.tenant.client_id
    assert delivery.event_ids == [event["id"]]
    assert delivery.status_codes == [200]
    names = {k for k, _ in delivery.headers}
    assert {"signature", "signature-input", "digest", "date", "content-type"} <= names
    assert delivery.to_json()["attempts"][0]["status_code"] == 200
    assert recorder.requests[0].target == "/hook?x=1"
    assert event["object"]["first_name"] == "Jane"  # a realistic sample object
