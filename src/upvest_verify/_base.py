"""The signature base: the only place one is spelled (RFC 9421 §2.5).

Two layouts exist. ``rfc9421`` (RFC 9421, draft-15, Upvest's "v15") quotes each
line's component identifier::

    "@method": POST
    "@path": /webhooks/upvest
    "@signature-params": ("@method" "@path");created=1618884473;keyid="k"

``upvest-v6`` (Upvest's draft-06 dialect) writes the same lines without quotes
around the identifier (``@method: POST``); the inner list on the last line keeps its
quotes. Lines end with LF, and there is no LF after the last one.

The signer (:mod:`upvest_verify.signing`), the strict verifier and the fast path's
compiled templates all build bases here, so a change to the layout reaches all of
them. Because signer and verifier share this code, a bug here would be symmetric, so
the test suite checks it against bases written out literally (tests/core/test_base.py),
the RFC's own bases (tests/core/test_rfc_vectors.py) and an independently written
signer (tests/independent_signer.py, used by tests/test_signing.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import _sfv
from ._components import Component
from ._result import Layout

__all__ = [
    "LAYOUTS",
    "base_template",
    "identifiers",
    "serialize_signature_params",
    "signature_base",
]

LAYOUTS: tuple[Layout, ...] = ("rfc9421", "upvest-v6")

# RFC 9421 §2.5: the last line names "@signature-params" (quoted in RFC 9421).
_SIGNATURE_PARAMS: Mapping[Layout, str] = {
    "rfc9421": '"@signature-params"',
    "upvest-v6": "@signature-params",
}


def identifiers(components: Sequence[Component], layout: Layout) -> list[str]:
    """The identifier that starts each base line, ``@signature-params`` last.

    Args:
        components: The covered components, in order (one line each).
        layout: ``rfc9421`` (quoted identifiers) or ``upvest-v6`` (unquoted).

    Returns:
        One identifier per line.
    """
    quoted = layout == "rfc9421"
    names = [c.quoted if quoted else c.unquoted for c in components]
    names.append(_SIGNATURE_PARAMS[layout])
    return names


def base_template(names: Sequence[str]) -> str:
    """The base as a ``%`` template with one ``%s`` per line value.

    RFC 9421 §2.5: each line is the identifier, a colon, one space and the value;
    lines are joined with LF and the base has no trailing LF.

    Args:
        names: The identifier of each line (see :func:`identifiers`).

    Returns:
        The template; ``template % values`` is the base as text.
    """
    # "%" is a token character, so a field name may hold one: escape it. Values are
    # only ever arguments, never part of the template.
    return "\n".join(name.replace("%", "%%") + ": %s" for name in names)


def signature_base(
    components: Sequence[Component],
    values: Sequence[Sequence[str]],
    signature_params: str,
    layout: Layout,
) -> bytes:
    """Build a signature base (RFC 9421 §2.5).

    Args:
        components: The covered components, in order.
        values: Each component's values: one, or one per occurrence for
            ``@query-param`` (each gets its own line).
        signature_params: The ``@signature-params`` value (see
            :func:`serialize_signature_params`).
        layout: ``rfc9421`` or ``upvest-v6``.

    Returns:
        The base as ASCII bytes.

    Raises:
        UnicodeEncodeError: A value is not ASCII (the callers check first).
    """
    quoted = layout == "rfc9421"
    names: list[str] = []
    args: list[str] = []
    for comp, comp_values in zip(components, values, strict=True):
        ident = comp.quoted if quoted else comp.unquoted
        for value in comp_values:
            names.append(ident)
            args.append(value)
    names.append(_SIGNATURE_PARAMS[layout])
    args.append(signature_params)
    return (base_template(names) % tuple(args)).encode("ascii")


def serialize_signature_params(
    components: Sequence[Component], params: Mapping[str, _sfv.BareItem]
) -> str:
    """The ``@signature-params`` value: the inner list with its parameters (RFC 9421 §2.3).

    Args:
        components: The covered components, in order.
        params: The signature parameters, in the order to write them.

    Returns:
        The strict RFC 8941 serialisation, e.g. ``("@method");created=1;keyid="k"``.
    """
    items: list[_sfv.Item] = [(c.name, dict(c.params)) for c in components]
    return _sfv.serialize_inner_list(items, dict(params))
