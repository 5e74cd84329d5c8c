"""`mpnet probe --format junit|prometheus` end to end against `mpnet lab` (REST targets)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from mpnet_process import MpnetProcess
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mpnet.cli.app import get_app


@pytest.fixture(scope="module")
def lab_args(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """`probe` arguments that aim at a running `mpnet lab` where binance is geo-blocked."""
    workdir = tmp_path_factory.mktemp("lab")
    process = MpnetProcess(
        "lab",
        "okx",
        "binance",
        "--fault",
        "binance=geo_block",
        "--profiles-dir",
        str(workdir / "profiles"),
        cwd=str(workdir),
    )
    try:
        ca_file = process.wait_for(r"CA file: +(\S+)\n", stream="stdout").group(1)
        process.wait_for(r"profiles dir: ", stream="stdout")
        yield [
            "probe",
            "okx",
            "binance",
            "--no-ws",
            "--profiles",
            str(workdir / "profiles"),
            "--ca-bundle",
            ca_file,
        ]
    finally:
        process.stop()


def test_junit_file_for_ci(lab_args: list[str], tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    args = [*lab_args, "--format", "junit", "--output", str(report)]
    result = CliRunner().invoke(get_app(), args)
    assert result.exit_code == 1, result.output  # binance is geo-blocked
    suite = ET.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("classname"): c for c in suite.iter("testcase")}
    failure = cases["binance"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("http: GEO_BLOCKED")
    assert cases["okx"].find("failure") is None


def test_prometheus_text_on_stdout(lab_args: list[str]) -> None:
    result = CliRunner().invoke(get_app(), [*lab_args, "--format", "prometheus"])
    assert result.exit_code == 1
    success = {
        s.labels["exchange"]: s.value
        for family in text_string_to_metric_families(result.stdout)
        for s in family.samples
        if s.name == "mpnet_probe_success"
    }
    assert success == {"okx": 1.0, "binance": 0.0}
