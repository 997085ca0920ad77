"""The result of a successful verification, and the webhook events it carries."""

from __future__ import annotations

import builtins
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datetime as _dt

__all__ = [
    "Dialect",
    "Event",
    "PayloadError",
    "VerifiedWebhook",
    "dialect_of",
    "new_verified_webhook",
    "parse_timestamp",
]

Layout = Literal["rfc9421", "upvest-v6"]
Encoding = Literal["der", "raw"]
DigestField = Literal["content-digest", "digest"]
Reconstruction = Literal["exact", "comma-joined", "percent-decoded", "comma-joined+percent-decoded"]


class PayloadError(ValueError):
    """The verified body is not a ``{"payload": [...]}`` envelope of Upvest events.

    The signature was valid; the body simply has another shape. Raised only when
    :attr:`VerifiedWebhook.events` is read; :attr:`VerifiedWebhook.envelope_error`
    returns it instead. The message names what is wrong, never a value of the body.
    """


@dataclass(frozen=True, slots=True)
class Dialect:
    """Which variant of the signature scheme a webhook matched.

    Attributes:
        layout: ``"rfc9421"`` (quoted base lines, RFC 9421 / draft-15) or ``"upvest-v6"``
            (Upvest's draft-06 base with unquoted line names).
        encoding: ``"der"`` (ASN.1 DER) or ``"raw"`` (fixed-size r||s) signature bytes.
        digest: The covered digest field, or ``None`` if the signature covers none.
        reconstruction: ``"exact"`` when the base was built from the values as
            received; otherwise the tolerance that made it verify: ``"comma-joined"``
            (a WSGI server joined repeated field lines with ``","``), ``"percent-decoded"``
            (draft-06 ``@path``/``@query`` over percent-decoded values) or both.
    """

    layout: Layout
    encoding: Encoding
    digest: DigestField | None
    reconstruction: Reconstruction = "exact"

    def __str__(self) -> str:
        text = f"{self.layout}/{self.encoding}/{self.digest or 'no-digest'}"
        return text if self.reconstruction == "exact" else f"{text}/{self.reconstruction}"


@functools.lru_cache(maxsize=64)
def dialect_of(
    layout: Layout,
    encoding: Encoding,
    digest: DigestField | None,
    reconstruction: Reconstruction = "exact",
) -> Dialect:
    """The (shared, immutable) :class:`Dialect` for these choices."""
    return Dialect(layout, encoding, digest, reconstruction)


# RFC 3339 §5.6 date-time with any number of fraction digits; Upvest sends
# "…51.980159529Z" (nanoseconds), "…00.00Z" and "…42Z".
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_timestamp(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp into an aware datetime on every Python >= 3.10.

    Fractions beyond microseconds are truncated (Python 3.10's ``fromisoformat``
    rejects nanoseconds).

    Args:
        text: e.g. ``"2021-07-21T14:10:00.980159529Z"``.

    Returns:
        The aware datetime.

    Raises:
        ValueError: ``text`` is not an RFC 3339 date-time.
    """
    import datetime as _dt  # on first use: a receiver that never reads events skips it

    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    if zulu:
        tz = _dt.timezone.utc
    else:
        offset = _dt.timedelta(hours=int(oh), minutes=int(om))
        tz = _dt.timezone(-offset if sign == "-" else offset)
    micro = int((frac or "0")[:6].ljust(6, "0"))
    # Leap second 60 is valid RFC 3339 but not a datetime; clamp it like most parsers.
    return _dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), micro, tz
    )


@dataclass(frozen=True, slots=True)
class Event:
    """One Upvest webhook event from the ``payload`` list.

    Unknown event types parse fine: ``type`` and ``object`` stay open.

    Attributes:
        id: The event id; use it as the idempotency key.
        type: ``CATEGORY.ACTION``, e.g. ``"ORDER.FILLED"``.
        created_at: When the event happened (aware datetime).
        webhook_id: The subscription that delivered it.
        object: The full resource the event is about.
        raw: The event exactly as decoded from JSON.
    """

    id: str
    type: str
    created_at: _dt.datetime
    webhook_id: str
    object: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def category(self) -> str:
        """The part of ``type`` before the dot (``"ORDER"``)."""
        return self.type.partition(".")[0]

    @classmethod
    def from_json(cls, data: builtins.object) -> Event:
        """Build an event from its decoded JSON object.

        Args:
            data: One element of the ``payload`` list.

        Returns:
            The event.

        Raises:
            PayloadError: A required field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise PayloadError("event is not a JSON object")
        try:
            ident, kind, created, webhook_id, obj = (
                data["id"],
                data["type"],
                data["created_at"],
                data["webhook_id"],
                data["object"],
            )
        except KeyError as e:
            raise PayloadError(f"event lacks required field {e.args[0]!r}") from e
        for name, value in (("id", ident), ("type", kind), ("created_at", created)):
            if not isinstance(value, str):
                raise PayloadError(f"event field {name!r} is not a string")
        if not isinstance(webhook_id, str):
            raise PayloadError("event field 'webhook_id' is not a string")
        if not isinstance(obj, dict):
            raise PayloadError("event field 'object' is not an object")
        try:
            when = parse_timestamp(created)
        except (ValueError, OverflowError) as e:
            raise PayloadError("event field 'created_at' is not an RFC 3339 timestamp") from e
        return cls(
            id=ident, type=kind, created_at=when, webhook_id=webhook_id, object=obj, raw=data
        )


def parse_events(body: bytes) -> tuple[Event, ...]:
    """Parse a ``{"payload": [event, ...]}`` body.

    Args:
        body: The verified raw body.

    Returns:
        The events in delivery order.

    Raises:
        PayloadError: The body is not such an envelope.
    """
    try:
        doc = json.loads(body)
    except UnicodeDecodeError as e:  # its message would quote a byte of the body
        raise PayloadError(f"body is not JSON: not UTF-8 at byte {e.start}") from e
    except ValueError as e:  # JSONDecodeError (a position, no content), too many int digits
        raise PayloadError(f"body is not JSON: {e}") from e
    except RecursionError as e:  # nesting deeper than the interpreter's recursion limit
        raise PayloadError("body is nested too deeply") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), list):
        raise PayloadError('body is not a {"payload": [...]} envelope')
    return tuple(Event.from_json(item) for item in doc["payload"])


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A webhook whose signature, digest and time window all checked out.

    Attributes:
        key_id: The ``keyid`` of the Upvest key that signed it.
        label: The signature label that verified (usually ``sig1``).
        covered_components: Covered component identifiers as serialised, e.g.
            ``('"@method"', '"@path"', '"content-digest"')``.
        created: The ``created`` parameter (Unix seconds), if any.
        expires: The ``expires`` parameter (Unix seconds), if any.
        nonce: The ``nonce`` parameter, if any.
        dialect: Which base layout, signature encoding and digest field matched.
        body: The raw body bytes that were verified.
        late: ``True`` when the webhook was older than the policy's window and was
            accepted only because the :class:`~upvest_verify.Verifier` was given a
            ``late_retries`` ledger (an authentic retry of an earlier delivery); its
            events must go through that ledger. ``False`` for every fresh webhook.
    """

    key_id: str
    label: str
    covered_components: tuple[str, ...]
    created: int | None
    expires: int | None
    nonce: str | None
    dialect: Dialect
    body: bytes = field(repr=False)
    late: bool = False
    _events: tuple[Event, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def component_names(self) -> tuple[str, ...]:
        """Covered component names without quotes or parameters (``"@method"``)."""
        return tuple(c.split('"')[1] if c.startswith('"') else c for c in self.covered_components)

    @property
    def events(self) -> tuple[Event, ...]:
        """The events of the ``{"payload": [...]}`` body, parsed on first access.

        Raises:
            PayloadError: The body is not an Upvest event envelope; check
                :attr:`envelope_error` first to branch without catching.
        """
        events = self._events
        if events is None:
            events = parse_events(self.body)
            object.__setattr__(self, "_events", events)  # a cache, not a state change
        return events

    @property
    def envelope_error(self) -> PayloadError | None:
        """Why the body is not a ``{"payload": [...]}`` envelope of events, or ``None``.

        Authentic bodies of another shape exist (a test delivery, a format this
        version does not know); this reads them without a ``try``::

            if webhook.envelope_error is None:
                for event in webhook.events:   # parsed once, cannot raise now
                    ...
            else:
                document = webhook.json()      # the body in another shape

        Returns:
            ``None`` when :attr:`events` can be read (then they are parsed and
            cached), else the :class:`PayloadError` it would raise.
        """
        if self._events is not None:
            return None
        try:
            _ = self.events  # parses and caches, or says why not
        except PayloadError as e:
            return e.with_traceback(None)
        return None

    def json(self) -> Any:
        """Decode the verified body as JSON, whatever its shape.

        Returns:
            The decoded document: ``dict``, ``list``, ``str``, ``int``, ``float``,
            ``bool`` or ``None``.

        Raises:
            ValueError: The body is not JSON.
        """
        return json.loads(self.body)


def _fast_constructor() -> Callable[
    [str, str, tuple[str, ...], int | None, int | None, str | None, Dialect, bytes],
    VerifiedWebhook,
]:
    # The verify path builds one result per request; the dataclass __init__ of a frozen
    # class sets each field through object.__setattr__ (~2 µs for ten fields). Setting
    # the slots through their descriptors, bound once here, gives the same object for a
    # third of that.
    new = object.__new__
    key_id_, label_, covered_, created_, expires_, nonce_, dialect_, body_, late_, events_ = (
        getattr(VerifiedWebhook, name).__set__
        for name in (
            "key_id",
            "label",
            "covered_components",
            "created",
            "expires",
            "nonce",
            "dialect",
            "body",
            "late",
            "_events",
        )
    )

    def new_verified_webhook(
        key_id: str,
        label: str,
        covered_components: tuple[str, ...],
        created: int | None,
        expires: int | None,
        nonce: str | None,
        dialect: Dialect,
        body: bytes,
    ) -> VerifiedWebhook:
        """Build a :class:`VerifiedWebhook` exactly as its constructor does, only faster."""
        webhook: VerifiedWebhook = new(VerifiedWebhook)
        key_id_(webhook, key_id)
        label_(webhook, label)
        covered_(webhook, covered_components)
        created_(webhook, created)
        expires_(webhook, expires)
        nonce_(webhook, nonce)
        dialect_(webhook, dialect)
        body_(webhook, body)
        late_(webhook, False)
        events_(webhook, None)
        return webhook

    return new_verified_webhook


new_verified_webhook = _fast_constructor()
