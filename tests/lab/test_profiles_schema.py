"""Every shipped profile loads through the profile loader and describes a full probe."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.lab.conftest import SHIPPED_NAMES

from mpnet.config.profiles import load_profile_file, shipped_profiles_dir


def test_the_shipped_directory_holds_exactly_the_expected_profiles() -> None:
    stems = sorted(path.stem for path in shipped_profiles_dir().glob("*.yaml"))
    assert stems == sorted(SHIPPED_NAMES)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_profile_loads_and_is_complete(name: str) -> None:
    path = Path(shipped_profiles_dir()) / f"{name}.yaml"
    profile = load_profile_file(path)
    assert profile.name == name
    assert profile.rest is not None and profile.rest.base_url.startswith("https://")
    spec = profile.websocket
    assert spec is not None and spec.url.startswith("wss://")
    assert spec.subscribe, "a probe needs something to subscribe to"
    assert spec.ping is not None, "every shipped profile measures a ping round trip"
    if spec.bootstrap is None:
        # Without a token step the WebSocket URL is the real endpoint.
        assert spec.url.count("?") == 0
