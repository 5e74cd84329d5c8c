"""Reading a profile's WebSocket messages: decoding frames and answering server keepalives.

Shared by the probe engine (one attempt reads until a message matches) and the watch's long-lived
feeds (a reader counts data messages for as long as the feed runs), so both see the same message
the same way.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

from mpnet.config.model import WebSocketSpec
from mpnet.errors import Phase, ProtocolError

#: How many bytes of a message are decoded for matching; larger ones are still received.
MESSAGE_PREVIEW = 1 << 20


def decode_message(raw: str | bytes, *, compression: str | None) -> Any:
    """A received frame as the JSON value it holds, or as text when it is not JSON.

    Args:
        raw: a text or binary frame.
        compression: ``"gzip"`` when the profile says binary frames are gzip (HTX).

    Raises:
        ProtocolError: ``kind="invalid_frame"``: a binary frame that should be gzip is not.
    """
    data = raw
    if isinstance(raw, bytes):
        if compression == "gzip":
            try:
                data = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise ProtocolError(
                    f"binary frame is not gzip: {exc}",
                    phase=Phase.FIRST_MESSAGE,
                    kind="invalid_frame",
                ) from exc
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    else:
        text = raw
    try:
        return json.loads(text[:MESSAGE_PREVIEW])
    except (ValueError, RecursionError):
        # Plain-text protocols (okx "pong") match on the raw text; so does a message of
        # brackets nested deeper than the stack, which no pattern expects.
        return text


def server_ping_reply(spec: WebSocketSpec, message: Any) -> dict[str, Any] | None:
    """The answer to a server's application ping (HTX ``{"ping": x}`` -> ``{"pong": x}``), or
    None when ``message`` (decoded) is not one."""
    server_ping = spec.server_ping
    if server_ping is None or not isinstance(message, dict) or server_ping.field not in message:
        return None
    return {server_ping.reply_field: message[server_ping.field]}
