"""The five library models: each documented rule, one row at a time.

Rows were cross-checked once against the real urllib (3.11), websockets (17.4) and aiohttp (3.14)
functions and against curl 7.88 on loopback; the tests themselves call no library.
"""

from __future__ import annotations

import pytest

from mpnet.core.libraries import (
    LIBRARIES,
    CaseConflict,
    case_conflicts,
    curl_no_proxy_match,
    library_verdicts,
    urllib_bypass,
    urllib_proxies,
)
from mpnet.core.proxy import resolve_proxy

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


# -- https_proxy and HTTPS_PROXY ------------------------------------------------------------------

A = "http://lower:3128"
B = "http://u:pw@upper:3128"
B_SHOWN = "http://u:***@upper:3128"
ALL_TOOLS = ("mpnet", *LIBRARIES)


def _who(conflict: CaseConflict) -> dict[str, tuple[str, ...]]:
    return {spelling.name: spelling.read_by for spelling in conflict.spellings}


@pytest.mark.parametrize(
    ("url", "env", "read_by"),
    [
        (
            "https://x.test/",
            {"https_proxy": A, "HTTPS_PROXY": B},
            {"https_proxy": ALL_TOOLS, "HTTPS_PROXY": ()},
        ),
        (
            # Set but empty: mpnet and urllib's table let it disable HTTPS_PROXY; curl skips it.
            "https://x.test/",
            {"https_proxy": "", "HTTPS_PROXY": B},
            {
                "https_proxy": ("mpnet", "urllib", "aiohttp", "websockets", "httpx"),
                "HTTPS_PROXY": ("curl",),
            },
        ),
        (
            # curl reads http_proxy only in lower case, and an empty one is unset.
            "http://x.test/",
            {"http_proxy": "", "HTTP_PROXY": B},
            {"http_proxy": ("mpnet", "urllib", "aiohttp", "websockets", "httpx"), "HTTP_PROXY": ()},
        ),
        (
            "wss://x.test/ws",
            {"HTTPS_PROXY": B, "https_proxy": A},
            {"HTTPS_PROXY": (), "https_proxy": ("mpnet", "websockets", "httpx", "curl")},
        ),
        (
            "https://x.test/",
            {"https_proxy": A, "NO_PROXY": ".corp", "no_proxy": ".other"},
            {"NO_PROXY": (), "no_proxy": ALL_TOOLS},
        ),
    ],
)
def test_case_conflicts_say_which_spelling_each_tool_reads(
    url: str, env: dict[str, str], read_by: dict[str, tuple[str, ...]]
) -> None:
    (conflict,) = case_conflicts(url, env)
    assert [s.name for s in conflict.spellings] == [name for name in env if name in read_by]
    assert _who(conflict) == read_by
    for spelling in conflict.spellings:
        assert set(spelling.read_by) | set(spelling.ignored_by) == set(ALL_TOOLS)
        assert not set(spelling.read_by) & set(spelling.ignored_by)


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("https://x.test/", {"https_proxy": A, "HTTPS_PROXY": B}),
        ("https://x.test/", {"https_proxy": "", "HTTPS_PROXY": B}),
        ("http://x.test/", {"http_proxy": A, "HTTP_PROXY": B}),
        ("http://x.test/", {"http_proxy": "", "HTTP_PROXY": B, "all_proxy": A}),
        ("ws://x.test/", {"http_proxy": A, "HTTP_PROXY": B}),
        ("wss://x.test/", {"HTTPS_PROXY": B, "https_proxy": A}),
        ("https://x.test/", {"ALL_PROXY": B, "all_proxy": A}),
    ],
)
def test_what_a_tool_reads_is_what_its_verdict_uses(url: str, env: dict[str, str]) -> None:
    """The conflict report and the verdicts come from the same model: a tool said to read a
    spelling holding a proxy uses that proxy, and mpnet's own decision names that spelling."""
    verdicts = library_verdicts(url, env)
    decision = resolve_proxy(url, env=env)
    for conflict in case_conflicts(url, env):
        for spelling in conflict.spellings:
            if not env[spelling.name]:
                continue
            for tool in spelling.read_by:
                if tool == "mpnet":
                    assert decision.source == spelling.name
                elif not verdicts[tool].startswith("error:"):
                    assert verdicts[tool] == spelling.value, (tool, spelling)


def test_no_conflict_when_the_values_agree_or_nobody_reads_them() -> None:
    assert case_conflicts("https://x.test/", {"https_proxy": A, "HTTPS_PROXY": A}) == ()
    # http_proxy does not matter to an https URL, for any tool.
    assert case_conflicts("https://x.test/", {"http_proxy": A, "HTTP_PROXY": B}) == ()


def test_conflict_values_are_redacted_and_names_kept_as_set() -> None:
    (conflict,) = case_conflicts("https://x.test/", {"Https_Proxy": B, "https_proxy": A})
    assert {s.name: s.value for s in conflict.spellings} == {
        "Https_Proxy": B_SHOWN,
        "https_proxy": A,
    }
    assert "pw" not in str(conflict.to_dict())
