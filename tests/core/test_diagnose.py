"""Self-explaining failures: the diagnosis of ``bad_signature`` and ``digest_mismatch``.

Each hint fires for the mistake it names and stays silent for a forgery under a
correct configuration; nothing secret (body, signature, query text) is ever shown,
and the signature base only on request.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from core_helpers import REFERENCE_NOW, with_headers

from upvest_verify import Policy, Reason, VerificationError, Verifier
from upvest_verify import _diagnose_body as body_module
from upvest_verify import _fast as fast_module
from upvest_verify._diagnose import internal_host
from upvest_verify._diagnose_url import url_hints
from upvest_verify._failure import failure_context, remember_failure
from upvest_verify.diagnosis import Diagnosis, URLSetup, diagnose
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

PUBLIC = "https://hooks.example.com"
WEBHOOK = "/webhooks/upvest"
URL_COMPONENTS = ["@method", "@scheme", "@authority", "@path", "content-digest"]
BODY = {"payload": [{"id": "e1", "type": "ORDER.FILLED", "object": {"name": "Zoë"}}]}


@pytest.fixture(params=[True, False], ids=["fast", "strict"])
def fast(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run a test through the fast path and through the strict path."""
    fast_module.ENABLED = request.param
    try:
        yield request.param
    finally:
        fast_module.ENABLED = True


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key(kid="diagnose-key")


@pytest.fixture(scope="module")
def forger() -> SigningKey:
    # Same kid, another key: a forgery that gets as far as the ECDSA verify.
    return generate_key(kid="diagnose-key")


@pytest.fixture
def verifier(key: SigningKey) -> Verifier:
    return Verifier(make_key_set(key), clock=lambda: REFERENCE_NOW)


def _sign(key: SigningKey, url: str = PUBLIC + WEBHOOK, **options: Any) -> SignedWebhook:
    options.setdefault("components", URL_COMPONENTS)
    options.setdefault("dialect", "rfc9421")
    return sign_webhook(BODY, key=key, url=url, created=REFERENCE_NOW, **options)


def _refuse(
    verifier: Verifier,
    signed: SignedWebhook,
    *,
    url: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verifier.verify(
            signed.method,
            signed.url if url is None else url,
            signed.headers if headers is None else headers,
            signed.body if body is None else body,
        )
    return caught.value


def _diagnosis(error: VerificationError, **options: Any) -> Diagnosis:
    found = diagnose(error, **options)
    assert found is not None
    return found


def _codes(found: Diagnosis) -> list[str]:
    return [hint.code for hint in found.hints]


def _hint(found: Diagnosis, code: str) -> str:
    texts = [hint.text for hint in found.hints if hint.code == code]
    assert texts, f"no {code} hint in {found}"
    return texts[0]


# --------------------------------------------------------------------------- the context


def test_only_the_two_reasons_keep_a_context(verifier: Verifier, key: SigningKey) -> None:
    """An expired webhook keeps no context; a bad signature does, with references only."""
    old = sign_webhook(BODY, key=key, created=REFERENCE_NOW - 3600)
    expired = _refuse(verifier, old)
    assert expired.reason is Reason.EXPIRED
    assert failure_context(expired) is None
    assert diagnose(expired) is None
    assert diagnose(ValueError("x")) is None
    signed = _sign(key)
    error = _refuse(verifier, signed, body=signed.body + b" ")
    context = failure_context(error)
    assert context is not None
    assert context.body == signed.body + b" "
    assert "Zo" not in repr(context)
    assert f"<{len(signed.body) + 1} bytes>" in repr(context)
    # Pickling an error drops the context (it holds the body and the key set).
    assert failure_context(pickle.loads(pickle.dumps(error))) is None  # noqa: S301


def test_remember_failure_ignores_other_reasons(key: SigningKey) -> None:
    """remember_failure() is a no-op for every reason but the two diagnosed ones."""
    error = VerificationError(Reason.MALFORMED_HEADER, "x")
    remember_failure(error, "POST", "/", [], None, b"", make_key_set(key), Policy(), ())
    assert failure_context(error) is None


def test_both_paths_keep_what_was_rebuilt(
    fast: bool, verifier: Verifier, forger: SigningKey
) -> None:
    """The fast and the strict path both leave the same diagnosis on a forgery."""
    signed = _sign(
        forger, PUBLIC + WEBHOOK + "?a=1&token=secret", components=[*URL_COMPONENTS, "@query"]
    )
    found = _diagnosis(_refuse(verifier, signed))
    assert found.reason is Reason.BAD_SIGNATURE
    assert found.rebuilt == f"POST {PUBLIC}{WEBHOOK}"
    assert found.query_length == len("a=1&token=secret")
    assert found.label == "sig1"
    assert found.covered == (
        "@method",
        "@scheme",
        "@authority",
        "@path",
        "content-digest",
        "@query",
    )
    assert found.tried == ("rfc9421/exact", "upvest-v6/exact")
    assert found.encoding == "der"
    assert (found.body_length, found.content_length) == (len(signed.body), str(len(signed.body)))
    assert found.hints == ()
    text = str(found)
    assert "rebuilt='POST https://hooks.example.com/webhooks/upvest'" in text
    assert "query=16 chars" in text
    assert "secret" not in text
    assert "tried='rfc9421/exact upvest-v6/exact'" in text
    assert "hint=" not in text


def test_reconstructions_tried_are_listed(verifier: Verifier, forger: SigningKey) -> None:
    """Alternative reconstructions (comma-joined lines, decoded paths) appear in ``tried``."""
    signed = sign_webhook(
        BODY,
        key=forger,
        url=PUBLIC + "/webhooks/%7Eupvest",
        created=REFERENCE_NOW,
        headers=[("x-list", "a,b")],
        components=["@method", "@path", "x-list", "digest"],
    )
    found = _diagnosis(_refuse(verifier, signed))
    assert found.tried == (
        "upvest-v6/exact",
        "rfc9421/exact",
        "upvest-v6/comma-joined",
        "upvest-v6/percent-decoded",
    )


def test_undecodable_signature_bytes(verifier: Verifier, key: SigningKey) -> None:
    """Signature bytes of the wrong size: nothing tried, encoding ``undecodable``."""
    signed = _sign(key)
    headers = with_headers(signed, signature="sig1=:AAAA:")
    found = _diagnosis(_refuse(verifier, signed, headers=headers))
    assert (found.tried, found.encoding) == ((), "undecodable")
    assert "tried='none'" in str(found)


# --------------------------------------------------------------------------- URL hints


def test_full_webhook_url_as_public_url(verifier: Verifier, key: SigningKey) -> None:
    """public_url holding the webhook's path doubles it; the hint gives the fixed URL."""
    signed = _sign(key)
    setup = URLSetup(public_url=PUBLIC, path_prefix=WEBHOOK)
    error = _refuse(verifier, signed, url=PUBLIC + WEBHOOK + WEBHOOK)
    found = _diagnosis(error, setup=setup)
    assert _codes(found) == ["doubled_path"]
    text = _hint(found, "doubled_path")
    assert "'/webhooks/upvest' twice in a row" in text
    assert "public_url should be scheme://host[/prefix] only" in text
    assert "public_url='https://hooks.example.com'" in text
    assert "url_settings=(public_url='https://hooks.example.com'" in str(found)


def test_settings_of_another_url_are_ignored(verifier: Verifier, key: SigningKey) -> None:
    """A setup made for another URL (a stale one) never explains this refusal."""
    signed = _sign(key)
    error = _refuse(verifier, signed, url=PUBLIC + WEBHOOK + WEBHOOK)
    other = URLSetup(public_url=PUBLIC, path_prefix=WEBHOOK, url=PUBLIC + "/elsewhere")
    found = _diagnosis(error, setup=other)
    assert found.setup is None
    assert "public_url='https://hooks.example.com'" not in _hint(found, "doubled_path")
    same = URLSetup(public_url=PUBLIC, path_prefix=WEBHOOK, url=PUBLIC + WEBHOOK + WEBHOOK)
    assert _diagnosis(error, setup=same).setup == same


def test_doubled_path_without_settings_names_both(verifier: Verifier, key: SigningKey) -> None:
    """Without the adapter's settings the doubled path still names public_url and path_prefix."""
    signed = _sign(key, components=["@method", "@path", "content-digest"])
    found = _diagnosis(_refuse(verifier, signed, url=PUBLIC + "/api/api" + WEBHOOK))
    text = _hint(found, "doubled_path")
    assert "'/api' twice" in text
    assert "public_url should be scheme://host[/prefix] only" in text
    assert "path_prefix" in text


def test_prefix_the_proxy_did_not_strip(verifier: Verifier, key: SigningKey) -> None:
    """path_prefix set although the proxy keeps the prefix: the hint empties path_prefix."""
    signed = _sign(
        key, PUBLIC + "/api" + WEBHOOK, components=["@method", "@path", "content-digest"]
    )
    found = _diagnosis(
        _refuse(verifier, signed, url=PUBLIC + "/api/api" + WEBHOOK),
        setup=URLSetup(path_prefix="/api"),
    )
    assert "set path_prefix=''" in _hint(found, "doubled_path")


def test_announced_prefix_missing(verifier: Verifier, key: SigningKey) -> None:
    """X-Forwarded-Prefix names a prefix the rebuilt path lacks: set path_prefix."""
    signed = _sign(
        key, PUBLIC + "/api" + WEBHOOK, components=["@method", "@path", "content-digest"]
    )
    headers = [*signed.headers, ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-prefix", "/api/")]
    found = _diagnosis(_refuse(verifier, signed, url=PUBLIC + WEBHOOK, headers=headers))
    assert _codes(found) == ["path_prefix"]
    text = _hint(found, "path_prefix")
    assert "set path_prefix='/api'" in text
    assert "trusted_proxies" in text
    # With the peer trusted, the hint does not tell to trust it.
    trusted = URLSetup(trusted_proxies=("10.0.0.0/8",), peer="10.0.0.1", peer_trusted=True)
    found = _diagnosis(
        _refuse(verifier, signed, url=PUBLIC + WEBHOOK, headers=headers), setup=trusted
    )
    assert "trusted_proxies" not in _hint(found, "path_prefix")


def test_original_uri_reveals_the_prefix(verifier: Verifier, key: SigningKey) -> None:
    """X-Original-URI with the full path: the stripped part is the prefix to configure."""
    signed = _sign(
        key, PUBLIC + "/hooks" + WEBHOOK, components=["@method", "@path", "content-digest"]
    )
    headers = [*signed.headers, ("x-original-uri", "/hooks/webhooks/upvest?x=1")]
    found = _diagnosis(_refuse(verifier, signed, url=PUBLIC + WEBHOOK, headers=headers))
    assert "set path_prefix='/hooks'" in _hint(found, "path_prefix")


def test_untrusted_proxy_without_prefix_evidence(verifier: Verifier, key: SigningKey) -> None:
    """Forwarding fields nobody believes and no public_url: the hint names path_prefix."""
    signed = _sign(
        key, PUBLIC + "/api" + WEBHOOK, components=["@method", "@path", "content-digest"]
    )
    headers = [*signed.headers, ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]
    setup = URLSetup(peer="172.18.0.2")
    found = _diagnosis(
        _refuse(verifier, signed, url=PUBLIC + WEBHOOK, headers=headers), setup=setup
    )
    text = _hint(found, "behind_proxy")
    assert "x-forwarded-for, x-forwarded-proto from '172.18.0.2'" in text
    assert "set path_prefix='/<prefix>'" in text
    assert "public_url" in text
    # A configured public_url or a trusted proxy is a stated setup: no guess then.
    for stated in (URLSetup(public_url=PUBLIC), URLSetup(peer="10.0.0.1", peer_trusted=True)):
        error = _refuse(verifier, signed, url=PUBLIC + WEBHOOK, headers=headers)
        assert _diagnosis(error, setup=stated).hints == ()


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("127.0.0.1:8000", "a loopback address, port 8000"),
        ("localhost", "an internal name"),
        ("api.internal", "an internal name"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.5", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("[::1]:8080", "a loopback address, port 8080"),
        ("[fd00::1]", "a private address"),
        ("web", "a name without a dot"),
        ("testserver", "a name without a dot"),
        ("hooks.example.com:8443", "port 8443"),
        ("hooks.example.com", None),
        ("93.184.215.14", None),
    ],
)
def test_internal_host(authority: str, expected: str | None) -> None:
    """Which authorities look internal, and why."""
    assert internal_host(authority) == expected


def test_internal_url_without_settings(verifier: Verifier, key: SigningKey) -> None:
    """An internal authority or http, when covered: set public_url (or trusted_proxies)."""
    signed = _sign(key)
    found = _diagnosis(_refuse(verifier, signed, url="http://127.0.0.1:8000" + WEBHOOK))
    assert _codes(found) == ["internal_url"]
    text = _hint(found, "internal_url")
    assert "'http://127.0.0.1:8000' (a loopback address, port 8000, scheme http)" in text
    assert "set public_url='https://<your public host>'" in text
    assert "trusted_proxies" in text


def test_internal_url_with_ignored_forwarding(verifier: Verifier, key: SigningKey) -> None:
    """X-Forwarded-Host from a peer not in trusted_proxies: the hint names that peer."""
    signed = _sign(key)
    headers = [
        *signed.headers,
        ("x-forwarded-host", "hooks.example.com"),
        ("x-forwarded-proto", "https"),
    ]
    setup = URLSetup(peer="172.18.0.2")
    found = _diagnosis(
        _refuse(verifier, signed, url="http://app:8000" + WEBHOOK, headers=headers), setup=setup
    )
    text = _hint(found, "internal_url")
    assert "X-Forwarded-Host='hooks.example.com'" in text
    assert "set trusted_proxies=['172.18.0.2']" in text
    assert "public_url" in text


def test_internal_public_url(verifier: Verifier, key: SigningKey) -> None:
    """A public_url that itself names an internal host: fix public_url."""
    signed = _sign(key)
    found = _diagnosis(
        _refuse(verifier, signed, url="https://localhost" + WEBHOOK),
        setup=URLSetup(public_url="https://localhost"),
    )
    assert "from public_url: set public_url to the https URL" in _hint(found, "internal_url")


def test_internal_authority_not_covered_gives_no_hint(
    verifier: Verifier, forger: SigningKey
) -> None:
    """Only @method and @path covered: the host cannot be the cause; no URL hint."""
    signed = _sign(forger, components=["@method", "@path", "content-digest"])
    found = _diagnosis(_refuse(verifier, signed, url="http://127.0.0.1:8000" + WEBHOOK))
    assert found.hints == ()


def test_host_field_rewritten(verifier: Verifier, key: SigningKey) -> None:
    """A signed Host field that arrives internal: a proxy replaced it."""
    signed = _sign(key, components=["@method", "@path", "host", "content-digest"])
    headers = with_headers(signed, host="127.0.0.1:8000")
    found = _diagnosis(_refuse(verifier, signed, headers=headers))
    assert "proxy_set_header Host $host" in _hint(found, "host_rewritten")


def test_url_hints_on_origin_form(key: SigningKey) -> None:
    """The rules work on origin-form URLs too (authority from Host)."""
    signed = _sign(key, components=["@method", "@authority", "@path", "content-digest"])
    verifier = Verifier(make_key_set(key), clock=lambda: REFERENCE_NOW)
    headers = with_headers(signed, host="localhost:5000")
    found = _diagnosis(_refuse(verifier, signed, url=WEBHOOK, headers=headers))
    assert "'localhost:5000'" in _hint(found, "internal_url")


def test_url_hints_for_the_command_line(verifier: Verifier, key: SigningKey) -> None:
    """On the command line the hints name --base-url, never adapter settings."""
    signed = _sign(key)
    error = _refuse(verifier, signed, url="http://127.0.0.1:8000" + WEBHOOK)
    text = _hint(_diagnosis(error, surface="cli"), "internal_url")
    assert "--base-url" in text
    assert "public_url=" not in text
    error = _refuse(verifier, signed, url=PUBLIC + WEBHOOK + WEBHOOK)
    setup = URLSetup(public_url=PUBLIC, path_prefix=WEBHOOK)
    text = _hint(_diagnosis(error, setup=setup, surface="cli"), "doubled_path")
    assert "--base-url takes scheme://host[/prefix] only" in text
    assert f"--base-url {PUBLIC}" in text


def test_repeated_path_search_is_bounded(key: SigningKey) -> None:
    """A path of thousands of segments is not searched (the cost stays bounded)."""
    signed = _sign(key, components=["@method", "@path", "content-digest"])
    path = "/a" * 2000
    verifier = Verifier(make_key_set(key), clock=lambda: REFERENCE_NOW)
    found = _diagnosis(_refuse(verifier, signed, url=PUBLIC + path))
    assert "doubled_path" not in _codes(found)
    assert len(str(found)) < 2000  # the rebuilt URL is clipped


# --------------------------------------------------------------------------- body hints


def _changed(verifier: Verifier, signed: SignedWebhook, body: bytes) -> Diagnosis:
    error = _refuse(verifier, signed, body=body)
    assert error.reason is Reason.DIGEST_MISMATCH
    return _diagnosis(error)


@pytest.mark.parametrize("dialect", ["rfc9421", "upvest-v6"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda b: json.dumps(json.loads(b), indent=2).encode(),
            "its JSON was parsed and serialised",
        ),
        (lambda b: json.dumps(json.loads(b)).encode(), "its JSON was parsed and serialised"),
        (lambda b: b"\xef\xbb\xbf" + b, "a UTF-8 byte order mark was added"),
        (lambda b: b + b"\r\n", "2 newline byte(s) were added at its end"),
    ],
    ids=["pretty-json", "spaced-json", "bom", "newline"],
)
def test_body_rewritten(
    fast: bool, verifier: Verifier, key: SigningKey, dialect: str, change: Any, expected: str
) -> None:
    """A body a middleware re-encoded matches the signed digest once undone: the hint says how."""
    signed = _sign(key, dialect=dialect, components=None)
    found = _changed(verifier, signed, change(signed.body))
    assert found.tried == ()
    assert "tried='none (the digest is checked first)'" in str(found)
    text = _hint(found, "body_rewritten")
    assert expected in text
    assert "verify the raw bytes as received" in text
    assert _codes(found) == ["body_rewritten"]  # the specific cause, not also the length


def test_line_ends_converted(verifier: Verifier, key: SigningKey) -> None:
    """CRLF turned into LF (and back) is recognised."""
    raw = b'{"payload": [\n  {"id": "e1"}\n]}'
    signed = sign_webhook(raw, key=key, created=REFERENCE_NOW)
    found = _changed(verifier, signed, raw.replace(b"\n", b"\r\n"))
    assert "its CRLF line ends were converted to LF" in _hint(found, "body_rewritten")


def test_decompressed_body(verifier: Verifier, key: SigningKey) -> None:
    """Content-Encoding: gzip over a body that is not gzip data: it was decompressed."""
    signed = _sign(key, headers=[("content-encoding", "gzip")], components=None)
    found = _changed(verifier, signed, b'{"payload":[]}')
    assert "not gzip data: it was decompressed" in _hint(found, "body_decoded")


def test_length_differs_from_content_length(verifier: Verifier, key: SigningKey) -> None:
    """Another body of another length: only the length hint, no guess at how."""
    signed = _sign(key)
    found = _changed(verifier, signed, b'{"payload":[]}')
    assert _codes(found) == ["body_length"]
    assert f"has 14 bytes but Content-Length says {len(signed.body)}" in _hint(found, "body_length")


def test_body_dropped_by_the_server(verifier: Verifier, key: SigningKey) -> None:
    """An empty body without Content-Length (chunked): the server dropped it."""
    signed = _sign(key, components=["@method", "@path", "content-digest"])
    headers = with_headers(signed, content_length=None)
    error = _refuse(verifier, signed, headers=headers, body=b"")
    assert "wsgi.input_terminated" in _hint(_diagnosis(error), "empty_body")


def test_forged_body_with_correct_setup_gets_no_hint(verifier: Verifier, key: SigningKey) -> None:
    """A tampered body of the same length: digest_mismatch, and no hint."""
    signed = _sign(key)
    tampered = signed.body.replace(b"e1", b"e2")
    found = _changed(verifier, signed, tampered)
    assert found.hints == ()


def test_large_bodies_are_checked_within_an_allowance(
    verifier: Verifier, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above SMALL_BODY the re-encoding check needs a token; without one it is skipped."""
    big = {"payload": [{"id": str(i), "pad": "x" * 40} for i in range(200)]}
    signed = sign_webhook(big, key=key, created=REFERENCE_NOW)
    pretty = json.dumps(json.loads(signed.body), indent=1).encode()
    assert body_module.SMALL_BODY < len(pretty) <= body_module.LARGE_BODY
    monkeypatch.setattr(body_module, "_ALLOWANCE", body_module._Allowance(1))
    first = _changed(verifier, signed, pretty)
    assert "body_rewritten" in _codes(first)
    second = _changed(verifier, signed, pretty)
    assert "body_rewritten" not in _codes(second)
    assert any("skipped" in note for note in second.notes)
    assert "body_length" in _codes(second)  # the cheap evidence still counts


# --------------------------------------------------------------------------- what is shown


def test_nothing_secret_is_shown(verifier: Verifier, key: SigningKey) -> None:
    """Neither the body, the signature, the query text nor other header values appear."""
    signed = _sign(
        key,
        PUBLIC + WEBHOOK + "?token=s3cr3t",
        headers=[("authorization", "Bearer t0ken")],
        components=[*URL_COMPONENTS, "@query", "authorization"],
    )
    headers = [*signed.headers, ("x-forwarded-for", "198.51.100.1")]
    error = _refuse(
        verifier, signed, url="http://127.0.0.1:9000" + WEBHOOK + "?token=s3cr3t", headers=headers
    )
    found = _diagnosis(error)
    shown = str(found) + "\n".join(found.lines())
    signature = (signed.header("signature") or "").split(":")[1]
    for secret in ("s3cr3t", "t0ken", "Zo", signature, signature[:20], "sha-512=:"):
        assert secret not in shown
    assert found.bases == ()
    assert "@signature-params" not in shown


def test_bases_only_on_request(verifier: Verifier, forger: SigningKey) -> None:
    """show_base=True builds the bases tried; the one the sender signed is among them."""
    signed = _sign(forger)
    error = _refuse(verifier, signed)
    assert _diagnosis(error).bases == ()
    bases = dict(_diagnosis(error, show_base=True).bases)
    assert list(bases) == ["rfc9421/exact", "upvest-v6/exact"]
    assert bases["rfc9421/exact"] == signed.base.decode()


def test_bases_after_a_digest_mismatch_are_marked_unchecked(
    verifier: Verifier, key: SigningKey
) -> None:
    """After a digest mismatch no base was checked; asked for, they are labelled so."""
    signed = _sign(key)
    error = _refuse(verifier, signed, body=signed.body + b" ")
    names = [name for name, _ in _diagnosis(error, show_base=True).bases]
    assert names == ["rfc9421/exact (not checked)", "upvest-v6/exact (not checked)"]


def test_lines_for_a_terminal(verifier: Verifier, key: SigningKey) -> None:
    """lines(): rebuilt URL, signature, tried, body, then the hints."""
    signed = _sign(key)
    found = _diagnosis(_refuse(verifier, signed, url="http://127.0.0.1:8000" + WEBHOOK))
    lines = found.lines()
    assert lines[0] == "rebuilt: POST http://127.0.0.1:8000/webhooks/upvest (query: none)"
    assert lines[1].startswith("signature: sig1 covering @method @scheme")
    assert lines[2] == "tried: rfc9421/exact upvest-v6/exact, signature encoding der"
    assert lines[3] == f"body: {len(signed.body)} bytes, Content-Length {len(signed.body)}"
    assert lines[4].startswith("hint: the URL was rebuilt as 'http://127.0.0.1:8000'")


def test_setup_description() -> None:
    """URLSetup.describe() quotes every value and caps the proxy list."""
    setup = URLSetup(
        public_url=None,
        path_prefix="/api",
        trusted_proxies=tuple(f"10.0.0.{i}/32" for i in range(6)),
        peer="10.0.0.1",
        peer_trusted=True,
    )
    text = setup.describe()
    assert "path_prefix='/api'" in text
    assert "'...'" in text
    assert "peer='10.0.0.1' (trusted)" in text


def test_url_hints_cover_only_what_is_signed(key: SigningKey) -> None:
    """url_hints() is silent when nothing about the URL is covered."""
    verifier = Verifier(make_key_set(key), clock=lambda: REFERENCE_NOW)
    signed = _sign(key)
    error = _refuse(verifier, signed, url="http://127.0.0.1:8000" + WEBHOOK + WEBHOOK)
    context = failure_context(error)
    assert context is not None
    from upvest_verify._message import request_message

    message = request_message(context.method, context.url, context.field_lines())
    assert url_hints(message, frozenset({"content-digest"}), context.field_lines(), None) == []
