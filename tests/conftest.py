"""Shared fixtures. Nothing here, nor in any test, talks to an address outside 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ws_proxy",
    "wss_proxy",
    "socks_proxy",
    "REQUEST_METHOD",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "MPNET_CONFIG",
    "MPNET_PROFILES",
)


@pytest.fixture(autouse=True)
def _clean_network_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> Iterator[None]:
    """No proxy, CA or mpnet variable of the developer's shell leaks into a test, and no
    ./mpnet.yaml or XDG config of theirs is picked up."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    yield


@pytest.fixture
def env_clean() -> dict[str, str]:
    """A copy of the cleaned environment, for subprocess tests."""
    return dict(os.environ)
