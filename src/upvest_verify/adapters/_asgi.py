"""What an ASGI adapter reads from a request's head, in one pass (private).

An ASGI server hands the header field lines over as ``(name, value)`` byte pairs,
names lower-cased. The URL rebuilder wants ``Host`` (or an HTTP/2 ``:authority``),
the body reader ``Content-Length``, the verifier every line, and, behind a trusted
proxy, the rebuilder its forwarding fields too. :func:`read_head` walks the lines
once for all of them; nothing is decoded but the few values read.

In the usual case (every name distinct and lower-case) that walk is one ``dict()``
of the lines, done in C, and that dict is what the verifier gets: its fast path
reads the same dict, so the lines are not copied again. Otherwise (a name repeated
or not lower-case) the lines are walked in Python and the verifier gets them as they
came, so that it combines repeated lines itself (RFC 9421 §2.1).

No web framework is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from upvest_verify.adapters._body import declared_length
from upvest_verify.errors import Reason, VerificationError

__all__ = ["ASGIHead", "asgi_log_path", "asgi_route_path", "read_head"]


class ASGIHead:
    """The header field lines of one ASGI request, read once.

    Attributes:
        fields: The lines as the verifier gets them: a ``dict`` of byte names to byte
            values when every name is distinct and lower-case, else the scope's lines.
        declared: The declared ``Content-Length`` when exactly one plain decimal line
            declares it, else ``None`` (the limit is still enforced while reading).
    """

    __slots__ = ("_distinct", "declared", "fields")

    def __init__(self, fields: Any, declared: int | None, distinct: bool) -> None:
        self.fields = fields
        self.declared = declared
        self._distinct = distinct

    def values(self, name: str) -> list[str]:
        """Every value of the field ``name`` (lower-case), decoded as ISO-8859-1.

        Args:
            name: The lower-case field name.

        Returns:
            The values in the order received; empty when the field is absent.
        """
        key = name.encode("latin-1")
        if self._distinct:
            value = self.fields.get(key)
            return [] if value is None else [bytes(value).decode("latin-1")]
        return [bytes(v).decode("latin-1") for k, v in self.fields if bytes(k).lower() == key]

    def authority(self, server: Any) -> str:
        """The authority the client called: ``Host``, or an HTTP/2 ``:authority``.

        ASGI servers turn ``:authority`` into ``host``; one that passes the
        pseudo-header through still names the authority the client called (RFC 9113
        §8.3.1), and a ``Host`` naming another one makes the request malformed.
        Without either, the server's own address.

        Args:
            server: The scope's ``server`` (``(host, port)``), or ``None``.

        Returns:
            The authority, unchecked (the rebuilder checks its syntax).

        Raises:
            VerificationError: ``malformed_header`` for more than one ``Host`` or
                ``:authority``, or the two naming different authorities.
        """
        if self._distinct:
            host = self.fields.get(b"host")
            pseudo = self.fields.get(b":authority")
            if pseudo is None:
                if host is not None:
                    return bytes(host).decode("latin-1").strip()
                return _server_authority(server)
            hosts = [] if host is None else [bytes(host).decode("latin-1").strip()]
            authorities = [bytes(pseudo).decode("latin-1").strip()]
        else:
            hosts = [v.strip() for v in self.values("host")]
            authorities = [v.strip() for v in self.values(":authority")]
        if len(hosts) > 1 or len(authorities) > 1:
            raise VerificationError(Reason.MALFORMED_HEADER, "more than one Host or :authority")
        if hosts and authorities and hosts[0].lower() != authorities[0].lower():
            raise VerificationError(Reason.MALFORMED_HEADER, "Host differs from :authority")
        if authorities or hosts:
            return (authorities or hosts)[0]
        return _server_authority(server)


def _server_authority(server: Any) -> str:
    if server:
        host, port = server[0], server[1]
        host = f"[{host}]" if ":" in str(host) else str(host)
        return f"{host}:{port}" if port is not None else host
    return "localhost"


def read_head(scope: Mapping[str, Any]) -> ASGIHead:
    """Read the header field lines of an ASGI HTTP scope once.

    Args:
        scope: The ASGI HTTP scope.

    Returns:
        The lines for the verifier, with the declared body length.
    """
    lines = scope.get("headers", ())
    if type(lines) is not list and type(lines) is not tuple:
        lines = list(lines)  # any other iterable: read it once, hand on the list
    try:
        fields = dict(lines)
        names = b"".join(fields)
    except (TypeError, ValueError):
        fields = None  # not (bytes, bytes) pairs: walk them below
    # bytes.islower(): some letter, none upper-case. Header names always have letters.
    if fields is not None and len(fields) == len(lines) and names.islower():
        length = fields.get(b"content-length")
        return ASGIHead(fields, None if length is None else declared_length(bytes(length)), True)
    lengths = [v for k, v in lines if bytes(k).lower() == b"content-length"]
    declared = declared_length(bytes(lengths[0])) if len(lengths) == 1 else None
    return ASGIHead(lines, declared, False)


def asgi_route_path(scope: Mapping[str, Any]) -> str:
    """The decoded path relative to ``root_path``: what the router matches on.

    Args:
        scope: The ASGI HTTP scope.

    Returns:
        The path a :class:`~upvest_verify.adapters._url.PathMatcher` is asked about.
    """
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def asgi_log_path(scope: Mapping[str, Any]) -> str:
    """The path to log for an ASGI request: ``raw_path`` as received, else ``path``.

    Args:
        scope: The ASGI HTTP scope.

    Returns:
        The path (:func:`~upvest_verify.adapters._reject.log_rejection` drops any query).
    """
    raw = scope.get("raw_path")
    return bytes(raw).decode("latin-1") if raw else str(scope.get("path", ""))
