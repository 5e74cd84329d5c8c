"""Config file search order and schema: service and exchange layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpnet.config.file import find_config, load_config, parse_config_text
from mpnet.errors import InvalidConfigFile

FULL = """\
proxy:
  https: http://user:secret@proxy.corp:3128
  socks: socks5h://127.0.0.1:1080
  no_proxy: localhost,127.0.0.0/8,.internal
ssl:
  ca_bundle: corp-root.pem
exchanges:
  deribit:
    proxy: {url: socks5h://127.0.0.1:1080}
    ssl: {verify: false, reason: "lab box behind TLS inspection"}
  okx:
    proxy: direct
  bybit:
    proxy: {rest: direct, ws: http://127.0.0.1:3128}
"""


def test_full_example_from_design(tmp_path: Path) -> None:
    path = tmp_path / "mpnet.yaml"
    path.write_text(FULL)
    cfg = load_config(str(path), env={})
    assert cfg.proxy is not None and cfg.proxy.https is not None
    assert cfg.proxy.https.redacted() == "http://user:***@proxy.corp:3128"
    assert cfg.proxy.no_proxy == "localhost,127.0.0.0/8,.internal"
    assert cfg.ssl is not None and cfg.ssl.ca_bundle == str(tmp_path / "corp-root.pem")
    deribit = cfg.exchanges["deribit"]
    assert deribit.proxy_rest == deribit.proxy_ws
    assert deribit.ssl is not None and deribit.ssl.verify is False
    assert deribit.ssl.reason == "lab box behind TLS inspection"
    assert cfg.exchanges["okx"].proxy_rest == "direct"
    bybit = cfg.exchanges["bybit"]
    assert bybit.proxy_rest == "direct" and bybit.proxy_ws.port == 3128  # type: ignore[union-attr]


def test_search_order(tmp_path: Path) -> None:
    explicit, named, local, xdg = (tmp_path / n for n in ("a.yaml", "b.yaml", "c", "xdg"))
    local.mkdir()
    (xdg / "mpnet").mkdir(parents=True)
    for p in (explicit, named, local / "mpnet.yaml", xdg / "mpnet" / "config.yaml"):
        p.write_text("{}\n")
    env = {"MPNET_CONFIG": str(named), "XDG_CONFIG_HOME": str(xdg)}
    assert find_config(str(explicit), env=env, cwd=local) == explicit
    assert find_config(None, env=env, cwd=local) == named
    env.pop("MPNET_CONFIG")
    assert find_config(None, env=env, cwd=local) == local / "mpnet.yaml"
    assert find_config(None, env=env, cwd=tmp_path) == xdg / "mpnet" / "config.yaml"
    assert find_config(None, env={"XDG_CONFIG_HOME": str(tmp_path / "none")}, cwd=tmp_path) is None


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigFile, match=r"--config .*: no such file"):
        load_config(str(tmp_path / "missing.yaml"), env={})
    with pytest.raises(InvalidConfigFile, match=r"\$MPNET_CONFIG .*: no such file"):
        load_config(None, env={"MPNET_CONFIG": str(tmp_path / "missing.yaml")})


def test_no_file_means_empty_layers(tmp_path: Path) -> None:
    cfg = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path)
    assert cfg.path is None and cfg.proxy is None and cfg.exchanges == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("proxy:\n  https: ftp://x:1\n", r"<c>:2 proxy.https: unsupported proxy scheme 'ftp'"),
        ("proxy:\n  https: http://user@h:1\n", r"<c>:2 proxy.https: .*without a password"),
        ("proxy:\n  https: http://h:99999\n", r"<c>:2 proxy.https: .*port"),
        ("proxy:\n  htps: http://h:1\n", r"<c>:2 proxy.htps: unknown key 'htps'"),
        (
            "exchanges:\n  deribit:\n    proxy: {rest: direct, wss: direct}\n",
            r"<c>:3 exchanges.deribit.proxy.wss: unknown key",
        ),
        (
            "exchanges:\n  deribit:\n    ssl: {verify: 'no'}\n",
            r"ssl.verify: expected true or false",
        ),
        ("exchanges:\n  deribit:\n    ssl: {verify: false, ca_bundle: x.pem}\n", "contradicts"),
        ("exchanges: [deribit]\n", "expected a mapping of exchange name"),
        ("ssl: {verify: true\n", r"<c>:1: invalid YAML"),
        (
            "retries: 3\n",
            r"<c>:1 retries: unknown key 'retries'; expected one of proxy, ssl, exchanges",
        ),
        ("clock: {tolerance_ms: 0}\n", r"<c>:1 clock.tolerance_ms: expected a positive number"),
        ("clock: {tolerance_ms: fast}\n", r"<c>:1 clock.tolerance_ms: expected a positive"),
        ("clock: {tolerance: 5}\n", r"<c>:1 clock.tolerance: unknown key 'tolerance'"),
        (
            "clock:\n  feed_lag_tolerance_ms: 100000000000\n",
            r"<c>:2 clock.feed_lag_tolerance_ms: int 100000000000 is out of range",
        ),
    ],
)
def test_schema_errors(text: str, expected: str) -> None:
    with pytest.raises(InvalidConfigFile, match=expected):
        parse_config_text(text, "<c>")


def test_passwords_never_in_config_errors() -> None:
    for text in (
        "proxy:\n  https: ftp://user:topsecretpw@h:1\n",
        "proxy:\n  https: 'http://user:topsecretpw@h:notaport'\n",
        "exchanges:\n  x:\n    proxy: {rest: 'http://user:topsecretpw@h:1/path'}\n",
        "proxy: [ 'http://user:topsecretpw@h:1' ]\n",
    ):
        with pytest.raises(InvalidConfigFile) as info:
            parse_config_text(text, "<c>")
        assert "topsecretpw" not in str(info.value), text


def test_clock_tolerances() -> None:
    from mpnet.core.clock import ClockTolerances

    assert parse_config_text("proxy: {}\n", "<c>").clock is None
    config = parse_config_text("clock: {tolerance_ms: 250}\n", "<c>")
    assert config.clock == ClockTolerances(offset_ms=250.0, feed_lag_ms=1000.0)
    config = parse_config_text("clock: {feed_lag_tolerance_ms: 3000}\n", "<c>")
    assert config.clock == ClockTolerances(offset_ms=500.0, feed_lag_ms=3000.0)
