"""The signature base (``_base.py``): both layouts, spelled out by hand.

The expected bases here are written literally, not built by any code under test;
tests/core/test_rfc_vectors.py checks the same module against the RFC's own bases.
"""

from __future__ import annotations

from typing import Any

import pytest

from upvest_verify._base import (
    LAYOUTS,
    base_template,
    identifiers,
    serialize_signature_params,
    signature_base,
)
from upvest_verify._components import Component, parse_component


def comp(component: str, **params: Any) -> Component:
    """A validated component identifier."""
    return parse_component((component, params))


COMPONENTS = (comp("@method"), comp("@query-param", name="a"), comp("example-dict", key="k"))
VALUES = (["POST"], ["1", "2"], ["x=1"])
PARAMS = '("@method" "@query-param";name="a" "example-dict";key="k");created=1;keyid="k"'


def test_layouts() -> None:
    """Two layouts exist, RFC 9421 first."""
    assert LAYOUTS == ("rfc9421", "upvest-v6")


def test_rfc9421_base_spelled_out() -> None:
    """RFC 9421 §2.5: quoted identifiers, one line per value, no trailing newline."""
    assert signature_base(COMPONENTS, VALUES, PARAMS, "rfc9421") == (
        b'"@method": POST\n'
        b'"@query-param";name="a": 1\n'
        b'"@query-param";name="a": 2\n'
        b'"example-dict";key="k": x=1\n'
        b'"@signature-params": ("@method" "@query-param";name="a" "example-dict";key="k")'
        b';created=1;keyid="k"'
    )


def test_upvest_v6_base_spelled_out() -> None:
    """Upvest v6: identifiers and the last label unquoted; parameters keep their quotes."""
    assert signature_base(COMPONENTS, VALUES, PARAMS, "upvest-v6") == (
        b"@method: POST\n"
        b'@query-param;name="a": 1\n'
        b'@query-param;name="a": 2\n'
        b'example-dict;key="k": x=1\n'
        b'@signature-params: ("@method" "@query-param";name="a" "example-dict";key="k")'
        b';created=1;keyid="k"'
    )


def test_empty_component_list() -> None:
    """With nothing covered the base is the @signature-params line alone."""
    assert signature_base((), (), "();created=1", "rfc9421") == b'"@signature-params": ();created=1'
    assert signature_base((), (), "();created=1", "upvest-v6") == b"@signature-params: ();created=1"


def test_percent_in_values_and_names_is_literal() -> None:
    """A "%" in a field name or value reaches the base unchanged (the template escapes it)."""
    base = signature_base((comp("x%y"),), (["50%s %d"],), "()", "rfc9421")
    assert base == b'"x%y": 50%s %d\n"@signature-params": ()'


def test_empty_value_keeps_the_space() -> None:
    """An empty field value still has ": " after its identifier (RFC 9421 §2.1)."""
    assert signature_base((comp("x"),), ([""],), "()", "upvest-v6") == (
        b"x: \n@signature-params: ()"
    )


def test_values_must_match_components() -> None:
    """A value list of another length than the component list is a programming error."""
    with pytest.raises(ValueError, match="zip"):
        signature_base(COMPONENTS, VALUES[:2], PARAMS, "rfc9421")


def test_non_ascii_value_cannot_enter_a_base() -> None:
    """Bases are ASCII; callers check values first, and the encoder refuses the rest."""
    with pytest.raises(UnicodeEncodeError):
        signature_base((comp("x"),), (["é"],), "()", "rfc9421")


def test_identifiers_per_layout() -> None:
    """identifiers() gives each component's line name and the @signature-params label."""
    assert identifiers(COMPONENTS, "rfc9421") == [
        '"@method"',
        '"@query-param";name="a"',
        '"example-dict";key="k"',
        '"@signature-params"',
    ]
    assert identifiers(COMPONENTS, "upvest-v6") == [
        "@method",
        '@query-param;name="a"',
        'example-dict;key="k"',
        "@signature-params",
    ]


def test_base_template() -> None:
    """The template has one %s per line and escapes a literal %."""
    template = base_template(['"a%"', '"@signature-params"'])
    assert template == '"a%%": %s\n"@signature-params": %s'
    assert template % ("1", "()") == '"a%": 1\n"@signature-params": ()'


def test_serialize_signature_params() -> None:
    """The inner list with component and signature parameters, strictly serialised."""
    params = {"created": 1618884473, "keyid": "test-key", "nonce": 'a"b', "flag": True}
    assert serialize_signature_params(COMPONENTS[:2], params) == (
        '("@method" "@query-param";name="a");created=1618884473;keyid="test-key";nonce="a\\"b";flag'
    )
    assert serialize_signature_params((), {}) == "()"
