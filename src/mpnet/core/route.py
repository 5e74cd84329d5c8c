"""Routes (pure): the ways out that ``--via`` compares, by name.

A route is ``direct``, a proxy URL, or a name from the config file's ``routes:`` block::

    routes:
      tokyo: socks5h://user:pw@10.0.0.5:1080
      office: direct
    exchanges:
      okx:
        routes: [direct, tokyo]      # probed over both when --via is not given

Each route is probed as its own set of targets. Its proxy (or ``direct``) overrides every proxy
layer for that probe, as the highest layer ``route`` in the proxy trace; TLS is decided as usual.
A route is known by its name: the config name, ``direct``, or for a URL the URL with its password
masked (``socks5h://user:***@10.0.0.5:1080``), which is what every output shows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from mpnet.core.proxy_url import DIRECT, ProxyChoice, ProxyURL, parse_proxy_url
from mpnet.errors import UsageError

DIRECT_NAME = "direct"
#: Characters that make a ``--via`` value a URL attempt rather than a route name.
_URL_HINTS = (":", "/", "@")


@dataclass(frozen=True, slots=True)
class Route:
    """One way out.

    Attributes:
        name: how every output names it: the config name, ``direct``, or the redacted URL.
        proxy: the proxy, or None for a direct connection.
        origin: where the route is defined (``mpnet.yaml:3 routes.tokyo``, ``--via``,
            ``built in``).
        selected_by: what asked for it in this run (``--via``, ``mpnet.yaml:9
            exchanges.okx.routes``, ``route=`` of a scrape); empty until selected.
    """

    name: str
    proxy: ProxyURL | None
    origin: str = "built in"
    selected_by: str = ""

    @property
    def choice(self) -> ProxyChoice:
        """The proxy layer value this route puts above every other layer."""
        return DIRECT if self.proxy is None else self.proxy

    @property
    def target(self) -> str:
        """What the route connects through: ``no proxy`` or the redacted proxy URL."""
        return "no proxy" if self.proxy is None else self.proxy.redacted()

    @property
    def source(self) -> str:
        """The proxy trace's detail for the ``route`` layer: ``--via tokyo, mpnet.yaml:3 ...``."""
        chooser = self.selected_by or "route"
        if self.origin == chooser:
            # A URL given right there: the trace's value column shows it.
            return chooser
        if self.origin in ("", "built in"):
            return f"{chooser} {self.name}"
        return f"{chooser} {self.name}, {self.origin}"

    def selected(self, by: str) -> Route:
        return replace(self, selected_by=by)

    def same_way_out(self, other: Route) -> bool:
        """Both connect the same way (same proxy, password included, or both direct)."""
        return self.proxy == other.proxy


DIRECT_ROUTE = Route(DIRECT_NAME, None)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (difflib's ratio at least 0.6), if any."""
    pool = list(candidates)
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), lowered, n=1)]
    return close[0] if close else None


def known_route_names(known: Mapping[str, Route]) -> list[str]:
    """``direct`` and the named routes, sorted (``direct`` first)."""
    return [DIRECT_NAME, *sorted(n for n in known if n != DIRECT_NAME)]


def unknown_route_message(name: str, known: Mapping[str, Route], *, where: str) -> str:
    """One line: the unknown name, a did-you-mean, and the names that exist."""
    names = known_route_names(known)
    guess = did_you_mean(name, names)
    suggestion = f"; did you mean {guess!r}?" if guess else ""
    if len(names) == 1:
        listed = (
            "known routes: direct (name others under `routes:` in the config file, or give a "
            "proxy URL such as socks5h://host:1080)"
        )
    else:
        listed = f"known routes: {', '.join(names)}"
    return f"{where}: unknown route {name!r}{suggestion}; {listed}"


def parse_route(text: str, known: Mapping[str, Route], *, where: str = "--via") -> Route:
    """A route from what the user wrote: ``direct``, a proxy URL, or a name in ``known``.

    Args:
        text: the value as written.
        known: the config file's routes, by name.
        where: names the place in error messages (``--via``, ``mpnet.yaml:9 exchanges.okx.
            routes.1``).

    Raises:
        UsageError: an empty value or an unknown name (the message lists the known ones and
            suggests the closest).
        InvalidProxyURL: a URL that does not parse (the message never shows its password).
    """
    value = text.strip()
    if not value:
        raise UsageError(f"{where}: empty route; give direct, a route name or a proxy URL")
    if value.lower() == DIRECT_NAME:
        return DIRECT_ROUTE
    if "://" in value or any(ch in value for ch in _URL_HINTS):
        proxy = parse_proxy_url(value, where=where)
        return Route(proxy.redacted(), proxy, origin=where)
    route = known.get(value)
    if route is None:
        folded = {name.lower(): r for name, r in known.items()}
        route = folded.get(value.lower())
    if route is None:
        raise UsageError(unknown_route_message(value, known, where=where))
    return route


def check_distinct(routes: Sequence[Route], *, flag: str = "--via") -> None:
    """Refuse a route given twice: by name, or two names for the same way out.

    Raises:
        UsageError: naming both (passwords masked).
    """
    for index, route in enumerate(routes):
        for earlier in routes[:index]:
            if earlier.name == route.name:
                raise UsageError(f"{flag} {route.name} is given twice; give each route once")
            if earlier.same_way_out(route):
                raise UsageError(
                    f"{flag} {earlier.name} and {flag} {route.name} are the same route "
                    f"({route.target}); give each route once"
                )


def parse_routes(
    values: Sequence[str], known: Mapping[str, Route], *, flag: str = "--via"
) -> tuple[Route, ...]:
    """Every ``--via`` value, parsed, checked for repeats, and marked as selected by ``flag``.

    Raises:
        UsageError, InvalidProxyURL: as :func:`parse_route` and :func:`check_distinct`.
    """
    routes = tuple(parse_route(value, known, where=flag).selected(flag) for value in values)
    check_distinct(routes, flag=flag)
    return routes


def route_name_of(proxy: ProxyURL | None) -> str:
    """The name of the way out a proxy decision took when no route was asked for."""
    return DIRECT_NAME if proxy is None else proxy.redacted()


__all__ = [
    "DIRECT_NAME",
    "DIRECT_ROUTE",
    "Route",
    "check_distinct",
    "did_you_mean",
    "known_route_names",
    "parse_route",
    "parse_routes",
    "route_name_of",
    "unknown_route_message",
]
