"""Which CDN edge answered (pure): the CDN, its point of presence and the request's id, read from
the headers of a REST answer or a WebSocket upgrade answer.

What each CDN says about itself (their public documentation):

- CloudFront: ``X-Amz-Cf-Pop: NRT57-P2`` (the edge location: an airport code and a number, then
  the edge's own suffix), ``X-Amz-Cf-Id`` (the request id support asks for), ``Via: 1.1
  <id>.cloudfront.net (CloudFront)``, ``X-Cache: Hit from cloudfront``, ``Server: CloudFront``.
- Cloudflare: ``CF-RAY: 8c2f3b1a6d5e4f70-NRT`` (ray id, then the data centre's IATA code),
  ``Server: cloudflare``.
- Fastly: ``X-Served-By: cache-nrt-rjtf7700043-NRT`` (one entry per cache the request passed,
  the edge nearest the client last), with ``Via: 1.1 varnish``.
- Akamai: ``Server: AkamaiGHost`` or ``AkamaiNetStorage``, ``X-Akamai-*`` headers,
  ``Akamai-GRN`` (a request reference); Akamai does not name the edge location by default.

Values come from a server, so only short, plain tokens are kept: a point of presence or id that
does not look like one is reported as unknown (None), never passed on as it came.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: CDN names, as the CDNs spell themselves.
CLOUDFRONT = "CloudFront"
CLOUDFLARE = "Cloudflare"
FASTLY = "Fastly"
AKAMAI = "Akamai"

_TOKEN = re.compile(r"[A-Za-z0-9._=-]{1,96}")
_CF_POP = re.compile(r"([A-Za-z]{3}[0-9]{0,4})(?:-[A-Za-z0-9]{1,4})?")
_RAY = re.compile(r"([0-9A-Fa-f]{8,32})-([A-Za-z]{3})")
_FASTLY_NODE = re.compile(r"cache-[A-Za-z0-9-]*?-([A-Za-z]{3})")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Edge:
    """The CDN edge that answered: ``cdn`` (``CloudFront``, ``Cloudflare``, ``Fastly``,
    ``Akamai``), ``pop`` (its point of presence, e.g. ``NRT57``) and ``id`` (the request id the
    CDN's support asks for). Each is None when the headers do not say."""

    cdn: str | None = None
    pop: str | None = None
    id: str | None = None

    @property
    def known(self) -> bool:
        return self.cdn is not None

    def label(self) -> str:
        """``CloudFront NRT57``, ``Akamai`` or ``no CDN seen``."""
        if self.cdn is None:
            return "no CDN seen"
        return f"{self.cdn} {self.pop}" if self.pop else self.cdn

    def to_dict(self) -> dict[str, str | None]:
        return {"cdn": self.cdn, "pop": self.pop, "id": self.id}


UNKNOWN_EDGE = Edge()


def _lowered(headers: Headers) -> dict[str, str]:
    """Header names in lower case; a repeated header's values joined with ``", "``."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        key = str(name).strip().lower()
        text = str(value).strip()
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


def _token(value: str | None, pattern: re.Pattern[str] = _TOKEN) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if pattern.fullmatch(value) else None


def edge_from_headers(headers: Headers) -> Edge:
    """The CDN edge an answer came from, read from its headers (names in any case).

    CloudFront is checked first, then Cloudflare, Fastly and Akamai: a CDN in front of another
    names itself in the headers the client receives, the first match wins. Headers that name no
    CDN give an :class:`Edge` of Nones.
    """
    h = _lowered(headers)
    server = h.get("server", "").lower()
    via = h.get("via", "").lower()
    if (
        "x-amz-cf-pop" in h
        or "x-amz-cf-id" in h
        or "cloudfront" in via
        or "cloudfront" in h.get("x-cache", "").lower()
        or server == "cloudfront"
    ):
        pop_match = _CF_POP.fullmatch(h.get("x-amz-cf-pop", "").split(",")[-1].strip())
        return Edge(
            CLOUDFRONT,
            pop_match.group(1).upper() if pop_match else None,
            _token(h.get("x-amz-cf-id")),
        )
    if "cf-ray" in h or server == "cloudflare":
        ray = _RAY.fullmatch(h.get("cf-ray", "").strip())
        if ray is None:
            return Edge(CLOUDFLARE, None, _token(h.get("cf-ray")))
        return Edge(CLOUDFLARE, ray.group(2).upper(), ray.group(1).lower())
    served_by = h.get("x-served-by", "")
    if "cache-" in served_by.lower():
        # Shielding lists every cache on the way; the last one is the edge nearest the client.
        last = served_by.split(",")[-1].strip()
        node = _FASTLY_NODE.fullmatch(last)
        return Edge(FASTLY, node.group(1).upper() if node else None, None)
    if "akamai" in server or any(name.startswith("x-akamai-") for name in h):
        request_id = h.get("akamai-grn") or h.get("x-akamai-request-id")
        return Edge(AKAMAI, None, _token(request_id))
    return UNKNOWN_EDGE


__all__ = [
    "AKAMAI",
    "CLOUDFLARE",
    "CLOUDFRONT",
    "FASTLY",
    "UNKNOWN_EDGE",
    "Edge",
    "edge_from_headers",
]
