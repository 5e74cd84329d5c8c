"""TLS policy resolution: layer precedence, CA sources, and verify-off warnings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from mpnet.core.tls import TLSSetting, resolve_tls
from mpnet.errors import ConfigError
from mpnet.net.tls import build_ssl_context

OFF = TLSSetting(verify=False, reason="lab box", origin="exchanges.x.ssl")
ON = TLSSetting(verify=True, origin="exchanges.x.ssl")
CA = TLSSetting(ca_bundle="/corp.pem", origin="proxy.ssl")


@pytest.mark.parametrize(
    ("layers", "env", "system", "verify", "ca", "layer"),
    [
        ({}, {}, True, True, "system", "default"),
        ({}, {}, False, True, "certifi", "default"),
        ({}, {"SSL_CERT_FILE": "/env.pem"}, True, True, "/env.pem", "env"),
        ({}, {"SSL_CERT_DIR": "/env.d"}, True, True, "/env.d", "env"),
        ({"service": CA}, {"SSL_CERT_FILE": "/env.pem"}, True, True, "/corp.pem", "service"),
        ({"exchange": OFF, "service": CA}, {}, True, False, None, "exchange"),
        (
            {"cli": TLSSetting(ca_bundle="/cli.pem"), "exchange": OFF},
            {},
            True,
            True,
            "/cli.pem",
            "cli",
        ),
        ({"cli": TLSSetting(verify=False, reason="--insecure")}, {}, True, False, None, "cli"),
        (
            {"exchange": ON, "service": TLSSetting(verify=False)},
            {},
            True,
            True,
            "system",
            "exchange",
        ),
        ({"exchange": ON, "service": CA}, {}, True, True, "/corp.pem", "service"),
        (
            {"service": TLSSetting(verify=False)},
            {"SSL_CERT_FILE": "/e"},
            True,
            False,
            None,
            "service",
        ),
    ],
)
def test_precedence(
    layers: dict[str, TLSSetting],
    env: dict[str, str],
    system: bool,
    verify: bool,
    ca: str | None,
    layer: str,
) -> None:
    decision = resolve_tls(**layers, env=env, system_store=system)  # type: ignore[arg-type]
    assert (decision.verify, decision.ca, decision.layer) == (verify, ca, layer)
    assert [entry.layer for entry in decision.trace] == [
        "cli",
        "exchange",
        "service",
        "env",
        "default",
    ]
    assert sum(entry.verdict == "won" for entry in decision.trace) == 1


def test_verify_off_is_never_silent() -> None:
    decision = resolve_tls(exchange=OFF, system_store=True)
    assert not decision.verify
    assert decision.warnings and "OFF" in decision.warnings[0] and "lab box" in decision.warnings[0]
    assert decision.to_dict()["warnings"] == list(decision.warnings)
    assert resolve_tls(system_store=True).warnings == ()


def test_context_from_decisions(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    ctx = build_ssl_context(resolve_tls(cli=TLSSetting(ca_bundle=str(pem)), system_store=True))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1
    off = build_ssl_context(resolve_tls(cli=TLSSetting(verify=False), system_store=True))
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    certifi_ctx = build_ssl_context(resolve_tls(system_store=False))
    assert len(certifi_ctx.get_ca_certs()) > 10


def test_missing_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot load CA .*missing\.pem \(chosen by cli layer\)"):
        build_ssl_context(
            resolve_tls(cli=TLSSetting(ca_bundle=str(tmp_path / "missing.pem")), system_store=True)
        )
