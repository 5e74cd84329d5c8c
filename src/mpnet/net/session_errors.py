"""An aiohttp client middleware that turns a pooled session's connection failures into mpnet's
errors, so that a request on a session of :class:`~mpnet.net.sessions.HTTPSessionManager` (and so
of ``create_http_session``) fails the way every other mpnet call does.

Errors while reading a body come after the middleware has returned: the session's response
class (:func:`response_class`) translates those raised by ``read()`` (and so ``text()`` and
``json()``). What neither reaches: reads from ``response.content`` directly, and the
``ServerDisconnectedError`` / ``ClientOSError`` of a reused keep-alive connection, which aiohttp
answers by retrying an idempotent request once and so must see itself.
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


def response_class(proxy: ProxyURL | None) -> type[aiohttp.ClientResponse]:
    """The response class of a session whose requests go through ``proxy`` (None: direct): its
    ``read()`` (which ``text()`` and ``json()`` use) raises mpnet's errors, not aiohttp's."""
    import aiohttp

    from mpnet.net.translate import is_network_error, translate_client_error

    class TranslatingResponse(aiohttp.ClientResponse):
        async def read(self) -> bytes:
            try:
                return await super().read()
            except Exception as exc:
                if not is_network_error(exc):
                    raise
                raise translate_client_error(
                    exc, url=str(self.url), proxy=proxy, phase=Phase.HTTP
                ) from exc

    return TranslatingResponse
