"""upvest_verify.signing: SigningKey, sign_request in every dialect, Upvest v15 request signing.

Three kinds of check, so that a bug shared by signer and verifier cannot hide:

* requests signed by the independent test signer (tests/independent_signer.py, which
  imports nothing of the package) must verify with the real verifier, in every dialect;
* the package signer must write byte-identical bases and headers for the same inputs
  (deterministic ECDSA);
* component values are compared with literal lines taken from RFC 9421's examples.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import pickle
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from independent_signer import independent_sign
from upvest_verify import ConfigurationError, KeySet, Policy, Reason, VerificationError, verify
from upvest_verify import testing as upvest_testing
from upvest_verify.signing import (
    UPVEST_UNCOVERED_FIELDS,
    SignedRequest,
    SigningKey,
    digest_fields,
    sign_request,
    sign_upvest_request,
    upvest_components,
)

NOW = 1_700_000_000
URL = "https://receiver.example/webhooks/upvest"
BODY = b'{"payload":[{"id":"1"}]}'
# A fixed P-521 scalar: deterministic ECDSA then gives reproducible signatures.
_SCALAR = int.from_bytes(hashlib.sha512(b"test_signing P-521").digest(), "big") >> 3
KEY = SigningKey(
    "3f2c9a4e-0000-4000-8000-000000000001", "P-521", ec.derive_private_key(_SCALAR, ec.SECP521R1())
)
KEYS = KeySet.from_keys([KEY.verifying_key])


def _signature_components(signature_input: str | None) -> list[str]:
    """The covered component identifiers of a ``sig1=(...)`` Signature-Input value."""
    assert signature_input is not None
    inner = signature_input.split("(", 1)[1].split(")", 1)[0]
    return inner.split(" ") if inner else []


def _header(signed: Any, name: str) -> str:
    """A header of a signed request, which must be present."""
    value: str | None = signed.header(name)
    assert value is not None, name
    return value


def _verify(signed: Any, policy: Policy | None = None, keys: KeySet = KEYS) -> Any:
    """Verify a signed request (package or independent) at NOW."""
    return verify(
        signed.method, signed.url, signed.headers, signed.body, keys=keys, now=NOW, policy=policy
    )


def _reason(signed: Any, headers: list[tuple[str, str]] | None = None) -> Reason:
    """The reason code verification fails with."""
    with pytest.raises(VerificationError) as info:
        verify(
            signed.method, signed.url, headers or signed.headers, signed.body, keys=KEYS, now=NOW
        )
    return info.value.reason


# -- SigningKey ---------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["P-521", "P-384", "P-256", "Ed25519"])
def test_generate_makes_a_key_of_each_type_with_a_uuid_key_id(key_type: Any) -> None:
    """generate() makes a key of the asked type whose key id is a fresh UUID."""
    key = SigningKey.generate(key_type)
    assert key.key_type == key_type
    assert uuid.UUID(key.key_id).version == 4
    assert key.key_id != SigningKey.generate(key_type).key_id
    assert key.verifying_key.key_type == key_type


def test_generate_takes_a_key_id_and_refuses_an_unknown_type() -> None:
    """generate() uses a given key id and refuses key types the verifier cannot use."""
    assert SigningKey.generate(key_id="mine").kid == "mine"
    with pytest.raises(ConfigurationError, match="key_type must be P-521"):
        SigningKey.generate("P-192")  # type: ignore[arg-type]


def test_positional_keyword_and_kid_construction_agree() -> None:
    """SigningKey(kid, type, key), SigningKey(kid=...) and SigningKey(key_id=...) build equal keys."""
    private = KEY.private_key
    positional = SigningKey("k1", "P-521", private)
    assert positional == SigningKey(kid="k1", key_type="P-521", private_key=private)
    assert positional == SigningKey(key_id="k1", private_key=private)  # type from the key
    assert positional.kid == positional.key_id == "k1"
    assert upvest_testing.SigningKey is SigningKey


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_id": "a", "kid": "b"}, "key_id or kid, not both"),
        ({"key_id": ""}, "non-empty str"),
        ({"key_id": "k" * 257}, "at most 256"),
        ({"key_id": "k", "key_type": "P-256"}, "key_type is 'P-256' but the private key is P-521"),
        ({"key_id": "k", "key_type": "RSA"}, "key_type must be P-521"),
        ({"key_id": "k", "private_key": None}, "needs a private_key"),
        (
            {"key_id": "k", "private_key": KEY.private_key.public_key()},
            "not a supported private key",
        ),
    ],
)
def test_constructor_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    """The constructor names what is wrong with its arguments."""
    kwargs.setdefault("private_key", KEY.private_key)
    with pytest.raises(ConfigurationError, match=message):
        SigningKey(**kwargs)


def test_key_is_immutable() -> None:
    """No attribute of a SigningKey can be set, replaced or deleted."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        KEY.key_id = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        KEY._key_id = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del KEY._private_key
    assert KEY.key_id.startswith("3f2c9a4e")


def test_equality_and_hash_are_by_value() -> None:
    """Keys compare and hash by key id, type and private key, not by object identity."""
    same = SigningKey.from_pem(KEY.to_pem(), key_id=KEY.key_id)
    assert same.private_key is not KEY.private_key
    assert same == KEY
    assert hash(same) == hash(KEY)
    assert len({KEY, same}) == 1
    assert SigningKey("other", "P-521", KEY.private_key) != KEY
    assert SigningKey.generate(key_id=KEY.key_id) != KEY
    assert KEY.key_id != KEY


@pytest.mark.parametrize("key_type", ["P-521", "Ed25519"])
def test_pickle_round_trip_keeps_the_key(key_type: Any) -> None:
    """A pickled key comes back equal and its signatures verify with the original's public key."""
    key = SigningKey.generate(key_type)
    back = pickle.loads(pickle.dumps(key))  # noqa: S301 - our own bytes
    assert back == key
    signed = sign_request("POST", URL, [], BODY, key=back, created=NOW)
    policy = Policy(key_types=frozenset({key_type}))
    assert _verify(signed, policy, KeySet.from_keys([key.verifying_key])).key_id == key.key_id


def test_repr_hides_the_private_key() -> None:
    """repr shows the key id and type but nothing of the private key."""
    text = repr(KEY)
    assert text == f"SigningKey(key_id={KEY.key_id!r}, key_type='P-521')"
    assert str(_SCALAR) not in text


@pytest.mark.parametrize("key_type", ["P-521", "P-384", "P-256", "Ed25519"])
def test_pkcs8_round_trip_plain_and_encrypted(key_type: Any) -> None:
    """to_pem() writes PKCS#8 that from_pem() reads back, with or without a password."""
    key = SigningKey.generate(key_type)
    plain = key.to_pem()
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_pem(plain, key_id=key.key_id) == key
    assert SigningKey.from_pem(plain.decode(), key_id=key.key_id) == key
    locked = key.to_pem(password="s3cret")
    assert locked.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert SigningKey.from_pem(locked, key_id=key.key_id, password=b"s3cret") == key


def test_traditional_ec_pem_plain_and_legacy_encrypted() -> None:
    """The traditional EC form is read, including the legacy Proc-Type/DEK-Info encryption."""
    private = KEY.private_key
    fmt = serialization.PrivateFormat.TraditionalOpenSSL
    plain = private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    assert plain.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert SigningKey.from_pem(plain, key_id=KEY.key_id) == KEY
    legacy = private.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"pw")
    )
    lines = legacy.decode().splitlines()
    assert lines[0] == "-----BEGIN EC PRIVATE KEY-----"
    assert lines[1] == "Proc-Type: 4,ENCRYPTED"
    assert lines[2].startswith("DEK-Info: ")
    assert SigningKey.from_pem(legacy, key_id=KEY.key_id, password="pw") == KEY


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_key_written_by_openssl_ec_aes256() -> None:
    """The key `openssl ecparam -genkey -name secp521r1 | openssl ec -aes256` writes loads and signs."""
    genkey = subprocess.run(
        ["openssl", "ecparam", "-genkey", "-name", "secp521r1"], check=True, capture_output=True
    )
    locked = subprocess.run(
        ["openssl", "ec", "-aes256", "-passout", "pass:secret"],
        input=genkey.stdout,
        check=True,
        capture_output=True,
    ).stdout
    assert b"Proc-Type: 4,ENCRYPTED" in locked
    key = SigningKey.from_pem(locked, key_id="from-openssl", password="secret")
    assert key.key_type == "P-521"
    signed = sign_request("POST", URL, [], BODY, key=key, created=NOW)
    assert _verify(signed, keys=KeySet.from_keys([key.verifying_key])).key_id == "from-openssl"


def _pem(
    key: Any, password: bytes | None = None, fmt: Any = serialization.PrivateFormat.PKCS8
) -> bytes:
    """A private key as PEM."""
    encryption: Any = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)  # type: ignore[no-any-return]


_TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


@pytest.mark.parametrize(
    ("data", "password", "message"),
    [
        pytest.param(
            lambda: _pem(rsa.generate_private_key(65537, 2048)),
            None,
            "RSA keys cannot sign",
            id="rsa",
        ),
        pytest.param(
            lambda: _pem(ec.generate_private_key(ec.SECP256K1())),
            None,
            "curve secp256k1 is not supported",
            id="secp256k1",
        ),
        pytest.param(
            lambda: _pem(ed448.Ed448PrivateKey.generate()),
            None,
            "Ed448PrivateKey is not a supported",
            id="ed448",
        ),
        pytest.param(
            lambda: KEY.private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            None,
            "holds a public key",
            id="public-key",
        ),
        pytest.param(
            lambda: _pem(KEY.private_key, b"right", _TRADITIONAL),
            b"wrong",
            "wrong password",
            id="wrong-password-legacy",
        ),
        pytest.param(
            lambda: _pem(KEY.private_key, b"right"),
            "wrong",
            "wrong password",
            id="wrong-password-pkcs8",
        ),
        pytest.param(
            lambda: _pem(KEY.private_key, b"right"),
            None,
            "encrypted: pass its password",
            id="no-password",
        ),
        pytest.param(lambda: _pem(KEY.private_key), b"pw", "not encrypted", id="needless-password"),
        pytest.param(lambda: b"not a key at all", None, "no '-----BEGIN' line", id="garbage"),
        pytest.param(
            lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
            "cannot read the PEM private key",
            id="damaged",
        ),
    ],
)
def test_from_pem_refusals(data: Any, password: Any, message: str) -> None:
    """from_pem() refuses unusable input with a ConfigurationError that says why."""
    with pytest.raises(ConfigurationError, match=message):
        SigningKey.from_pem(data(), key_id="k", password=password)


@pytest.mark.parametrize(("key_type", "size"), [("P-521", 132), ("P-384", 96), ("P-256", 64)])
def test_sign_encodings_and_determinism(key_type: Any, size: int) -> None:
    """sign() writes DER or fixed-size r||s, and RFC 6979 signing repeats exactly."""
    key = SigningKey.generate(key_type)
    raw = key.sign(b"base", encoding="raw", deterministic=True)
    assert len(raw) == size
    der = key.sign(b"base", deterministic=True)
    assert der[0] == 0x30
    assert key.sign(b"base", deterministic=True) == der
    half = size // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    assert encode_dss_signature(r, s) == der  # the same (r, s) in both encodings


def test_sign_with_another_hash_does_not_verify() -> None:
    """hash_algorithm overrides the curve's hash, which makes a negative the verifier rejects."""
    from upvest_verify._crypto import verify_signature

    wrong = KEY.sign(b"base", hash_algorithm=hashes.SHA256())
    assert not verify_signature(KEY.verifying_key, wrong, b"base")
    assert verify_signature(KEY.verifying_key, KEY.sign(b"base"), b"base")


def test_ed25519_signs_64_raw_bytes_and_exports_an_okp_jwk() -> None:
    """An Ed25519 key signs 64 bytes whatever the encoding and exports an OKP JWK."""
    key = SigningKey.generate("Ed25519")
    assert len(key.sign(b"x", encoding="der")) == 64
    assert key.public_jwk["kty"] == "OKP"
    assert key.public_jwk["crv"] == "Ed25519"


def test_public_jwk_is_an_upvest_key_set_entry() -> None:
    """The P-521 JWK has 66-byte coordinates and loads into a KeySet that verifies."""
    jwk = KEY.public_jwk
    assert set(jwk) == {"kid", "kty", "crv", "x", "y"}
    assert len(base64.urlsafe_b64decode(jwk["x"] + "==")) == 66
    keys = KeySet.from_jwks({"keys": [jwk]})
    assert _verify(sign_request("POST", URL, [], BODY, key=KEY, created=NOW), keys=keys)


# -- every dialect: independent signer -> real verifier; package signer byte-identical


DIALECTS = [
    pytest.param(
        layout,
        encoding,
        digest,
        query,
        version,
        id=f"{layout}-{encoding}-{digest}-{query}-{version}",
    )
    for layout in ("upvest-v6", "rfc9421")
    for encoding in ("der", "raw")
    for digest in ("digest", "content-digest")
    for query in ("no-query", "query")
    for version in ("no-version", "version")
]


@pytest.mark.parametrize(("layout", "encoding", "digest", "query", "version"), DIALECTS)
def test_dialect_from_independent_signer_verifies_and_package_matches(
    layout: Any, encoding: Any, digest: Any, query: str, version: str
) -> None:
    """An independently signed request verifies in its dialect, and sign_request writes the same bytes."""
    url = URL + ("?tenant=7&b=%20x" if query == "query" else "")
    headers = [("content-type", "application/json"), ("content-length", str(len(BODY)))]
    components = [
        "@method",
        "@path",
        *(["@query"] if query == "query" else []),
        "content-type",
        "content-length",
        digest,
    ]
    version_value = {"upvest-v6": "6", "rfc9421": "15"}[layout] if version == "version" else None
    common: dict[str, Any] = {
        "components": components,
        "layout": layout,
        "encoding": encoding,
        "digest": digest,
    }
    common |= {"created": NOW, "expires": NOW + 60, "nonce": "n-1"}
    theirs = independent_sign(
        "POST",
        url,
        headers,
        BODY,
        key_id=KEY.key_id,
        private_key=KEY.private_key,
        version_header=version_value,
        **common,
    )
    result = _verify(theirs)
    assert str(result.dialect) == f"{layout}/{encoding}/{digest}"
    assert list(result.covered_components) == [f'"{c}"' for c in components]

    ours = sign_request(
        "POST",
        url,
        headers,
        BODY,
        key=KEY,
        deterministic=True,
        version_header=version_value or False,
        **common,
    )
    assert ours.base == theirs.base
    assert ours.headers == theirs.headers
    if version_value is not None:
        # The header picks the layout: the other value makes the signature fail.
        other = "15" if version_value == "6" else "6"
        swapped = [(k, other if k == "upvest-signature-version" else v) for k, v in theirs.headers]
        assert _reason(theirs, swapped) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("layout", ["upvest-v6", "rfc9421"])
def test_base_layouts_differ_only_in_quoting(layout: Any) -> None:
    """v6 lines are 'name: value' and RFC 9421 lines '"name": value'; the inner list stays quoted."""
    signed = sign_request(
        "POST", URL + "?a=1", [], b"", key=KEY, layout=layout, created=NOW, nonce="n", ttl=None
    )
    q = '"' if layout == "rfc9421" else ""
    assert signed.base.decode().splitlines() == [
        f"{q}@method{q}: POST",
        f"{q}@path{q}: /webhooks/upvest",
        f"{q}@query{q}: ?a=1",
        f'{q}@signature-params{q}: ("@method" "@path" "@query");keyid="{KEY.key_id}";created={NOW};nonce="n"',
    ]


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
@pytest.mark.parametrize("body", [b"", BODY])
def test_sign_webhook_default_set_matches_independent_signer(dialect: Any, body: bytes) -> None:
    """sign_webhook's default covered set and headers are the documented ones, byte for byte."""
    url = URL + "?x=1"
    signed = upvest_testing.sign_webhook(
        body,
        key=KEY,
        url=url,
        dialect=dialect,
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    digest: Any = "digest" if dialect == "upvest-v6" else "content-digest"
    expected = [
        "@method",
        "@path",
        "@query",
        "content-type",
        *(["content-length", digest] if body else []),
        "date",
    ]
    assert [
        c.strip('"') for c in _signature_components(signed.header("signature-input"))
    ] == expected
    assert [k for k, _ in signed.headers] == [
        "host",
        "content-type",
        "content-length",
        "upvest-client-id",
        "date",
        digest,
        "signature-input",
        "signature",
    ]
    fields = signed.headers[:5]
    theirs = independent_sign(
        "POST",
        url,
        fields,
        body,
        key_id=KEY.key_id,
        private_key=KEY.private_key,
        components=expected,
        layout=dialect,
        digest=digest,
        created=NOW,
        expires=NOW + 60,
        nonce="n",
        params_order=("keyid", "created", "expires", "nonce"),
    )
    assert signed.base == theirs.base
    assert signed.headers == theirs.headers
    assert signed.header("date") == email.utils.formatdate(NOW, usegmt=True)


def test_signed_webhook_helpers_keep_their_type() -> None:
    """SignedWebhook is a SignedRequest whose replace_* helpers still return webhooks."""
    signed = upvest_testing.sign_webhook(BODY, key=KEY, url=URL + "?q=1", created=NOW)
    assert isinstance(signed, SignedRequest)
    changed = signed.replace_header("Digest", None).replace_body(b"{}")
    assert type(changed) is upvest_testing.SignedWebhook
    assert changed.header("digest") is None
    assert changed.body == b"{}"
    assert signed.header("digest") is not None
    assert signed.path == "/webhooks/upvest?q=1"


# -- component kinds: literal RFC 9421 lines, and a round trip through verify() ------

ANY_POLICY = Policy(required_components=(), require_query=False)


@pytest.mark.parametrize(
    ("component", "url", "headers", "lines"),
    [
        ("@method", URL, [], ['"@method": POST']),
        ("@path", "https://receiver.example", [], ['"@path": /']),
        ("@query", URL + "?a=1&b=%20", [], ['"@query": ?a=1&b=%20']),
        ("@authority", "https://Receiver.Example:443/x", [], ['"@authority": receiver.example']),
        ("@scheme", "HTTPS://receiver.example/x", [], ['"@scheme": https']),
        (
            "@target-uri",
            "https://receiver.example:8443/p?q",
            [],
            ['"@target-uri": https://receiver.example:8443/p?q'],
        ),
        ("@request-target", "https://receiver.example/p?q=1", [], ['"@request-target": /p?q=1']),
        # RFC 9421 §2.2.8
        (
            '"@query-param";name="baz"',
            "https://e.example/p?param=value&foo=bar&baz=batman&qux=",
            [],
            ['"@query-param";name="baz": batman'],
        ),
        (
            '@query-param;name="qux"',
            "https://e.example/p?param=value&foo=bar&baz=batman&qux=",
            [],
            ['"@query-param";name="qux": '],
        ),
        (
            '@query-param;name="var"',
            "https://e.example/p?var=this%20is%20a%20big%0Alarge%20string&bar=with+plus+whitespace",
            [],
            ['"@query-param";name="var": this%20is%20a%20big%0Alarge%20string'],
        ),
        (
            '@query-param;name="bar"',
            "https://e.example/p?bar=with+plus+whitespace",
            [],
            ['"@query-param";name="bar": with%20plus%20whitespace'],
        ),
        (
            '@query-param;name="a"',
            "https://e.example/p?b=2&a=1",
            [],
            ['"@query-param";name="a": 1'],
        ),
        # RFC 9421 §2.1
        ("x-empty-header", URL, [("X-Empty-Header", "")], ['"x-empty-header": ']),
        (
            "x-obs-fold-header",
            URL,
            [("X-Obs-Fold-Header", "Obsolete\r\n    line folding.")],
            ['"x-obs-fold-header": Obsolete line folding.'],
        ),
        (
            "cache-control",
            URL,
            [("Cache-Control", "max-age=60"), ("Cache-Control", "   must-revalidate")],
            ['"cache-control": max-age=60, must-revalidate'],
        ),
        # RFC 9421 §2.1.1-2.1.3
        (
            "example-dict;sf",
            URL,
            [("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")],
            ['"example-dict";sf: a=1, b=2;x=1;y=2, c=(a b c)'],
        ),
        (
            'example-dict;key="a"',
            URL,
            [("Example-Dict", "a=1, b=2;x=1;y=2, c=(a   b    c), d")],
            ['"example-dict";key="a": 1'],
        ),
        (
            '"example-dict";key="d"',
            URL,
            [("Example-Dict", "a=1, b=2;x=1;y=2, c=(a   b    c), d")],
            ['"example-dict";key="d": ?1'],
        ),
        (
            'example-dict;key="c"',
            URL,
            [("Example-Dict", "a=1, b=2;x=1;y=2, c=(a   b    c), d")],
            ['"example-dict";key="c": (a b c)'],
        ),
        (
            "example-header;bs",
            URL,
            [("Example-Header", "value, with, lots"), ("Example-Header", "of, commas")],
            ['"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:'],
        ),
    ],
)
def test_component_kind_round_trips(
    component: str, url: str, headers: list[tuple[str, str]], lines: list[str]
) -> None:
    """Each component kind gets the RFC's base line(s) and verifies under a policy allowing it."""
    signed = sign_request(
        "POST",
        url,
        headers,
        b"",
        key=KEY,
        components=[component],
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    assert signed.base.decode().splitlines()[:-1] == lines
    covered = _signature_components(_header(signed, "signature-input"))
    assert _verify(signed, ANY_POLICY).covered_components == tuple(covered)
    if ";sf" not in component and ";key=" not in component:
        # The independent signer agrees wherever it can compute the value itself.
        theirs = independent_sign(
            "POST",
            url,
            headers,
            b"",
            key_id=KEY.key_id,
            private_key=KEY.private_key,
            components=[component.replace('"', "", 2) if component[0] == '"' else component],
            layout="rfc9421",
            created=NOW,
            expires=NOW + 60,
            nonce="n",
        )
        assert signed.base == theirs.base
        assert signed.headers == theirs.headers


def test_both_component_spellings_sign_the_same() -> None:
    """A serialised identifier and the bare name with parameters are the same component."""
    url = "https://e.example/p?Pet=dog"
    a = sign_request(
        "GET",
        url,
        [],
        key=KEY,
        components=['"@query-param";name="Pet"'],
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    b = sign_request(
        "GET",
        url,
        [],
        key=KEY,
        components=['@query-param;name="Pet"'],
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    assert a.headers == b.headers
    assert (
        a.header("signature-input")
        == f'sig1=("@query-param";name="Pet");keyid="{KEY.key_id}";created={NOW};expires={NOW + 60};nonce="n"'
    )


@pytest.mark.parametrize(
    ("components", "headers", "url", "message"),
    [
        (["x-absent"], [], URL, "cannot cover \"x-absent\": covered field 'x-absent' is absent"),
        (["Content-Type"], [("content-type", "a")], URL, "must be lower-case"),
        (["@nope"], [], URL, "unknown derived component '@nope'"),
        (["@signature-params"], [], URL, "cannot be a covered component"),
        (["@status"], [], URL, '"@status" is not available on a request'),
        (['"@method'], [], URL, "is not an RFC 9421 identifier"),
        (["@method;foo"], [], URL, "unknown parameter 'foo'"),
        (["@query-param"], [], URL, "needs a name parameter"),
        (['@query-param;name="x"'], [], URL + "?y=1", "query parameter 'x' is absent"),
        (["@method", '"@method"'], [], URL, 'component "@method" is listed twice'),
        (["x-a;sf"], [("x-a", "1")], URL, "not a known structured field"),
        (["x-a;req"], [("x-a", "1")], URL, "has no related request"),
        (["x-a"], [("x-a", "caf\u00e9")], URL, "non-ASCII"),
        ("@method", [], URL, "not one string"),
        (["@method"], [], "receiver.example/x", "neither absolute nor origin-form"),
        (["@authority"], [], "/x", '"@authority" needs an absolute URL'),
    ],
)
def test_sign_request_refusals(
    components: Any, headers: list[tuple[str, str]], url: str, message: str
) -> None:
    """sign_request raises ValueError naming the component or argument at fault."""
    with pytest.raises(ValueError, match=re.escape(message)):
        sign_request("POST", url, headers, b"", key=KEY, components=components, created=NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "v7"}, "layout must be one of"),
        ({"encoding": "hex"}, "encoding must be 'der' or 'raw'"),
        ({"label": "Sig 1"}, "not a structured-field key"),
        ({"digest": "sha-1"}, "digest must be"),
        (
            {"headers": [("Content-Digest", "sha-512=:AA==:")], "digest": "content-digest"},
            "already hold 'content-digest'",
        ),
        ({"nonce": "caf\u00e9"}, "cannot write the signature parameters"),
    ],
)
def test_sign_request_argument_refusals(kwargs: dict[str, Any], message: str) -> None:
    """Out-of-range arguments raise ValueError before anything is signed."""
    # A copy: the parameter is pytest's own dict, shared by every run in this process
    # (mutmut runs the suite several times in one interpreter).
    options = dict(kwargs)
    headers = options.pop("headers", [])
    with pytest.raises(ValueError, match=message):
        sign_request("POST", URL, headers, BODY, key=KEY, created=NOW, **options)


# -- sign_request defaults and parameters --------------------------------------------


@pytest.mark.parametrize(
    ("layout", "digest"), [("upvest-v6", "digest"), ("rfc9421", "content-digest")]
)
def test_default_components_and_digest_follow_the_layout(layout: Any, digest: Any) -> None:
    """By default the layout's digest is added and covered after @method, @path and @query."""
    signed = sign_request("POST", URL + "?a=1", [], BODY, key=KEY, layout=layout, created=NOW)
    assert _signature_components(signed.header("signature-input")) == [
        '"@method"',
        '"@path"',
        '"@query"',
        f'"{digest}"',
    ]
    assert [k for k, _ in signed.headers] == [digest, "signature-input", "signature"]
    assert str(_verify(signed).dialect) == f"{layout}/der/{digest}"


def test_empty_body_gets_no_digest_and_no_query_component() -> None:
    """An empty body adds no digest field, and a URL without a query gets no @query."""
    signed = sign_request("GET", URL, [("accept", "application/json")], key=KEY, created=NOW)
    assert _signature_components(signed.header("signature-input")) == ['"@method"', '"@path"']
    assert [k for k, _ in signed.headers] == ["accept", "signature-input", "signature"]
    assert _verify(signed).covered_components == ('"@method"', '"@path"')


def test_digest_fields_values() -> None:
    """digest_fields writes Upvest's published values for {"key": "value"} (upvest-protocol.md §7)."""
    assert digest_fields(b'{"key": "value"}', "both") == [
        ("digest", "SHA-256=lyTB4g5uPk1/V+0l+dTvsAblCFkNUoyQ2ll/andcE+U="),
        (
            "content-digest",
            "sha-512=:Hd9/AvGZkbjitW1+Ml8Fg1ux1mtcDYe6mLQjDyoowIWa3LM/PmwN2v9O+MjtQGrCA3EQWUL54dlgxKHyYbrucw==:",
        ),
    ]
    assert digest_fields(BODY, "none") == []


def test_parameters_clock_ttl_tag_alg_and_order() -> None:
    """created comes from the clock, expires from ttl; tag and alg are written in the order asked."""
    signed = sign_request(
        "POST",
        URL,
        [],
        BODY,
        key=KEY,
        now=lambda: NOW + 0.9,
        ttl=30,
        nonce="n",
        tag="upvest",
        alg="ecdsa-p521-sha512",
        params_order=("tag", "nonce", "alg"),
        label="webhook",
    )
    params = _header(signed, "signature-input").split(")", 1)[1]
    assert (
        params
        == f';tag="upvest";nonce="n";alg="ecdsa-p521-sha512";keyid="{KEY.key_id}";created={NOW};expires={NOW + 30}'
    )
    assert _header(signed, "signature-input").startswith("webhook=(")
    result = _verify(signed, Policy(allow_unregistered_alg=True))
    assert (result.label, result.created, result.expires, result.nonce) == (
        "webhook",
        NOW,
        NOW + 30,
        "n",
    )


def test_ttl_none_and_no_nonce_leave_the_parameters_out() -> None:
    """ttl=None omits expires and with_nonce=False omits the nonce."""
    signed = sign_request("POST", URL, [], BODY, key=KEY, created=NOW, ttl=None, with_nonce=False)
    assert _header(signed, "signature-input").endswith(f';keyid="{KEY.key_id}";created={NOW}')
    assert _verify(signed).expires is None


@pytest.mark.parametrize(("layout", "value"), [("upvest-v6", "6"), ("rfc9421", "15")])
def test_version_header_true_writes_the_layout_version_uncovered(layout: Any, value: str) -> None:
    """version_header=True appends the layout's version after the signature, never covered."""
    signed = sign_request(
        "POST", URL, [], BODY, key=KEY, layout=layout, version_header=True, created=NOW
    )
    assert signed.headers[-1] == ("upvest-signature-version", value)
    assert '"upvest-signature-version"' not in _header(signed, "signature-input")
    assert _verify(signed).dialect.layout == layout


def test_bytes_and_mapping_headers_are_accepted() -> None:
    """Headers may be a mapping or bytes pairs; they come back as str pairs in order."""
    a = sign_request(
        "POST",
        URL,
        {"X-A": "1"},
        BODY,
        key=KEY,
        components=["x-a"],
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    b = sign_request(
        "POST",
        URL,
        [(b"X-A", b"1")],
        BODY,
        key=KEY,
        components=["x-a"],
        created=NOW,
        nonce="n",
        deterministic=True,
    )
    assert a.headers == b.headers
    assert a.headers[0] == ("X-A", "1")


# -- Upvest v15 request signing ------------------------------------------------------

CLIENT_HEADERS = [
    ("Accept", "application/json"),
    ("Authorization", "Bearer token"),
    ("upvest-client-id", "c3b6a1ab-0f76-4b6b-9b77-b1f4a3a7c2e1"),
    ("upvest-api-version", "1"),
    ("content-type", "application/json"),
    ("idempotency-key", "2b0f2c1e-7f3a-4d55-9a53-6f3b9b3a0c11"),
    ("User-Agent", "upvest-verify"),
    ("accept-encoding", "gzip"),
    ("connection", "keep-alive"),
    ("host", "sandbox.upvest.co"),
    ("cookie", "a=1"),
    ("x-request-id", "r"),
    ("cf-ray", "r"),
    ("cdn-loop", "c"),
    ("sec-fetch-mode", "cors"),
    ("priority", "u=1"),
    ("upvest-signature-extra", "1"),
    ("expect", "100-continue"),
    ("te", "trailers"),
    ("transfer-encoding", "chunked"),
]
V15_URL = "https://sandbox.upvest.co/webhooks?limit=10"


def test_upvest_components_skip_the_never_covered_fields() -> None:
    """The v15 helper covers @method, @path, @query and every header except the never-covered ones."""
    assert upvest_components(V15_URL, CLIENT_HEADERS) == [
        "@method",
        "@path",
        "@query",
        "accept",
        "authorization",
        "upvest-client-id",
        "upvest-api-version",
        "content-type",
        "idempotency-key",
    ]
    assert upvest_components("https://sandbox.upvest.co/webhooks", []) == ["@method", "@path"]
    assert upvest_components("https://sandbox.upvest.co/webhooks?", []) == ["@method", "@path"]
    assert "host" in UPVEST_UNCOVERED_FIELDS


def test_sign_upvest_request_is_the_v15_profile() -> None:
    """A v15 request covers the expected fields plus date, length and digest, DER, 10 s window, version 15."""
    signed = sign_upvest_request("post", V15_URL, CLIENT_HEADERS, BODY, key=KEY, created=NOW)
    assert signed.method == "POST"
    covered = [c.strip('"') for c in _signature_components(signed.header("signature-input"))]
    assert covered == [
        "@method",
        "@path",
        "@query",
        "accept",
        "authorization",
        "upvest-client-id",
        "upvest-api-version",
        "content-type",
        "idempotency-key",
        "date",
        "content-length",
        "content-digest",
    ]
    assert signed.headers[-1] == ("upvest-signature-version", "15")
    assert [k for k, _ in signed.headers[-4:-1]] == [
        "content-digest",
        "signature-input",
        "signature",
    ]
    params = _header(signed, "signature-input").split(")", 1)[1]
    keyid, created, expires, nonce = params.lstrip(";").split(";")
    assert (keyid, created, expires) == (
        f'keyid="{KEY.key_id}"',
        f"created={NOW}",
        f"expires={NOW + 10}",
    )
    assert uuid.UUID(nonce.removeprefix("nonce=").strip('"')).version == 4
    assert signed.header("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert signed.header("content-length") == str(len(BODY))
    signature = base64.b64decode(_header(signed, "signature").split(":")[1])
    assert signature[0] == 0x30
    assert 137 <= len(signature) <= 139
    result = _verify(signed, Policy(require_nonce=True, max_window=10))
    assert str(result.dialect) == "rfc9421/der/content-digest"


def test_sign_upvest_request_matches_the_independent_signer() -> None:
    """The v15 base is what the independent signer writes for the same components."""
    signed = sign_upvest_request(
        "POST", V15_URL, CLIENT_HEADERS, BODY, key=KEY, created=NOW, nonce="n", deterministic=True
    )
    covered = [c.strip('"') for c in _signature_components(signed.header("signature-input"))]
    fields = signed.headers[: len(CLIENT_HEADERS) + 2]  # the caller's, then date and content-length
    theirs = independent_sign(
        "POST",
        V15_URL,
        fields,
        BODY,
        key_id=KEY.key_id,
        private_key=KEY.private_key,
        components=covered,
        layout="rfc9421",
        digest="content-digest",
        created=NOW,
        expires=NOW + 10,
        nonce="n",
        version_header="15",
    )
    assert signed.base == theirs.base
    assert signed.headers == theirs.headers


def test_sign_upvest_request_get_without_body_or_query() -> None:
    """A GET without query or body covers neither @query nor a digest, keeps a given date, and verifies."""
    headers = [("accept", "application/json"), ("date", "Mon, 13 Nov 2023 00:00:00 GMT")]
    signed = sign_upvest_request(
        "GET", "https://sandbox.upvest.co/webhooks", headers, key=KEY, now=lambda: NOW
    )
    assert _signature_components(signed.header("signature-input")) == [
        '"@method"',
        '"@path"',
        '"accept"',
        '"date"',
    ]
    assert [k for k, _ in signed.headers] == [
        "accept",
        "date",
        "signature-input",
        "signature",
        "upvest-signature-version",
    ]
    assert _verify(signed).covered_components == ('"@method"', '"@path"', '"accept"', '"date"')


def test_sign_upvest_request_refuses_a_second_content_digest() -> None:
    """A caller-supplied content-digest with a body is refused rather than signed twice."""
    with pytest.raises(ValueError, match="already hold 'content-digest'"):
        sign_upvest_request("POST", V15_URL, [("content-digest", "sha-512=:AA==:")], BODY, key=KEY)


@pytest.mark.parametrize(
    ("layout", "digest"), [("upvest-v6", "digest"), ("rfc9421", "content-digest")]
)
def test_added_digest_is_covered_with_explicit_components(layout: Any, digest: Any) -> None:
    """A digest field sign_request adds is covered even when the components are given."""
    signed = sign_request(
        "POST",
        "https://receiver.example/hooks?t=7",
        {"content-type": "application/json"},
        b"{}",
        key=KEY,
        components=["@method", "@path", "@query", "content-type"],
        layout=layout,
        digest=digest,
        created=1_700_000_000,
    )
    assert signed.header("signature-input").startswith(  # type: ignore[union-attr]
        f'sig1=("@method" "@path" "@query" "content-type" "{digest}")'
    )
    webhook = verify(
        signed.method,
        signed.url,
        signed.headers,
        signed.body,
        keys=KeySet.from_keys([KEY.verifying_key]),
        now=1_700_000_000,
    )
    assert webhook.dialect.digest == digest


def test_a_query_parameter_whose_name_repeats_cannot_be_covered() -> None:
    """RFC 9421 §2.2.8: the signer refuses "@query-param" for a name that occurs twice."""
    with pytest.raises(ValueError, match="occurs 2 times"):
        sign_request(
            "POST",
            "https://e.example/p?a=1&b=2&a=3",
            [],
            b"",
            key=KEY,
            components=['@query-param;name="a"'],
            created=NOW,
        )
