"""Addresses: families, the JSON object, and the note when one family fails."""

from __future__ import annotations

import pytest

from mpnet.core.address import (
    ConnectFailure,
    addresses_dict,
    family_note,
    family_of,
    split_address,
)


@pytest.mark.parametrize(
    ("address", "split", "family"),
    [
        ("127.0.0.1:443", ("127.0.0.1", 443), "ipv4"),
        ("[::1]:443", ("::1", 443), "ipv6"),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80), "ipv6"),
        ("2001:db8::1", ("2001:db8::1", None), "ipv6"),
        ("10.0.0.5", ("10.0.0.5", None), "ipv4"),
        ("example.com:443", ("example.com", 443), None),
    ],
)
def test_split_and_family(address: str, split: tuple[str, int | None], family: str) -> None:
    assert split_address(address) == split
    assert family_of(address) == family


def test_addresses_dict_lists_every_address_and_the_connected_one() -> None:
    data = addresses_dict(
        ["[2001:db8::1]:443", "192.0.2.7:443"],
        "192.0.2.7:443",
        [ConnectFailure("[2001:db8::1]:443", "Network is unreachable")],
        via_proxy=False,
    )
    assert data == {
        "of": "target",
        "resolved": [
            {"address": "2001:db8::1", "family": "ipv6"},
            {"address": "192.0.2.7", "family": "ipv4"},
        ],
        "connected": "192.0.2.7:443",
        "family": "ipv4",
        "failed": [
            {"address": "[2001:db8::1]:443", "family": "ipv6", "reason": "Network is unreachable"}
        ],
    }


def test_ipv6_failing_before_ipv4_connects_is_said() -> None:
    note = family_note(
        ["[::1]:443", "127.0.0.1:443"],
        "127.0.0.1:443",
        [ConnectFailure("[::1]:443", "Connection refused")],
    )
    assert note == (
        "IPv6 [::1]:443 (Connection refused) failed, then IPv4 127.0.0.1:443 connected: the "
        "tcp figure includes the failed try"
    )


def test_both_families_failing_is_said() -> None:
    failures = [
        ConnectFailure("[::1]:443", "Connection refused"),
        ConnectFailure("127.0.0.1:443", "Connection refused"),
    ]
    note = family_note(["[::1]:443", "127.0.0.1:443"], None, failures)
    assert note is not None and note.startswith("both families failed: IPv6 [::1]:443")


@pytest.mark.parametrize(
    ("addresses", "connected", "failures"),
    [
        # One family only: a failure before the connection is round robin, not a family issue.
        (["192.0.2.1:443", "192.0.2.2:443"], "192.0.2.2:443", ["192.0.2.1:443"]),
        # Both families, nothing failed.
        (["[::1]:443", "127.0.0.1:443"], "[::1]:443", []),
        # Only IPv4 resolved and it failed: no other family to compare with.
        (["127.0.0.1:443"], None, ["127.0.0.1:443"]),
    ],
)
def test_no_note_without_a_family_difference(
    addresses: list[str], connected: str | None, failures: list[str]
) -> None:
    assert family_note(addresses, connected, [ConnectFailure(a, "x") for a in failures]) is None
