"""``mpnet lab``: usage errors exit 2; a real run prints what to probe and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config.profiles import load_profiles


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab", "--fault", "okx=teapot"], "unknown lab fault"),
        (["lab", "--fault", "okx"], "expected EXCHANGE=MODE"),
        (["lab", "--fault", "okx=drop_after"], "needs a value"),
        (["lab", "nowhere"], "unknown exchange 'nowhere'"),
        (["lab", "nowher"], "unknown exchange 'nowher'; known exchanges: binance"),
        (["lab", "derbit"], "unknown exchange 'derbit'; did you mean 'deribit'?"),
        (["lab", "--fault", "okx=wfa"], "unknown lab fault 'wfa'; did you mean 'waf'?"),
        (["lab", "--fault", "okx=geo-blok"], "did you mean 'geo_block'?"),
        (
            ["lab", "okx", "--fault", "binance=waf"],
            "--fault binance=waf: 'binance' is not among the probed exchanges (okx); name it "
            "too, or drop this --fault",
        ),
        (
            ["lab", "okx", "deribit", "--fault", "derbit=waf"],
            "'derbit' is not among the probed exchanges (deribit, okx); did you mean 'deribit'?",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(get_app(), args, env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr.replace("\n", "")
    assert "Traceback" not in result.output


async def test_lab_runs_until_interrupted(tmp_path: Path, env_clean: dict[str, str]) -> None:
    profiles_dir = tmp_path / "lab-profiles"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mpnet",
        "lab",
        "okx",
        "kucoin",
        "--fault",
        "okx=geo_block",
        "--profiles-dir",
        str(profiles_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_clean,
    )
    try:
        lines = []
        async with asyncio.timeout(30):
            while not lines or not lines[-1].startswith("  mpnet probe"):
                line = await process.stdout.readline()  # type: ignore[union-attr]
                assert line, "mpnet lab exited early"
                lines.append(line.decode().rstrip("\n"))
        text = "\n".join(lines)
        ca_file = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("CA"))
        assert "[fault: geo_block]" in text
        assert f"--profiles {profiles_dir} --ca-bundle {ca_file} kucoin okx" in text

        loaded = load_profiles(extra_dirs=[profiles_dir])
        kucoin = loaded.get("kucoin")
        assert kucoin.rest is not None and kucoin.rest.base_url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=ca_file)
        answer = await asyncio.to_thread(
            lambda: urllib.request.urlopen(kucoin.rest.health_url, context=context, timeout=10)
        )
        with answer:
            assert answer.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    assert process.returncode == 130, stderr.decode()
    assert not Path(ca_file).exists()
    assert (profiles_dir / "okx.yaml").is_file()
