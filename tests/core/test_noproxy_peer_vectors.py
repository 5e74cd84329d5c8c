"""mpnet's NO_PROXY matcher against curl's own expectations (curl tests/unit/unit1614.c).

The vectors are kept in the repository, in ``tests/data/curl-noproxy.tsv``: the rows of curl's
``tests/unit/unit1614.c`` at curl commit 5c61e168 (2026-08-22), as the file's header says.
Refresh them from that file of a newer curl (and update the header), never by hand. Columns:
host, no_proxy value, expected match. Values may carry significant spaces, so lines are split on
tabs only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mpnet.core.noproxy import match_no_proxy

VECTORS = Path(__file__).parents[1] / "data" / "curl-noproxy.tsv"


def _load_vectors() -> list[tuple[str, str, bool]]:
    rows = []
    for line in VECTORS.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#"):
            continue
        host, no_proxy, expected = line.split("\t")
        if (host, no_proxy, expected) == ("host", "no_proxy", "match"):
            continue
        assert expected in ("true", "false"), line
        rows.append((host, no_proxy, expected == "true"))
    return rows


ROWS = _load_vectors()


def test_vector_file_is_the_curl_copy_with_all_its_rows() -> None:
    # Guards against a parser that silently drops rows, and a copy that lost its provenance.
    assert VECTORS.read_text(encoding="utf-8").startswith(
        "# NO_PROXY matching expectations from curl's unit test tests/unit/unit1614.c, "
        "curl commit 5c61e168"
    )
    assert len(ROWS) == 78
    assert {expected for _, _, expected in ROWS} == {True, False}
    # The significant spaces survived the copy.
    assert ("192.168.0.1", "192.168.0.0/16 ", True) in ROWS


@pytest.mark.parametrize(("host", "no_proxy", "expected"), ROWS)
def test_agrees_with_curl(host: str, no_proxy: str, expected: bool) -> None:
    # curl's unit test checks the host only, so the port plays no part: use the https default.
    matched = match_no_proxy(host, 443, no_proxy)
    assert (matched is not None) is expected, f"host={host!r} no_proxy={no_proxy!r}"
