"""Adapter settings: a verifier and the adapter options from framework configuration (private).

:func:`load_settings` builds, and :func:`settings_problems` checks without raising,
the :class:`AdapterSettings` of the Flask extension (``UPVEST_VERIFY_*`` config) and
the Django adapter (``settings.UPVEST_VERIFY``). Strings from environment variables
are coerced to the :class:`~upvest_verify.Policy` field types. Problem codes
``E001``-``E008`` are the Django system-check ids.

No web framework is imported here; httpx only when the management client is the
key source (``CLIENT_ID``...).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from upvest_verify import KeySet, Policy, Verifier
from upvest_verify.adapters._delivery import has_inbox
from upvest_verify.adapters._url import DEFAULT_PATHS, PathMatcher, URLRebuilder
from upvest_verify.errors import ConfigurationError, JWKSError
from upvest_verify.jwks import JWKSCache, URLKeySource, load_jwks
from upvest_verify.ledger import BaseLedger, LedgerError
from upvest_verify.types import KeyProvider, KeySource

__all__ = [
    "SETTING_NAMES",
    "AdapterSettings",
    "Problem",
    "load_settings",
    "settings_problems",
]

_POLICY_FIELDS: Final = {f.name.upper(): f for f in dataclasses.fields(Policy)}
_KEY_SOURCES: Final = ("VERIFIER", "KEYS", "JWKS", "JWKS_URL", "CLIENT_ID")
# The management client as key source: CLIENT_ID names it, the rest go with it.
_CLIENT_KEYS: Final = (
    "CLIENT_SECRET",
    "SIGNING_KEY",
    "SIGNING_KEY_ID",
    "SIGNING_KEY_PASSWORD",
    "BASE_URL",
)
_ADAPTER_KEYS: Final = (
    "PATHS",
    "PUBLIC_URL",
    "TRUSTED_PROXIES",
    "PROXY_HEADERS",
    "PATH_PREFIX",
    "POLICY",
    "LEDGER",
    "INBOX",
)
SETTING_NAMES: Final = frozenset((*_KEY_SOURCES, *_CLIENT_KEYS, *_ADAPTER_KEYS, *_POLICY_FIELDS))


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    """Everything an adapter needs, built from framework configuration.

    Attributes:
        verifier: The verifier.
        url: How to rebuild the URL Upvest called.
        paths: Which paths a middleware protects.
        ledger: The event ledger for exactly-once processing, or ``None``.
        inbox: Acknowledge first and queue the events in the ledger instead of
            calling the view.
    """

    verifier: Verifier
    url: URLRebuilder
    paths: PathMatcher
    ledger: BaseLedger | None = None
    inbox: bool = False

    @property
    def max_body_size(self) -> int:
        """The body limit of the verifier's policy."""
        return self.verifier.policy.max_body_size


# (code, message) pairs; codes are the Django system-check ids' numbers.
Problem = tuple[str, str]


def _import_object(path: str) -> object:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ConfigurationError(f"not a dotted path: {path!r}")
    try:
        obj: object = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(f"cannot import {path!r}: {e}") from e
    return obj


def _resolve(value: object) -> object:
    """A dotted path is imported; a class or zero-argument factory is called."""
    if isinstance(value, str):
        value = _import_object(value)
    if isinstance(value, type) or (
        callable(value) and not isinstance(value, (Verifier, KeySet, KeyProvider))
    ):
        try:
            value = value()
        except Exception as e:  # a factory failing is a configuration problem
            raise ConfigurationError(f"calling {value!r} failed: {e}") from e
    return value


def _coerce(name: str, value: object) -> object:
    """Convert configuration strings (from environment variables) to policy types."""
    field = _POLICY_FIELDS[name]
    default = field.default if field.default is not dataclasses.MISSING else None
    if isinstance(value, str):
        text = value.strip()
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
        elif isinstance(default, (int, float)) or name == "MAX_WINDOW":
            if text.lower() == "none" and name == "MAX_WINDOW":
                return None
            try:
                return int(text) if text.isdigit() else float(text)
            except ValueError:
                return value
        elif name in ("LABELS", "REQUIRED_COMPONENTS", "KEY_TYPES"):
            return tuple(p.strip() for p in text.split(",") if p.strip())
    if isinstance(value, list) and name in ("LABELS", "REQUIRED_COMPONENTS"):
        return tuple(value)
    return value


def _policy(values: Mapping[str, Any], problems: list[Problem]) -> Policy | None:
    given = {k: v for k, v in values.items() if k in _POLICY_FIELDS}
    if "POLICY" in values:
        if given:
            problems.append(("E005", "give POLICY or individual policy settings, not both"))
            return None
        policy = values["POLICY"]
        if not isinstance(policy, Policy):
            problems.append(("E005", "POLICY must be an upvest_verify.Policy"))
            return None
        return policy
    try:
        options: dict[str, Any] = {k.lower(): _coerce(k, v) for k, v in given.items()}
        return Policy(**options)
    except (ConfigurationError, TypeError, ValueError) as e:
        problems.append(("E005", f"invalid policy setting: {e}"))
        return None


def _verifier(
    values: Mapping[str, Any], verifier: Verifier | None, problems: list[Problem]
) -> Verifier | None:
    sources = [k for k in _KEY_SOURCES if values.get(k) is not None]
    orphans = [k for k in _CLIENT_KEYS if values.get(k) is not None]
    if orphans and "CLIENT_ID" not in sources:
        problems.append(("E004", f"{', '.join(orphans)} given without CLIENT_ID"))
        return None
    policy_given = "POLICY" in values or any(k in _POLICY_FIELDS for k in values)
    if verifier is not None:
        if sources or policy_given:
            found = ", ".join(sources) or "the policy settings"
            problems.append(("E003", f"a verifier was passed in code; remove {found}"))
            return None
        return verifier
    if len(sources) != 1:
        problems.append(
            (
                "E003",
                "give exactly one key source: VERIFIER, KEYS, JWKS, JWKS_URL or CLIENT_ID"
                + (f" (found {', '.join(sources)})" if sources else ""),
            )
        )
        return None
    source = sources[0]
    if source == "VERIFIER":
        if policy_given:
            problems.append(("E005", "policy settings are ignored with VERIFIER; set them on it"))
            return None
        try:
            obj = _resolve(values["VERIFIER"])
        except ConfigurationError as e:
            problems.append(("E004", f"VERIFIER: {e}"))
            return None
        if not isinstance(obj, Verifier):
            problems.append(("E004", "VERIFIER must be an upvest_verify.Verifier or a path to one"))
            return None
        return obj
    policy = _policy(values, problems)
    if policy is None:
        return None
    try:
        if source == "KEYS":
            keys = _resolve(values["KEYS"])
            if not isinstance(keys, (KeySet, KeyProvider)):
                raise ConfigurationError("KEYS must be a KeySet or a key provider (JWKSCache)")
            return Verifier(keys, policy=policy)
        if source == "JWKS":
            key_set = KeySet.from_jwks(load_jwks(values["JWKS"]), key_types=policy.key_types)
            if not key_set:
                raise ConfigurationError("the JWKS holds no usable key")
            return Verifier(key_set, policy=policy)
        if source == "CLIENT_ID":
            return Verifier(_client_cache(values, policy), policy=policy)
        return Verifier(_jwks_cache(values["JWKS_URL"], policy), policy=policy)
    except (ConfigurationError, JWKSError) as e:
        problems.append(("E004", f"{source}: {e}"))
        return None


def _jwks_cache(url: object, policy: Policy) -> KeyProvider:
    """A :class:`~upvest_verify.jwks.JWKSCache` fetching ``url`` (plain HTTPS GET, no auth)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"JWKS_URL must be a string, got {url!r}")
    return JWKSCache(URLKeySource(url), key_types=policy.key_types)


def _client_cache(values: Mapping[str, Any], policy: Policy) -> KeyProvider:
    """A JWKSCache fetching ``/auth/verify_keys`` through the management client (no fetch yet).

    The client is optional (the ``[client]`` extra, httpx), so it is imported only here,
    when configured; a missing extra says how to install it.
    """
    try:
        from upvest_verify.client import key_source_from_settings
    except ImportError as e:
        raise ConfigurationError(
            f"CLIENT_ID needs the management client: pip install 'upvest-verify[client]' ({e})"
        ) from e
    source = key_source_from_settings(values)
    if not isinstance(source, KeySource):
        raise ConfigurationError(f"not a key source: {source!r}")
    return JWKSCache(source, key_types=policy.key_types)


def _flag(value: object) -> bool | None:
    """A bool, or its spelling in an environment variable; ``None`` for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
    return None


def _ledger_object(value: object) -> BaseLedger:
    """A ledger, a ledger URL (``memory://``, ``sqlite:///path``, ``redis://...``), or a
    dotted path to / factory of a ledger."""
    if isinstance(value, str) and "://" in value:
        from upvest_verify.ledger import ledger_from_url

        try:
            ledger: BaseLedger = ledger_from_url(value)
        except (LedgerError, ValueError, ImportError) as e:
            raise ConfigurationError(str(e)) from e
        return ledger
    if not isinstance(value, BaseLedger):
        value = _resolve(value)
    if not isinstance(value, BaseLedger):
        raise ConfigurationError(
            "must be a ledger (MemoryLedger, SQLiteLedger, RedisLedger), a ledger URL "
            "(memory://, sqlite:///path, redis://host:port/db) or a path to one"
        )
    return value


def _ledger(
    values: Mapping[str, Any],
    ledger: BaseLedger | None,
    inbox: bool | None,
    problems: list[Problem],
) -> tuple[BaseLedger | None, bool]:
    """The ledger and inbox mode: from code or from ``LEDGER``/``INBOX``, not both."""
    if ledger is not None and values.get("LEDGER") is not None:
        problems.append(("E008", "a ledger was passed in code; remove LEDGER"))
    elif ledger is None and values.get("LEDGER") is not None:
        try:
            ledger = _ledger_object(values["LEDGER"])
        except ConfigurationError as e:
            problems.append(("E008", f"LEDGER: {e}"))
            return None, False
    if inbox is not None and "INBOX" in values:
        problems.append(("E008", "inbox was set in code; remove INBOX"))
    elif inbox is None:
        raw = values.get("INBOX", False)
        inbox = _flag(raw)
        if inbox is None:
            problems.append(("E008", f"INBOX must be true or false, got {raw!r}"))
            return ledger, False
    if inbox and ledger is None:
        problems.append(("E008", "INBOX needs a LEDGER to queue the events in"))
        return None, False
    if inbox and not has_inbox(ledger):
        problems.append(("E008", f"INBOX needs a ledger with a queue (enqueue); {ledger!r}"))
        return None, False
    return ledger, inbox


def _settings(
    values: object,
    *,
    verifier: Verifier | None,
    origin: str,
    ledger: BaseLedger | None = None,
    inbox: bool | None = None,
) -> tuple[AdapterSettings | None, list[Problem]]:
    problems: list[Problem] = []
    if not isinstance(values, Mapping):
        return None, [("E001", f"{origin} must be a dict")]
    unknown = sorted(str(k) for k in values if k not in SETTING_NAMES)
    if unknown:
        problems.append(("E002", f"unknown {origin} keys: {', '.join(unknown)}"))
    built = _verifier(values, verifier, problems)
    try:
        paths = PathMatcher.create(values.get("PATHS", DEFAULT_PATHS))
    except ConfigurationError as e:
        problems.append(("E006", f"PATHS: {e}"))
    try:
        url = URLRebuilder.create(
            public_url=values.get("PUBLIC_URL"),
            trusted_proxies=values.get("TRUSTED_PROXIES") or (),
            proxy_headers=values.get("PROXY_HEADERS", "x-forwarded"),
            path_prefix=values.get("PATH_PREFIX", ""),
        )
    except ConfigurationError as e:
        problems.append(("E007", str(e)))
    ledger, inbox = _ledger(values, ledger, inbox, problems)
    if problems or built is None:
        return None, problems
    return AdapterSettings(built, url, paths, ledger, inbox), problems


def settings_problems(
    values: object,
    *,
    verifier: Verifier | None = None,
    ledger: BaseLedger | None = None,
    inbox: bool | None = None,
    origin: str = "UPVEST_VERIFY",
) -> list[tuple[str, str]]:
    """List what is wrong with adapter settings, without raising.

    Args:
        values: The settings mapping (keys without prefix: ``JWKS``, ``SKEW``...).
        verifier: A verifier given in code, if any.
        ledger: A ledger given in code, if any.
        inbox: Inbox mode given in code, if any.
        origin: How the settings are named in messages.

    Returns:
        ``(code, message)`` pairs; codes ``E001`` to ``E008``. Empty if all is well.
    """
    return _settings(values, verifier=verifier, ledger=ledger, inbox=inbox, origin=origin)[1]


def load_settings(
    values: object,
    *,
    verifier: Verifier | None = None,
    ledger: BaseLedger | None = None,
    inbox: bool | None = None,
    origin: str = "UPVEST_VERIFY",
) -> AdapterSettings:
    """Build the verifier and adapter options from settings.

    Keys (all optional except a key source, unless ``verifier`` is given):

    - key source, exactly one: ``VERIFIER`` (a Verifier, a dotted path to one or a
      factory), ``KEYS`` (a KeySet or key provider, or a path/factory), ``JWKS``
      (a dict, JSON text or a file path), ``JWKS_URL`` (https URL of a JWKS), or
      ``CLIENT_ID`` with ``CLIENT_SECRET``, ``SIGNING_KEY`` (PEM text, a PEM file path
      or a SigningKey), ``SIGNING_KEY_ID``, ``SIGNING_KEY_PASSWORD`` (if encrypted) and
      ``BASE_URL`` (``"sandbox"``, ``"live"`` or a URL): the keys are fetched from
      ``/auth/verify_keys`` through the management client (``[client]`` extra);
    - policy: ``POLICY`` (a Policy) or any Policy field in upper case (``SKEW``,
      ``MAX_AGE``, ``MAX_BODY_SIZE``, ``DIALECT``...);
    - ``PATHS`` (default ``["/webhooks/upvest"]``), ``PUBLIC_URL``,
      ``TRUSTED_PROXIES``, ``PROXY_HEADERS``, ``PATH_PREFIX``;
    - ``LEDGER``: an event ledger for exactly-once processing per event id: a
      ledger object, a URL (``memory://``, ``sqlite:///path``, ``redis://host:port/db``)
      or a dotted path to / factory of a ledger; ``INBOX`` (true/false, default
      false): acknowledge first and queue the events in that ledger.

    Args:
        values: The settings mapping.
        verifier: A verifier given in code (then no key source or policy keys).
        ledger: A ledger given in code (then no ``LEDGER``).
        inbox: Inbox mode given in code (then no ``INBOX``).
        origin: How the settings are named in messages.

    Returns:
        The adapter settings.

    Raises:
        ConfigurationError: Listing every problem found.
    """
    built, problems = _settings(
        values, verifier=verifier, ledger=ledger, inbox=inbox, origin=origin
    )
    if built is None:
        raise ConfigurationError("; ".join(f"{code}: {msg}" for code, msg in problems))
    return built
