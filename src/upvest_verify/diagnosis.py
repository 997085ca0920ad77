"""Why a webhook was refused: what the verifier rebuilt, and which setting to fix.

A ``bad_signature`` or ``digest_mismatch`` from a deployment mistake (a proxy that
changes the host or strips a path prefix, a ``public_url`` holding the whole webhook
URL, a middleware that rewrites the body) looks like a forgery unless someone says
what the verifier saw. The adapters log this on ``upvest_verify.security``; code that
calls the verifier itself can ask for it::

    from upvest_verify.diagnosis import diagnose

    try:
        webhook = verifier.verify(method, url, headers, body)
    except VerificationError as e:
        logger.warning("webhook refused: %s %s", e, diagnose(e) or "")
        raise

:func:`diagnose` works only on errors raised by :func:`upvest_verify.verify` or
:class:`upvest_verify.Verifier` for those two reasons (``None`` otherwise), and only
when called: the verifier merely keeps references to the request's parts on the error.
A :class:`Diagnosis` shows the method, scheme, authority and path (whether a query
was present, never its text), the covered component names, the bases tried, the body
length against ``Content-Length``, and :class:`Hint` s; never the body or the
signature. The signature bases, which hold covered header values, only with
``show_base=True``.
"""

from __future__ import annotations

from ._diagnose import Diagnosis, Hint, Surface, URLSetup, diagnose

__all__ = ["Diagnosis", "Hint", "Surface", "URLSetup", "diagnose"]
