"""The client's signature base, byte for byte, against one built from Upvest's reference signers.

The reference base is built here, independently of ``upvest_verify``, following
Upvest's own signers in ``upvestco/http-signature-examples`` at commit
a3cf9f434b45c012e8a818846efc78948c5346ca:

* ``Javascript/Signature.mjs`` (``sign()``: ``@method``, ``@path``, ``@query`` when
  the URL has one, each header in order, then ``date`` unless given, then with a body
  ``content-length`` and ``content-digest: sha-512=:<b64>:``; ``getSignatureParams()``:
  ``(<quoted ids>);keyid="…";created=…;expires=…;nonce="…"``;
  ``formatSignatureBasePart()``: ``"<id>": <value>`` lines joined by ``\\n``), and
  ``Javascript/UpvestNodeSigner.mjs`` (``upvest-signature-version: 15``, uncovered);
* ``Python/pkg/upvest_investment_api/src/upvest_investment_api/http_message_signatures.py``
  (``UpvestHttpMessageSigner``: ``accept`` forced to ``application/json``,
  ``upvest-api-version: 1``, ``upvest-client-id``; ``HttpMessageSigner``: the same
  lines, ``expiry_duration=10``, a ``date`` from ``created``, DER ECDSA over SHA-512;
  its parameters come in the order ``keyid;nonce;created;expires``, the JS order is
  ``keyid;created;expires;nonce``, which the client follows).

The client signs real requests to the emulator at a fixed ``created`` and fixed
nonces. Its signing step, rerun on each request as sent, yields the reference
bytes exactly (``==``); its ECDSA signature on the wire verifies over the reference
bytes (and not over them changed by one character, nor in the Python parameter
order), so what went out was signed over exactly those bytes; its
``signature-input`` is compared as text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from upvest_verify.client._auth import sign_api_request, signing_headers

from .client_support import Recorder, Seen, sync_client

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imf_fixdate(seconds: int) -> str:
    """JS ``Date.toUTCString()`` / Python ``formatdate(usegmt=True)``, spelled out here."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def reference_base(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    key_id: str,
    created: int,
    expires_in: int,
    nonce: str,
    params_order: tuple[str, ...] = ("keyid", "created", "expires", "nonce"),
) -> tuple[bytes, str]:
    """Signature.mjs ``sign()``, step by step: returns (base, signature params)."""
    components: list[tuple[str, str]] = [("@method", method.upper()), ("@path", path or "/")]
    if query:
        components.append(("@query", "?" + query))
    components += [(name.lower(), value) for name, value in headers]
    components.append(("date", imf_fixdate(created)))
    if body:
        digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
        components.append(("content-length", str(len(body))))
        components.append(("content-digest", f"sha-512=:{digest}:"))
    ids = " ".join(f'"{name}"' for name, _ in components)
    values = {
        "keyid": f'keyid="{key_id}"',
        "created": f"created={created}",
        "expires": f"expires={created + expires_in}",
        "nonce": f'nonce="{nonce}"',
    }
    params = ";".join([f"({ids})", *(values[p] for p in params_order)])
    lines = [f'"{name}": {value}' for name, value in components]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("utf-8"), params


def _signature(seen: Seen) -> bytes:
    value = seen.headers["signature"]
    assert value.startswith("sig1=:")
    assert value.endswith(":")
    return base64.b64decode(value[len("sig1=:") : -1], validate=True)


def _verifies(public_key: ec.EllipticCurvePublicKey, signature: bytes, base: bytes) -> bool:
    try:
        public_key.verify(signature, base, ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        return False
    return True


def test_client_signature_base_matches_upvest_reference_signers(sandbox: Any, tenant: Any) -> None:
    """Token request, POST with a JSON body and GET with a query: each base is the reference's."""
    created = int(time.time())  # fixed for the whole run, and inside the emulator's window
    nonces = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5)]
    handed_out = iter(nonces)
    recorder = Recorder()
    with sync_client(
        sandbox.base_url,
        tenant,
        recorder,
        clock=lambda: float(created),
        nonce=lambda: next(handed_out),
    ) as client:
        client.webhooks.create(
            title="User webhook",
            url="https://tenant.example/webhooks/upvest",
            types=["USER"],
            delay="2s",
            max_package_size=51200,
        )
        client.webhooks.list(sort="created_at", order="DESC", offset=0, limit=100)

    token_admin, create, token_read, listing = recorder.seen
    assert [s.status for s in recorder.seen] == [200, 201, 200, 200]
    key = tenant.signing_key
    public_key = key.private_key.public_key()
    client_id = tenant.client_id
    form = "application/x-www-form-urlencoded"

    cases: list[tuple[Seen, str, str, list[tuple[str, str]], str]] = [
        (
            token_admin,
            "POST",
            "/auth/token",
            [
                ("accept", "application/json"),
                ("upvest-client-id", client_id),
                ("upvest-api-version", "1"),
                ("content-type", form),
            ],
            "",
        ),
        (
            create,
            "POST",
            "/webhooks",
            [
                ("accept", "application/json"),
                ("authorization", create.headers["authorization"]),
                ("upvest-client-id", client_id),
                ("upvest-api-version", "1"),
                ("content-type", "application/json"),
            ],
            "",
        ),
        (
            token_read,
            "POST",
            "/auth/token",
            [
                ("accept", "application/json"),
                ("upvest-client-id", client_id),
                ("upvest-api-version", "1"),
                ("content-type", form),
            ],
            "",
        ),
        (
            listing,
            "GET",
            "/webhooks",
            [
                ("accept", "application/json"),
                ("authorization", listing.headers["authorization"]),
                ("upvest-client-id", client_id),
                ("upvest-api-version", "1"),
            ],
            "sort=created_at&order=DESC&offset=0&limit=100",
        ),
    ]
    for (seen, method, path, headers, query), nonce in zip(cases, nonces, strict=True):
        assert (seen.method, seen.path, seen.query) == (method, path, query)
        base, params = reference_base(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=seen.body,
            key_id=key.key_id,
            created=created,
            expires_in=10,
            nonce=nonce,
        )
        assert seen.headers["signature-input"] == f"sig1={params}"
        # The client's own signing step, rerun on the request as sent: the same bytes.
        url = f"{sandbox.base_url}{path}" + (f"?{query}" if query else "")
        resent = httpx.Request(method, url, headers=seen.headers, content=seen.body)
        token = seen.headers.get("authorization", "").removeprefix("Bearer ") or None
        client_base = sign_api_request(
            method,
            url,
            signing_headers(resent, client_id=client_id, token=token),
            seen.body,
            key=key,
            created=created,
            nonce=nonce,
        ).base
        assert client_base == base
        assert seen.headers["upvest-signature-version"] == "15"
        assert seen.headers["date"] == imf_fixdate(created)
        signature = _signature(seen)
        assert signature[0] == 0x30  # DER, as every reference signer writes
        assert _verifies(public_key, signature, base), f"{method} {path}: base differs"
        # The check can fail: one byte off, or the Python signer's parameter order.
        assert not _verifies(public_key, signature, base.replace(b"\n", b"\r\n", 1))
        python_order, _ = reference_base(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=seen.body,
            key_id=key.key_id,
            created=created,
            expires_in=10,
            nonce=nonce,
            params_order=("keyid", "nonce", "created", "expires"),
        )
        assert not _verifies(public_key, signature, python_order)

    assert token_admin.form["scope"] == ["webhooks:admin"]
    assert token_read.form["scope"] == ["webhooks:read"]
    assert json.loads(create.body) == {
        "title": "User webhook",
        "url": "https://tenant.example/webhooks/upvest",
        "type": ["USER"],
        "config": {"delay": "2s", "max_package_size": 51200},
    }
