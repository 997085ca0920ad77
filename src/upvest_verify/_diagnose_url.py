"""URL hints for a failure diagnosis: a proxy or a setting that changed the signed URL.

Used by :mod:`._diagnose`. The signature covers the URL Upvest called (``@path``,
and sometimes ``@authority``, ``@scheme``, ``@target-uri`` or the ``Host`` field); an
adapter rebuilds it from the request and its settings (``public_url``,
``path_prefix``, ``trusted_proxies``). The rules, each only where the signature
covers what it is about:

- ``doubled_path``: a run of path segments twice in a row
  (``/webhooks/upvest/webhooks/upvest``): ``public_url`` holds the webhook's own path,
  or ``path_prefix`` a prefix the proxy did not strip;
- ``path_prefix``: a proxy announced the prefix it stripped (``X-Forwarded-Prefix``, or
  the original path in ``X-Forwarded-Uri``/``X-Original-URI``...) and the path lacks it;
- ``internal_url``: the rebuilt authority is internal (loopback, private or link-local
  address, ``localhost``, a name without a dot, an explicit port) or the scheme ``http``;
- ``behind_proxy``: forwarding fields arrived, were not believed, and nothing says what
  the public URL is, so a stripped prefix is the likely cause;
- ``host_rewritten``: the signed ``Host`` field itself is internal (a proxy replaced it).

Values shown: the rebuilt authority and path, and the forwarding fields' values a hint
rests on, each quoted and clipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from ._message import Message

__all__ = ["Found", "URLSetup", "clip", "internal_host", "url_hints"]

Found = tuple[str, str]
"""A hint as ``(code, text)``."""

_MAX_SEGMENTS = 32  # longer paths are not searched for a repeated part
_FORWARDING = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "via",
)
# Fields some proxies set to the path as the client sent it, before any rewrite.
_ORIGINAL_PATH = (
    "x-forwarded-uri",
    "x-original-uri",
    "x-original-url",
    "x-envoy-original-path",
    "x-rewrite-url",
)
_INTERNAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".lan",
    ".home.arpa",
    ".svc",
)


@dataclass(frozen=True, slots=True)
class URLSetup:
    """How the URL given to the verifier was made: the settings and the request's peer.

    Attributes:
        public_url: ``scheme://host[:port]`` the settings impose (an adapter's
            ``public_url``, the command line's ``--base-url``), or ``None``.
        path_prefix: The prefix put before the request's path (``""`` for none).
        trusted_proxies: The networks whose forwarding fields count, as text.
        proxy_headers: ``"x-forwarded"`` or ``"forwarded"``.
        peer: The address the request came from, if known.
        peer_trusted: Whether that peer's forwarding fields were believed.
        url: The URL these settings produced, if known; a diagnosis uses the setup
            only for an error about that very URL.
    """

    public_url: str | None = None
    path_prefix: str = ""
    trusted_proxies: tuple[str, ...] = ()
    proxy_headers: str = "x-forwarded"
    peer: str | None = None
    peer_trusted: bool = False
    url: str | None = None

    @property
    def believes_forwarding(self) -> bool:
        """Whether the host, scheme and prefix came from the peer's forwarding fields."""
        return self.public_url is None and self.peer_trusted

    def describe(self) -> str:
        """The settings on one line, each value quoted."""
        proxies = list(self.trusted_proxies[:4]) + (
            ["..."] if len(self.trusted_proxies) > 4 else []
        )
        peer = "unknown" if self.peer is None else repr(self.peer)
        trust = " (trusted)" if self.peer_trusted else ""
        return (
            f"public_url={self.public_url!r} path_prefix={self.path_prefix!r} "
            f"trusted_proxies={proxies!r} proxy_headers={self.proxy_headers!r} peer={peer}{trust}"
        )


_LOG_VALUE_MAX = 200


def clip(text: str) -> str:
    """``text``, cut to 200 characters for a log line."""
    return text if len(text) <= _LOG_VALUE_MAX else text[:_LOG_VALUE_MAX] + "..."


def _host_port(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end != -1:
            rest = authority[end + 1 :]
            return authority[: end + 1], rest[1:] if rest.startswith(":") and rest[1:] else None
    host, colon, port = authority.rpartition(":")
    if colon and port.isdigit():
        return host, port
    return authority, None


def internal_host(authority: str) -> str | None:
    """Why an authority looks like an internal one rather than a public webhook URL's.

    Args:
        authority: ``host[:port]`` as rebuilt (lower case, default port removed).

    Returns:
        A short description (``"a loopback address, port 8000"``), or ``None`` when it
        looks like a public ``https`` host.
    """
    host, port = _host_port(authority)
    reasons: list[str] = []
    try:
        address = ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
            reasons.append("an internal name")
        elif "." not in host:
            reasons.append("a name without a dot")
    else:
        if address.is_loopback:
            reasons.append("a loopback address")
        elif address.is_link_local:
            reasons.append("a link-local address")
        elif address.is_private or address.is_unspecified or address.is_reserved:
            reasons.append("a private address")
    if port is not None:
        reasons.append(f"port {port}")
    return ", ".join(reasons) or None


def _last_member(fields: Mapping[str, list[str]], name: str) -> str | None:
    # The nearest proxy's value: the last member of the comma-separated list.
    lines = fields.get(name)
    if not lines:
        return None
    members = [m.strip(" \t") for line in lines for m in line.split(",")]
    members = [m for m in members if m]
    return clip(members[-1]) if members else None


def _forwarded_param(fields: Mapping[str, list[str]], param: str) -> str | None:
    # A loose read of RFC 7239 for a hint's evidence only (the rebuilder parses strictly).
    lines = fields.get("forwarded")
    if not lines:
        return None
    element = ",".join(lines).split(",")[-1]
    for pair in element.split(";"):
        name, _, value = pair.strip(" \t").partition("=")
        if name.lower() == param and value:
            return clip(value.strip('"'))
    return None


def _repeated_part(path: str) -> str | None:
    """The longest run of path segments that occurs twice in a row (``/a`` in ``/a/a/b``)."""
    segments = path.split("/")[1:]
    if len(segments) > _MAX_SEGMENTS:
        return None
    n = len(segments)
    for size in range(n // 2, 0, -1):
        for start in range(n - 2 * size + 1):
            run = segments[start : start + size]
            if all(run) and run == segments[start + size : start + 2 * size]:
                return "/" + "/".join(run)
    return None


class _Words:
    """How the hints name the settings to change, per surface."""

    def __init__(self, cli: bool) -> None:
        self.cli = cli

    def public_url(self, value: str = "https://<your public host>") -> str:
        return f"pass --base-url {value}" if self.cli else f"set public_url={value!r}"

    def prefix(self, prefix: str) -> str:
        if self.cli:
            return f"pass --base-url https://<your public host>{prefix}"
        return f"set path_prefix={prefix!r}"

    def or_trust(self, setup: URLSetup | None) -> str:
        if self.cli or (setup is not None and setup.peer_trusted):
            return ""
        return " (or list the proxy in trusted_proxies so its forwarding fields count)"


class _Rules:
    """The URL rules applied to one refused request."""

    def __init__(
        self,
        message: Message,
        names: frozenset[str],
        fields: Mapping[str, list[str]],
        setup: URLSetup | None,
        cli: bool,
    ) -> None:
        self.message = message
        self.names = names
        self.fields = fields
        self.setup = setup
        self.words = _Words(cli)

    def hints(self) -> list[Found]:
        message = self.message
        names = self.names
        hints: list[Found] = []
        covers_path = bool(names & {"@path", "@target-uri", "@request-target"})
        if covers_path:
            hints += self._doubled_path(message.path)
            if not hints:
                hints += self._stripped_prefix(message.path)
        hints += self._internal_url(message, names)
        if covers_path and not hints:
            hints += self._behind_proxy()
        if "host" in names:
            hints += self._host_field()
        return hints

    def _doubled_path(self, path: str) -> list[Found]:
        repeated = _repeated_part(path)
        if repeated is None:
            return []
        setup = self.setup
        prefix = setup.path_prefix if setup is not None else ""
        fixed = prefix[: -len(repeated)] if prefix.endswith(repeated) else None
        seen = f"the rebuilt path {clip(path)!r} has {repeated!r} twice in a row"
        if self.words.cli:
            base = None if setup is None or setup.public_url is None else setup.public_url
            example = "" if base is None or fixed is None else f": --base-url {base + fixed}"
            text = (
                f"{seen}: --base-url takes scheme://host[/prefix] only, not the webhook's "
                f"path{example}"
            )
        elif setup is not None and setup.public_url is not None:
            example = "" if fixed is None else f", e.g. public_url={setup.public_url + fixed!r}"
            text = (
                f"{seen}: public_url should be scheme://host[/prefix] only, without the "
                f"webhook's own path{example}"
            )
        elif setup is not None and fixed is not None:
            text = (
                f"{seen}: path_prefix should be only a prefix the proxy strips before the app "
                f"sees the path; set path_prefix={fixed!r}"
            )
        else:
            text = (
                f"{seen}: public_url should be scheme://host[/prefix] only, without the "
                "webhook's own path, and path_prefix only a prefix a proxy strips"
            )
        return [("doubled_path", text)]

    def _stripped_prefix(self, path: str) -> list[Found]:
        fields = self.fields
        announced = _last_member(fields, "x-forwarded-prefix")
        if announced:
            prefix = "/" + announced.strip("/") if announced.strip("/") else ""
            if prefix and path != prefix and not path.startswith(prefix + "/"):
                return [
                    (
                        "path_prefix",
                        f"a proxy stripped the path prefix {prefix!r} (X-Forwarded-Prefix) and "
                        f"the path was rebuilt without it as {clip(path)!r}: "
                        f"{self.words.prefix(prefix)}{self.words.or_trust(self.setup)}",
                    )
                ]
        for name in _ORIGINAL_PATH:
            original = _last_member(fields, name)
            if not original:
                continue
            original = original.split("?", 1)[0]
            if original.startswith("/") and original != path and original.endswith(path):
                prefix = original[: -len(path)].rstrip("/")
                if prefix.startswith("/"):
                    return [
                        (
                            "path_prefix",
                            f"the client called {original!r} ({name}) but the path was rebuilt "
                            f"as {clip(path)!r}: a proxy stripped {prefix!r}; "
                            f"{self.words.prefix(prefix)}",
                        )
                    ]
        return []

    def _forwarding_present(self) -> list[str]:
        return [name for name in _FORWARDING if name in self.fields]

    def _internal_url(self, message: Message, names: frozenset[str]) -> list[Found]:
        why: list[str] = []
        if names & {"@authority", "@target-uri"} and message.authority:
            internal = internal_host(message.authority)
            if internal:
                why.append(internal)
        if names & {"@scheme", "@target-uri"} and message.scheme == "http":
            why.append("scheme http")
        if not why:
            return []
        origin = (
            f"{message.scheme}://{message.authority}" if message.scheme else str(message.authority)
        )
        seen = f"the URL was rebuilt as {clip(origin)!r} ({', '.join(why)})"
        setup = self.setup
        if self.words.cli:
            text = (
                f"{seen}, not the public URL Upvest calls: "
                f"{self.words.public_url('https://<your public host>[/prefix]')}"
            )
            return [("internal_url", text)]
        if setup is not None and setup.public_url is not None:
            text = f"{seen} from public_url: set public_url to the https URL registered with Upvest"
            return [("internal_url", text)]
        forwarded = [
            f"{label}={value!r}"
            for label, value in (
                ("X-Forwarded-Host", _last_member(self.fields, "x-forwarded-host")),
                ("X-Forwarded-Proto", _last_member(self.fields, "x-forwarded-proto")),
                ("Forwarded host", _forwarded_param(self.fields, "host")),
                ("Forwarded proto", _forwarded_param(self.fields, "proto")),
            )
            if value
        ]
        if forwarded and (setup is None or not setup.believes_forwarding):
            peer = setup.peer if setup is not None else None
            source = f"from {peer!r}, " if peer else ""
            proxy = f"[{peer!r}]" if peer else "[<proxy address>]"
            text = (
                f"{seen}: the proxy's {', '.join(forwarded)} were ignored ({source}not in "
                f"trusted_proxies): set trusted_proxies={proxy} if that is your proxy, or "
                f"{self.words.public_url()}"
            )
            return [("internal_url", text)]
        text = (
            f"{seen}, not the public URL Upvest calls: {self.words.public_url()} "
            "(or trusted_proxies=[<proxy address>] if your proxy sends X-Forwarded-Host/-Proto)"
        )
        return [("internal_url", text)]

    def _behind_proxy(self) -> list[Found]:
        present = self._forwarding_present()
        setup = self.setup
        if not present or (setup is not None and (setup.public_url or setup.believes_forwarding)):
            return []
        if setup is not None and setup.path_prefix:
            return []
        peer = f" from {setup.peer!r}" if setup is not None and setup.peer else ""
        who = "the capture" if self.words.cli else "the request"
        return [
            (
                "behind_proxy",
                f"{who} came through a proxy ({', '.join(present)}{peer}) and the path is "
                f"signed: if the proxy strips a path prefix, {self.words.prefix('/<prefix>')}; "
                f"if it changes the host or scheme, {self.words.public_url()}",
            )
        ]

    def _host_field(self) -> list[Found]:
        lines = self.fields.get("host")
        if not lines or len(lines) != 1:
            return []
        host = lines[0].strip(" \t").lower()
        internal = internal_host(host)
        if internal is None:
            return []
        return [
            (
                "host_rewritten",
                f"the signed Host field arrived as {clip(host)!r} ({internal}): a proxy "
                "replaced it; make the proxy pass the original Host "
                "(nginx: proxy_set_header Host $host)",
            )
        ]


def url_hints(
    message: Message,
    names: frozenset[str],
    fields: Mapping[str, list[str]],
    setup: URLSetup | None,
    *,
    cli: bool = False,
) -> list[Found]:
    """The URL hints for a refused request.

    Args:
        message: The request as the verifier saw it (the rebuilt URL's parts).
        names: The names of the covered components.
        fields: The header field lines.
        setup: How the URL was made, when known.
        cli: Name the command line's ``--base-url`` instead of adapter settings.

    Returns:
        ``(code, text)`` hints, most specific first.
    """
    return _Rules(message, names, fields, setup, cli).hints()
