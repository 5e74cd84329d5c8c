"""ErrorInfo.from_error is the one way a probe error becomes data, and it masks a proxy password
in the message, the headers and the body whatever the error's author wrote, on every path: the
library's test_connectivity, the probe engine's failed attempt, `mpnet ws` and the feed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures_servers import PROXY_PASSWORD
from mpnet.client import NetworkConnectionManager
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import ProfileSet
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import ErrorInfo
from mpnet.core.tls import resolve_tls
from mpnet.errors import Phase, ProbeError, ProtocolError, ProxyDenied, TLSError

LEAKY_URL = f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128"


def leaky_error() -> ProxyDenied:
    """An error written carelessly: the password in its message, a header and its body."""
    return ProxyDenied(
        f"proxy {LEAKY_URL} refused CONNECT",
        status=403,
        headers={"Location": f"{LEAKY_URL}/denied"},
        body=f"<p>denied for {LEAKY_URL}</p>".encode(),
    )


def assert_masked(info: ErrorInfo) -> None:
    shown = json.dumps([info.message, dict(info.headers), info.body])
    assert PROXY_PASSWORD not in shown
    assert "user:***@127.0.0.1:3128" in info.message


def test_from_error_keeps_the_facts_and_masks_the_password() -> None:
    info = ErrorInfo.from_error(leaky_error())
    assert_masked(info)
    assert (info.phase, info.kind, info.status) == ("proxy", "proxy_denied", 403)
    assert info.headers["Location"] == "http://user:***@127.0.0.1:3128/denied"
    assert info.body == "<p>denied for http://user:***@127.0.0.1:3128</p>"


@pytest.mark.parametrize(
    ("error", "fallback", "body", "issuer"),
    [
        (ProtocolError("no data", phase=Phase.FIRST_MESSAGE), b'{"err": 1}', '{"err": 1}', None),
        (ProtocolError("bad", body=b"own"), "unused", "own", None),
        (TLSError("untrusted", kind="untrusted", issuer="CN=Corp CA"), None, "", "CN=Corp CA"),
        (ProbeError("plain"), None, "", None),
    ],
)
def test_from_error_body_and_issuer(
    error: ProbeError, fallback: bytes | str | None, body: str, issuer: str | None
) -> None:
    info = ErrorInfo.from_error(error, body=fallback)
    assert (info.body, info.issuer, info.status) == (body, issuer, None)


async def test_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import mpnet.net.exchange

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise leaky_error()

    monkeypatch.setattr(mpnet.net.exchange, "timed_request", refuse)
    nm = NetworkConnectionManager(config=ConfigFile(), profiles=ProfileSet({}), env={})
    result = await nm.test_connectivity("http://127.0.0.1:1/")
    assert result.error is not None
    assert_masked(result.error)
    assert PROXY_PASSWORD not in json.dumps(result.to_dict())


def test_engine_path() -> None:
    from mpnet.probe.engine import _Progress

    attempt = _Progress(5.0).failed(leaky_error())
    assert attempt.error is not None
    assert_masked(attempt.error)


async def test_ws_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpnet.net import ws

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise leaky_error()

    monkeypatch.setattr(ws.WebSocketWrapper, "connect", refuse)
    result = await ws.run_session(
        "ws://127.0.0.1:1/",
        proxy=ProxyDecision(target_url="ws://127.0.0.1:1/", proxy=None, layer="default"),
        tls=resolve_tls(system_store=True),
        timeout=1,
    )
    assert result.error is not None
    assert_masked(result.error)
