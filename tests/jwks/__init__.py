"""Tests of the JWKS package (upvest_verify.jwks), one module per source module."""

from __future__ import annotations
