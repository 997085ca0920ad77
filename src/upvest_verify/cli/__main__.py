"""``python -m upvest_verify.cli``: the same as the ``upvest-verify`` command."""

from __future__ import annotations

from upvest_verify.cli import main

main()
