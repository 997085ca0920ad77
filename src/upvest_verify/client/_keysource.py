"""Key sources over the management client, for :class:`~upvest_verify.jwks.JWKSCache`.

``GET /auth/verify_keys`` needs a signed request and a token (read scope), so
a plain URL source cannot fetch it; these sources go through the client. Failures
become what the cache expects of a source: ``OSError`` when Upvest or the network
fails (the cache then keeps serving its last good keys, up to ``max_stale``) and
:class:`~upvest_verify.errors.JWKSError` when the answer is not a JSON key set.
The response's ``Cache-Control`` and ``Age`` set the cache lifetime.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from upvest_verify.errors import ConfigurationError, JWKSError
from upvest_verify.jwks import FetchResult

from ._errors import UnexpectedResponse, UpvestAPIError, UpvestConnectionError

if TYPE_CHECKING:
    from ._client import AsyncUpvestClient, UpvestClient

__all__ = ["AsyncUpvestKeySource", "UpvestKeySource"]


def _mapped(error: Exception) -> Exception:
    if isinstance(error, UnexpectedResponse):
        return JWKSError(f"GET /auth/verify_keys: {error}")
    return OSError(f"key fetch failed: {error}")


class UpvestKeySource:
    """The JWKS from ``GET /auth/verify_keys`` through an :class:`UpvestClient`.

    Implements :class:`~upvest_verify.types.KeySource` and
    :class:`~upvest_verify.types.AsyncKeySource` (``afetch`` runs the blocking fetch
    in a worker thread)::

        cache = JWKSCache(client.key_source())
    """

    __slots__ = ("_client",)

    def __init__(self, client: UpvestClient) -> None:
        self._client = client

    @property
    def client(self) -> UpvestClient:
        """The client fetching the keys (close it when done, if the process goes on)."""
        return self._client

    def fetch(self) -> FetchResult:
        """Fetch the key set, blocking.

        Raises:
            OSError: Upvest answered with an error, or did not answer.
            JWKSError: The answer is not a JSON object.
        """
        try:
            return self._client.fetch_jwks()
        except (UpvestAPIError, UpvestConnectionError) as e:
            raise _mapped(e) from e

    async def afetch(self) -> FetchResult:
        """Fetch the key set in a worker thread.

        Raises:
            OSError: Upvest answered with an error, or did not answer.
            JWKSError: The answer is not a JSON object.
        """
        return await asyncio.to_thread(self.fetch)

    def __repr__(self) -> str:
        return f"UpvestKeySource({self._client!r})"


class AsyncUpvestKeySource:
    """The JWKS from ``GET /auth/verify_keys`` through an :class:`AsyncUpvestClient`.

    Serves :class:`~upvest_verify.jwks.JWKSCache`'s async methods (``acurrent``,
    ``arefresh_for``, async verification). An ``httpx.AsyncClient`` belongs to its
    event loop, so :meth:`fetch` cannot use it: synchronous verification needs
    :meth:`UpvestClient.key_source`.
    """

    __slots__ = ("_client",)

    def __init__(self, client: AsyncUpvestClient) -> None:
        self._client = client

    @property
    def client(self) -> AsyncUpvestClient:
        """The client fetching the keys."""
        return self._client

    def fetch(self) -> FetchResult:
        """Always fails: this source serves asyncio code only.

        Raises:
            ConfigurationError: Always.
        """
        raise ConfigurationError(
            "an AsyncUpvestClient's key source serves async verification only; "
            "use UpvestClient(...).key_source() for synchronous verification"
        )

    async def afetch(self) -> FetchResult:
        """Fetch the key set.

        Raises:
            OSError: Upvest answered with an error, or did not answer.
            JWKSError: The answer is not a JSON object.
        """
        try:
            return await self._client.fetch_jwks()
        except (UpvestAPIError, UpvestConnectionError) as e:
            raise _mapped(e) from e

    def __repr__(self) -> str:
        return f"AsyncUpvestKeySource({self._client!r})"
