"""What docs/ci.md and the README show from the lab is what the lab does: ``--fault`` works with
``probe --lab`` (one command gives the failing JUnit report docs/ci.md prints), and a geo-blocked
WebSocket upgrade is diagnosed as the README's example says."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from mpnet.cli.app import get_app

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COLUMNS": "80", "TERM": "dumb"}


def test_ci_docs_one_command_lab_report_with_a_fault(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert "without faults" not in text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("mpnet probe --lab ") and "--fault" in line
    )
    args = shlex.split(line.split(";")[0])[1:]
    report = tmp_path / "report.xml"
    args[args.index("report.xml")] = str(report)
    result = CliRunner().invoke(get_app(), args, env=TERMINAL)
    assert result.exit_code == 1, result.output
    suite = ET.parse(report).getroot()
    assert suite.get("failures") == "1" and suite.get("tests") == "2"
    failure = suite.find("./testcase[@classname='binance'][@name='rest']/failure")
    assert failure is not None and "GEO_BLOCKED" in (failure.get("message") or "")


def test_readme_geo_blocked_websocket_upgrade_is_as_shown() -> None:
    result = CliRunner().invoke(
        get_app(),
        [
            "probe",
            "--lab",
            "binance",
            "--no-rest",
            "--fault",
            "binance=geo_block",
            "--format",
            "json",
        ],
        env=TERMINAL,
    )
    assert result.exit_code == 1, result.output
    [ws] = json.loads(result.stdout)["results"]
    [finding] = [f for f in ws["findings"] if f["code"] == "GEO_BLOCKED"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"binance ws\n  ✗ GEO_BLOCKED (.*?)\n", readme)
    assert shown is not None, "the README's example lost binance ws's GEO_BLOCKED finding"
    # The first line of the finding as the README wraps it is where the real message starts.
    assert finding["message"].startswith(shown.group(1).strip())
