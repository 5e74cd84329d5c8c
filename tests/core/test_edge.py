"""The CDN edge parser: which CDN answered, its point of presence and the request id."""

from __future__ import annotations

import pytest

from mpnet.core.edge import UNKNOWN_EDGE, Edge, edge_from_headers

CASES = [
    (
        "cloudfront pop and id",
        {
            "X-Amz-Cf-Pop": "NRT57-P2",
            "X-Amz-Cf-Id": "y4vLDxdKtTqDxW5igzPHWxTDsfKjlii88KlLj-rprxGG8MJLwxoT1lRs==",
            "Via": "1.1 0f6e1d.cloudfront.net (CloudFront)",
        },
        Edge("CloudFront", "NRT57", "y4vLDxdKtTqDxW5igzPHWxTDsfKjlii88KlLj-rprxGG8MJLwxoT1lRs=="),
    ),
    (
        "cloudfront lower-case names, pop without suffix",
        {"x-amz-cf-pop": "fra60", "x-cache": "Miss from cloudfront"},
        Edge("CloudFront", "FRA60", None),
    ),
    (
        "cloudfront seen only in Via",
        {"Via": "1.1 abc.cloudfront.net (CloudFront)"},
        Edge("CloudFront", None, None),
    ),
    (
        "cloudfront two pops (origin shield first), the last is the edge",
        {"X-Amz-Cf-Pop": "IAD89-C1, HKG62-C2"},
        Edge("CloudFront", "HKG62", None),
    ),
    (
        "cloudflare ray and colo",
        {"CF-RAY": "8c2f3b1a6d5e4f70-NRT", "Server": "cloudflare"},
        Edge("Cloudflare", "NRT", "8c2f3b1a6d5e4f70"),
    ),
    ("cloudflare server only", {"Server": "cloudflare"}, Edge("Cloudflare", None, None)),
    (
        "cloudflare malformed ray is kept as id only when it is a plain token",
        {"cf-ray": "not a ray"},
        Edge("Cloudflare", None, None),
    ),
    (
        "akamai ghost with a reference",
        {"Server": "AkamaiGHost", "Akamai-GRN": "0.6a3b1602.1700000000.1c2d3e4f"},
        Edge("Akamai", None, "0.6a3b1602.1700000000.1c2d3e4f"),
    ),
    (
        "akamai by its x-akamai headers",
        {"X-Akamai-Transformed": "9 - 0 pmb=mRUM,1", "Server": "nginx"},
        Edge("Akamai", None, None),
    ),
    (
        "fastly with shielding: the nearest cache is the last one",
        {
            "X-Served-By": "cache-iad-kiad7000025-IAD, cache-fra-eddf8230089-FRA",
            "Via": "1.1 varnish",
        },
        Edge("Fastly", "FRA", None),
    ),
    ("no cdn at all", {"Server": "nginx", "Content-Type": "application/json"}, UNKNOWN_EDGE),
    ("nothing", {}, UNKNOWN_EDGE),
    (
        "a pop that is not a pop is not passed on",
        {"X-Amz-Cf-Pop": "<script>alert(1)</script>"},
        Edge("CloudFront", None, None),
    ),
]


@pytest.mark.parametrize(("headers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_edge_from_headers(headers: dict[str, str], expected: Edge) -> None:
    assert edge_from_headers(headers) == expected


def test_pairs_with_a_repeated_header_are_joined() -> None:
    pairs = [("X-Amz-Cf-Pop", "IAD89-C1"), ("x-amz-cf-pop", "SIN2-C1")]
    assert edge_from_headers(pairs).pop == "SIN2"


@pytest.mark.parametrize(
    ("edge", "label"),
    [
        (Edge("CloudFront", "NRT57", "x"), "CloudFront NRT57"),
        (Edge("Akamai", None, None), "Akamai"),
        (UNKNOWN_EDGE, "no CDN seen"),
    ],
)
def test_label(edge: Edge, label: str) -> None:
    assert edge.label() == label
    assert edge.to_dict().keys() == {"cdn", "pop", "id"}
