"""dial(): phases, peers and error translation against real servers and pproxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

import pytest

from fixtures_servers import (
    PROXY_PASSWORD,
    EchoServer,
    TLSMaterial,
    closed_port,
    direct_decision,
    insecure_decision,
    make_tls_material,
    proxy_decision,
    start_echo_server,
    start_pproxy,
    with_scheme,
)
from mpnet.errors import (
    ConnectError,
    DNSError,
    Phase,
    ProbeTimeout,
    ProxyAuthError,
    ProxyDenied,
    ProxyUnreachable,
    TLSError,
    UsageError,
)
from mpnet.net.dial import PhaseTimings, dial, parse_target, parse_tcp_info_rtt_ms
from mpnet.net.stamps import SO_TIMESTAMPNS

LINUX = sys.platform.startswith("linux")

# proxy listener name in the `proxies` fixture, client-side scheme (None: as listed)
PROXY_CASES = [
    pytest.param(None, None, id="direct"),
    pytest.param("http", None, id="http-connect"),
    pytest.param("http_auth", None, id="http-connect-auth"),
    pytest.param("socks5", None, id="socks5"),
    pytest.param("socks5_auth", "socks5h", id="socks5h-auth"),
    pytest.param("socks5_auth", None, id="socks5-auth"),
    pytest.param("socks4", None, id="socks4"),
]


def _proxy(proxies: dict[str, str], name: str | None, scheme: str | None):  # type: ignore[no-untyped-def]
    if name is None:
        return direct_decision()
    url = proxies[name]
    return proxy_decision(with_scheme(url, scheme) if scheme else url)


async def _echo_round_trip(conn) -> bytes:  # type: ignore[no-untyped-def]
    conn.writer.write(b"hello")
    await conn.writer.drain()
    return await conn.reader.readexactly(5)


@pytest.mark.parametrize(("proxy_name", "scheme"), PROXY_CASES)
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_dial_matrix(
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    echo_server: EchoServer,
    tls_echo_server: EchoServer,
    proxy_name: str | None,
    scheme: str | None,
    secure: bool,
) -> None:
    server = tls_echo_server if secure else echo_server
    url = f"{'https' if secure else 'http'}://127.0.0.1:{server.port}/"
    decision = _proxy(proxies, proxy_name, scheme)

    conn = await dial(url, proxy=decision, tls=tls_material.verify_decision(), timeout=10)
    try:
        assert await _echo_round_trip(conn) == b"hello"
    finally:
        await conn.aclose()

    phases = conn.timings.to_dict()
    expected = ["dns", "tcp"] + (["proxy"] if proxy_name else []) + (["tls"] if secure else [])
    assert list(phases) == expected
    assert all(value >= 0 for value in phases.values())
    connected_port = decision.proxy.port if decision.proxy else server.port
    assert conn.peer.address == f"127.0.0.1:{connected_port}"
    if LINUX:
        # Through a proxy it is the round trip to the proxy, as the tcp phase is.
        assert isinstance(conn.peer.tcp_rtt_kernel_ms, float)
        assert conn.peer.tcp_rtt_kernel_ms >= 0
    assert conn.peer.via_proxy == (decision.proxy.redacted() if decision.proxy else None)
    if secure:
        assert conn.peer.tls is not None
        assert conn.peer.tls.version in ("TLSv1.2", "TLSv1.3")
        assert conn.peer.tls.cert_issuer and "trustme" in conn.peer.tls.cert_issuer
        assert conn.peer.tls_verified is True
    else:
        assert conn.peer.tls is None


async def test_localhost_resolves_and_sni_names_the_target(
    tls_material: TLSMaterial, tls_echo_server: EchoServer
) -> None:
    conn = await dial(
        f"https://localhost:{tls_echo_server.port}/",
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    await conn.aclose()
    assert f"127.0.0.1:{tls_echo_server.port}" in conn.peer.addresses


@pytest.mark.parametrize("listener", ["http_auth", "socks5_auth"])
async def test_wrong_proxy_credentials(
    proxies: dict[str, str], tls_material: TLSMaterial, echo_server: EchoServer, listener: str
) -> None:
    bad = proxies[listener].replace(PROXY_PASSWORD, "wrong-password")
    with pytest.raises(ProxyAuthError) as caught:
        await dial(
            f"http://127.0.0.1:{echo_server.port}/",
            proxy=proxy_decision(bad),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert caught.value.phase is Phase.PROXY
    assert "wrong-password" not in str(caught.value)
    assert PROXY_PASSWORD not in str(caught.value)


async def test_missing_http_proxy_credentials(
    proxies: dict[str, str], tls_material: TLSMaterial, echo_server: EchoServer
) -> None:
    anonymous = proxies["http_auth"].split("@")[-1]
    with pytest.raises(ProxyAuthError) as caught:
        await dial(
            f"http://127.0.0.1:{echo_server.port}/",
            proxy=proxy_decision(f"http://{anonymous}"),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert "407" in str(caught.value)


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
async def test_closed_proxy_port(tls_material: TLSMaterial, scheme: str) -> None:
    with pytest.raises(ProxyUnreachable) as caught:
        await dial(
            "https://127.0.0.1:443/",
            proxy=proxy_decision(f"{scheme}://user:pw@127.0.0.1:{closed_port()}"),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert caught.value.phase is Phase.TCP
    assert caught.value.kind == "proxy_refused"
    assert ":pw@" not in str(caught.value)


async def test_unresolvable_proxy_name(tls_material: TLSMaterial) -> None:
    with pytest.raises(ProxyUnreachable) as caught:
        await dial(
            "https://127.0.0.1:443/",
            proxy=proxy_decision("http://proxy.invalid:3128"),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert caught.value.phase is Phase.DNS


async def test_refused_target() -> None:
    with pytest.raises(ConnectError) as caught:
        await dial(
            f"http://127.0.0.1:{closed_port()}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=10,
        )
    assert (caught.value.phase, caught.value.kind) == (Phase.TCP, "refused")


async def test_unresolvable_name() -> None:
    with pytest.raises(DNSError) as caught:
        await dial(
            "wss://name.invalid/", proxy=direct_decision(), tls=insecure_decision(), timeout=10
        )
    assert caught.value.phase is Phase.DNS
    assert caught.value.kind in ("nxdomain", "no_resolver")
    assert "name.invalid" in str(caught.value)


@pytest.mark.parametrize(
    ("context", "kind"),
    [
        ("expired_context", "expired"),
        ("untrusted_context", "untrusted"),
        ("wrong_host_context", "hostname_mismatch"),
    ],
)
async def test_certificate_failures(tls_material: TLSMaterial, context: str, kind: str) -> None:
    server = await start_echo_server(getattr(tls_material, context)())
    try:
        with pytest.raises(TLSError) as caught:
            await dial(
                f"https://127.0.0.1:{server.port}/",
                proxy=direct_decision(),
                tls=tls_material.verify_decision(),
                timeout=10,
            )
    finally:
        await server.close()
    assert (caught.value.phase, caught.value.kind) == (Phase.TLS, kind)
    assert caught.value.issuer and "trustme" in caught.value.issuer


async def test_certificate_failure_through_proxy(
    proxies: dict[str, str], tls_material: TLSMaterial
) -> None:
    server = await start_echo_server(tls_material.expired_context())
    try:
        with pytest.raises(TLSError) as caught:
            await dial(
                f"https://127.0.0.1:{server.port}/",
                proxy=proxy_decision(proxies["socks5"]),
                tls=tls_material.verify_decision(),
                timeout=10,
            )
    finally:
        await server.close()
    assert (caught.value.phase, caught.value.kind) == (Phase.TLS, "expired")
    assert caught.value.issuer and "trustme" in caught.value.issuer


async def test_contexts_are_shared_and_never_changed_per_connection(
    tls_material: TLSMaterial, tls_echo_server: EchoServer
) -> None:
    from mpnet.net.tls import HTTP_ALPN, context_for

    context = context_for(tls_material.verify_decision(), alpn=HTTP_ALPN)
    recording_class = context.sslobject_class
    for _ in range(3):
        conn = await dial(
            f"https://127.0.0.1:{tls_echo_server.port}/",
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            alpn=list(HTTP_ALPN),
            timeout=10,
        )
        assert conn.writer.get_extra_info("sslcontext") is context
        await conn.aclose()
    assert context.sslobject_class is recording_class


async def test_insecure_still_reports_the_certificate(tls_material: TLSMaterial) -> None:
    server = await start_echo_server(tls_material.expired_context())
    try:
        conn = await dial(
            f"https://127.0.0.1:{server.port}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=10,
        )
        await conn.aclose()
    finally:
        await server.close()
    assert conn.peer.tls_verified is False
    assert conn.peer.tls is not None
    assert conn.peer.tls.cert_not_after == "2021-01-01T00:00:00Z"
    assert conn.peer.tls.cert_days_left is not None and conn.peer.tls.cert_days_left < 0


async def test_tls_to_a_plain_server_is_a_handshake_error(
    tls_material: TLSMaterial, echo_server: EchoServer
) -> None:
    with pytest.raises(TLSError) as caught:
        await dial(
            f"https://127.0.0.1:{echo_server.port}/",
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert (caught.value.phase, caught.value.kind) == (Phase.TLS, "handshake")


@pytest.mark.parametrize(
    ("via_proxy", "phase"), [(False, Phase.TLS), (True, Phase.PROXY)], ids=["tls", "proxy"]
)
async def test_timeout_names_the_running_phase(
    tls_material: TLSMaterial, silent_server: int, via_proxy: bool, phase: Phase
) -> None:
    timings = PhaseTimings()
    if via_proxy:
        url, decision = (
            "https://127.0.0.1:443/",
            proxy_decision(f"http://127.0.0.1:{silent_server}"),
        )
    else:
        url, decision = f"https://127.0.0.1:{silent_server}/", direct_decision()
    budget = 0.5
    with pytest.raises(ProbeTimeout) as caught:
        await dial(
            url, proxy=decision, tls=tls_material.verify_decision(), timeout=budget, timings=timings
        )
    assert caught.value.phase is phase
    assert timings.tcp is not None
    # The phase that ran out keeps the time spent in it (a lower bound only: no timing ceiling).
    assert timings.to_dict()[str(phase)] >= 0.8 * budget


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://h.example/ws", ("h.example", 443, True)),
        ("ws://h.example:8080", ("h.example", 8080, False)),
        ("https://[::1]:8443/x", ("::1", 8443, True)),
        ("http://H.Example/", ("h.example", 80, False)),
    ],
)
def test_parse_target(url: str, expected: tuple[str, int, bool]) -> None:
    target = parse_target(url)
    assert (target.host, target.port, target.secure) == expected


@pytest.mark.parametrize("url", ["ftp://h/", "wss://", "h.example:443", "wss://h:99999/"])
def test_parse_target_rejects(url: str) -> None:
    with pytest.raises(UsageError):
        parse_target(url)


def test_phase_timings_to_dict_keeps_phase_order() -> None:
    timings = PhaseTimings(ws_upgrade=3.0, dns=1.0, bootstrap=9.0, tls=2.0)
    assert list(timings.to_dict()) == ["bootstrap", "dns", "tls", "ws_upgrade"]


@pytest.fixture(scope="module")
def https_proxies(tls_material: TLSMaterial, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """pproxy speaking HTTP CONNECT inside TLS, with the trustme server certificate."""
    pem = tmp_path_factory.mktemp("https-proxy") / "proxy.pem"
    tls_material.server.private_key_and_cert_chain_pem.write_to_path(str(pem))
    process = start_pproxy(
        {"https": "http+ssl", "https_auth": f"http+ssl#user:{PROXY_PASSWORD}"},
        ssl_files=(str(pem),),
    )
    try:
        yield process.urls
    finally:
        process.stop()


@pytest.mark.parametrize("listener", ["https", "https_auth"])
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls-in-tls"])
async def test_https_proxy(
    https_proxies: dict[str, str],
    tls_material: TLSMaterial,
    echo_server: EchoServer,
    tls_echo_server: EchoServer,
    listener: str,
    secure: bool,
) -> None:
    server = tls_echo_server if secure else echo_server
    conn = await dial(
        f"{'https' if secure else 'http'}://127.0.0.1:{server.port}/",
        proxy=proxy_decision(https_proxies[listener]),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    try:
        assert await _echo_round_trip(conn) == b"hello"
    finally:
        await conn.aclose()
    assert list(conn.timings.to_dict()) == ["dns", "tcp", "proxy"] + (["tls"] if secure else [])


async def test_https_proxy_with_an_untrusted_certificate(
    https_proxies: dict[str, str], echo_server: EchoServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Verify against another CA than the one that signed the proxy's certificate.
    stranger = make_tls_material(tmp_path_factory.mktemp("stranger"))
    with pytest.raises(TLSError) as caught:
        await dial(
            f"http://127.0.0.1:{echo_server.port}/",
            proxy=proxy_decision(https_proxies["https"]),
            tls=stranger.verify_decision(),
            timeout=10,
        )
    assert (caught.value.phase, caught.value.kind) == (Phase.PROXY, "untrusted")
    assert "proxy" in str(caught.value)
    # The proxy's certificate, issued by the other CA, is still named.
    assert caught.value.issuer and "trustme" in caught.value.issuer


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (socket.EAI_NONAME, "nxdomain"),
        (socket.EAI_AGAIN, "no_resolver"),
        (socket.EAI_FAIL, "no_resolver"),
    ],
)
async def test_dns_failure_kinds(monkeypatch: pytest.MonkeyPatch, code: int, kind: str) -> None:
    async def failing_getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(code, "resolver says no")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", failing_getaddrinfo)
    with pytest.raises(DNSError) as caught:
        await dial(
            "wss://www.deribit.com/ws/api/v2",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=10,
        )
    assert caught.value.kind == kind
    expected = "no DNS resolver answered" if kind == "no_resolver" else "does not exist"
    assert expected in str(caught.value)
    assert "www.deribit.com" in str(caught.value)


async def test_proxy_cannot_reach_the_target(
    proxies: dict[str, str], tls_material: TLSMaterial
) -> None:
    # HTTP CONNECT only: pproxy grants SOCKS requests before it tries the target.
    with pytest.raises(ProxyDenied) as caught:
        await dial(
            f"http://127.0.0.1:{closed_port()}/",
            proxy=proxy_decision(proxies["http"]),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert caught.value.phase is Phase.PROXY


# -- kernel TCP RTT -----------------------------------------------------------------------------


def _tcp_info(length: int, *, rtt_us: int, min_rtt_us: int | None) -> bytes:
    """A struct tcp_info of ``length`` bytes: tcpi_rtt at byte 68, tcpi_min_rtt at byte 148."""
    info = bytearray(length)
    if length >= 72:
        struct.pack_into("=I", info, 68, rtt_us)
    if min_rtt_us is not None and length >= 152:
        struct.pack_into("=I", info, 148, min_rtt_us)
    return bytes(info)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        pytest.param(_tcp_info(232, rtt_us=1500, min_rtt_us=700), 0.7, id="min-rtt-preferred"),
        pytest.param(_tcp_info(152, rtt_us=1500, min_rtt_us=700), 0.7, id="min-rtt-just-fits"),
        pytest.param(
            _tcp_info(232, rtt_us=1500, min_rtt_us=0xFFFFFFFF), 1.5, id="min-rtt-no-sample"
        ),
        pytest.param(_tcp_info(104, rtt_us=2250, min_rtt_us=None), 2.25, id="old-kernel-rtt"),
        pytest.param(_tcp_info(151, rtt_us=2250, min_rtt_us=None), 2.25, id="min-rtt-cut"),
        pytest.param(_tcp_info(104, rtt_us=0, min_rtt_us=None), None, id="no-sample-yet"),
        pytest.param(_tcp_info(71, rtt_us=0, min_rtt_us=None), None, id="too-short"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_parse_tcp_info(info: bytes, expected: float | None) -> None:
    assert parse_tcp_info_rtt_ms(info) == expected


@pytest.mark.skipif(not LINUX, reason="TCP_INFO is Linux's")
async def test_kernel_rtt_on_loopback(tls_material: TLSMaterial, echo_server: EchoServer) -> None:
    conn = await dial(
        f"http://127.0.0.1:{echo_server.port}/",
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    await conn.aclose()
    rtt = conn.peer.tcp_rtt_kernel_ms
    assert isinstance(rtt, float)
    assert rtt >= 0


@pytest.mark.skipif(not LINUX, reason="SO_TIMESTAMPNS is Linux's")
async def test_dialed_sockets_ask_for_arrival_stamps(
    tls_material: TLSMaterial, echo_server: EchoServer
) -> None:
    """The loop-lag monitor reads the kernel's arrival stamp of an answer that waited
    (probe/looplag.py): every socket dial opens must ask for them."""
    conn = await dial(
        f"http://127.0.0.1:{echo_server.port}/",
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    try:
        sock = conn.writer.get_extra_info("socket")
        assert SO_TIMESTAMPNS is not None
        assert sock.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 1
    finally:
        await conn.aclose()


@pytest.mark.skipif(not LINUX, reason="SO_TIMESTAMPNS is Linux's")
def test_prepare_network_keeps_the_kernels_stamping_switched_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first socket asking for stamps switches the host's stamping on, the last closing
    switches it off, each time from a kernel worker that takes mpnet's CPU: 0.1 ms inside every
    serial attempt's tcp phase (bench/stamp_toggle_bench.py). prepare_network, which runs
    before any clock, holds one socket with stamps on for good."""
    import mpnet.net.stamps as stamps
    from mpnet.net.prepare import prepare_network

    monkeypatch.setattr(stamps, "_holder", None)
    prepare_network([])
    holder = stamps._holder
    assert holder is not None
    assert SO_TIMESTAMPNS is not None
    assert holder.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 1
    prepare_network([])
    assert stamps._holder is holder  # once per process, not once per run
    holder.close()


async def test_kernel_rtt_is_none_when_getsockopt_fails(
    monkeypatch: pytest.MonkeyPatch, echo_server: EchoServer
) -> None:
    real_getsockopt = socket.socket.getsockopt
    asked: list[int] = []

    def refusing_getsockopt(self: socket.socket, level: int, option: int, *args: int) -> object:
        if option == getattr(socket, "TCP_INFO", None):
            asked.append(option)
            raise OSError(95, "Operation not supported")
        return real_getsockopt(self, level, option, *args)

    monkeypatch.setattr(socket.socket, "getsockopt", refusing_getsockopt)
    conn = await dial(
        f"http://127.0.0.1:{echo_server.port}/",
        proxy=direct_decision(),
        tls=insecure_decision(),
        timeout=10,
    )
    await conn.aclose()
    assert conn.peer.tcp_rtt_kernel_ms is None
    assert asked or not LINUX  # on Linux the option was really asked for


# -- TCP_NODELAY and one write per request head -------------------------------------------------


def _nodelay(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    assert sock is not None
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.parametrize(("proxy_name", "scheme"), PROXY_CASES)
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_dialed_sockets_have_tcp_nodelay(
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    echo_server: EchoServer,
    tls_echo_server: EchoServer,
    proxy_name: str | None,
    scheme: str | None,
    secure: bool,
) -> None:
    # Nagle plus delayed ACK holds small writes back ~40 ms behind a proxy
    # (bench/proxy_write_stall.py).
    server = tls_echo_server if secure else echo_server
    conn = await dial(
        f"{'https' if secure else 'http'}://127.0.0.1:{server.port}/",
        proxy=_proxy(proxies, proxy_name, scheme),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    try:
        assert _nodelay(conn.writer.transport) == 1
    finally:
        await conn.aclose()


class _WriteRecorder:
    """Records every StreamWriter.write call (the bytes handed over in each)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[bytes] = []
        real_write = asyncio.StreamWriter.write

        def write(writer: asyncio.StreamWriter, data: bytes) -> None:
            self.calls.append(bytes(data))
            real_write(writer, data)

        monkeypatch.setattr(asyncio.StreamWriter, "write", write)


async def test_connect_request_is_one_write(
    monkeypatch: pytest.MonkeyPatch,
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    echo_server: EchoServer,
) -> None:
    writes = _WriteRecorder(monkeypatch)
    conn = await dial(
        f"http://127.0.0.1:{echo_server.port}/",
        proxy=_proxy(proxies, "http_auth", None),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    await conn.aclose()
    assert len(writes.calls) == 1
    head = writes.calls[0]
    assert head.startswith(f"CONNECT 127.0.0.1:{echo_server.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic " in head
    assert head.endswith(b"\r\n\r\n")
