"""An immutable snapshot of the keys a verifier trusts, built from a JWKS (RFC 7517 §5).

A :class:`KeySet` maps ``kid`` to :class:`~upvest_verify._crypto.VerifyingKey`. It is
never modified after construction, so a key cache can swap a new snapshot in with one
assignment and readers need no lock (threat-model.md §5 K7).

Loading follows threat-model.md §5 K2 and F8: a bad document as a whole (not JSON,
no ``keys`` array, more than 32 keys, more than 64 KiB, a duplicated ``keys`` member)
raises :class:`~upvest_verify.errors.JWKSError`; a single bad key is skipped, logged
on the ``upvest_verify`` logger and remembered in :attr:`KeySet.rejected`, so the
other keys stay usable and a signature naming the bad key fails with
``unsupported_key`` rather than ``unknown_key``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn

from ._crypto import KEY_TYPES, MAX_KID_LENGTH, KeyType, UnusableKey, VerifyingKey, jwk_to_key
from .errors import ConfigurationError, JWKSError, KeyNotFound, Reason

__all__ = ["MAX_JWKS_BYTES", "MAX_KEYS", "KeySet"]


def _warn(message: str, *args: object) -> None:
    """Log a skipped or unusable key on the ``upvest_verify`` logger at WARNING."""
    # logging is imported on the first warning: loading a clean key set never needs it.
    import logging

    logging.getLogger("upvest_verify").warning(message, *args)


MAX_JWKS_BYTES: Final = 64 * 1024
"""Largest JWKS document accepted as ``str``/``bytes`` (threat-model.md §5 K2)."""

MAX_KEYS: Final = 32
"""Most entries a JWKS ``keys`` array may hold, usable or not (threat-model.md §5 K2)."""

_DUPLICATE = "duplicate kid with different key material"


class _DuplicateMembers(dict[str, Any]):
    """A JSON object that repeated a member name; the repeated names are in ``duplicates``."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 §4: "The names within an object SHOULD be unique"; when they are not,
    # parsers disagree on which value wins. Remember the repeats instead of silently
    # keeping the last one.
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = Counter(name for name, _ in pairs)
    dup = _DuplicateMembers(obj)
    dup.duplicates = tuple(sorted(name for name, n in counts.items() if n > 1))
    return dup


def _parse(jwks: str | bytes | bytearray) -> object:
    size = len(jwks)
    if size > MAX_JWKS_BYTES:
        raise JWKSError(f"JWKS document is larger than {MAX_JWKS_BYTES} bytes")
    try:
        text = jwks if isinstance(jwks, str) else bytes(jwks).decode("utf-8")
        if isinstance(jwks, str) and len(text.encode("utf-8")) > MAX_JWKS_BYTES:
            raise JWKSError(f"JWKS document is larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(text, object_pairs_hook=_object_pairs)
    except JWKSError:
        raise
    except (ValueError, RecursionError) as e:
        # JSONDecodeError and UnicodeError are ValueErrors; so is an integer literal
        # beyond sys.get_int_max_str_digits(). Deep nesting exhausts the recursion limit.
        raise JWKSError(f"JWKS document is not valid UTF-8 JSON: {e}") from e


def _check_key_types(key_types: Iterable[KeyType]) -> frozenset[KeyType]:
    if isinstance(key_types, str):
        raise ConfigurationError(
            f"key_types must be a collection of key types, not the string {key_types!r}"
        )
    allowed = frozenset(key_types)
    unknown = allowed - KEY_TYPES
    if unknown:
        raise ConfigurationError(
            f"unknown key types {sorted(unknown)!r}; choose from {sorted(KEY_TYPES)!r}"
        )
    return allowed


def _short(kid: str) -> str:
    """``repr`` of an attacker-supplied kid, cut to a loggable length."""
    return repr(kid) if len(kid) <= 80 else repr(kid[:77]) + "..."


class KeySet(Mapping[str, VerifyingKey]):
    """Immutable ``kid`` -> :class:`~upvest_verify._crypto.VerifyingKey` snapshot.

    Build one with :meth:`from_jwks` (a JWKS document) or :meth:`from_keys`
    (ready-made keys); ``KeySet()`` is the empty set. A kid that appears twice with
    different key material is unusable (both entries dropped, recorded in
    :attr:`rejected`); an exact repeat is harmless.

    Args:
        keys: The usable keys.
        rejected: ``kid -> why`` for keys that must fail as ``unsupported_key``.

    Raises:
        TypeError: If an element of ``keys`` is not a ``VerifyingKey``.

    Example::

        keys = KeySet.from_jwks(response_bytes)
        key = keys.lookup(keyid)  # KeyNotFound(unknown_key / unsupported_key)
    """

    __slots__ = ("_keys", "_rejected")
    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable

    _keys: dict[str, VerifyingKey]
    _rejected: dict[str, str]

    def __init__(
        self, keys: Iterable[VerifyingKey] = (), *, rejected: Mapping[str, str] | None = None
    ) -> None:
        good: dict[str, VerifyingKey] = {}
        bad: dict[str, str] = dict(rejected or {})
        for key in keys:
            if not isinstance(key, VerifyingKey):
                raise TypeError(f"KeySet holds VerifyingKey objects, not {type(key).__name__}")
            _add(good, bad, key.kid, key, None)
        self._init(good, bad)

    def _init(self, keys: dict[str, VerifyingKey], rejected: dict[str, str]) -> None:
        for kid in rejected:
            keys.pop(kid, None)
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "_rejected", rejected)

    @classmethod
    def from_keys(cls, keys: Iterable[VerifyingKey]) -> KeySet:
        """Build a key set from ready-made keys (pinned configuration, tests).

        Args:
            keys: The keys; a kid given twice with different material becomes unusable.

        Returns:
            The key set.

        Raises:
            TypeError: If an element is not a ``VerifyingKey``.
        """
        return cls(keys)

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any] | str | bytes,
        *,
        key_types: Iterable[KeyType] = ("P-521",),
    ) -> KeySet:
        """Build a key set from a JWKS document (RFC 7517 §5).

        Each ``keys`` entry goes through :func:`~upvest_verify._crypto.jwk_to_key`;
        an unusable one is skipped with a warning on the ``upvest_verify`` logger and,
        when it has a usable ``kid``, recorded in :attr:`rejected`. A JSON object that
        repeats a member name makes that key unusable.

        The 64 KiB cap applies to ``str``/``bytes`` input (checked before parsing); a
        ``Mapping`` was parsed by the caller, so only the 32-key cap applies to it.

        Args:
            jwks: The document: a parsed mapping, JSON text, or UTF-8 JSON bytes.
            key_types: Key types the policy allows (default: P-521 only).

        Returns:
            The key set (possibly empty, if no entry is usable).

        Raises:
            JWKSError: The document as a whole is unusable: too large, not UTF-8 JSON,
                not an object, ``keys`` missing, repeated or not an array, or more than
                32 entries.
            ConfigurationError: ``key_types`` names an unknown key type.
        """
        allowed = _check_key_types(key_types)
        document: object = _parse(jwks) if isinstance(jwks, (str, bytes, bytearray)) else jwks
        if not isinstance(document, Mapping):
            raise JWKSError(f"a JWKS must be a JSON object, not {type(document).__name__}")
        if "keys" in getattr(document, "duplicates", ()):
            raise JWKSError('the JWKS repeats the "keys" member')
        entries = document.get("keys")
        if entries is None:
            raise JWKSError('the JWKS has no "keys" member')
        if not isinstance(entries, (list, tuple)):
            raise JWKSError(f'"keys" must be an array, not {type(entries).__name__}')
        if len(entries) > MAX_KEYS:
            raise JWKSError(f"the JWKS holds {len(entries)} keys, at most {MAX_KEYS} allowed")

        good: dict[str, VerifyingKey] = {}
        bad: dict[str, str] = {}
        for index, entry in enumerate(entries):
            kid = entry.get("kid") if isinstance(entry, Mapping) else None
            try:
                duplicates = getattr(entry, "duplicates", ())
                if duplicates:
                    raise UnusableKey(f"the JWK repeats members {list(duplicates)!r}")
                key: VerifyingKey | None = jwk_to_key(entry, key_types=allowed)
                why = None
            except UnusableKey as e:
                key, why = None, str(e)
            if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
                # Nothing to record it under: a signature cannot name this key anyway.
                _warn(
                    "skipping JWKS entry #%d without a usable kid: %s",
                    index,
                    why or "kid missing or invalid",
                )
                continue
            _add(good, bad, kid, key, why)
        instance = cls.__new__(cls)
        instance._init(good, bad)
        return instance

    @property
    def rejected(self) -> Mapping[str, str]:
        """``kid -> why`` for keys that are present but unusable (read-only view)."""
        return MappingProxyType(self._rejected)

    def lookup(self, kid: str) -> VerifyingKey:
        """Return the key for ``kid``.

        Args:
            kid: The signature's ``keyid``.

        Returns:
            The usable key.

        Raises:
            KeyNotFound: ``Reason.UNSUPPORTED_KEY`` if the kid names a rejected key,
                ``Reason.UNKNOWN_KEY`` if it is absent; ``key_id`` is set to ``kid``.
        """
        key = self._keys.get(kid)
        if key is not None:
            return key
        raise self._not_found(kid)

    def _not_found(self, kid: str) -> KeyNotFound:
        why = self._rejected.get(kid)
        if why is not None:
            return KeyNotFound(
                Reason.UNSUPPORTED_KEY, f"key {_short(kid)} is unusable: {why}", key_id=kid
            )
        return KeyNotFound(Reason.UNKNOWN_KEY, f"no key with kid {_short(kid)}", key_id=kid)

    # Mapping protocol; __contains__ and get are overridden to stay plain dict hits.
    def __getitem__(self, kid: str) -> VerifyingKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def get(self, kid: str, default: Any = None) -> Any:
        """Return the usable key for ``kid``, or ``default`` (rejected kids count as absent).

        Args:
            kid: The key identifier.
            default: Returned when there is no usable key.

        Returns:
            The key or ``default``.
        """
        return self._keys.get(kid, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeySet):
            return NotImplemented
        return self._keys == other._keys and self._rejected == other._rejected

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"KeySet is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"KeySet is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        kids = list(self._keys)
        if self._rejected:
            return f"KeySet(kids={kids!r}, rejected={sorted(self._rejected)!r})"
        return f"KeySet(kids={kids!r})"


def _add(
    good: dict[str, VerifyingKey],
    bad: dict[str, str],
    kid: str,
    key: VerifyingKey | None,
    why: str | None,
) -> None:
    """Record one entry, applying the duplicate-kid rule (threat-model.md §5 K2)."""
    if key is None:
        if kid in good:
            del good[kid]
            bad[kid] = f"{_DUPLICATE} (another entry is unusable: {why})"
            _warn("kid %s is unusable: %s", _short(kid), bad[kid])
        elif kid not in bad:
            bad[kid] = why or "unusable"
            _warn("skipping JWK kid %s: %s", _short(kid), bad[kid])
        return
    if kid in bad:
        if not bad[kid].startswith(_DUPLICATE):
            bad[kid] = f"{_DUPLICATE} (another entry is unusable: {bad[kid]})"
            _warn("kid %s is unusable: %s", _short(kid), bad[kid])
        return
    existing = good.get(kid)
    if existing is None:
        good[kid] = key
    elif existing != key:
        del good[kid]
        bad[kid] = _DUPLICATE
        _warn("kid %s is unusable: %s", _short(kid), _DUPLICATE)
