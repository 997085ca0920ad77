"""Start-up warm-up: one throwaway round of verification before the first webhook.

A fresh process pays, on its first webhook, for work no later webhook repeats: the
imports the package defers (the verifier, ``cryptography``'s OpenSSL backend, the
JWK importer), the fast path's plan for the ``Signature-Input`` head and its
binding to the policy, the regular expressions compiled on first use, and
OpenSSL's own first-use set-up of the P-521 group. :func:`warm_up` does all of it
with a built-in key and webhooks, so the first real webhook costs what every later
one does (``benchmarks/bench_cold.py`` measures it).

The fast path's plan is per ``Signature-Input`` head: the built-in webhooks cover
what Upvest's signers cover for a URL without a query (``@method @path
content-type content-length`` plus the digest field and ``date``), so a webhook
with another list of components still builds its own plan (about 0.1 ms) the
first time; everything else stays primed.

The built-in key is a P-521 public key whose private half was thrown away after
signing the samples below; it only ever sits in a throwaway
:class:`~upvest_verify.KeySet` and is never added to the application's keys. No
I/O happens: a key provider (such as a JWKS cache) is not asked for keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._message import HeaderInput
    from ._policy import Policy

__all__ = ["warm_up"]

_KID: Final = "upvest-verify-warm-up"
_JWKS: Final = (
    '{"keys":[{"kid":"upvest-verify-warm-up","kty":"EC","crv":"P-521",'
    '"x":"AERT3yBJwhWbrkwb6y3-y1TSYGJdNcAmOHhzg96Y2zGeU7jBokZYqhAKqx8W7tcitJMAqNemyRxDdm3addgB10iI",'
    '"y":"ABBwmVR5M9F_8CWltSE-Eddh6RO7jbPaoUQXzo0lP918cYSHRi8zdQ7CF81mQ83vZwsuZ9Kg_fDPVkkBnxHAWuE8"}]}'
)
_URL: Final = "https://receiver.example/webhooks/upvest"
_CREATED: Final = 1_700_000_000
_NOW: Final = _CREATED + 1  # inside created .. expires (= created + 5) under any skew
_BODY: Final = (
    b'{"payload":[{"id":"0b0e1c4a-6f1d-4d5e-9a3b-7c2f1e0d9a8b",'
    b'"created_at":"2023-11-14T22:13:20.000000Z","type":"ORDER.FILLED",'
    b'"object":{"id":"5a1f7c3e-2b4d-4e6f-8a9b-0c1d2e3f4a5b","status":"FILLED"},'
    b'"webhook_id":"9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b"}]}'
)
_COMMON: Final = (
    ("host", "receiver.example"),
    ("content-type", "application/json"),
    ("content-length", "249"),
    ("upvest-client-id", "c3b6a1ab-0f76-4b6b-9b77-b1f4a3a7c2e1"),
    ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
)
_PARAMS: Final = (
    ';keyid="upvest-verify-warm-up";created=1700000000;expires=1700000005;nonce="d2FybS11cA"'
)
# Upvest's v6 webhook dialect: Digest SHA-256, unquoted base lines, DER.
_V6: Final = (
    *_COMMON,
    ("digest", "SHA-256=aQez0oykaKqxmVWs9o8P8j1Qgb7EcOWautFX4maC5ZM="),
    ("user-agent", "Upvest-Webhooks/1.0"),
    (
        "signature-input",
        'sig1=("@method" "@path" "content-type" "content-length" "digest" "date")' + _PARAMS,
    ),
    (
        "signature",
        "sig1=:MIGIAkIB0UBGnEvs3N4pdhMelMCTN2Gt+MC8JCFWGLctHngmjqwhqo8XmKD5RkxEqBj21AghhLzDxf3J7P"
        "PZOS67zXxaj+UCQgCYkkSF47xh4knuifWvjeC7n0tC45yKcyY5+yqUH2sCSwH9XKmTgHQP2M0io5ahK9nPJqvP"
        "WywwVNZ0DaETiQQksQ==:",
    ),
)
# RFC 9421: Content-Digest SHA-512, quoted base lines, DER.
_RFC9421: Final = (
    *_COMMON,
    (
        "content-digest",
        "sha-512=:2BXggb2s/toLdbiEBda4TjIRuLU9Xqitd2rC8YuNndIvoCaYryApEiK57FqhxJXE58Qm4ltWp6FPpgYCN"
        "OJaDQ==:",
    ),
    ("user-agent", "Upvest-Webhooks/1.0"),
    (
        "signature-input",
        'sig1=("@method" "@path" "content-type" "content-length" "content-digest" "date")'
        + _PARAMS,
    ),
    (
        "signature",
        "sig1=:MIGHAkFuZvHmhhefqu/euOoIwvLGgWIQnvUqVcxEce0t1vNdRVHCvKXWzH8bgba6/TTGWH2BUj66rVrIY6Wf"
        "75A5CRHWswJCAdyGrwH+zswDrGMw225Z2sCA1uXCwUBzQUOFUN+UGddoG79prHIv2stBB/FR5B3DYRvfyTq64lLl"
        "C+Akwv1LElQO:",
    ),
)


def _samples() -> list[tuple[str, HeaderInput]]:
    """The throwaway webhooks, each in a header shape some caller passes.

    ``str`` pairs (the adapters), ``bytes`` pairs (an ASGI scope), and a repeated,
    uncovered header line, which the fast path leaves to the strict path.
    """
    asgi = [(name.encode(), value.encode()) for name, value in _RFC9421]
    proxied = [*_V6, ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "10.0.0.1")]
    return [
        ("Upvest v6", list(_V6)),
        ("RFC 9421", list(_RFC9421)),
        ("RFC 9421, ASGI bytes", asgi),
        ("Upvest v6, strict path", proxied),
    ]


def warm_up(policy: Policy | None = None) -> None:
    """Prime everything the first verification would otherwise do once.

    Imports the verifier and the JWK importer, loads a built-in key set, and
    verifies built-in webhooks (Upvest v6 and RFC 9421, through the fast and the
    strict path, ``str`` and ``bytes`` headers) under ``policy`` through a
    throwaway :class:`~upvest_verify.Verifier`, parses their events, and checks
    that an unknown key is refused. Call it once at start-up, after the
    application's :class:`~upvest_verify.Verifier` is built (or use
    :meth:`Verifier.warm_up <upvest_verify.Verifier.warm_up>`, which passes that
    verifier's policy): it takes a few milliseconds plus the deferred imports. It
    does no I/O and touches no application state but the caches every verifier
    shares. Safe to call from any thread, any number of times.

    Args:
        policy: The policy the application verifies with, so that its per-policy
            memo is primed too; default :class:`~upvest_verify.Policy()`. A sample
            that this policy refuses (a stricter ``required_components``, one
            ``dialect`` only...) is verified under the default policy instead.

    Raises:
        RuntimeError: A built-in webhook failed to verify under the default policy:
            the installation cannot verify webhooks (a broken ``cryptography`` or
            OpenSSL, or a defect); the message says which sample and why.
    """
    from ._keyset import KeySet
    from ._metrics import unmetered
    from ._policy import Policy
    from .errors import Reason, VerificationError
    from .verifier import Verifier

    keys = KeySet.from_jwks(_JWKS)  # the key import, as the first JWKS load runs it
    # Warm-up verifications are not traffic: they never reach the application's metrics.
    quiet = unmetered()
    default = Verifier(keys, policy=Policy(), clock=_clock, meter_provider=quiet)
    # A refusal: an unknown keyid goes through the strict path to KeyNotFound. It runs
    # first, so that the samples below leave the fast path's memo bound to `policy`.
    unknown = [(n, v.replace(_KID, "unknown")) for n, v in _V6]
    try:
        default.verify("POST", _URL, unknown, _BODY)
    except VerificationError as e:
        if e.reason is not Reason.UNKNOWN_KEY:
            raise RuntimeError(f"warm-up: an unknown key was refused as {e.reason.value}") from e
    else:
        raise RuntimeError("warm-up: a webhook under an unknown key was accepted")
    chosen = (
        default
        if policy is None
        else Verifier(keys, policy=policy, clock=_clock, meter_provider=quiet)
    )
    for name, headers in _samples():
        try:
            webhook = chosen.verify("POST", _URL, headers, _BODY)
        except VerificationError:
            # The application's policy refuses this sample (a stricter
            # required_components, one dialect only...): the default policy must not.
            try:
                webhook = default.verify("POST", _URL, headers, _BODY)
            except VerificationError as e:
                raise RuntimeError(f"warm-up webhook {name!r} did not verify: {e}") from e
        if webhook.key_id != _KID or len(webhook.events) != 1:
            raise RuntimeError(f"warm-up webhook {name!r} verified to the wrong result")


def _clock() -> float:
    return _NOW
