"""The ``upvest-verify`` command line (``pip install 'upvest-verify[cli]'``).

Commands: ``demo`` (the whole flow on this machine), ``verify`` (a captured request),
``sandbox`` (run the emulator), ``trigger`` (emit an event on a running emulator),
``webhooks`` and ``keys`` (the management API), ``listen`` (receive webhooks through
Upvest's relay, verify them and forward them to a local receiver), ``work`` (handle
the events an endpoint enqueued in a ledger's inbox). ``demo``,
``sandbox`` and ``trigger`` need the ``sandbox`` extra, ``webhooks``, ``keys`` and
``listen`` the ``client`` extra; each says so when it is missing.
"""

from __future__ import annotations

import sys

__all__ = ["cli", "main"]

_INSTALL_HINT = "the command line needs its extra: pip install 'upvest-verify[cli]'"

try:
    import click
    import rich  # noqa: F401 - checked here so a missing extra fails with the hint
except ImportError:  # pragma: no cover - exercised only without the [cli] extra

    def main() -> None:
        """Console-script entry point: explain which extra is missing."""
        sys.stderr.write(_INSTALL_HINT + "\n")
        sys.exit(2)

else:
    from upvest_verify import __version__

    from .demo import demo_command
    from .listen import listen_command
    from .sandbox import sandbox_command, trigger_command
    from .verify import verify_command
    from .webhooks import keys_command, webhooks_group
    from .work import work_command

    @click.group()
    @click.version_option(__version__, prog_name="upvest-verify")
    def cli() -> None:
        """Verify Upvest webhook signatures (HTTP Message Signatures, ECDSA P-521)."""

    for _command in (
        demo_command,
        verify_command,
        sandbox_command,
        trigger_command,
        webhooks_group,
        keys_command,
        listen_command,
        work_command,
    ):
        cli.add_command(_command)

    def main() -> None:
        """Console-script entry point."""
        cli(prog_name="upvest-verify")
