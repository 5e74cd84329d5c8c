"""mpnet's NO_PROXY matcher against curl's own expectations (curl tests/unit/unit1614.c).

The vectors live in ``shared/peer-vectors/curl-noproxy.tsv`` beside the repository checkout and
are read at test time, never copied here. Columns: host, no_proxy value, expected match. Values
may carry significant spaces, so lines are split on tabs only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mpnet.core.noproxy import match_no_proxy

VECTORS = Path(__file__).parents[2].parent / "shared" / "peer-vectors" / "curl-noproxy.tsv"


def _load_vectors() -> list[tuple[str, str, bool]]:
    if not VECTORS.is_file():
        return []
    rows = []
    lines = VECTORS.read_text(encoding="utf-8").split("\n")
    for line in lines:
        if not line or line.startswith("#"):
            continue
        host, no_proxy, expected = line.split("\t")
        if (host, no_proxy, expected) == ("host", "no_proxy", "match"):
            continue
        assert expected in ("true", "false"), line
        rows.append((host, no_proxy, expected == "true"))
    return rows


ROWS = _load_vectors()


@pytest.mark.skipif(not VECTORS.is_file(), reason=f"curl peer vectors not found at {VECTORS}")
def test_vector_file_has_rows() -> None:
    # Guards against a parser that silently drops every row.
    assert len(ROWS) >= 70


@pytest.mark.skipif(not VECTORS.is_file(), reason=f"curl peer vectors not found at {VECTORS}")
@pytest.mark.parametrize(("host", "no_proxy", "expected"), ROWS or [("", "", False)])
def test_agrees_with_curl(host: str, no_proxy: str, expected: bool) -> None:
    # curl's unit test checks the host only, so the port plays no part: use the https default.
    matched = match_no_proxy(host, 443, no_proxy)
    assert (matched is not None) is expected, f"host={host!r} no_proxy={no_proxy!r}"
