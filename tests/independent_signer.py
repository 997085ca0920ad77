"""A tiny HTTP message signer written apart from the package, to check it from outside.

The package's signer and verifier share one base builder (``upvest_verify._base``),
component code (``_components``), digests (``_digest``) and structured-field
serialiser (``_sfv``), so a bug there would be symmetric: signer and verifier would
agree on a wrong base. This module spells everything itself, from RFC 9421 §2 and
§2.5, RFC 8941 §4.1 and upvest-protocol.md §2.5, with only the standard library and
``cryptography`` for the ECDSA primitive; it imports nothing from ``upvest_verify``.

It knows what the dialect tests need, and no more: the derived request components,
``@query-param``, plain fields and ``;bs`` fields, both base layouts, DER and raw
signatures, ``Digest`` and ``Content-Digest``, and the version header.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["IndependentlySigned", "independent_sign"]

_HASHES = {521: (hashes.SHA512(), 66), 384: (hashes.SHA384(), 48), 256: (hashes.SHA256(), 32)}
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_FORM_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._"


@dataclass(frozen=True)
class IndependentlySigned:
    """What the independent signer produced.

    Attributes:
        method: The request method.
        url: The request URL.
        headers: The given headers, the digest field(s), ``signature-input``,
            ``signature`` and, if asked for, ``upvest-signature-version``.
        body: The raw body.
        base: The signature base that was signed.
    """

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    base: bytes


def _sf_string(value: str) -> str:
    # RFC 8941 §4.1.6: DQUOTE, with "\" and DQUOTE escaped, DQUOTE.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_url(url: str) -> tuple[str, str, str, str | None]:
    scheme, _, rest = url.partition("://")
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    authority, target = rest[:cut].lower(), rest[cut:]
    scheme = scheme.lower()
    # RFC 9421 §2.2.3: the default port is left out of @authority.
    if authority.endswith(":" + _DEFAULT_PORTS.get(scheme, "-")):
        authority = authority.rsplit(":", 1)[0]
    path, sep, query = target.partition("?")
    return scheme, authority, path or "/", query if sep else None


def _form_encode(text: str) -> str:
    # RFC 9421 §2.2.8: the WHATWG form-urlencoded percent-encode set, space as %20.
    return "".join(chr(b) if b in _FORM_SAFE else f"%{b:02X}" for b in text.encode("utf-8"))


def _form_decode(text: str) -> str:
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "replace")


def _parse(spec: str) -> tuple[str, list[tuple[str, str | None]]]:
    # 'name' or 'name;param' or 'name;param="value"' (no ";" inside values).
    name, *raw_params = spec.split(";")
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        key, sep, value = raw.partition("=")
        params.append((key, value[1:-1] if sep else None))
    return name, params


def _identifier(name: str, params: list[tuple[str, str | None]], quoted: bool) -> str:
    out = _sf_string(name) if quoted else name
    for key, value in params:
        out += f";{key}" if value is None else f";{key}={_sf_string(value)}"
    return out


def _field_lines(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    lines = [value for key, value in headers if key.lower() == name]
    if not lines:
        raise ValueError(f"no {name!r} header to cover")
    # RFC 9421 §2.1: obs-fold becomes one space, each line trimmed of SP and HTAB.
    return [" ".join(part.strip(" \t") for part in v.split("\r\n")).strip(" \t") for v in lines]


def _values(
    name: str,
    params: list[tuple[str, str | None]],
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
) -> list[str]:
    scheme, authority, path, query = _split_url(url)
    derived = {
        "@method": method,
        "@path": path,
        "@query": "?" + (query or ""),
        "@authority": authority,
        "@scheme": scheme,
        "@target-uri": f"{scheme}://{authority}{path}" + ("" if query is None else f"?{query}"),
        "@request-target": path + ("" if query is None else f"?{query}"),
    }
    if name in derived:
        return [derived[name]]
    if name == "@query-param":
        wanted = dict(params)["name"]
        values = []
        for pair in (query or "").split("&"):
            key, _, value = pair.partition("=")
            if pair and _form_encode(_form_decode(key)) == wanted:
                values.append(_form_encode(_form_decode(value)))
        return values
    lines = _field_lines(headers, name)
    if ("bs", None) in params:
        # RFC 9421 §2.1.3: each line as a byte sequence, joined with ", ".
        return [
            ", ".join(":" + base64.b64encode(v.encode("latin-1")).decode() + ":" for v in lines)
        ]
    if params:
        raise ValueError(f"the independent signer does not do {params!r}")
    return [", ".join(lines)]


def _sign(private_key: object, base: bytes, encoding: str, deterministic: bool) -> bytes:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(base)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    hash_algorithm, size = _HASHES[private_key.curve.key_size]
    der = private_key.sign(base, ec.ECDSA(hash_algorithm, deterministic_signing=deterministic))
    if encoding == "der":
        return der
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def independent_sign(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    key_id: str,
    private_key: object,
    components: Sequence[str],
    layout: Literal["rfc9421", "upvest-v6"],
    encoding: Literal["der", "raw"] = "der",
    digest: Literal["digest", "content-digest", "both", "none"] = "none",
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    alg: str | None = None,
    tag: str | None = None,
    params_order: Sequence[str] = ("keyid", "created", "expires", "nonce", "alg", "tag"),
    label: str = "sig1",
    version_header: str | None = None,
    deterministic: bool = True,
) -> IndependentlySigned:
    """Sign a request from first principles.

    Components are written as bare names with parameters (``@method``,
    ``@query-param;name="Pet"``, ``example-header;bs``).

    Args:
        method: The request method.
        url: The absolute URL.
        headers: The header fields to send.
        body: The raw body.
        key_id: The ``keyid``.
        private_key: A ``cryptography`` EC or Ed25519 private key.
        components: The covered components, in order.
        layout: ``"rfc9421"`` (quoted line names) or ``"upvest-v6"`` (unquoted).
        encoding: ``"der"`` or ``"raw"`` r||s.
        digest: The digest field(s) to append before signing.
        created: The ``created`` parameter.
        expires: The ``expires`` parameter, if any.
        nonce: The ``nonce`` parameter, if any.
        alg: The ``alg`` parameter, if any.
        tag: The ``tag`` parameter, if any.
        params_order: The order of the signature parameters.
        label: The signature label.
        version_header: The value of an uncovered ``upvest-signature-version``, if any.
        deterministic: RFC 6979 ECDSA.

    Returns:
        The signed request.
    """
    fields = list(headers)
    if digest in ("digest", "both"):
        fields.append(
            ("digest", "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode())
        )
    if digest in ("content-digest", "both"):
        value = base64.b64encode(hashlib.sha512(body).digest()).decode()
        fields.append(("content-digest", f"sha-512=:{value}:"))

    quoted = layout == "rfc9421"
    parsed = [_parse(spec) for spec in components]
    lines = []
    for name, params in parsed:
        for value in _values(name, params, method, url, fields):
            lines.append(f"{_identifier(name, params, quoted)}: {value}")
    params_text = {
        "keyid": f"keyid={_sf_string(key_id)}",
        "created": f"created={created}",
        "expires": None if expires is None else f"expires={expires}",
        "nonce": None if nonce is None else f"nonce={_sf_string(nonce)}",
        "alg": None if alg is None else f"alg={_sf_string(alg)}",
        "tag": None if tag is None else f"tag={_sf_string(tag)}",
    }
    ordered = [p for p in params_order if p in params_text] + [
        p for p in params_text if p not in params_order
    ]
    signature_params = "(" + " ".join(_identifier(n, p, True) for n, p in parsed) + ")"
    signature_params += "".join(";" + t for p in ordered if (t := params_text[p]) is not None)
    label_line = '"@signature-params"' if quoted else "@signature-params"
    lines.append(f"{label_line}: {signature_params}")
    base = "\n".join(lines).encode("ascii")

    signature = _sign(private_key, base, encoding, deterministic)
    fields.append(("signature-input", f"{label}={signature_params}"))
    fields.append(("signature", f"{label}=:{base64.b64encode(signature).decode()}:"))
    if version_header is not None:
        fields.append(("upvest-signature-version", version_header))
    return IndependentlySigned(method, url, fields, body, base)
