"""No proxy password reaches any output: ProxyURL's repr/str/redacted, resolve_proxy's decision,
trace and JSON, the library verdicts, or a parse error; for any user and password, quoted or
typed raw into the URL."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mpnet.core.libraries import library_verdicts
from mpnet.core.proxy import resolve_proxy
from mpnet.core.proxy_url import (
    PROXY_SCHEMES,
    REDACTED,
    parse_proxy_url,
    redact_proxy_text,
)
from mpnet.errors import InvalidProxyURL

HOSTS = ("proxy.corp", "127.0.0.1", "[::1]")


def _outputs_of_env_proxy(url: str) -> list[str]:
    """Every text mpnet derives from ``url`` as an environment proxy, errors included."""
    texts: list[str] = []
    try:
        proxy = parse_proxy_url(url, where="HTTPS_PROXY")
        texts += [repr(proxy), str(proxy), proxy.redacted(), f"{proxy!r}"]
    except InvalidProxyURL as exc:
        texts += [str(exc), repr(exc)]
    for kwargs in ({}, {"cli": parse_proxy_url("http://cli:3128")}):
        try:
            decision = resolve_proxy("https://x.example.com", env={"HTTPS_PROXY": url}, **kwargs)
            texts += [repr(decision), str(decision.to_dict())]
            texts += [str(t.to_dict()) for t in decision.trace]
        except InvalidProxyURL as exc:
            texts += [str(exc), repr(exc)]
    for target in ("https://x.example.com", "wss://x.example.com"):
        texts += list(library_verdicts(target, {"HTTPS_PROXY": url, "wss_proxy": url}).values())
    texts.append(redact_proxy_text(url))
    return texts


def _not_in_fixed_text(neutral_url: str, *secrets: str) -> bool:
    """False when a candidate password is a word mpnet prints anyway (``unset``, ``no_proxy``):
    the outputs for the same URL with a neutral password already contain it."""
    fixed = "\n".join(_outputs_of_env_proxy(neutral_url))
    return not any(secret in fixed for secret in secrets)


@given(
    scheme=st.sampled_from(PROXY_SCHEMES),
    host=st.sampled_from(HOSTS),
    port=st.integers(min_value=1, max_value=65535),
    user=st.text(max_size=12),
    password=st.text(min_size=4, max_size=16),
)
def test_quoted_credentials_never_leak(
    scheme: str, host: str, port: int, user: str, password: str
) -> None:
    quoted = quote(password, safe="")
    rest = f"{scheme}://{quote(user, safe='')}:{REDACTED}@{host}:{port}"
    assume(password not in rest and quoted not in rest)
    assume(_not_in_fixed_text(rest.replace(REDACTED, "zzzz"), password, quoted))
    url = rest.replace(REDACTED, quoted)
    for text in _outputs_of_env_proxy(url):
        assert password not in text and quoted not in text, text


@given(
    scheme=st.sampled_from((*PROXY_SCHEMES, "ftp", "")),
    host=st.sampled_from(HOSTS),
    user=st.text(max_size=12),
    password=st.text(min_size=4, max_size=16),
    tail=st.sampled_from(("", ":3128", ":99999", ":", "/path", "?q")),
)
def test_raw_credentials_never_leak(
    scheme: str, host: str, user: str, password: str, tail: str
) -> None:
    prefix = f"{scheme}://" if scheme else ""
    rest = f"{prefix}{user}:{REDACTED}@{host}{tail}"
    assume(password not in rest)
    # urlsplit drops tabs and newlines, and strip() trims the ends: both may glue a password
    # onto its neighbours, which is no leak of the password as typed.
    assume(password.strip() == password and not any(c in password for c in "\t\r\n"))
    assume(_not_in_fixed_text(rest.replace(REDACTED, "zzzz"), password))
    url = rest.replace(REDACTED, password)
    for text in _outputs_of_env_proxy(url):
        assert password not in text, text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://u:pw@h:1", "http://u:***@h:1"),
        ("u:pw@h:1", "u:***@h:1"),
        ("http://u:p/w@h", "http://u:***@h"),
        ("http://u:p@w@h", "http://u:***@h"),
        ("http://u@h", "http://u@h"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_redact_proxy_text(text: str, shown: str) -> None:
    assert redact_proxy_text(text) == shown


def test_redacted_quotes_user() -> None:
    proxy = parse_proxy_url("http://a%40b%3Ac:secret1@h:1")
    assert proxy.username == "a@b:c"
    assert proxy.redacted() == "http://a%40b%3Ac:***@h:1"
