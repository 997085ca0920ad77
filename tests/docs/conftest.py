"""Report how many documentation blocks ran (see ``docs_support``)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: Python blocks run, command lines run or parsed, blocks skipped."""
    from docs_support import STATS

    if not (STATS.python or STATS.skipped or STATS.failed):
        return
    terminalreporter.write_sep(
        "-",
        f"documentation: {STATS.python} python blocks ran, "
        f"{STATS.console_lines_run} upvest-verify commands ran and "
        f"{STATS.console_lines_parsed} were parsed, {len(STATS.skipped)} blocks skipped, "
        f"{STATS.failed} failed",
    )
