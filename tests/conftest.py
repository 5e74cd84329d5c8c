"""Shared fixtures. Nothing here, nor in any test, talks to an address outside 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import weakref
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import typer.main
import typer.testing
from hypothesis import settings

# Rich sizes mpnet's output from COLUMNS/LINES, and the tests read that output. Whoever started
# pytest may export them, and pytest-xdist's workers inherit COLUMNS=80 LINES=24 that readline
# put into the parent's environment: drop them before mpnet's console is created, so every run,
# serial or on every core, renders at the width a pipe gets.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

# Where PYTHONDONTWRITEBYTECODE is set (this machine's shell and CI set it), every worker and
# every `mpnet` process the tests start compiles mpnet (and the workers the rewritten test
# modules) from source again, about 0.3 s of CPU apiece for mpnet on a fresh clone: let them keep
# their bytecode in __pycache__.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# Typer's test runner turns the app into a Click command at every invoke, evaluating every
# annotation of every command again (typing.ForwardRef compiles each one): a profile of the suite
# found that a large share of its CPU. mpnet's app is one module-level object whose commands do
# not change once registered, so one Click command per app serves every invoke, as one `mpnet`
# process builds it once.
_click_commands: weakref.WeakKeyDictionary[typer.Typer, Any] = weakref.WeakKeyDictionary()


def _click_command(app: typer.Typer) -> Any:
    command = _click_commands.get(app)
    if command is None:
        command = _click_commands[app] = typer.main.get_command(app)
    return command


typer.testing._get_command = _click_command  # type: ignore[attr-defined]

# Property sweeps: a quick pass in the README's command, the thorough one in CI's second step
# (`.ci/run` passes --hypothesis-profile=thorough with every test selected).
settings.register_profile("quick", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=150, deadline=None)
settings.load_profile("quick")

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


_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _loopback_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Resolve literals and localhost as usual; refuse every other name without a DNS query.

    Names under the reserved ``.invalid`` TLD get "does not exist" (EAI_NONAME); any other name
    gets the answer this offline machine gives (EAI_AGAIN, no resolver answered). So no test
    sends a DNS packet anywhere, yet both DNS failure paths are exercised.
    """
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name.lower().rstrip(".") in _LOCAL_NAMES:
        return _real_getaddrinfo(host, *args, **kwargs)
    try:
        ipaddress.ip_address(name.strip("[]").split("%")[0])
    except ValueError:
        pass
    else:
        return _real_getaddrinfo(host, *args, **kwargs)
    if name.lower().rstrip(".").endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def _no_dns_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only_getaddrinfo)


#: Test files run with coverage paused (pytest-cov's `no_cover`): end-to-end runs of whole
#: commands whose lines other tests cover too. Under coverage's tracer Python 3.11 runs every
#: line, mpnet's or a library's, 2 to 3 times slower; these files took a third of the CPU the
#: fast tests spend in pytest's own processes, and all but 71 of the lines they reach (0.6 % of
#: mpnet) are covered by other tests as well. They pass or fail as before; the coverage figure
#: is a lower bound.
COVERAGE_PAUSED = frozenset(
    {
        "tests/hardening/test_secrets_audit.py",
        "tests/diagnosis/test_findings_e2e.py",
        "tests/probe/test_probe_lab.py",
        "tests/cli/test_routes_cli.py",
        "tests/net/test_connection_leaks.py",
        "tests/core/test_redaction.py",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every soak test and every browser test is also slow (pyproject's markers say so): one
    that forgets the `slow` mark still leaves the default command for CI's second step (which
    installs chromium for the browser tests). Runs before `-m` deselects.
    Tests in COVERAGE_PAUSED get `no_cover` when coverage runs (pytest-cov fails on the mark
    under --no-cov)."""
    pause = getattr(config.pluginmanager.get_plugin("_cov"), "cov_controller", None) is not None
    for item in items:
        long_kind = item.get_closest_marker("soak") or item.get_closest_marker("browser")
        if long_kind and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if pause and item.nodeid.split("::")[0] in COVERAGE_PAUSED:
            item.add_marker(pytest.mark.no_cover)


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> Generator[None, int, int]:
    """`-n auto`: two workers per core, and one more.

    Many fast tests mostly wait (a feed window read to its end, exchange pacing, timeouts against
    servers that never answer, child processes starting up), so as many workers as cores leave
    the cores idle that long. On 2 cores, from a fresh clone: 3 workers 83 s, 5 workers 72 s of
    wall time for about the same CPU. PYTEST_XDIST_AUTO_NUM_WORKERS, when set, is taken as it is.
    """
    cores = yield
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return cores
    return 2 * cores + 1
