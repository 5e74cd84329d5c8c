"""The five library models: each documented rule, one row at a time.

Rows were cross-checked once against the real urllib (3.11), websockets (17.4) and aiohttp (3.14)
functions and against curl 7.88 on loopback; the tests themselves call no library.
"""

from __future__ import annotations

import pytest

from mpnet.core.libraries import (
    LIBRARIES,
    curl_no_proxy_match,
    library_verdicts,
    urllib_bypass,
    urllib_proxies,
)

P = "http://corp:3128"
Q = "http://other:8080"
S5 = "socks5h://sock:1080"
D = "direct"

# (case, url, env, {library: expected}); libraries not named are not checked in that row.
ROWS: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    (
        "issue acceptance: HTTPS_PROXY with NO_PROXY elsewhere",
        "https://api.example.com/x",
        {"HTTPS_PROXY": "http://u:pw@corp:3128", "NO_PROXY": ".internal"},
        dict.fromkeys(LIBRARIES, "http://u:***@corp:3128"),
    ),
    (
        "leading dot: httpx only matches below the domain",
        "https://example.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": ".example.com"},
        {"urllib": D, "aiohttp": D, "websockets": D, "httpx": P, "curl": D},
    ),
    (
        "leading dot: subdomain matches everywhere",
        "https://www.example.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": ".example.com"},
        dict.fromkeys(LIBRARIES, D),
    ),
    (
        "CIDR: only curl (httpx matches the network address only)",
        "https://10.1.2.3/",
        {"HTTPS_PROXY": P, "NO_PROXY": "10.0.0.0/8"},
        {"urllib": P, "aiohttp": P, "websockets": P, "httpx": P, "curl": D},
    ),
    (
        "CIDR: httpx matches the network address itself",
        "https://10.0.0.0/",
        {"HTTPS_PROXY": P, "NO_PROXY": "10.0.0.0/8"},
        {"httpx": D, "urllib": P},
    ),
    (
        "IPv6 CIDR: httpx cannot build its client",
        "https://x.com/",
        {"NO_PROXY": "fd00::/8"},
        {"httpx": "error: httpx cannot parse NO_PROXY entry 'fd00::/8' (IPv6 CIDR)", "curl": D},
    ),
    (
        "localhost does not match 127.0.0.1 anywhere",
        "https://127.0.0.1/",
        {"HTTPS_PROXY": P, "NO_PROXY": "localhost"},
        dict.fromkeys(LIBRARIES, P),
    ),
    (
        "star alone bypasses everywhere",
        "https://x.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": "*"},
        dict.fromkeys(LIBRARIES, D),
    ),
    (
        "star in a list: only httpx honours it",
        "https://x.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": "a.com,*"},
        {"urllib": P, "aiohttp": P, "websockets": P, "httpx": D, "curl": P},
    ),
    (
        "port entry, default port: websockets compares host:effective-port",
        "https://x.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": "x.com:443"},
        {"urllib": P, "aiohttp": P, "websockets": D, "httpx": P, "curl": P},
    ),
    (
        "port entry, explicit port: urllib, websockets, httpx",
        "https://x.com:8443/",
        {"HTTPS_PROXY": P, "NO_PROXY": "x.com:8443"},
        {"urllib": D, "aiohttp": P, "websockets": D, "httpx": D, "curl": P},
    ),
    (
        "IPv6 literal entry",
        "https://[::1]:8443/",
        {"HTTPS_PROXY": P, "NO_PROXY": "::1"},
        {"urllib": P, "aiohttp": D, "websockets": D, "httpx": D, "curl": D},
    ),
    (
        "bracketed IPv6 entry: urllib only",
        "https://[::1]/",
        {"HTTPS_PROXY": P, "NO_PROXY": "[::1]"},
        {"urllib": D, "aiohttp": P, "websockets": P, "httpx": P, "curl": P},
    ),
    (
        "blank inside the list ends curl's list",
        "https://www.example.com/",
        {"HTTPS_PROXY": P, "NO_PROXY": "localhost www.example.com"},
        {"curl": P, "urllib": P},
    ),
    (
        "empty lower-case https_proxy: disables HTTPS_PROXY except in curl",
        "https://x.com/",
        {"https_proxy": "", "HTTPS_PROXY": P},
        {"urllib": D, "aiohttp": D, "websockets": D, "httpx": D, "curl": P},
    ),
    (
        "empty no_proxy: disables NO_PROXY except in curl",
        "https://x.com/",
        {"HTTPS_PROXY": P, "no_proxy": "", "NO_PROXY": "x.com"},
        {"urllib": P, "httpx": P, "curl": D},
    ),
    (
        "upper-case HTTP_PROXY: curl never reads it",
        "http://x.com/",
        {"HTTP_PROXY": P},
        {"urllib": P, "aiohttp": P, "httpx": P, "curl": D, "websockets": P},
    ),
    (
        "REQUEST_METHOD drops HTTP_PROXY in the urllib family",
        "http://x.com/",
        {"HTTP_PROXY": P, "REQUEST_METHOD": "GET"},
        {"urllib": D, "aiohttp": D, "httpx": D, "websockets": D},
    ),
    (
        "ALL_PROXY: httpx and curl only",
        "https://x.com/",
        {"ALL_PROXY": S5},
        {"urllib": D, "aiohttp": D, "websockets": D, "httpx": S5, "curl": S5},
    ),
    (
        "wss target: aiohttp and urllib look only at WSS_PROXY",
        "wss://x.com/ws",
        {"HTTPS_PROXY": P},
        {"urllib": D, "aiohttp": D, "websockets": P, "httpx": P, "curl": P},
    ),
    (
        "wss_proxy is honoured by all but httpx",
        "wss://x.com/ws",
        {"wss_proxy": Q, "HTTPS_PROXY": P},
        {"urllib": Q, "aiohttp": Q, "websockets": Q, "httpx": P, "curl": Q},
    ),
    (
        "ws target: websockets falls back to http_proxy, curl to lower-case http_proxy",
        "ws://x.com/ws",
        {"http_proxy": P},
        {"websockets": P, "curl": P, "aiohttp": D, "httpx": P},
    ),
    (
        "websockets: socks_proxy wins over https_proxy",
        "wss://x.com/ws",
        {"socks_proxy": S5, "https_proxy": P},
        {"websockets": S5, "curl": P},
    ),
    (
        "websockets: https_proxy serves ws too",
        "ws://x.com/ws",
        {"https_proxy": P},
        {"websockets": P, "curl": D},
    ),
    (
        "aiohttp: socks proxy is an error",
        "https://x.com/",
        {"HTTPS_PROXY": S5},
        {"websockets": S5, "httpx": S5, "curl": S5},
    ),
    (
        "aiohttp: https:// proxy is dropped",
        "https://x.com/",
        {"HTTPS_PROXY": "https://corp:443"},
        {"aiohttp": D, "curl": "https://corp:443", "httpx": "https://corp:443"},
    ),
    (
        "proxy without scheme: curl and httpx assume http",
        "https://x.com/",
        {"HTTPS_PROXY": "corp:3128"},
        {"curl": "http://corp:3128", "httpx": "http://corp:3128", "urllib": "http://corp:3128"},
    ),
]


@pytest.mark.parametrize(
    ("url", "env", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_verdicts(url: str, env: dict[str, str], expected: dict[str, str]) -> None:
    verdicts = library_verdicts(url, env)
    assert set(verdicts) == set(LIBRARIES)
    for library, verdict in expected.items():
        assert verdicts[library] == verdict, library


@pytest.mark.parametrize(
    ("url", "env", "library", "words"),
    [
        ("https://x.com", {"HTTPS_PROXY": S5}, "aiohttp", "SOCKS"),
        ("https://x.com", {"https_proxy": S5}, "urllib", "SOCKS"),
        ("ws://x.com", {"ws_proxy": P}, "aiohttp", "CONNECT"),
        ("wss://x.com", {"wss_proxy": "ftp://a:1"}, "websockets", "isn't supported"),
        ("https://x.com", {"ALL_PROXY": "socks4://a:1"}, "httpx", "unknown proxy scheme"),
        ("https://x.com", {"HTTPS_PROXY": "ftp://a:1"}, "curl", "unsupported proxy scheme"),
        ("https://x.com", {"HTTPS_PROXY": "corp:3128"}, "aiohttp", "no scheme"),
    ],
)
def test_errors(url: str, env: dict[str, str], library: str, words: str) -> None:
    verdict = library_verdicts(url, env)[library]
    assert verdict.startswith("error: ") and words in verdict


def test_verdicts_never_show_the_password() -> None:
    env = {"HTTPS_PROXY": "socks5://u:hunter22@s:1", "wss_proxy": "corp:hunter22@w:1"}
    for url in ("https://x.com", "wss://x.com", "ws://x.com"):
        for verdict in library_verdicts(url, env).values():
            assert "hunter22" not in verdict


def test_urllib_proxies_two_passes() -> None:
    env = {"HTTPS_PROXY": P, "https_proxy": Q, "FTP_PROXY": P, "ftp_proxy": "", "NO_PROXY": "a"}
    assert urllib_proxies(env) == {"https": Q, "no": "a"}


@pytest.mark.parametrize(
    ("host", "no_proxy", "expected"),
    [
        ("x.com", "x.com", True),
        ("www.x.com", "..x.com", True),
        ("x.com:8080", "x.com", True),
        ("x.com:8080", "x.com:8080", True),
        ("x.com", "x.com:8080", False),
        ("127.0.0.1", "0.0.1", True),  # plain string suffix, IPs included
        ("x.com", " * ", False),
    ],
)
def test_urllib_bypass(host: str, no_proxy: str, expected: bool) -> None:
    assert urllib_bypass(host, {"no": no_proxy}) is expected


@pytest.mark.parametrize(
    ("host", "no_proxy", "expected"),
    [
        ("x.com", "*", True),
        ("x.com", "a, *", False),
        ("x.com", "a,,  x.com", True),
        ("x.com", "a x.com", False),
        ("x.com", "x.com:443", False),
        ("::1", "[::1]", False),
        ("::1", "::/0", False),
        ("127.0.0.1", "127.0.0.1/0", True),
        ("10.9.9.9", "10.0.0.0/8", True),
    ],
)
def test_curl_no_proxy(host: str, no_proxy: str, expected: bool) -> None:
    assert curl_no_proxy_match(host, no_proxy) is expected
