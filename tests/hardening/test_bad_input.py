"""Bad-input sweep (issue 7): whatever a user types or a server sends, mpnet answers with one of
its own errors, in the right phase, with a readable message, and never hangs.

Part 1 drives the pure parsers (proxy URLs, NO_PROXY, profile and config YAML) with Hypothesis.
Part 2 points the network layer and the probe engine at garbage servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpnet.config.file import parse_config_text
from mpnet.config.profiles import parse_profile_text, shipped_profiles_dir
from mpnet.core.noproxy import match_no_proxy, parse_no_proxy
from mpnet.core.proxy import ProxyDecision, resolve_proxy
from mpnet.core.proxy_url import ProxyURL, parse_proxy_url
from mpnet.errors import (
    ConfigError,
    InvalidConfigFile,
    InvalidProfile,
    InvalidProxyURL,
)

# As many examples as the loaded profile says (tests/conftest.py: quick, or thorough in CI).
SWEEP = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- proxy URLs ---------------------------------------------------------------------------------

SCHEMES = (
    "http",
    "https",
    "socks4",
    "socks4a",
    "socks5",
    "socks5h",
    "HTTP",
    "SoCkS5H",
    "ftp",
    "ws",
    "socks",
    "socks6",
    "1http",
    "ht tp",
    "",
)
SEPARATORS = ("://", "://", "://", ":/", "//", ":", ":///")
HOSTS = (
    "proxy.example",
    "127.0.0.1",
    "[::1]",
    "::1",
    "[::1",
    "::1]",
    "[fe80::1%25eth0]",
    "[fe80::1%eth0]",
    "[v1.fe]",
    "[127.0.0.1]",
    "[]",
    "",
    "ho st",
    "hôst.example",
    "h\u2100st",
    "h\uff03x",
    "a@b",
    "a:b",
    "%00",
    "xn--",
    "[::ffff:127.0.0.1]",
)
RESERVED = "@:/#?%"
PASSWORDS = st.text(alphabet=st.sampled_from("aZ9-._~ " + RESERVED), max_size=12)


def _userinfo(user: str, password: str | None, encoded: bool) -> str:
    if encoded:
        user, password = quote(user, safe=""), None if password is None else quote(password, "")
    return user + ("" if password is None else f":{password}") + "@"


@st.composite
def near_miss_proxy_urls(draw: st.DrawFn) -> str:
    """URLs that are almost right: a plausible shape with one or more parts bent."""
    scheme = draw(st.sampled_from(SCHEMES))
    separator = draw(st.sampled_from(SEPARATORS))
    userinfo = ""
    if draw(st.booleans()):
        user = draw(st.text(alphabet=st.sampled_from("ab1" + RESERVED), max_size=6))
        password = draw(st.none() | PASSWORDS)
        userinfo = _userinfo(user, password, draw(st.booleans()))
    host = draw(st.sampled_from(HOSTS) | st.text(max_size=8))
    port = draw(
        st.none()
        | st.integers(min_value=-5, max_value=70000).map(str)
        | st.text(alphabet=st.sampled_from("0123456789abc +-_\u0663\u00b2"), max_size=6)
    )
    tail = draw(st.sampled_from(("", "/", "/path", "?q=1", "#frag", "/?#", "//", "/%zz")))
    return f"{scheme}{separator}{userinfo}{host}{'' if port is None else ':' + port}{tail}"


def _parse_or_invalid(text: str) -> ProxyURL | InvalidProxyURL:
    try:
        return parse_proxy_url(text, where="--proxy")
    except InvalidProxyURL as exc:
        return exc


@SWEEP
@given(text=st.text())
@example(text="http://u:p@[::1:80")
@example(text="http://[fe80::1%eth0]:80")
@example(text="socks5://u:p%zz@h:1")
@example(text="http://h:\u00b2")
def test_parse_proxy_url_arbitrary_text_raises_only_invalid_proxy_url(text: str) -> None:
    outcome = _parse_or_invalid(text)
    if isinstance(outcome, ProxyURL):
        assert 1 <= outcome.port <= 65535
        assert outcome.host
    else:
        assert outcome.message.startswith("--proxy")


@SWEEP
@given(text=near_miss_proxy_urls())
@example(text="http://user:S3cr3t-Pa55w0rd-x9@host:notaport")
@example(text="http://us%40er:p%3Ass@[::1]:-5")
@example(text="socks5h://a:b@[::1]:70000/#")
def test_parse_proxy_url_near_misses_raise_only_invalid_proxy_url(text: str) -> None:
    outcome = _parse_or_invalid(text)
    if isinstance(outcome, ProxyURL):
        # What was accepted must survive a round trip through its own (credential-bearing) form.
        assert parse_proxy_url(outcome.with_credentials()) == outcome
    else:
        assert outcome.message.startswith("--proxy")


@SWEEP
@given(
    text=near_miss_proxy_urls(),
    control=st.sampled_from("\n\r\t\x00\x1b\x7f"),
    where=st.floats(min_value=0.0, max_value=1.0),
)
@example(text="http://proxy.corp:3128", control="\n", where=0.9)
def test_a_control_character_is_named_as_such(text: str, control: str, where: float) -> None:
    """urlsplit drops newlines and tabs silently (so two pasted URLs become one with a bad
    port); mpnet names the character instead, wherever it is."""
    raw = text.strip()
    cut = 1 + int(where * max(0, len(raw) - 1))
    outcome = _parse_or_invalid(f"x{raw[:cut]}{control}{raw[cut:]}x")
    assert isinstance(outcome, InvalidProxyURL)
    assert "a control character" in outcome.message
    assert outcome.message.endswith("); a proxy URL is one line")
    if not any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        assert f"U+{ord(control):04X})" in outcome.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("http://" + "a" * 254 + ":1", "the host name is 254 characters long"),
        (
            "http://" + "a" * 63 + "." + "b" * 64 + ":1",
            "is 64 characters long; DNS allows at most 63",
        ),
        ("http://a..b:1", "has an empty label"),
        ("http://u:p w@h:1", "must be percent-encoded as %20"),
        ("http://u\tx:p@h:1", "a tab (a control character"),
    ],
)
def test_proxy_hosts_dns_cannot_hold_are_refused(text: str, problem: str) -> None:
    outcome = _parse_or_invalid(text)
    assert isinstance(outcome, InvalidProxyURL) and problem in outcome.message
    assert "p w" not in outcome.message


@pytest.mark.parametrize(
    "host", ["a" * 63 + ".example", ".".join(["a" * 63] * 3 + ["b" * 61]), "[::1]", "x."]
)
def test_proxy_hosts_at_the_limits_are_accepted(host: str) -> None:
    assert isinstance(_parse_or_invalid(f"http://{host}:3128"), ProxyURL)


@SWEEP
@given(
    text=near_miss_proxy_urls() | st.text(),
    variable=st.sampled_from(("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")),
    target=st.sampled_from(("https://exchange.example/", "wss://[::1]:8443/ws")),
)
def test_env_proxy_values_raise_only_invalid_proxy_url(
    text: str, variable: str, target: str
) -> None:
    try:
        decision = resolve_proxy(target, env={variable: text})
    except InvalidProxyURL as exc:
        assert exc.message.startswith(variable)
    else:
        assert isinstance(decision, ProxyDecision)


# -- NO_PROXY -----------------------------------------------------------------------------------

NO_PROXY_PIECES = st.sampled_from(
    (
        "[",
        "]",
        "::",
        ":",
        "/",
        "%",
        ".",
        "*",
        ",",
        " ",
        "\t",
        "0",
        "1",
        "8",
        "33",
        "128",
        "129",
        "65536",
        "ff",
        "fe80",
        "127.0.0.1",
        "::1",
        "::ffff:",
        "10.0.0.0/8",
        "[fd00::]/8",
        "eth0",
        "example.com",
        "-",
        "\u0663",
        "\u00b2",
    )
)
NO_PROXY_GARBAGE = st.lists(NO_PROXY_PIECES, max_size=12).map("".join) | st.text()
TARGET_HOSTS = st.sampled_from(
    (
        "127.0.0.1",
        "::1",
        "[::1]",
        "fe80::1%eth0",
        "example.com",
        "",
        "[",
        "10.1.2.3",
        "::ffff:1.2.3.4",
    )
)


@SWEEP
@given(
    host=TARGET_HOSTS | st.text(max_size=10),
    port=st.none() | st.integers(min_value=-1, max_value=70000),
    value=NO_PROXY_GARBAGE,
)
@example(host="::1", port=443, value="[::1/64]:443")
@example(host="fe80::1%eth0", port=None, value="fe80::/10,[fe80::1%eth0]")
@example(host="1.2.3.4", port=80, value="1.2.3.4/\u00b2,::ffff:1.2.3.4/0129")
def test_match_no_proxy_never_raises(host: str, port: int | None, value: str) -> None:
    entry = match_no_proxy(host, port, value)
    assert entry is None or entry in [e.text for e in parse_no_proxy(value)]


@SWEEP
@given(
    value=NO_PROXY_GARBAGE,
    variable=st.sampled_from(("NO_PROXY", "no_proxy")),
    target=st.sampled_from(
        ("https://exchange.example/", "wss://[::1]:8443/ws", "http://10.0.0.1:81/", "ws://h/")
    ),
)
def test_resolve_proxy_with_any_no_proxy_raises_only_config_errors(
    value: str, variable: str, target: str
) -> None:
    env = {"HTTPS_PROXY": "http://127.0.0.1:3128", "HTTP_PROXY": "socks5h://[::1]:1080"}
    env[variable] = value
    try:
        decision = resolve_proxy(target, env=env)
    except ConfigError:
        pass
    else:
        assert decision.layer in ("env", "default")


# -- profile and config YAML --------------------------------------------------------------------

LINE_NUMBERED = r"^{}:\d+"


def _assert_located(exc: ConfigError, path: str) -> None:
    assert re.match(LINE_NUMBERED.format(re.escape(path)), exc.message), exc.message
    assert "\n" not in exc.message.strip()


def _load_profile(text: str, path: str = "sweep/p.yaml") -> None:
    try:
        parse_profile_text(text, path)
    except InvalidProfile as exc:
        _assert_located(exc, path)


def _load_config(text: str, path: str = "sweep/mpnet.yaml") -> None:
    try:
        parse_config_text(text, path)
    except InvalidConfigFile as exc:
        _assert_located(exc, path)


YAML_TRAPS = (
    "!!int abc",
    "a: !!float x",
    "name: !!bool maybe",
    "!!timestamp nope",
    "&a [*a]",
    "proxy: &p {https: *p}",
    "\x00",
    "a: b\n\nc: \x07",
    "[" * 1000,
    "[" * 400 + "]" * 400,
    "? [a]\n: b",
    "!!python/object:os.system x",
    "proxy: !!binary '@@'",
    "exchanges: {null: {}}",
    "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n"
        for i in range(8)
    ),
    "%YAML 1.1\n%YAML 1.1\n--- a",
    "--- a\n--- b",
    "a: 'unterminated",
    "\ufeff\ufeffa: 1",
    "a:\n\t- b",
)


#: Python tags that an unsafe loader would act on: ``os.system`` is patched to record its calls.
PYTHON_TAG_TRAPS = (
    "!!python/name:os.system",
    "!!python/object/apply:os.system ['echo trap']",
    "name: !!python/object/apply:os.system ['echo trap']",
    "proxy: {https: !!python/object/apply:os.system ['echo trap']}",
)
#: Mappings tagged with a Python constructor around an otherwise valid document: the loader
#: drops a collection's tag and reads the plain mapping, where it should refuse the tag as it
#: does on a scalar. Nothing is executed (the tag is never constructed); the document loads.
TAGGED_VALID_MAPPINGS = (
    "!!python/object/apply:os.system {name: demo, title: Demo, rest: {base_url: 'https://a.b',"
    " health: {path: /}}}",
    "proxy: !!python/object/new:os.system {https: 'http://127.0.0.1:3128'}",
)


@pytest.fixture
def os_system_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Calls a YAML trap made to ``os.system`` (recorded, never run)."""
    calls: list[str] = []

    def record(*args: object, **kwargs: object) -> int:
        calls.append(" ".join(map(str, args)) if args else repr(kwargs))
        return 0

    monkeypatch.setattr(os, "system", record)
    return calls


def test_the_trap_detector_sees_an_unsafe_load(os_system_calls: list[str]) -> None:
    # What the next test guards against: an unsafe loader runs the tag's callable.
    yaml.unsafe_load(PYTHON_TAG_TRAPS[1])
    assert os_system_calls == ["echo trap"]


@pytest.mark.parametrize(
    "text",
    [
        *YAML_TRAPS,
        *PYTHON_TAG_TRAPS,
        *TAGGED_VALID_MAPPINGS,
    ],
    ids=range(len(YAML_TRAPS) + len(PYTHON_TAG_TRAPS) + len(TAGGED_VALID_MAPPINGS)),
)
def test_yaml_traps_raise_located_errors(text: str, os_system_calls: list[str]) -> None:
    for parse, error, path in (
        (parse_profile_text, InvalidProfile, "sweep/p.yaml"),
        (parse_config_text, InvalidConfigFile, "sweep/mpnet.yaml"),
    ):
        # Refused as a whole: a trap is never loaded into a profile or a config file.
        with pytest.raises(error) as info:
            parse(text, path)
        assert type(info.value) is error
        _assert_located(info.value, path)
    assert os_system_calls == [], "a YAML tag ran os.system"


@SWEEP
@given(text=st.text())
def test_profile_and_config_from_arbitrary_text(text: str) -> None:
    _load_profile(text)
    _load_config(text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        (
            "direct",
            "http://u:p@127.0.0.1:3128",
            "socks5h://[::1]:1080",
            "http://h:notaport",
            "wss://x/ws",
            "https://x",
            "GET",
            "gzip",
            "/path",
        )
    )
)
KEYS = st.sampled_from(
    (
        "name",
        "title",
        "rest",
        "websocket",
        "network",
        "proxy",
        "ssl",
        "exchanges",
        "url",
        "base_url",
        "health",
        "path",
        "subscribe",
        "data_match",
        "ping",
        "verify",
        "ca_bundle",
        "https",
        "no_proxy",
        "rest",
        "ws",
        "deribit",
        "bootstrap",
        "frame",
        "send",
        "expect",
    )
) | st.text(max_size=8)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5)


DOCUMENTS = st.recursive(SCALARS, _containers, max_leaves=25)


@pytest.mark.slow  # a YAML sweep: CI's slow step
@SWEEP
@given(document=DOCUMENTS, flow=st.booleans())
def test_profile_and_config_from_arbitrary_yaml_documents(document: Any, flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    _load_profile(text)
    _load_config(text)


SHIPPED = {
    p.stem: p.read_text(encoding="utf-8") for p in sorted(shipped_profiles_dir().glob("*.yaml"))
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a loaded YAML value."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], operation: str, replacement: Any) -> Any:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if operation == "delete":
        del parent[last]
    elif operation == "replace":
        parent[last] = replacement
    else:
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target["unknown_key_x"] = replacement
        else:
            parent[last] = {"unknown_key_x": replacement}
    return document


@st.composite
def mutated_profiles(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(SHIPPED)))
    document = yaml.safe_load(SHIPPED[name])
    paths = _paths(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(("delete", "replace", "insert")))
        document = _mutate(document, path, operation, draw(DOCUMENTS))
        paths = _paths(document)
    return yaml.safe_dump(document, sort_keys=draw(st.booleans()), allow_unicode=True)


@pytest.mark.slow  # a YAML sweep: CI's slow step
@SWEEP
@given(text=mutated_profiles())
def test_mutated_shipped_profiles_load_or_raise_invalid_profile(text: str) -> None:
    _load_profile(text, "profiles/mutated.yaml")


@pytest.mark.slow  # a YAML sweep: CI's slow step
@SWEEP
@given(text=mutated_profiles())
def test_mutated_profiles_as_config_files_raise_only_invalid_config_file(text: str) -> None:
    _load_config(text)


@pytest.mark.slow  # a YAML sweep: CI's slow step
@SWEEP
@given(
    proxy=DOCUMENTS,
    exchange=st.sampled_from(("deribit", "Deribit", "1", "")),
    block=DOCUMENTS,
)
def test_config_files_with_odd_network_blocks(proxy: Any, exchange: str, block: Any) -> None:
    text = yaml.safe_dump({"proxy": proxy, "exchanges": {exchange: {"proxy": block, "ssl": block}}})
    _load_config(text)


def test_a_proxy_value_with_a_newline_gets_a_one_line_error() -> None:
    # Found by test_config_files_with_odd_network_blocks (slow step): block='0\n0'.
    with pytest.raises(InvalidConfigFile) as info:
        parse_config_text('exchanges:\n  deribit:\n    proxy: "0\\n0"\n', "sweep/mpnet.yaml")
    _assert_located(info.value, "sweep/mpnet.yaml")


def test_profile_path_names_the_file_the_caller_gave(tmp_path: Path) -> None:
    path = str(tmp_path / "odd name.yaml")
    with pytest.raises(InvalidProfile) as caught:
        parse_profile_text("name: x\ntitle: X\nrest: {base_url: 'http://h:x'}\n", path)
    assert caught.value.message.startswith(f"{path}:3 rest.base_url")


# == part 2: garbage servers ====================================================================
# Every server below is an asyncio server on 127.0.0.1 port 0 started by the test. Each reads
# the request head, answers with a scripted byte string, then waits for the client to speak or
# hang up (so that a close handshake is never left waiting) and closes.

GARBAGE_BOUND = 20.0  # the test's own guard: a hang fails the test instead of stalling CI
CLIENT_TIMEOUT = 1.5  # the budget mpnet gets; a scripted server either answers or stays silent
TEN_MB = 10 * 1024 * 1024
SERVER_PATHS = ("/health", "/ws")


class ScriptedServer:
    """Answers every connection with ``script(request_head) -> bytes`` (``None``: stay silent)."""

    def __init__(self, script: Any, *, linger: bool = True) -> None:
        self.script = script
        self.linger = linger
        self.port = 0
        self._server: Any = None
        self._writers: set[Any] = set()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def __aenter__(self) -> ScriptedServer:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio
        import contextlib

        self._writers.add(writer)
        try:
            with contextlib.suppress(
                OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
            ):
                head = await reader.readuntil(b"\r\n\r\n")
                answer = self.script(head)
                if answer is None:
                    await asyncio.Event().wait()  # silent until the test ends
                writer.write(answer)
                await writer.drain()
                if self.linger:
                    # The client's close frame or its hang-up; either way the script is done.
                    await reader.read(65536)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


def _accept_key(head: bytes) -> str:
    import base64
    import hashlib

    match = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head)
    key = match.group(1) if match else b""
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return base64.b64encode(digest).decode()


def _switching(head: bytes) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {_accept_key(head)}\r\n\r\n"
    ).encode()


def _frame(payload: bytes, *, first_byte: int = 0x81, masked: bool = False) -> bytes:
    """One server frame: FIN + opcode (+ RSV bits) in ``first_byte``, 7/16/64-bit length."""
    import struct

    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = bytes([first_byte, mask_bit | size])
    elif size < 1 << 16:
        header = bytes([first_byte, mask_bit | 126]) + struct.pack("!H", size)
    else:
        header = bytes([first_byte, mask_bit | 127]) + struct.pack("!Q", size)
    if masked:
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


def _decisions(url: str) -> tuple[Any, Any]:
    from mpnet.core.tls import TLSDecision

    proxy = ProxyDecision(target_url=url, proxy=None, layer="default")
    tls = TLSDecision(verify=True, ca="system", ca_kind="system", layer="default", reason="")
    return proxy, tls


def _assert_readable(message: str) -> None:
    assert message.strip(), "empty error message"
    assert len(message) < 400, message
    assert message.isprintable(), message


def _http_response(head: str, body: bytes = b"") -> Any:
    return lambda _request: head.encode("latin-1") + body


HTTP_GARBAGE: dict[str, tuple[Any, str]] = {
    # name: (script, expected kind)
    "random_bytes": (lambda _r: bytes(range(256)) * 4, "invalid_http"),
    "tls_hello_instead": (
        lambda _r: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n" * 10,
        "invalid_http",
    ),
    "truncated_status_line": (lambda _r: b"HTTP/1.1 20", "closed"),
    "status_line_only": (lambda _r: b"HTTP/1.1 200 OK\r\n", "closed"),
    "http2_status": (_http_response("HTTP/2.0 200 OK\r\n\r\n"), "invalid_http"),
    "status_not_a_number": (_http_response("HTTP/1.1 2x0 OK\r\n\r\n"), "invalid_http"),
    "header_without_colon": (
        _http_response("HTTP/1.1 200 OK\r\nnot a header\r\n\r\n"),
        "invalid_http",
    ),
    "huge_head": (
        _http_response("HTTP/1.1 200 OK\r\n" + "X-Pad: " + "a" * 70000 + "\r\n\r\n"),
        "invalid_http",
    ),
    "content_length_letters": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"),
        "invalid_http",
    ),
    "content_length_negative": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}"),
        "invalid_http",
    ),
    "content_length_superscript": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n{}"),
        "invalid_http",
    ),
    "content_length_list": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}"),
        "invalid_http",
    ),
    "content_length_too_long": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}"),
        "closed",
    ),
    "chunk_size_not_hex": (
        _http_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        ),
        "invalid_http",
    ),
    "chunk_longer_than_announced": (
        _http_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n"),
        "invalid_http",
    ),
    "chunked_cut_short": (
        _http_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}"),
        "closed",
    ),
    "gzip_that_is_not": (
        _http_response(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"
        ),
        "invalid_encoding",
    ),
    "closed_without_answer": (lambda _r: b"", "closed"),
}


async def _timed_request_error(url: str, **kwargs: Any) -> Any:
    """The ProbeError timed_request raises (the test fails if it returns or raises another)."""
    import asyncio

    from mpnet.errors import ProbeError
    from mpnet.net.exchange import timed_request

    proxy, tls = _decisions(url)
    async with asyncio.timeout(GARBAGE_BOUND):
        try:
            response = await timed_request(
                "GET", url, proxy=proxy, tls=tls, timeout=CLIENT_TIMEOUT, **kwargs
            )
        except ProbeError as exc:
            return exc
    pytest.fail(f"garbage accepted as HTTP {response.status}")


@pytest.mark.parametrize("name", list(HTTP_GARBAGE))
async def test_timed_request_against_invalid_http(name: str) -> None:
    from mpnet.errors import Phase

    script, kind = HTTP_GARBAGE[name]
    async with ScriptedServer(script, linger=False) as server:
        error = await _timed_request_error(server.http_url)
    assert (error.phase, error.kind) == (Phase.HTTP, kind), error.message
    _assert_readable(error.message)


async def test_timed_request_against_a_server_that_answers_nothing() -> None:
    from mpnet.errors import Phase, ProbeTimeout

    async with ScriptedServer(lambda _r: None) as server:
        error = await _timed_request_error(server.http_url)
    assert isinstance(error, ProbeTimeout)
    assert error.phase == Phase.HTTP
    _assert_readable(error.message)


@settings(max_examples=40, deadline=None)
@given(answer=st.binary(min_size=1, max_size=300))
def test_timed_request_against_random_bytes(answer: bytes) -> None:
    import asyncio

    from mpnet.errors import Phase, ProbeError
    from mpnet.net.exchange import timed_request

    async def run() -> None:
        async with ScriptedServer(lambda _r: answer, linger=False) as server:
            proxy, tls = _decisions(server.http_url)
            async with asyncio.timeout(GARBAGE_BOUND):
                try:
                    await timed_request(
                        "GET", server.http_url, proxy=proxy, tls=tls, timeout=CLIENT_TIMEOUT
                    )
                except ProbeError as exc:
                    assert exc.phase == Phase.HTTP
                    _assert_readable(exc.message)

    asyncio.run(run())


@pytest.mark.parametrize("framing", ["content_length", "chunked", "until_close"])
async def test_timed_request_caps_a_10_mb_body(framing: str) -> None:
    import tracemalloc

    from mpnet.net.exchange import timed_request

    body = b"x" * TEN_MB
    if framing == "content_length":
        answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    elif framing == "chunked":
        piece = b"x" * (1 << 20)
        chunks = b"".join(b"100000\r\n" + piece + b"\r\n" for _ in range(10))
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        answer = b"HTTP/1.1 200 OK\r\n\r\n" + body
    async with ScriptedServer(lambda _r: answer, linger=False) as server:
        proxy, tls = _decisions(server.http_url)
        tracemalloc.start()
        try:
            response = await timed_request(
                "GET", server.http_url, proxy=proxy, tls=tls, timeout=10.0, max_body=1 << 20
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert response.truncated
    assert len(response.body) == 1 << 20
    # The server's 10 MB answer counts here too (it lives in this process): a client that kept
    # the whole body would add 10 MB more on top of it.
    assert peak < len(answer) + 8 * (1 << 20), peak


def test_timed_response_json_refuses_brackets_deeper_than_the_stack() -> None:
    from mpnet.errors import Phase, ProtocolError
    from mpnet.net.exchange import parse_json

    with pytest.raises(ProtocolError) as caught:
        parse_json(b"[" * 200_000, url="http://127.0.0.1:1/health")
    assert (caught.value.phase, caught.value.kind) == (Phase.HTTP, "invalid_json")


# -- WebSocket upgrade and frames ---------------------------------------------------------------

BACKENDS = ("websockets", "aiohttp")

UPGRADE_GARBAGE: dict[str, Any] = {
    "random_bytes": lambda _r: bytes(range(256)) * 4,
    "truncated_status_line": lambda _r: b"HTTP/1.1 10",
    "closed_without_answer": lambda _r: b"",
    "not_http": lambda _r: b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "101_without_accept": lambda _r: (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    ),
    "101_wrong_accept": lambda _r: (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n"
    ),
    "200_instead_of_101": lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
}

INVALID_FRAMES: dict[str, bytes] = {
    "reserved_bits_set": _frame(b'{"type":"data"}', first_byte=0xF1),
    "masked_server_frame": _frame(b'{"type":"data"}', masked=True),
    "unknown_opcode": _frame(b"??", first_byte=0x83),
    "fragmented_control_frame": _frame(b"", first_byte=0x09),
    "invalid_utf8_text": _frame(b"\xff\xfe\xfd"),
    "continuation_without_start": _frame(b"x", first_byte=0x80),
}


async def _connect_error(url: str, backend: str, **kwargs: Any) -> Any:
    import asyncio

    from mpnet.errors import ProbeError
    from mpnet.net.ws import WebSocketWrapper

    proxy, tls = _decisions(url)
    async with asyncio.timeout(GARBAGE_BOUND):
        try:
            ws = await WebSocketWrapper.connect(
                url, proxy=proxy, tls=tls, timeout=CLIENT_TIMEOUT, backend=backend, **kwargs
            )
        except ProbeError as exc:
            return exc
        await ws.close()
    pytest.fail("garbage accepted as a WebSocket upgrade")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(UPGRADE_GARBAGE))
async def test_websocket_upgrade_answered_with_garbage(name: str, backend: str) -> None:
    from mpnet.errors import Phase

    async with ScriptedServer(UPGRADE_GARBAGE[name], linger=False) as server:
        error = await _connect_error(server.ws_url, backend)
    assert error.phase == Phase.WS_UPGRADE, error.message
    _assert_readable(error.message)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_websocket_upgrade_never_answered_times_out_in_ws_upgrade(backend: str) -> None:
    from mpnet.errors import Phase, ProbeTimeout

    async with ScriptedServer(lambda _r: None) as server:
        error = await _connect_error(server.ws_url, backend)
    assert isinstance(error, ProbeTimeout)
    assert error.phase == Phase.WS_UPGRADE
    _assert_readable(error.message)


async def _first_message_error(url: str, backend: str, **kwargs: Any) -> Any:
    """Connect, send one message, and return the ProbeError that receiving raises."""
    import asyncio

    from mpnet.errors import ProbeError
    from mpnet.net.ws import WebSocketWrapper

    proxy, tls = _decisions(url)
    async with asyncio.timeout(GARBAGE_BOUND):
        ws = await WebSocketWrapper.connect(
            url, proxy=proxy, tls=tls, timeout=CLIENT_TIMEOUT, backend=backend, **kwargs
        )
        try:
            await ws.send({"op": "subscribe"})
            message = await ws.recv(timeout=CLIENT_TIMEOUT)
        except ProbeError as exc:
            return exc
        finally:
            await ws.close()
    pytest.fail(f"invalid frame accepted as a message: {message[:40]!r}")


AIOHTTP_TAKES_MASKED_FRAMES = pytest.mark.xfail(
    strict=True,
    reason="aiohttp 3.14's frame reader unmasks a masked server frame instead of failing the "
    "connection (RFC 6455 5.1); the websockets backend refuses it",
)


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        pytest.param(
            name,
            backend,
            marks=[AIOHTTP_TAKES_MASKED_FRAMES]
            if (name, backend) == ("masked_server_frame", "aiohttp")
            else [],
            id=f"{name}-{backend}",
        )
        for name in INVALID_FRAMES
        for backend in BACKENDS
    ],
)
async def test_invalid_frames_after_101(name: str, backend: str) -> None:
    from mpnet.errors import Phase

    frames = INVALID_FRAMES[name]
    async with ScriptedServer(lambda head: _switching(head) + frames) as server:
        error = await _first_message_error(server.ws_url, backend)
    assert error.phase == Phase.FIRST_MESSAGE, error.message
    _assert_readable(error.message)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_10_mb_websocket_message_within_max_size_arrives_whole(backend: str) -> None:
    import asyncio
    import tracemalloc

    from mpnet.net.ws import WebSocketWrapper

    frame = _frame(b"x" * TEN_MB, first_byte=0x82)
    async with ScriptedServer(lambda head: _switching(head) + frame) as server:
        proxy, tls = _decisions(server.ws_url)
        tracemalloc.start()
        try:
            async with asyncio.timeout(GARBAGE_BOUND):
                ws = await WebSocketWrapper.connect(
                    server.ws_url, proxy=proxy, tls=tls, timeout=10.0, backend=backend
                )
                try:
                    message = await ws.recv(timeout=10.0)
                finally:
                    await ws.close()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(message) == TEN_MB
    # The server's frame and the message itself are 20 MB; a few more copies on the way are
    # tolerable, an unbounded buffer is not.
    assert peak < 8 * TEN_MB, peak


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_10_mb_websocket_message_over_max_size_is_refused_by_size(backend: str) -> None:
    from mpnet.errors import Phase

    frame = _frame(b"x" * TEN_MB, first_byte=0x82)
    async with ScriptedServer(lambda head: _switching(head) + frame) as server:
        error = await _first_message_error(server.ws_url, backend, max_size=1 << 20)
    assert error.phase == Phase.FIRST_MESSAGE
    _assert_readable(error.message)
    assert re.search(r"size|too big|exceeds|limit", error.message, re.IGNORECASE), error.message


# -- the probe engine against garbage -----------------------------------------------------------


def _garbage_profile(port: int, *, json_keys: tuple[str, ...] = ("result",)) -> Any:
    from mpnet.config.model import HealthCheck, Profile, RestSpec, WebSocketSpec

    return Profile(
        name="garbage",
        title="Garbage",
        rest=RestSpec(
            base_url=f"http://127.0.0.1:{port}",
            health=HealthCheck(path="/health", expect_json_keys=json_keys),
        ),
        websocket=WebSocketSpec(
            url=f"ws://127.0.0.1:{port}/ws",
            subscribe=({"op": "subscribe"},),
            data_match={"type": "data"},
        ),
    )


async def _attempt(port: int, target: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    import asyncio

    from mpnet.probe.engine import run_attempt
    from mpnet.probe.plan import ProbeTarget

    profile = _garbage_profile(port)
    url = profile.url_for(target)
    assert url is not None
    proxy, tls = _decisions(url)
    probe_target = ProbeTarget(profile=profile, target=target, url=url, proxy=proxy, tls=tls)
    async with asyncio.timeout(GARBAGE_BOUND):
        attempt = await run_attempt(probe_target, timeout)
    assert not attempt.ok
    assert attempt.error is not None
    _assert_readable(attempt.error.message)
    return attempt.error


ENGINE_REST_CASES: dict[str, tuple[Any, str]] = {
    "invalid_http": (HTTP_GARBAGE["random_bytes"][0], "invalid_http"),
    "bad_content_length": (HTTP_GARBAGE["content_length_superscript"][0], "invalid_http"),
    "chunk_size_not_hex": (HTTP_GARBAGE["chunk_size_not_hex"][0], "invalid_http"),
    "invalid_json": (
        _http_response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{not json"),
        "invalid_json",
    ),
    "json_deeper_than_the_stack": (
        _http_response(f"HTTP/1.1 200 OK\r\nContent-Length: {200_000}\r\n\r\n", b"[" * 200_000),
        "invalid_json",
    ),
    "10_mb_body": (
        _http_response(f"HTTP/1.1 200 OK\r\nContent-Length: {TEN_MB}\r\n\r\n", b"{" * TEN_MB),
        "invalid_json",
    ),
}


@pytest.mark.parametrize("name", list(ENGINE_REST_CASES))
async def test_probe_engine_rest_against_garbage(name: str) -> None:
    script, kind = ENGINE_REST_CASES[name]
    async with ScriptedServer(script, linger=False) as server:
        error = await _attempt(server.port, "rest")
    assert (error.phase, error.kind) == ("http", kind), error.message


ENGINE_WS_CASES: dict[str, tuple[Any, str]] = {
    "upgrade_garbage": (UPGRADE_GARBAGE["random_bytes"], "ws_upgrade"),
    "upgrade_wrong_accept": (UPGRADE_GARBAGE["101_wrong_accept"], "ws_upgrade"),
    "reserved_bits": (
        lambda head: _switching(head) + INVALID_FRAMES["reserved_bits_set"],
        "first_message",
    ),
    "masked_server_frame": (
        lambda head: _switching(head) + INVALID_FRAMES["masked_server_frame"],
        "first_message",
    ),
    "unknown_opcode": (
        lambda head: _switching(head) + INVALID_FRAMES["unknown_opcode"],
        "first_message",
    ),
    "invalid_json_then_close": (
        lambda head: _switching(head) + _frame(b"{not json") + _frame(b"\x03\xe8", first_byte=0x88),
        "first_message",
    ),
    "json_deeper_than_the_stack": (
        lambda head: _switching(head) + _frame(b"[" * 200_000),
        "first_message",
    ),
    "10_mb_message": (
        lambda head: _switching(head) + _frame(b"[" * TEN_MB),
        "first_message",
    ),
}


@pytest.mark.parametrize("name", list(ENGINE_WS_CASES))
async def test_probe_engine_websocket_against_garbage(name: str) -> None:
    script, phase = ENGINE_WS_CASES[name]
    async with ScriptedServer(script) as server:
        error = await _attempt(server.port, "ws")
    assert error.phase == phase, error.message


@pytest.mark.parametrize(
    "template", ["{nope}", "{", "}", "{0}", "{}", "{token.x}", "{token!z}", "{token:>99999999}"]
)
def test_bootstrap_query_templates_are_checked_when_the_profile_loads(template: str) -> None:
    # Before: the profile loaded, and the probe died with KeyError/ValueError/AttributeError
    # (or built a 100 MB string) when it filled the template in.
    text = SHIPPED["kucoin"].replace('"{connect_id}"', json.dumps(template))
    assert text != SHIPPED["kucoin"]
    with pytest.raises(InvalidProfile) as caught:
        parse_profile_text(text, "kucoin.yaml")
    _assert_located(caught.value, "kucoin.yaml")
    assert "websocket.bootstrap.query.connectId" in caught.value.message


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:1/x", "wss://[::1", "ws://", "wss://h:99999/", "", 5, None]
)
async def test_probe_engine_bootstrap_answer_with_a_bad_endpoint(endpoint: Any) -> None:
    """A KuCoin-style token answer whose endpoint is not a usable WebSocket URL is the server's
    fault: a failed attempt in phase bootstrap, not a UsageError or ValueError out of the probe."""
    import asyncio

    from mpnet.config.model import BootstrapSpec, HealthCheck, Profile, RestSpec, WebSocketSpec
    from mpnet.probe.engine import run_attempt
    from mpnet.probe.plan import ProbeTarget

    body = json.dumps({"data": {"instanceServers": [{"endpoint": endpoint}], "token": "t"}})
    answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
    async with ScriptedServer(lambda _r: answer, linger=False) as server:
        profile = Profile(
            name="bootstrap",
            title="Bootstrap",
            rest=RestSpec(base_url=server.http_url, health=HealthCheck(path="/")),
            websocket=WebSocketSpec(
                url="wss://unused.invalid/",
                subscribe=(),
                data_match={"type": "data"},
                bootstrap=BootstrapSpec(
                    path="/bullet",
                    endpoint="data.instanceServers.0.endpoint",
                    token="data.token",
                    query={"token": "{token}"},
                ),
            ),
        )
        url = "wss://unused.invalid/"
        proxy, tls = _decisions(url)
        target = ProbeTarget(profile=profile, target="ws", url=url, proxy=proxy, tls=tls)
        async with asyncio.timeout(GARBAGE_BOUND):
            attempt = await run_attempt(target, CLIENT_TIMEOUT)
    assert attempt.error is not None
    assert (attempt.error.phase, attempt.error.kind) == ("bootstrap", "unexpected_json")
    _assert_readable(attempt.error.message)
