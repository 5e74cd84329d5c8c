"""Secrets audit (issue 7): a proxy password set in any layer never shows, in any command or
format, on any surface: stdout, stderr, --output files, log records, exception messages, JUnit,
Prometheus and JSON fields, and --debug tracebacks of real child processes.

Two passwords: one plain, and one whose reserved characters are percent-encoded in the URL
(``qZ%40v4ult%3Ak3y%2F``, which decodes to ``qZ@v4ult:k3y/``; not the ``p@ss`` of mpnet's own
hint text). Each is set in each layer in turn
(--proxy, the config file's exchange and service layers, HTTPS_PROXY / ALL_PROXY / http_proxy,
a profile's network block, a --via route, a named route of the config file's ``routes:`` that
the exchanges list as their default routes) and pointed at a closed port on 127.0.0.1 or at a
real pproxy that wants other credentials, so that the proxy leg fails and its error message is
produced. The same layers then get a malformed URL holding the password, so that the parse
errors show too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_servers import ProxyProcess, start_pproxy

PLAIN = "S3cr3t-Pa55w0rd-x9"
ENCODED = "qZ%40v4ult%3Ak3y%2F"  # decodes to qZ@v4ult:k3y/
PASSWORDS = {"plain": PLAIN, "encoded": ENCODED}
#: Lower-case pieces of both passwords, raw, decoded and encoded: any of them in an output is a
#: leak (a partial one included).
MARKERS = ("s3cr3t", "pa55w0rd", "qz@", "qz%40", "v4ult", "k3y")
USER = "alice"
TIMEOUT = "1.5"


def assert_no_secret(text: str | bytes | None, where: str) -> None:
    if text is None:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lowered = text.lower()
    for marker in MARKERS:
        assert marker not in lowered, f"password piece {marker!r} in {where}:\n{text[-3000:]}"


# -- servers and files --------------------------------------------------------------------------


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pproxy() -> Iterator[dict[str, str]]:
    """pproxy wanting mpnet:s3cret-pw: our alice:<password> is refused (proxy-auth errors)."""
    process: ProxyProcess = start_pproxy(
        {"http_auth": "http#mpnet:s3cret-pw", "socks5_auth": "socks5#mpnet:s3cret-pw"}
    )
    try:
        yield process.urls
    finally:
        process.stop()


def _endpoint(url: str) -> tuple[str, int]:
    host_port = url.rsplit("@", 1)[-1]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


PROFILE = """\
name: {name}
title: Audit {name}
rest:
  base_url: {scheme}://127.0.0.1:{port}
  health: {{path: /health, expect_json_keys: [ok]}}
websocket:
  url: {ws_scheme}://127.0.0.1:{port}/ws
  subscribe: {{op: subscribe}}
  data_match: {{type: data}}
{network}"""


def write_profiles(directory: Path, *, port: int, network: str = "") -> Path:
    """Two profiles: ``audits`` (https/wss targets) and ``auditp`` (http/ws targets)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, scheme, ws_scheme in (("audits", "https", "wss"), ("auditp", "http", "ws")):
        (directory / f"{name}.yaml").write_text(
            PROFILE.format(
                name=name, scheme=scheme, ws_scheme=ws_scheme, port=port, network=network
            ),
            encoding="utf-8",
        )
    return directory


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


@dataclass
class Setup:
    """One layer holding one proxy URL: extra command-line arguments and environment."""

    layer: str
    proxy_url: str
    profiles_dir: Path
    flag_args: list[str] = field(default_factory=list)
    config_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: ``--via URL``: only probe, watch and serve take it.
    via_args: list[str] = field(default_factory=list)

    @property
    def common(self) -> list[str]:
        return [*self.config_args, "--profiles", str(self.profiles_dir)]


LAYERS = (
    "flag",
    "exchange",
    "service",
    "env_https",
    "env_all",
    "env_http",
    "profile",
    "via",
    "route_config",
)


def layer_password_cases(fast: set[tuple[str, str]]) -> list[object]:
    """Every layer with every password; the pairs not in ``fast`` are marked slow (the default
    test command runs ``fast``, CI's slow step the rest of the matrix)."""
    return [
        pytest.param(
            layer,
            password,
            id=f"{layer}-{password}",
            marks=() if (layer, password) in fast else pytest.mark.slow,
        )
        for layer in LAYERS
        for password in PASSWORDS
    ]


def make_setup(layer: str, proxy_url: str, tmp: Path, target_port: int) -> Setup:
    network = ""
    if layer == "profile":
        network = f"network:\n  proxy: {_yaml_string(proxy_url)}\n"
    setup = Setup(
        layer, proxy_url, write_profiles(tmp / "profiles", port=target_port, network=network)
    )
    if layer == "flag":
        setup.flag_args = ["--proxy", proxy_url]
    elif layer == "via":
        setup.via_args = ["--via", "direct", "--via", proxy_url]
    elif layer == "route_config":
        body = f"routes:\n  vault: {_yaml_string(proxy_url)}\nexchanges:\n" + "".join(
            f"  {name}:\n    routes: [direct, vault]\n" for name in ("audits", "auditp")
        )
        config = tmp / "mpnet.yaml"
        config.write_text(body, encoding="utf-8")
        setup.config_args = ["--config", str(config)]
    elif layer in ("exchange", "service"):
        if layer == "exchange":
            body = "exchanges:\n" + "".join(
                f"  {name}:\n    proxy: {_yaml_string(proxy_url)}\n"
                for name in ("audits", "auditp")
            )
        else:
            quoted = _yaml_string(proxy_url)
            body = f"proxy:\n  https: {quoted}\n  http: {quoted}\n"
        config = tmp / "mpnet.yaml"
        config.write_text(body, encoding="utf-8")
        setup.config_args = ["--config", str(config)]
    elif layer == "env_https":
        setup.env = {"HTTPS_PROXY": proxy_url}
    elif layer == "env_all":
        setup.env = {"ALL_PROXY": proxy_url}
    elif layer == "env_http":
        setup.env = {"http_proxy": proxy_url}
    return setup


# -- running commands ---------------------------------------------------------------------------


@dataclass
class Outcome:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    files: dict[str, str]
    exception: str

    def surfaces(self) -> dict[str, str]:
        found = {"stdout": self.stdout, "stderr": self.stderr, "exception": self.exception}
        found.update({f"file {name}": text for name, text in self.files.items()})
        return found


def invoke(args: list[str], env: dict[str, str], outputs: tuple[Path, ...] = ()) -> Outcome:
    from mpnet.cli.app import get_app

    runner = CliRunner()
    result = runner.invoke(get_app(), args, env=env, catch_exceptions=True)
    exception = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exception = f"{type(result.exception).__name__}: {result.exception!r} {result.exception}"
    files = {str(p): p.read_text(encoding="utf-8") for p in outputs if p.exists()}
    return Outcome(args, result.exit_code, result.stdout, result.stderr, files, exception)


def audit(outcome: Outcome) -> None:
    for where, text in outcome.surfaces().items():
        assert_no_secret(text, f"{where} of mpnet {' '.join(outcome.args)}")
    assert not outcome.exception, outcome.exception


def command_matrix(
    setup: Setup, target_port: int, tmp: Path
) -> list[tuple[list[str], tuple[Path, ...]]]:
    """Every command and format, with this layer's arguments."""
    flag, common, via = setup.flag_args, setup.common, setup.via_args
    names = ["audits", "auditp"]
    probe = ["probe", *names, "--timeout", TIMEOUT, *flag, *via, *common]
    out_file = tmp / "report.json"
    junit_file = tmp / "report.xml"
    ws_url = f"wss://127.0.0.1:{target_port}/ws"
    return [
        ([*probe, "--format", "table"], ()),
        ([*probe, "--format", "table", "--verbose"], ()),
        ([*probe, "--format", "json"], ()),
        ([*probe, "--format", "junit"], ()),
        ([*probe, "--format", "prometheus"], ()),
        ([*probe, "--format", "json", "--output", str(out_file)], (out_file,)),
        ([*probe, "--format", "junit", "--output", str(junit_file)], (junit_file,)),
        (["proxy", "explain", "audits", *flag, *common], ()),
        (["proxy", "explain", "auditp", "--format", "json", *flag, *common], ()),
        (["proxy", "explain", "--url", ws_url, "--format", "json", *flag, *common], ()),
        (["ssl", "explain", "audits", *common], ()),
        (["ssl", "explain", "auditp", "--format", "json", *common], ()),
        (["ws", ws_url, "--timeout", TIMEOUT, *flag, *setup.config_args], ()),
        (["ws", ws_url, "--timeout", TIMEOUT, "--format", "json", *flag, *setup.config_args], ()),
        (
            [
                "ws",
                ws_url.replace("wss", "ws"),
                "--timeout",
                TIMEOUT,
                "--backend",
                "aiohttp",
                *flag,
                *setup.config_args,
            ],
            (),
        ),
        (["profiles", "show", "audits", "--profiles", str(setup.profiles_dir)], ()),
        (["profiles", "list", "--profiles", str(setup.profiles_dir)], ()),
        (
            [
                "watch",
                *names,
                "--count",
                "1",
                "--interval",
                "0.1",
                "--timeout",
                TIMEOUT,
                *flag,
                *via,
                *common,
            ],
            (),
        ),
    ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def audit_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert_no_secret(caplog.text, "captured log text")
    for record in caplog.records:
        assert_no_secret(record.getMessage(), f"log record {record.name}")
        assert_no_secret(str(record.args), f"log record args {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_no_secret(repr(record.exc_info[1]), f"log exception {record.name}")


def _proxy_url(scheme: str, password: str, host: str, port: int | str) -> str:
    return f"{scheme}://{USER}:{password}@{host}:{port}"


# -- the audit proper ---------------------------------------------------------------------------


# Fast: a real pproxy's 407 reached through the exchange layer, and a dead proxy through ALL_PROXY.
@pytest.mark.parametrize(
    ("layer", "password"), layer_password_cases({("exchange", "plain"), ("env_all", "encoded")})
)
def test_every_command_hides_a_password_that_fails_at_the_proxy(
    layer: str,
    password: str,
    pproxy: dict[str, str],
    tmp_path: Path,
    logs: pytest.LogCaptureFixture,
) -> None:
    target_port = _closed_port()
    # Alternate the failure: refused by a real proxy (HTTP 407 / SOCKS auth) or no proxy at all.
    if password == "plain":
        host, port = _endpoint(pproxy["http_auth" if LAYERS.index(layer) % 2 else "socks5_auth"])
        scheme = "http" if LAYERS.index(layer) % 2 else "socks5h"
    else:
        host, port, scheme = "127.0.0.1", _closed_port(), "http"
    setup = make_setup(
        layer, _proxy_url(scheme, PASSWORDS[password], host, port), tmp_path, target_port
    )
    probed_through_proxy = False
    for args, outputs in command_matrix(setup, target_port, tmp_path):
        outcome = invoke(args, setup.env, outputs)
        audit(outcome)
        assert outcome.exit_code in (0, 1), (outcome.args, outcome.stdout, outcome.stderr)
        if args[0] == "probe" and "--format" in args and args[args.index("--format") + 1] == "json":
            report = json.loads(outcome.stdout or next(iter(outcome.files.values())))
            proxies = [r["proxy"]["url"] for r in report["results"] if r["proxy"]["url"]]
            probed_through_proxy = probed_through_proxy or bool(proxies)
            for url in proxies:
                assert f"{USER}:***@" in url
            # A route is named by its redacted URL (or its config name) in every result.
            for route in (r["route"] for r in report["results"] if "@" in r["route"]):
                assert f"{USER}:***@" in route
    assert probed_through_proxy, "no probe went through the layer's proxy: the audit saw nothing"
    audit_logs(logs)


def test_proxy_auth_errors_are_produced_and_masked(
    pproxy: dict[str, str], tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    """The wrong credentials really reach pproxy, and its refusal is reported without them."""
    target_port = _closed_port()
    for scheme, listener in (("http", "http_auth"), ("socks5h", "socks5_auth")):
        host, port = _endpoint(pproxy[listener])
        setup = make_setup("flag", _proxy_url(scheme, PLAIN, host, port), tmp_path, target_port)
        outcome = invoke(
            [
                "probe",
                "audits",
                "--timeout",
                TIMEOUT,
                "--format",
                "json",
                *setup.flag_args,
                *setup.common,
            ],
            setup.env,
        )
        audit(outcome)
        report = json.loads(outcome.stdout)
        kinds = {r["error"]["kind"] for r in report["results"] if r["error"]}
        assert kinds == {"proxy_auth"}, report
        messages = " ".join(r["error"]["message"] for r in report["results"])
        assert f"{USER}:***@" in messages
    # The lab's simulators behind the same refusing proxy, in every format.
    host, port = _endpoint(pproxy["http_auth"])
    lab_proxy = _proxy_url("http", ENCODED, host, port)
    for output_format in ("table", "json", "junit", "prometheus"):
        args = ["probe", "deribit", "--lab", "--timeout", TIMEOUT, "--proxy", lab_proxy]
        outcome = invoke([*args, "--format", output_format], {})
        audit(outcome)
        assert outcome.exit_code == 1, outcome.stderr
        if output_format != "prometheus":  # metrics carry the proxy's scheme, not its URL
            assert "alice:***@" in outcome.stdout
    audit_logs(logs)


MALFORMED = {
    "not_a_port": "http://{user}:{pw}@127.0.0.1:notaport",
    "bad_scheme": "ftp://{user}:{pw}@127.0.0.1:21",
    "no_scheme": "{user}:{pw}@127.0.0.1:3128",
    "path": "http://{user}:{pw}@127.0.0.1:3128/path",
    "socks4_password": "socks4://{user}:{pw}@127.0.0.1:1080",
    "bad_ipv6": "http://{user}:{pw}@[::1:3128",
}


# Fast: three cases that between them meet all six malformations (two each, rotating).
@pytest.mark.parametrize(
    ("layer", "password"),
    layer_password_cases({("flag", "plain"), ("exchange", "plain"), ("profile", "encoded")}),
)
def test_a_malformed_proxy_url_is_refused_without_its_password(
    layer: str, password: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    target_port = _closed_port()
    # Two malformations per case, rotating, so that each one meets several layers in the run.
    names = list(MALFORMED)
    first = (LAYERS.index(layer) * 2 + list(PASSWORDS).index(password)) % len(names)
    for name in (names[first], names[(first + 3) % len(names)]):
        url = MALFORMED[name].format(user=USER, pw=PASSWORDS[password])
        setup = make_setup(layer, url, tmp_path / name, target_port)
        flag, common, via = setup.flag_args, setup.common, setup.via_args
        ws_url = f"ws://127.0.0.1:{target_port}/ws"
        runs = [
            [
                "probe",
                "audits",
                "auditp",
                "--format",
                "json",
                "--timeout",
                TIMEOUT,
                *flag,
                *via,
                *common,
            ],
            ["proxy", "explain", "auditp", "--format", "json", *flag, *common],
            ["ssl", "explain", "audits", *common],
            ["ws", ws_url, "--timeout", TIMEOUT, *flag, *setup.config_args],
            ["watch", "audits", "--count", "1", "--timeout", TIMEOUT, *flag, *via, *common],
            ["serve", "--listen", "127.0.0.1:0", *flag, *via, *common],
            ["profiles", "show", "audits", "--profiles", str(setup.profiles_dir)],
        ]
        refused = 0
        for args in runs:
            outcome = invoke(args, setup.env)
            audit(outcome)
            # Refused as a usage error (2), or not consulted at all by this command (0/1): a
            # proxy layer that does not apply must not stop it.
            assert outcome.exit_code in (0, 1, 2), (args, outcome.stderr)
            refused += outcome.exit_code == 2
        assert refused, f"no command refused {name} in layer {layer}"
    audit_logs(logs)


# -- mpnet serve: one scrape of /probe and /probe?debug=true ------------------------------------


async def _scrape_in_process(setup: Setup) -> list[str]:
    from aiohttp.test_utils import TestClient, TestServer

    from mpnet.config.file import load_config
    from mpnet.config.layers import NetworkOptions
    from mpnet.config.profiles import load_profiles
    from mpnet.core.route import parse_routes
    from mpnet.probe.exporter import ProbeExporter
    from mpnet.serve.app import build_app

    env = dict(setup.env)
    config_path = setup.config_args[1] if setup.config_args else None
    config = load_config(config_path, env=env, cwd=setup.profiles_dir)
    exporter = ProbeExporter(
        list(load_profiles([str(setup.profiles_dir)], env=env)),
        config=config,
        options=NetworkOptions(proxy=setup.flag_args[1] if setup.flag_args else None),
        env=env,
        timeout=float(TIMEOUT),
        system_store=False,
        routes=parse_routes(setup.via_args[1::2], config.routes),
    )
    bodies = []
    async with TestClient(TestServer(build_app(exporter))) as client:
        for query in (
            "exchange=audits",
            "exchange=audits&debug=true",
            "exchange=auditp&debug=true",
            "exchange=nope",
            "exchange=audits&route=vault",
            "exchange=audits&route=vaulx",
        ):
            response = await client.get(f"/probe?{query}")
            bodies.append(await response.text())
        # The pages for people: the status page, a probe as HTML, the kept probe.
        for path in (
            "/",
            "/probe?exchange=audits&format=html",
            "/recent?exchange=audits&target=rest",
        ):
            bodies.append(await (await client.get(path)).text())
    return bodies


@pytest.mark.parametrize("layer", LAYERS)
def test_serve_scrapes_hide_the_password(
    layer: str, pproxy: dict[str, str], tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    host, port = _endpoint(pproxy["http_auth"])
    target_port = _closed_port()
    setup = make_setup(layer, _proxy_url("http", ENCODED, host, port), tmp_path, target_port)
    bodies = asyncio.run(_scrape_in_process(setup))
    for body in bodies:
        assert_no_secret(body, f"serve scrape ({layer})")
    assert "probe_success" in bodies[0]
    proxies = [
        result["proxy"]["url"]
        for body in bodies[1:3]
        for result in json.loads(body)["results"]
        if result["proxy"]["url"]
    ]
    assert proxies, "no scrape went through the layer's proxy: the audit saw nothing"
    assert all(url.startswith(f"http://{USER}:***@") for url in proxies), proxies
    audit_logs(logs)


# -- real child processes, with --debug -------------------------------------------------------


def _child_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    dropped = ("proxy", "ssl_cert", "mpnet_", "request_method")
    env = {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in dropped)}
    env["XDG_CONFIG_HOME"] = str(home)
    env.update(extra)
    return env


def _run_child(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mpnet", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )


# Slow (a child process per command and layer, a hardening sweep): CI's second step runs it.
@pytest.mark.slow
def test_child_processes_with_debug_mask_the_password(
    pproxy: dict[str, str], tmp_path: Path
) -> None:
    target_port = _closed_port()
    host, port = _endpoint(pproxy["socks5_auth"])
    cases: list[tuple[list[str], dict[str, str], int]] = []
    passwords = [PLAIN, ENCODED, PLAIN, ENCODED, PLAIN]
    pw = iter(passwords)
    bad = make_setup(
        "flag", f"http://{USER}:{next(pw)}@127.0.0.1:notaport", tmp_path / "bad", target_port
    )
    cases.append((["--debug", "probe", "audits", *bad.flag_args, *bad.common], {}, 2))
    bad_config = make_setup(
        "service", f"http://{USER}:{next(pw)}@[::1:3128", tmp_path / "badc", target_port
    )
    cases.append((["--debug", "proxy", "explain", "audits", *bad_config.common], {}, 2))
    bad_profile = make_setup(
        "profile", f"ftp://{USER}:{next(pw)}@h:21", tmp_path / "badp", target_port
    )
    cases.append((["--debug", "profiles", "show", "audits", *bad_profile.common], {}, 2))
    bad_via = make_setup(
        "via", f"socks5h://{USER}:{PLAIN}@127.0.0.1:notaport", tmp_path / "badv", target_port
    )
    cases.append((["--debug", "probe", "audits", *bad_via.via_args, *bad_via.common], {}, 2))
    env_setup = make_setup(
        "env_https", _proxy_url("socks5h", next(pw), host, port), tmp_path / "env", target_port
    )
    cases.append(
        (
            [
                "--debug",
                "probe",
                "audits",
                "auditp",
                "--timeout",
                TIMEOUT,
                "--format",
                "json",
                *env_setup.common,
            ],
            {"HTTPS_PROXY": env_setup.proxy_url, "http_proxy": env_setup.proxy_url},
            1,
        )
    )
    cases.append(
        (
            ["--debug", "ws", f"wss://127.0.0.1:{target_port}/", "--timeout", TIMEOUT],
            {"HTTPS_PROXY": f"http://{USER}:{next(pw)}@127.0.0.1:bad"},
            2,
        )
    )
    for args, extra, expected in cases:
        done = _run_child(args, _child_env(tmp_path, extra), tmp_path)
        assert_no_secret(done.stdout, f"stdout of {args}")
        assert_no_secret(done.stderr, f"stderr of {args}")
        assert done.returncode == expected, (args, done.stderr.decode()[-2000:])
        if expected == 2:
            # --debug: the traceback path is the one under audit here.
            assert b"Traceback" in done.stderr, done.stderr.decode()[-2000:]


# Slow (a serve child process; test_serve_scrapes_hide_the_password checks the same in
# process): CI's second step runs it.
@pytest.mark.slow
def test_serve_child_process_scrapes_hide_the_password(
    pproxy: dict[str, str], tmp_path: Path
) -> None:
    host, port = _endpoint(pproxy["http_auth"])
    target_port = _closed_port()
    setup = make_setup("service", _proxy_url("http", PLAIN, host, port), tmp_path, target_port)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpnet",
            "--debug",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            TIMEOUT,
            *setup.common,
        ],
        cwd=tmp_path,
        env=_child_env(tmp_path, {}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stderr is not None
        banner = b""
        while b"serving probes" not in banner:
            line = child.stderr.readline()
            assert line, f"mpnet serve exited: {banner!r}"
            banner += line
        match = re.search(rb"http://127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        bodies = []
        for query in ("exchange=audits", "exchange=auditp&debug=true"):
            connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
            connection.request("GET", f"/probe?{query}")
            bodies.append(connection.getresponse().read())
            connection.close()
    finally:
        child.terminate()
        out, err = child.communicate(timeout=30)
    for body in bodies:
        assert_no_secret(body, "serve child scrape")
    assert b"probe_success" in bodies[0]
    assert_no_secret(out, "serve child stdout")
    assert_no_secret(banner + err, "serve child stderr")
