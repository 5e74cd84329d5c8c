"""An https:// proxy with its own CA, apart from the exchange's (curl's ``--proxy-cacert``).

The proxy (pproxy speaking HTTP inside TLS) has a certificate from one trustme CA, the target
from another: the proxy CA checks the proxy's handshake only, the target's store the target's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from http_fixtures import running_app

from fixtures_servers import TLSMaterial, make_tls_material, proxy_decision, start_pproxy
from mpnet.core.tls import TLSDecision
from mpnet.errors import ConnectError, Phase, TLSError
from mpnet.net.exchange import timed_request
from mpnet.net.retry import request_with_retry
from mpnet.net.sessions import HTTPSessionManager


@pytest.fixture(scope="module")
def proxy_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """The office proxy's private CA, which the exchange's store does not hold."""
    return make_tls_material(tmp_path_factory.mktemp("proxy-ca"))


@pytest.fixture(scope="module")
def office_proxy(
    proxy_material: TLSMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("office-proxy")
    pem = directory / "proxy.pem"
    proxy_material.server.private_key_and_cert_chain_pem.write_to_path(str(pem))
    process = start_pproxy({"https": "http+ssl"}, ssl_files=(str(pem),))
    try:
        yield process.urls["https"]
    finally:
        process.stop()


def _with_proxy_ca(tls: TLSDecision, material: TLSMaterial) -> TLSDecision:
    return dataclasses.replace(
        tls, proxy_ca=str(material.ca_pem), proxy_ca_layer="cli", proxy_ca_origin="test"
    )


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_the_proxy_ca_verifies_the_proxy(
    office_proxy: str, tls_material: TLSMaterial, proxy_material: TLSMaterial, secure: bool
) -> None:
    tls = _with_proxy_ca(tls_material.verify_decision(), proxy_material)
    async with running_app(tls_material.server_context() if secure else None) as server:
        timed = await timed_request(
            "GET", server.url("/json"), proxy=proxy_decision(office_proxy), tls=tls, timeout=10
        )
        async with HTTPSessionManager() as manager:
            session = await manager.get_session(
                "office", proxy=proxy_decision(office_proxy), tls=tls
            )
            pooled = await request_with_retry("GET", server.url("/json"), session=session)
    assert timed.json() == pooled.json() == {"ok": True}
    # The proxy's handshake is the proxy phase, the target's (when https) the tls phase.
    assert list(timed.timings.to_dict()) == ["dns", "tcp", "proxy"] + (
        ["tls", "http"] if secure else ["http"]
    )
    assert server.requests == {"/json": 2}


async def test_without_the_proxy_ca_the_proxy_is_refused(
    office_proxy: str, tls_material: TLSMaterial
) -> None:
    async with running_app(tls_material.server_context()) as server:
        with pytest.raises(TLSError) as caught:
            await timed_request(
                "GET",
                server.url("/json"),
                proxy=proxy_decision(office_proxy),
                tls=tls_material.verify_decision(),
                timeout=10,
            )
    assert (caught.value.phase, caught.value.kind) == (Phase.PROXY, "untrusted")


async def test_the_proxy_ca_does_not_vouch_for_the_exchange(
    office_proxy: str, tls_material: TLSMaterial, proxy_material: TLSMaterial
) -> None:
    # A target whose certificate comes from the proxy's CA (what an inspecting proxy would
    # present) is still checked against the exchange's store only.
    tls = _with_proxy_ca(tls_material.verify_decision(), proxy_material)
    async with running_app(proxy_material.server_context()) as server:
        with pytest.raises(TLSError) as caught:
            await timed_request(
                "GET", server.url("/json"), proxy=proxy_decision(office_proxy), tls=tls, timeout=10
            )
        async with HTTPSessionManager() as manager:
            session = await manager.get_session(
                "office", proxy=proxy_decision(office_proxy), tls=tls
            )
            # Python 3.11's asyncio breaks TLS-in-TLS on a refused certificate, and aiohttp
            # reports that as a connection error; mpnet's own dial recovers the TLS error.
            with pytest.raises((TLSError, ConnectError)) as pooled:
                await request_with_retry(
                    "GET", server.url("/json"), session=session, max_attempts=1
                )
    assert (caught.value.phase, caught.value.kind) == (Phase.TLS, "untrusted")
    assert "verify failed" in str(pooled.value) or "_abort" in str(pooled.value)
    assert server.requests == {}
