"""JWKS sources and a rotating key cache that never stalls a receiver.

Upvest serves its webhook keys at ``GET /auth/verify_keys`` and rotates them.
:class:`JWKSCache` sits in front of a :class:`KeySource` and hands the verifier
immutable :class:`~upvest_verify.KeySet` snapshots:

* a cache hit is a lock-free read of the current snapshot; a refresh swaps in a
  new snapshot atomically;
* one fetch is in flight per cache, shared by threads *and* asyncio tasks of any
  event loop (a :class:`concurrent.futures.Future` is the rendezvous, so no
  asyncio primitive is bound to one loop);
* refreshes caused by unknown ``keyid`` values share a budget of one per
  ``refresh_cooldown`` (single-flight, with a negative cache of the kids a refresh
  did not bring in); ordinary fetches (cold start, TTL, background) do not use it
  up, so a key published just after one is fetched by the first webhook naming
  it (after a 1 s gap); every refused refresh is logged at WARNING;
* a failed or garbage refresh keeps serving the last good set until
  ``max_stale`` has passed, then ``keys_unavailable`` (503);
* a key removed by a *successful* refresh is gone at once;
* an expired-but-usable snapshot is refreshed in the background, so a slow key
  endpoint never slows a request signed with a known key; only a cold cache (or
  one stale beyond ``max_stale``) waits for the fetch.

Layout, after httpx's auth flows: ``_policy`` holds the pure cache policy,
``_cache`` the cache (one flow per operation, a thread driver and an asyncio
driver), ``_runtime`` what threads and tasks share (the fetch in flight, the
negative cache, counters, log lines), ``_sources`` :class:`FetchResult` (with the
RFC 9111 lifetime rules), :class:`StaticKeySource` and :func:`load_jwks`, and
``_http`` :class:`URLKeySource` (pure rules, a urllib and an httpx driver). The
:class:`KeySource` protocols live in :mod:`upvest_verify.types`.

Example::

    cache = JWKSCache(client.key_source())  # an upvest_verify.client.UpvestClient
    verifier = Verifier(cache)

Fetching from Upvest's real endpoint needs a signed, OAuth-authorised request;
the management client provides that source (above). :class:`URLKeySource` serves
unauthenticated JWKS URLs and tests, :class:`StaticKeySource` pinned or
file-based key sets.
"""

from __future__ import annotations

from upvest_verify.types import AsyncKeySource, KeySource

from ._cache import CacheStats, JWKSCache
from ._http import URLKeySource
from ._sources import FetchResult, StaticKeySource, load_jwks

__all__ = [
    "AsyncKeySource",
    "CacheStats",
    "FetchResult",
    "JWKSCache",
    "KeySource",
    "StaticKeySource",
    "URLKeySource",
    "load_jwks",
]

# Present the names defined in the private modules as this package's own.
for _name in __all__:
    _obj = globals()[_name]
    if _obj.__module__.startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
