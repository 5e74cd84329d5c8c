"""The NO_PROXY matcher: every entry form, ports, whitespace, and that it never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpnet.core.noproxy import match_no_proxy, parse_no_proxy

CASES = [
    # (host, port, no_proxy, expected match)
    ("example.com", 443, "*", "*"),
    ("10.1.2.3", 80, "foo,*", "*"),
    ("example.com", 443, "example.com", "example.com"),
    ("www.example.com", 443, "example.com", "example.com"),
    ("example.com", 443, ".example.com", ".example.com"),
    ("a.b.example.com", 443, ".example.com", ".example.com"),
    ("ample.com", 443, "example.com", None),
    ("example.com", 443, "ample.com", None),
    ("nexample.com", 443, ".example.com", None),
    ("EXAMPLE.Com", 443, "example.COM", "example.COM"),
    ("example.com.", 443, "example.com", "example.com"),
    ("example.com", 443, "example.com.", "example.com."),
    ("example.com", 443, "other.com , example.com ", "example.com"),
    ("example.com", 443, ",,, example.com,,", "example.com"),
    ("example.com", 443, "", None),
    ("example.com", 443, " , ", None),
    ("127.0.0.1", 80, "localhost", None),
    ("localhost", 80, "127.0.0.1", None),
    ("localhost", 80, "localhost", "localhost"),
    ("127.0.0.1", 80, "127.0.0.1", "127.0.0.1"),
    ("127.0.0.2", 80, "127.0.0.1", None),
    ("127.0.0.2", 80, "127.0.0.0/8", "127.0.0.0/8"),
    ("10.0.0.1", 80, "127.0.0.0/8", None),
    ("127.9.9.9", 80, "127.0.0.1/8", "127.0.0.1/8"),
    ("192.168.0.1", 80, "192.168.0.0/33", None),
    ("192.168.0.1", 80, "192.168.0.0/a16", None),
    ("192.168.0.1", 80, "192.168.0.0/16a", None),
    ("192.168.0.1", 80, "192.168.0.0/", None),
    ("192.168.0.1", 80, "192.168.0.0/ 16", None),
    ("192.168.0.1", 80, "0.0.0.0/0", "0.0.0.0/0"),
    ("::1", 443, "::1", "::1"),
    ("[::1]", 443, "::1", "::1"),
    ("::1", 443, "[::1]", "[::1]"),
    ("[::1]", 8080, "[::1]:8080", "[::1]:8080"),
    ("[::1]", 8081, "[::1]:8080", None),
    ("2001:db8::5", 443, "2001:db8::/32", "2001:db8::/32"),
    ("2001:db8::5", 443, "[2001:db8::]/32", "[2001:db8::]/32"),
    ("2001:db9::5", 443, "2001:db8::/32", None),
    ("::1", 443, "::1/129", None),
    ("::1", 443, "127.0.0.1", None),
    ("127.0.0.1", 443, "::1", None),
    ("::ffff:127.0.0.1", 443, "127.0.0.0/8", None),
    ("example.com", 8443, "example.com:8443", "example.com:8443"),
    ("example.com", 443, "example.com:8443", None),
    ("www.example.com", 443, ".example.com:443", ".example.com:443"),
    ("example.com", None, "example.com:443", None),
    ("10.0.0.1", 8080, "10.0.0.1:8080", "10.0.0.1:8080"),
    ("10.0.0.1", 8080, "10.0.0.1:80", None),
    ("example.com", 443, "example.com:0", None),
    ("example.com", 443, "example.com:http", None),
    ("example.com", 443, "*.example.com", None),
    ("www.example.com", 443, "localhost .example.com", None),
    ("www.example.com", 443, "localhost .example.com, www.example.com", "www.example.com"),
    ("example.com", 443, ".", None),
    ("example.com", 443, "[example.com]", None),
    ("fe80::1%eth0", 443, "fe80::/10", "fe80::/10"),
]


@pytest.mark.parametrize(("host", "port", "no_proxy", "expected"), CASES)
def test_match(host: str, port: int | None, no_proxy: str, expected: str | None) -> None:
    assert match_no_proxy(host, port, no_proxy) == expected


def test_first_matching_entry_is_reported() -> None:
    assert match_no_proxy("www.example.com", 443, "www.example.com,.example.com") == (
        "www.example.com"
    )


@pytest.mark.parametrize(
    ("entry", "kind", "problem_word"),
    [
        ("*", "any", ""),
        (".Example.COM.", "domain", ""),
        ("10.0.0.0/8", "network", ""),
        ("10.0.0.1", "address", ""),
        ("[::1]:8080", "address", ""),
        ("10.0.0.0/33", "invalid", "prefix"),
        ("host:99999", "invalid", "port"),
        ("a b", "invalid", "whitespace"),
        ("*.example.com", "invalid", "wildcard"),
        ("[::1", "invalid", "["),
        ("[name]", "invalid", "IPv6"),
    ],
)
def test_parse_kinds(entry: str, kind: str, problem_word: str) -> None:
    (parsed,) = parse_no_proxy(entry)
    assert parsed.kind == kind
    assert parsed.text == entry.strip()
    assert problem_word in parsed.problem
    assert bool(parsed.problem) is (kind == "invalid")


def test_parse_normalises_domain() -> None:
    (parsed,) = parse_no_proxy(" .Example.COM. ")
    assert parsed.domain == "example.com"
    assert parsed.text == ".Example.COM."


def test_parse_drops_empty_entries() -> None:
    assert [e.text for e in parse_no_proxy(" a ,, ,b,")] == ["a", "b"]


NO_PROXY_ALPHABET = st.sampled_from(
    [*"abc.:/[]*,% \t0123456789fe", "::", "/33", "%eth0", "\x00", "\u00b2", "\u0663"]
)


@given(
    value=st.one_of(st.text(), st.lists(NO_PROXY_ALPHABET).map("".join)),
    host=st.one_of(st.text(), st.lists(NO_PROXY_ALPHABET).map("".join)),
    port=st.one_of(st.none(), st.integers(min_value=-1, max_value=70000)),
)
def test_never_raises(value: str, host: str, port: int | None) -> None:
    result = match_no_proxy(host, port, value)
    assert result is None or result in [e.text for e in parse_no_proxy(value)]


@given(value=st.text())
def test_parse_never_raises_and_keeps_text(value: str) -> None:
    for entry in parse_no_proxy(value):
        assert entry.text and entry.text == entry.text.strip()
        assert entry.text in value
