"""Routes end to end: ``mpnet probe --via`` through real proxies on 127.0.0.1 (pproxy with and
without a password, a dead port), a look-alike exchange that answers through a "CDN", a named
route from a config file, the address families, and ``serve`` / ``watch`` with routes."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from fixtures_servers import TLSMaterial, closed_port, make_tls_material, start_pproxy
from mpnet.cli.app import get_app
from route_servers import AnycastRelay, Edge, LoopThread, start_edge, write_lookalike_profile

USER = "routeuser"
PASSWORD = "R0ute-Pa55word"


class World:
    """Everything the route tests share: the TLS material, two edges of the look-alike (FRA60
    answers at the address in the profile, NRT57 only through the anycast relay), pproxy with
    an open HTTP listener and a SOCKS5 listener that wants a password, and a dead port."""

    def __init__(self, tmp: Path) -> None:
        self.tls: TLSMaterial = make_tls_material(tmp)
        self.loop = LoopThread()
        self.edges: list[Edge] = []
        self.fra = self.start_edge("FRA60")
        self.nrt = self.start_edge("NRT57")
        self.relay = self.loop.run(AnycastRelay(to_port=self.nrt.port).start())
        self.proxy = start_pproxy({"http": "http", "socks5_auth": f"socks5#{USER}:{PASSWORD}"})
        self.dead = f"http://127.0.0.1:{closed_port()}"
        self.profiles = write_lookalike_profile(tmp / "profiles", self.fra.port)
        write_lookalike_profile(tmp / "profiles", self.fra.port, name="denied", path="/deny")

    def start_edge(self, pop: str, *, secure: bool = True) -> Edge:
        context = self.tls.server_context() if secure else None
        edge: Edge = self.loop.run(start_edge(Edge(pop), context))
        self.edges.append(edge)
        return edge

    @property
    def http_proxy(self) -> str:
        return self.proxy.urls["http"]

    @property
    def socks_proxy(self) -> str:
        # pproxy's socks5 listener, with remote DNS and the right credentials.
        return "socks5h" + self.proxy.urls["socks5_auth"][len("socks5") :]

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--profiles", str(self.profiles), "--ca-bundle", str(self.tls.ca_pem)]

    def close(self) -> None:
        self.proxy.stop()
        self.loop.run(self.relay.stop())
        for edge in self.edges:
            assert edge.runner is not None
            self.loop.run(edge.runner.cleanup())
        self.loop.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = World(tmp_path_factory.mktemp("routes"))
    try:
        yield built
    finally:
        built.close()


runner = CliRunner()


def verdicts(out: str, name: str = "lookalike") -> list[str]:
    """The verdict lines for ``name``, each joined with the lines it wrapped onto (they start
    under its text, past ``  NAME: ``)."""
    head = f"  {name}: "
    found: list[str] = []
    for line in out.splitlines():
        if line.startswith(head):
            found.append(line)
        elif found and line.startswith(" " * len(head)) and line.strip():
            found[-1] += " " + line.strip()
        elif found and not line.startswith(" " * len(head)):
            head = "\0"  # past the verdicts: nothing more joins
    return found


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = runner.invoke(get_app(), args)
    return result.exit_code, result.stdout, result.stderr


def no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD.lower() not in text.lower()


# -- probe: three real routes and a dead one ------------------------------------------------------


def test_routes_through_real_proxies_are_compared(world: World) -> None:
    code, out, err = invoke(
        world.args(
            "probe",
            "lookalike",
            "--via",
            "direct",
            "--via",
            world.http_proxy,
            "--via",
            world.socks_proxy,
            "--via",
            world.dead,
            "--format",
            "json",
        )
    )
    no_password(out, err)
    assert code == 1, err  # the dead route failed
    report = json.loads(out)
    socks_name = f"socks5h://{USER}:***@127.0.0.1:{world.socks_proxy.rsplit(':', 1)[1]}"
    names = ["direct", world.http_proxy, socks_name, world.dead]
    by = {(r["target"], r["route"]): r for r in report["results"]}
    assert set(by) == {(t, n) for t in ("rest", "ws") for n in names}
    for target in ("rest", "ws"):
        for name in names[:3]:
            result = by[(target, name)]
            assert result["ok"], result["error"]
            assert result["proxy"]["layer"] == "route"
            # The look-alike's CDN headers name the edge, on the REST answer and the upgrade.
            assert result["edge"]["cdn"] == "CloudFront"
            assert result["edge"]["pop"] == "FRA60"
            assert result["edge"]["id"].startswith("LookAlikeFRA60x")
            assert result["samples"][0]["edge"] == result["edge"]
            # A healthy answer through a CDN is not a finding.
            assert result["findings"] == []
            addresses = result["addresses"]
            assert addresses["of"] == ("target" if name == "direct" else "proxy")
            assert addresses["family"] == "ipv4"
            assert addresses["resolved"] == [{"address": "127.0.0.1", "family": "ipv4"}]
        dead = by[(target, world.dead)]
        assert not dead["ok"]
        assert [f["code"] for f in dead["findings"]] == ["PROXY_UNREACHABLE"]
        assert dead["edge"] == {"cdn": None, "pop": None, "id": None}
        assert dead["addresses"]["connected"] is None
        assert dead["addresses"]["failed"][0]["reason"] == "Connection refused"
    comparisons = {c["target"]: c for c in report["comparison"]}
    assert set(comparisons) == {"rest", "ws"}
    for comparison in comparisons.values():
        ranking = comparison["ranking"]
        assert comparison["fastest"] == ranking[0]["route"]
        assert ranking[0]["delta_ms"] == 0.0
        assert [r["route"] for r in ranking[:3]] != [] and ranking[-1]["route"] == world.dead
        assert ranking[-1] == {
            "route": world.dead,
            "ok": False,
            "p50_ms": None,
            "p95_ms": None,
            "delta_ms": None,
            "uncertain": False,
            "failure": "PROXY_UNREACHABLE",
            "edge": {"cdn": None, "pop": None, "id": None},
        }
        working = ranking[:3]
        assert [r["p50_ms"] for r in working] == sorted(r["p50_ms"] for r in working)
        assert all(r["delta_ms"] >= 0 for r in working)


def test_the_table_groups_routes_and_marks_the_fastest_in_words(world: World) -> None:
    code, out, err = invoke(
        world.args("probe", "lookalike", "--via", "direct", "--via", world.dead, "-v")
    )
    assert code == 1, err
    lines = out.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("route: "))]
    heads = [
        i for i, line in enumerate(table) if line.strip() in ("lookalike rest", "lookalike ws")
    ]
    assert len(heads) == 2, out
    for head in heads:
        direct, dead = lines[head + 1], lines[head + 2]
        assert direct.strip().startswith("direct") and direct.rstrip().endswith("fastest")
        assert dead.strip().startswith(world.dead[:18]) and "FAIL tcp" in dead
    assert "Routes" in lines
    [verdict] = verdicts(out)
    assert "only direct works (rest, ws)" in verdict
    assert f"{world.dead}: PROXY_UNREACHABLE" in verdict
    assert "every route reaches" not in verdict
    # -v: the edge beside the answer in the waterfall, the addresses and the edge below it.
    assert re.search(r"HTTP first byte .* edge CloudFront FRA60", out), out
    assert re.search(r"WebSocket upgrade .* edge CloudFront FRA60", out), out
    assert "addresses (target): 127.0.0.1 (IPv4 1); connected to 127.0.0.1:" in out
    assert "edge: CloudFront FRA60 (id LookAlikeFRA60x" in out


def test_routes_reach_different_edges_and_the_verdict_says_so(world: World) -> None:
    code, out, err = invoke(
        world.args(
            "probe", "lookalike", "--no-ws", "--via", "direct", "--via", world.relay.url, "-n", "2"
        )
    )
    assert code == 0, err
    [verdict] = verdicts(out)
    assert verdict.endswith(
        f"direct reaches CloudFront FRA60, {world.relay.url} reaches NRT57 (rest)"
    ) or verdict.endswith(
        f"{world.relay.url} reaches CloudFront NRT57, direct reaches FRA60 (rest)"
    )
    assert world.relay.tunnels >= 2


def test_a_refusal_through_the_cdn_names_its_edge(world: World) -> None:
    code, out, _ = invoke(world.args("probe", "denied", "--no-ws", "--format", "json"))
    assert code == 1
    [result] = json.loads(out)["results"]
    assert result["route"] == "direct"
    assert result["edge"]["pop"] == "FRA60"
    assert [f["code"] for f in result["findings"]] == ["WAF_BLOCKED"]


# Slow (a whole CLI run over three routes; tests/config/test_config_routes.py checks the
# names): CI's second step runs it.
@pytest.mark.slow
def test_a_named_route_from_the_config_file(world: World, tmp_path: Path) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        f"routes:\n  lab-proxy: {world.socks_proxy}\n  home: direct\n"
        "exchanges:\n  lookalike:\n    routes: [home, lab-proxy]\n",
        encoding="utf-8",
    )
    code, out, err = invoke(world.args("probe", "lookalike", "--config", str(config)))
    no_password(out, err)
    assert code == 0, err
    assert "route: lab-proxy = socks5h://routeuser:***@127.0.0.1:" in out
    assert ", mpnet.yaml:2 routes.lab-proxy)" in out.replace(str(tmp_path) + "/", "")
    [verdict] = verdicts(out)
    assert "home" in verdict and "lab-proxy" in verdict
    code, out, err = invoke(
        world.args("probe", "lookalike", "--config", str(config), "--format", "json")
    )
    report = json.loads(out)
    assert sorted({r["route"] for r in report["results"]}) == ["home", "lab-proxy"]
    via = next(r for r in report["results"] if r["route"] == "lab-proxy")
    assert via["proxy"]["source"].endswith(
        "exchanges.lookalike.routes lab-proxy, " + str(config) + ":2 routes.lab-proxy"
    )
    # --via picks among the named routes instead of the exchange's defaults.
    code, out, err = invoke(
        world.args(
            "probe", "lookalike", "--config", str(config), "--via", "lab-proxy", "--format", "json"
        )
    )
    assert code == 0, err
    assert {r["route"] for r in json.loads(out)["results"]} == {"lab-proxy"}


def test_prometheus_gets_a_route_label_and_the_edge(world: World) -> None:
    code, out, err = invoke(
        world.args(
            "probe",
            "lookalike",
            "--via",
            "direct",
            "--via",
            world.http_proxy,
            "--format",
            "prometheus",
        )
    )
    assert code == 0, err
    samples = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(out)
        for s in family.samples
    ]
    assert all("route" in labels for _, labels, _ in samples), samples[:3]
    edges = {
        (labels["route"], labels["target"], labels["cdn"], labels["pop"])
        for n, labels, v in samples
        if n == "mpnet_probe_edge_info" and v == 1
    }
    assert edges == {
        (route, target, "CloudFront", "FRA60")
        for route in ("direct", world.http_proxy)
        for target in ("rest", "ws")
    }
    assert "# mpnet: routes: lookalike:" in out


def test_junit_has_one_case_per_route(world: World) -> None:
    code, out, _ = invoke(
        world.args(
            "probe", "lookalike", "--via", "direct", "--via", world.dead, "--format", "junit"
        )
    )
    assert code == 1
    names = re.findall(r'<testcase classname="lookalike" name="([^"]+)"', out)
    assert sorted(names) == sorted(
        [f"{t} via {r}" for t in ("rest", "ws") for r in ("direct", world.dead)]
    )


# -- address families ----------------------------------------------------------------------------


@pytest.fixture
def dual_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dual-stack.test`` resolves to ::1 first, then 127.0.0.1 (as a name with AAAA and A
    records does); the look-alike listens on 127.0.0.1 only, so ::1 refuses."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, family: int = 0, *args: Any, **kwargs: Any) -> Any:
        if host != "dual-stack.test":
            return real(host, port, family, *args, **kwargs)
        found = []
        if family in (0, socket.AF_INET6):
            found.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", int(port), 0, 0)))
        if family in (0, socket.AF_INET):
            found.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port))))
        return found

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.fixture
def plain_profiles(world: World, tmp_path: Path) -> Path:
    plain = world.start_edge("PLAIN1", secure=False)
    return write_lookalike_profile(
        tmp_path / "plain", plain.port, name="dual", host="dual-stack.test", secure=False
    )


def test_a_failed_family_is_reported(dual_stack: None, plain_profiles: Path) -> None:
    code, out, err = invoke(
        ["probe", "dual", "--no-ws", "--profiles", str(plain_profiles), "--format", "json"]
    )
    assert code == 0, err
    [result] = json.loads(out)["results"]
    addresses = result["addresses"]
    assert [a["family"] for a in addresses["resolved"]] == ["ipv6", "ipv4"]
    assert addresses["family"] == "ipv4"
    assert addresses["failed"][0]["family"] == "ipv6"
    [note] = result["address_notes"]
    assert note.startswith("IPv6 [::1]:") and "then IPv4 127.0.0.1:" in note
    code, out, _ = invoke(["probe", "dual", "--no-ws", "--profiles", str(plain_profiles), "-v"])
    assert "addresses (target): ::1, 127.0.0.1 (IPv4 1, IPv6 1)" in out
    assert "! IPv6 [::1]:" in out


@pytest.mark.parametrize(("flag", "ok", "family"), [("-4", True, "ipv4"), ("-6", False, "ipv6")])
def test_dash_4_and_dash_6_force_the_family(
    dual_stack: None, plain_profiles: Path, flag: str, ok: bool, family: str
) -> None:
    code, out, err = invoke(
        ["probe", "dual", "--no-ws", flag, "--profiles", str(plain_profiles), "--format", "json"]
    )
    [result] = json.loads(out)["results"]
    assert result["ok"] is ok, err
    assert code == (0 if ok else 1)
    assert {a["family"] for a in result["addresses"]["resolved"]} == {family}
    assert result["address_notes"] == []
    if not ok:
        assert result["error"]["kind"] == "refused"


def test_dash_6_on_an_ipv4_address_says_why(world: World) -> None:
    code, out, _ = invoke(world.args("probe", "lookalike", "--no-ws", "-6", "--format", "json"))
    assert code == 1
    [result] = json.loads(out)["results"]
    assert result["error"]["phase"] == "dns"
    assert result["error"]["message"] == (
        "cannot resolve: 127.0.0.1 is not an IPv6 address, and -6 allows only IPv6"
    )


# -- serve and watch -------------------------------------------------------------------------------


async def test_serve_compares_routes_and_every_series_has_a_route(world: World) -> None:
    from urllib.parse import quote

    from aiohttp.test_utils import TestClient, TestServer

    from mpnet.config.file import parse_config_text
    from mpnet.config.layers import NetworkOptions
    from mpnet.config.profiles import load_profiles
    from mpnet.core.route import parse_routes
    from mpnet.probe.exporter import ProbeExporter
    from mpnet.serve.app import build_app

    config = parse_config_text(f"routes:\n  lab: {world.socks_proxy}\n", "mpnet.yaml")
    exporter = ProbeExporter(
        list(load_profiles([str(world.profiles)], env={})),
        config=config,
        options=NetworkOptions(ca_bundle=str(world.tls.ca_pem)),
        env={},
        timeout=5,
        system_store=False,
        routes=parse_routes(["direct", world.http_proxy], config.routes),
    )

    def series(text: str) -> list[tuple[str, dict[str, str]]]:
        return [
            (s.name, s.labels)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    async with TestClient(TestServer(build_app(exporter))) as client:
        response = await client.get("/probe?exchange=lookalike")
        text = await response.text()
        assert response.status == 200, text
        found = series(text)
        probe_series = [(n, labels) for n, labels in found if n != "mpnet_probe_timeout_seconds"]
        assert probe_series and all("route" in labels for _, labels in probe_series)
        assert {labels["route"] for n, labels in found if n == "mpnet_probe_success"} == {
            "direct",
            world.http_proxy,
        }
        assert {
            (labels["route"], labels["pop"]) for n, labels in found if n == "mpnet_probe_edge_info"
        } == {("direct", "FRA60"), (world.http_proxy, "FRA60")}

        response = await client.get("/probe?exchange=lookalike&target=rest&route=lab")
        text = await response.text()
        no_password(text)
        assert {labels["route"] for n, labels in series(text) if n == "mpnet_probe_success"} == {
            "lab"
        }
        # A --via route is asked for by its name, the URL as every output shows it.
        response = await client.get(
            f"/probe?exchange=lookalike&target=rest&route={quote(world.http_proxy)}&debug=true"
        )
        assert [r["route"] for r in json.loads(await response.text())["results"]] == [
            world.http_proxy
        ]

        response = await client.get("/probe?exchange=lookalike&route=lbb")
        assert response.status == 400
        assert (await response.text()).startswith(
            "route=: unknown route 'lbb'; did you mean 'lab'?; known routes: direct, "
        )
        response = await client.get("/probe?exchange=lookalike&route=http://127.0.0.1:1")
        assert response.status == 400
        assert "route= takes a route name" in await response.text()
        response = await client.get("/probe?exchange=lookalike&route=direct&route=direct")
        assert response.status == 400
        assert "given twice" in await response.text()


def test_watch_has_a_row_per_route(world: World) -> None:
    code, out, err = invoke(
        world.args(
            "watch",
            "lookalike",
            "--via",
            "direct",
            "--via",
            world.http_proxy,
            "-c",
            "1",
            "--interval",
            "0.1",
        )
    )
    assert code == 0, (out, err)
    cycle = [line for line in out.splitlines() if line.startswith("cycle 1 ")]
    assert sorted(line.split(" ok ")[0] for line in cycle) == sorted(
        f"cycle 1 lookalike {target} via {route}"
        for target in ("rest", "ws")
        for route in ("direct", world.http_proxy)
    )
