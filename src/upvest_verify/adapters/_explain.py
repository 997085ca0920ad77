"""The diagnosis on the security log line of a refused webhook (private).

For ``bad_signature`` and ``digest_mismatch``, ``log_rejection`` appends what the
verifier rebuilt and, where a common deployment mistake fits the evidence, a hint
naming the adapter setting to change (``public_url``, ``path_prefix``,
``trusted_proxies``); see :mod:`upvest_verify.diagnosis`. The adapter settings come
from the URL rebuilder of the same request (``_url.last_rebuilt()``), used only when
its URL is the one that was refused.

The diagnosis is computed when the log record is formatted, so a refusal logged below
the handler's level, or not at all, costs nothing more than before.

The signature bases tried (they hold the covered header values) are logged only on
explicit request: set the level of the ``upvest_verify.security.base`` logger itself
to ``DEBUG``::

    logging.getLogger("upvest_verify.security.base").setLevel(logging.DEBUG)

(Django: ``LOGGING["loggers"]["upvest_verify.security.base"] = {"level": "DEBUG"}``).
A ``DEBUG`` level inherited from the root or ``upvest_verify`` logger is not enough.
"""

from __future__ import annotations

import logging
from typing import Final

from upvest_verify.adapters._url import Rebuilt, last_rebuilt
from upvest_verify.diagnosis import Diagnosis, URLSetup, diagnose
from upvest_verify.errors import Reason, VerificationError

__all__ = ["BASE_LOGGER", "LazyDiagnosis", "base_logger", "explain", "log_bases", "url_setup"]

BASE_LOGGER: Final = "upvest_verify.security.base"
"""The logger of the signature bases; off unless its own level is ``DEBUG``."""

base_logger: Final = logging.getLogger(BASE_LOGGER)


_DIAGNOSED = (Reason.BAD_SIGNATURE, Reason.DIGEST_MISMATCH)


def url_setup(rebuilt: Rebuilt | None) -> URLSetup | None:
    """The adapter settings and peer behind a rebuilt URL.

    Args:
        rebuilt: The last URL rebuilt in this context.

    Returns:
        The setup (carrying the URL, so a diagnosis of another URL ignores it), or
        ``None`` without a rebuilt URL.
    """
    if rebuilt is None:
        return None
    rebuilder = rebuilt.rebuilder
    public = None
    if rebuilder.public_scheme is not None and rebuilder.public_authority is not None:
        public = f"{rebuilder.public_scheme}://{rebuilder.public_authority}"
    return URLSetup(
        public_url=public,
        path_prefix=rebuilder.path_prefix,
        trusted_proxies=tuple(str(network) for network in rebuilder.trusted_proxies),
        proxy_headers=rebuilder.proxy_headers,
        peer=rebuilt.peer,
        peer_trusted=rebuilt.peer_trusted,
        url=rebuilt.url,
    )


class LazyDiagnosis:
    """A log argument that diagnoses a refusal when the record is formatted, once.

    ``str()`` gives ``""`` when there is nothing to say, else the diagnosis after a
    space; an error inside the diagnosis never breaks the log line.

    Args:
        error: The refused request's error (carrying its failure context).
        rebuilt: The URL rebuilt for the request, read when the refusal was logged.
    """

    __slots__ = ("_error", "_rebuilt", "_text")

    def __init__(self, error: VerificationError, rebuilt: Rebuilt | None) -> None:
        self._error = error
        self._rebuilt = rebuilt
        self._text: str | None = None

    def diagnosis(self, *, show_base: bool = False) -> Diagnosis | None:
        """Diagnose the refusal (a fresh computation each call).

        Args:
            show_base: Also build the signature bases.

        Returns:
            The diagnosis, or ``None``.
        """
        return diagnose(self._error, setup=url_setup(self._rebuilt), show_base=show_base)

    def __str__(self) -> str:
        if self._text is None:
            try:
                found = self.diagnosis()
            except Exception as e:  # the log line must be written whatever happens here
                self._text = f" diagnosis=unavailable ({type(e).__name__})"
            else:
                self._text = "" if found is None else " " + str(found)
        return self._text

    def __repr__(self) -> str:
        return f"LazyDiagnosis({self._error.reason.value})"


def explain(exc: BaseException | None) -> LazyDiagnosis | None:
    """A lazy diagnosis for a ``bad_signature`` or ``digest_mismatch``, else ``None``."""
    if isinstance(exc, VerificationError) and exc.reason in _DIAGNOSED:
        return LazyDiagnosis(exc, last_rebuilt())
    return None


def _bases_wanted() -> bool:
    # Only an explicit level on this very logger: root at DEBUG must not leak header values.
    level = base_logger.level
    return logging.NOTSET < level <= logging.DEBUG and base_logger.isEnabledFor(logging.DEBUG)


def log_bases(lazy: LazyDiagnosis) -> None:
    """Log the signature bases tried, if the base logger was explicitly set to ``DEBUG``.

    Args:
        lazy: The refusal's diagnosis.
    """
    if not _bases_wanted():
        return
    try:
        found = lazy.diagnosis(show_base=True)
    except Exception:
        base_logger.debug("signature bases unavailable", exc_info=True)
        return
    for name, base in found.bases if found is not None else ():
        base_logger.debug("signature base (%s) of a refused webhook:\n%s", name, base)
