"""An aiohttp client middleware that turns a pooled session's connection failures into mpnet's
errors, so that a request on a session of :class:`~mpnet.net.sessions.HTTPSessionManager` (and so
of ``create_http_session``) fails the way every other mpnet call does.

What it cannot reach: aiohttp raises a session's total timeout (``asyncio.TimeoutError``) and
errors while reading a body after the middleware has returned, and it retries an idempotent
request once on ``ServerDisconnectedError`` / ``ClientOSError`` from a reused keep-alive
connection only when it sees those errors itself, so they pass through untouched.
:func:`mpnet.net.retry.request_with_retry` maps all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpnet.core.proxy_url import ProxyURL
from mpnet.errors import Phase

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType


def error_translator(proxy: ProxyURL | None) -> ClientMiddlewareType:
    """The middleware of a session whose requests go through ``proxy`` (None: direct)."""
    import aiohttp

    # Not translated: the errors aiohttp answers by retrying on a fresh connection.
    retried_by_aiohttp = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    connecting = Phase.PROXY if proxy is not None else Phase.TCP

    async def translate_errors(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        from mpnet.net.translate import is_network_error, translate_client_error

        try:
            return await handler(request)
        except Exception as exc:
            connect_failure = isinstance(
                exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
            )
            if not connect_failure and isinstance(exc, retried_by_aiohttp):
                raise
            if not is_network_error(exc):
                raise
            phase = connecting if connect_failure else Phase.HTTP
            raise translate_client_error(
                exc, url=str(request.url), proxy=proxy, phase=phase
            ) from exc

    return translate_errors
