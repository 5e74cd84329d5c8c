"""What other tools would do with the same URL and environment (pure models, no library calls).

``mpnet proxy explain`` shows these next to mpnet's own decision, because "curl works but my bot
does not" is usually five tools reading the same variables five ways. Each model follows the
tool's documented or published behaviour (versions named below); none of them imports or runs the
tool. Every verdict is a redacted proxy URL, ``"direct"``, or ``"error: ..."`` when the tool would
refuse the configuration or cannot work with it.

Where a tool has no notion of the target's scheme (websockets for a REST URL, urllib and httpx
for a WebSocket URL) the model answers for the nearest equivalent: websockets for ws/wss on the
same host and port, httpx for http/https (what httpx-ws does), urllib for its ``ws``/``wss``
table entries.

* urllib (Python 3.11 ``getproxies_environment`` / ``proxy_bypass_environment``): any
  ``<scheme>_proxy`` variable, lower case wins, an empty lower-case variable removes the entry,
  ``REQUEST_METHOD`` drops ``HTTP_PROXY``; no ``all_proxy`` fallback in ``ProxyHandler``; no_proxy:
  ``*`` only as the whole value, suffix match on the host (leading dots stripped) or on
  ``host:port`` as written in the URL; no CIDR, no IP logic; no SOCKS.
* aiohttp 3.14 ``trust_env=True``: urllib's table, keys ``http``/``https``/``ws``/``wss`` only
  (so ``ALL_PROXY`` is ignored, and wss looks only at ``WSS_PROXY``); ``https://`` proxies are
  dropped with a warning; SOCKS URLs are spoken to as HTTP proxies; urllib's no_proxy on the host
  without the port; ``ws://`` through an HTTP proxy sends ``GET ws://`` instead of CONNECT.
* websockets >= 15: urllib's table, wss tries ``wss``, ``socks``, ``https``; ws tries ``ws``,
  ``socks``, ``https``, ``http``; ``ALL_PROXY`` ignored; urllib's no_proxy on ``host:port`` with
  the effective port.
* httpx 0.28 ``trust_env``: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (urllib's table) as
  ``http://``, ``https://``, ``all://`` mounts; a proxy without a scheme is taken as ``http://``;
  proxy schemes http, https, socks5, socks5h (any other refuses to build the client); NO_PROXY
  entries become mounts: ``*`` anywhere bypasses everything, ``example.com`` matches the domain
  and below, ``.example.com`` only below, ``localhost`` and IP literals exactly, an IPv4 CIDR
  block only its network address (released httpx does not match ranges), an IPv6 CIDR block
  cannot be parsed; an entry with ``:port`` needs that explicit, non-default port.
* curl 8 (``detect_proxy`` and ``Curl_check_noproxy``): ``http_proxy`` lower case only,
  ``https_proxy``/``HTTPS_PROXY``, ``ws_proxy``/``wss_proxy`` with http/https fallbacks, then
  ``all_proxy``/``ALL_PROXY``; an empty variable counts as unset (it disables nothing); a proxy
  without a scheme is HTTP; no_proxy: ``*`` only as the whole value, blanks end the list unless
  a comma follows, names by suffix on a label boundary, IPv4/IPv6 literals and CIDR, no ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mpnet.core.noproxy import match_no_proxy
from mpnet.core.proxy import ProxyTarget, parse_target
from mpnet.core.proxy_url import redact_proxy_text

LIBRARIES: tuple[str, ...] = ("urllib", "aiohttp", "websockets", "httpx", "curl")
DIRECT = "direct"

_SOCKS = ("socks4", "socks4a", "socks5", "socks5h")


# -- urllib's environment table, which aiohttp, websockets and httpx all build on --------------


def urllib_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment()`` for ``env``: scheme -> proxy, ``no`` ->
    no_proxy. Two passes, so lower case wins; an empty lower-case variable removes the entry."""
    return _urllib_table(env)[0]


def _urllib_table(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """urllib's table, and for each key the variable that decided it (set it, or, empty,
    removed it), named exactly as set."""
    proxies: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, value in env.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy"):
            proxies[lowered[:-6]] = value
            sources[lowered[:-6]] = name
    if "REQUEST_METHOD" in env:
        proxies.pop("http", None)
        sources.pop("http", None)
    for name, value in env.items():
        if name.endswith("_proxy"):
            lowered = name.lower()
            if value:
                proxies[lowered[:-6]] = value
            else:
                proxies.pop(lowered[:-6], None)
            sources[lowered[:-6]] = name
    return proxies, sources


def _urllib_splitport(host: str) -> tuple[str, str | None]:
    head, sep, tail = host.rpartition(":")
    if sep and tail.isascii() and (tail.isdigit() or tail == ""):
        return (head, tail) if tail else (head, None)
    return host, None


def urllib_bypass(host: str, proxies: Mapping[str, str]) -> bool:
    """``urllib.request.proxy_bypass_environment(host, proxies)``."""
    no_proxy = proxies.get("no")
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    host = host.lower()
    hostonly, _port = _urllib_splitport(host)
    for name in no_proxy.split(","):
        name = name.strip()
        if not name:
            continue
        name = name.lstrip(".").lower()
        if hostonly == name or host == name:
            return True
        name = "." + name
        if hostonly.endswith(name) or host.endswith(name):
            return True
    return False


def _scheme_of(raw: str) -> str | None:
    scheme, sep, _ = raw.partition("://")
    return scheme.lower() if sep else None


def _shown(raw: str, *, default_scheme: str | None = None) -> str:
    text = raw.strip()
    if default_scheme and "://" not in text:
        text = f"{default_scheme}://{text}"
    return redact_proxy_text(text)


# -- the five models ----------------------------------------------------------------------------


def urllib_verdict(target: ProxyTarget, netloc_host: str, env: Mapping[str, str]) -> str:
    """urllib.request's ProxyHandler. ``netloc_host`` is ``Request.host``: the URL's host with
    brackets and with the port only when the URL names one."""
    proxies = urllib_proxies(env)
    raw = proxies.get(target.scheme)
    if raw is None or urllib_bypass(netloc_host, proxies):
        return DIRECT
    if _scheme_of(raw) in _SOCKS:
        return f"error: urllib has no SOCKS support; it would speak HTTP to {_shown(raw)}"
    return _shown(raw, default_scheme="http")


def aiohttp_verdict(target: ProxyTarget, env: Mapping[str, str]) -> str:
    """aiohttp's ``get_env_proxy_for_url`` with ``trust_env=True``."""
    proxies = urllib_proxies(env)
    if urllib_bypass(target.host, proxies):
        return DIRECT
    usable = {k: v for k, v in proxies.items() if k in ("http", "https", "ws", "wss")}
    raw = usable.get(target.scheme)
    if raw is None:
        return DIRECT
    scheme = _scheme_of(raw)
    if scheme in ("https", "wss"):
        # Dropped with a warning in the log: the connection silently goes direct.
        return DIRECT
    if scheme is None:
        return f"error: aiohttp cannot use {_shown(raw)!r} as a proxy URL (no scheme)"
    if scheme in _SOCKS:
        return (
            f"error: aiohttp has no SOCKS support; it would speak HTTP to {_shown(raw)} "
            "(a confusing 400)"
        )
    if scheme != "http":
        return f"error: aiohttp cannot use a {scheme}:// proxy"
    if target.scheme == "ws":
        return (
            f"error: aiohttp sends 'GET ws://...' to {_shown(raw)} instead of CONNECT; "
            "ws:// through an HTTP proxy fails"
        )
    return _shown(raw)


_WEBSOCKETS_SCHEMES = ("socks5h", "socks5", "socks4a", "socks4", "https", "http")


def websockets_verdict(target: ProxyTarget, env: Mapping[str, str]) -> str:
    """websockets' ``get_proxy`` and ``parse_proxy`` (``connect(proxy=True)``, the default)."""
    proxies = urllib_proxies(env)
    host = f"{target.host}:{target.port}"
    if urllib_bypass(host, proxies):
        return DIRECT
    order = ("wss", "socks", "https") if target.secure else ("ws", "socks", "https", "http")
    for key in order:
        raw = proxies.get(key)
        if raw is None:
            continue
        if key == "socks" and raw.startswith("http://"):
            raw = "socks5h://" + raw[len("http://") :]
        try:
            scheme = urlsplit(raw).scheme
        except ValueError:
            # websockets' parse_proxy lets urlparse's ValueError escape.
            return f"error: websockets cannot parse {_shown(raw)!r} (ValueError)"
        if scheme not in _WEBSOCKETS_SCHEMES:
            return f"error: websockets refuses {_shown(raw)!r}: scheme {scheme!r} isn't supported"
        return _shown(raw)
    return DIRECT


def _httpx_host_pattern_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith("." + pattern[2:]) and len(host) > len(pattern) - 1
    if pattern.startswith("*"):
        domain = pattern[1:]
        return host == domain or host.endswith("." + domain)
    return host == pattern


def _httpx_no_proxy_matches(entry: str, target: ProxyTarget, explicit_port: int | None) -> bool:
    """One NO_PROXY entry turned into httpx's ``URLPattern`` and matched against the target."""
    scheme = ""
    hostport = entry
    if "://" in entry:
        scheme, _, hostport = entry.partition("://")
        scheme = "" if scheme == "all" else scheme.lower()
        hostport = hostport.partition("/")[0]
    elif _is_ip(entry.split("/")[0], 4):
        hostport = entry.split("/")[0]
    elif _is_ip(entry.split("/")[0], 6):
        hostport = f"[{entry.split('/')[0]}]"
    elif entry.lower() != "localhost":
        hostport = "*" + entry
    if scheme and scheme != target.scheme:
        return False
    host, port = hostport.lower(), None
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        if not port_text.isdigit():
            return False
        port = int(port_text)
    if port is not None and port != explicit_port:
        return False
    return host in ("", "*") or _httpx_host_pattern_matches(host, target.host)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def httpx_verdict(target: ProxyTarget, explicit_port: int | None, env: Mapping[str, str]) -> str:
    """httpx's ``get_environment_proxies`` mounts and ``URLPattern`` matching (``trust_env``).

    ``explicit_port`` is the URL's port unless it is the scheme's default (httpx drops those).
    """
    proxies = urllib_proxies(env)
    entries = [e.strip() for e in proxies.get("no", "").split(",")]
    if "*" in entries:
        # get_environment_proxies returns no mounts at all, proxies included.
        return DIRECT
    # Every mount is built when the client is, whether or not this URL would use it.
    for entry in filter(None, entries):
        if "://" not in entry and "/" in entry and _is_ip(entry.split("/")[0], 6):
            return f"error: httpx cannot parse NO_PROXY entry {entry!r} (IPv6 CIDR)"
    mounts = {key: proxies[key] for key in ("http", "https", "all") if proxies.get(key)}
    for key, raw in mounts.items():
        scheme = _scheme_of(raw) or "http"
        if scheme not in ("http", "https", "socks5", "socks5h"):
            return (
                f"error: httpx refuses {key}_proxy {_shown(raw)!r}: unknown proxy scheme "
                f"{scheme!r} (the client cannot be built)"
            )
    for entry in filter(None, entries):
        if _httpx_no_proxy_matches(entry, target, explicit_port):
            return DIRECT
    http_scheme = "https" if target.secure else "http"
    chosen = mounts.get(http_scheme) or mounts.get("all")
    if chosen is None:
        return DIRECT
    return _shown(chosen, default_scheme="http")


def _curl_getenv(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


def _curl_tokens(no_proxy: str) -> list[str]:
    """curl's no_proxy tokenizer: tokens end at a blank or comma; after a token's trailing
    blanks anything but a comma ends the list."""
    tokens = []
    i, n = 0, len(no_proxy)
    while i < n:
        while i < n and no_proxy[i] in " \t":
            i += 1
        start = i
        while i < n and no_proxy[i] not in " \t,":
            i += 1
        if i > start:
            tokens.append(no_proxy[start:i])
        while i < n and no_proxy[i] in " \t":
            i += 1
        if i >= n or no_proxy[i] != ",":
            break
        while i < n and no_proxy[i] == ",":
            i += 1
    return tokens


def curl_no_proxy_match(host: str, no_proxy: str) -> bool:
    """``Curl_check_noproxy(host, no_proxy)``: no ports, ``*`` only as the whole value."""
    if not host or not no_proxy:
        return False
    if no_proxy == "*":
        return True
    for token in _curl_tokens(no_proxy):
        # Ports and brackets never match in curl; drop a port-carrying token before asking the
        # shared matcher, which would otherwise honour it.
        if token.startswith("[") or (":" in token and not _looks_ipv6(token)):
            continue
        if token.endswith("/0"):
            # curl reads a zero prefix as "no prefix": the address itself, not everything.
            token = token[:-2]
        if match_no_proxy(host, None, token) is not None and token != "*":
            return True
    return False


def _looks_ipv6(token: str) -> bool:
    return token.count(":") >= 2


def curl_verdict(target: ProxyTarget, env: Mapping[str, str]) -> str:
    """curl's ``detect_proxy`` and ``Curl_check_noproxy`` for an environment-only run."""
    proxy_env = f"{target.scheme}_proxy"
    raw = _curl_getenv(env, proxy_env)
    if raw is None and proxy_env != "http_proxy":
        raw = _curl_getenv(env, proxy_env.upper())
    if raw is None and target.scheme == "ws":
        raw = _curl_getenv(env, "http_proxy")
    elif raw is None and target.scheme == "wss":
        raw = _curl_getenv(env, "https_proxy") or _curl_getenv(env, "HTTPS_PROXY")
    if raw is None:
        raw = _curl_getenv(env, "all_proxy") or _curl_getenv(env, "ALL_PROXY")
    if raw is None:
        return DIRECT
    no_proxy = _curl_getenv(env, "no_proxy") or _curl_getenv(env, "NO_PROXY") or ""
    if curl_no_proxy_match(target.host, no_proxy):
        return DIRECT
    scheme = _scheme_of(raw) or "http"
    if scheme not in ("http", "https", *_SOCKS):
        return f"error: curl: unsupported proxy scheme {scheme!r} in {_shown(raw)!r}"
    return _shown(raw, default_scheme="http")


# -- all five -----------------------------------------------------------------------------------


def _equivalent(target: ProxyTarget, scheme: str) -> ProxyTarget:
    return ProxyTarget(scheme=scheme, host=target.host, port=target.port)


def library_verdicts(target_url: str, env: Mapping[str, str]) -> dict[str, str]:
    """What urllib, aiohttp, websockets, httpx and curl would do for ``target_url`` with ``env``.

    Returns:
        ``{"urllib": ..., "aiohttp": ..., "websockets": ..., "httpx": ..., "curl": ...}``, each a
        redacted proxy URL, ``"direct"``, or ``"error: ..."``.

    Raises:
        UsageError: ``target_url`` is not an http, https, ws or wss URL.
    """
    target = parse_target(target_url)
    parts = urlsplit(target_url.strip())
    explicit_port = parts.port
    netloc_host = parts.netloc.rpartition("@")[2]
    default_port = 443 if target.secure else 80
    httpx_port = None if explicit_port in (None, default_port) else explicit_port

    ws_scheme = "wss" if target.secure else "ws"
    http_scheme = "https" if target.secure else "http"
    models: dict[str, Callable[[], str]] = {
        "urllib": lambda: urllib_verdict(target, netloc_host, env),
        "aiohttp": lambda: aiohttp_verdict(target, env),
        "websockets": lambda: websockets_verdict(_equivalent(target, ws_scheme), env),
        "httpx": lambda: httpx_verdict(_equivalent(target, http_scheme), httpx_port, env),
        "curl": lambda: curl_verdict(target, env),
    }
    return {name: models[name]() for name in LIBRARIES}


# -- the same variable in two cases ---------------------------------------------------------------

#: mpnet first, then the five tools.
TOOLS: tuple[str, ...] = ("mpnet", *LIBRARIES)


@dataclass(frozen=True, slots=True)
class EnvVariable:
    """One spelling of a proxy variable: its name exactly as set, its value (redacted) and the
    tools that take it for the target."""

    name: str
    value: str
    read_by: tuple[str, ...]

    @property
    def ignored_by(self) -> tuple[str, ...]:
        return tuple(tool for tool in TOOLS if tool not in self.read_by)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "read_by": list(self.read_by),
            "ignored_by": list(self.ignored_by),
        }


@dataclass(frozen=True, slots=True)
class CaseConflict:
    """``https_proxy`` and ``HTTPS_PROXY`` (or any two spellings) set to different values."""

    variable: str  # the lower-case name
    spellings: tuple[EnvVariable, ...]

    def to_dict(self) -> dict[str, object]:
        return {"variable": self.variable, "spellings": [v.to_dict() for v in self.spellings]}


def case_conflicts(target_url: str, env: Mapping[str, str]) -> tuple[CaseConflict, ...]:
    """Proxy variables set in more than one case with different values, and for ``target_url``
    which spelling mpnet and each of the five tools takes (the others it ignores).

    Only variables that some tool consults for this target are returned (``http_proxy`` does
    not matter to an https URL). Values are redacted; an empty value is shown as ``(empty)``.

    Raises:
        UsageError: ``target_url`` is not an http, https, ws or wss URL.
    """
    target = parse_target(target_url)
    groups: dict[str, list[str]] = {}
    for name in env:
        if name.lower().endswith("_proxy"):
            groups.setdefault(name.lower(), []).append(name)
    reads = {tool: _reads(tool, target, env) for tool in TOOLS}
    conflicts = []
    for lowered, names in groups.items():
        if len(names) < 2 or len({env[name] for name in names}) < 2:
            continue
        spellings = tuple(
            EnvVariable(
                name=name,
                value=_shown(env[name]) if env[name] else "(empty)",
                read_by=tuple(tool for tool in TOOLS if name in reads[tool]),
            )
            for name in names
        )
        if any(spelling.read_by for spelling in spellings):
            conflicts.append(CaseConflict(variable=lowered, spellings=spellings))
    return tuple(conflicts)


def _reads(tool: str, target: ProxyTarget, env: Mapping[str, str]) -> set[str]:
    """The environment variables (names as set) whose values ``tool`` takes for ``target``."""
    if tool == "mpnet":
        return _mpnet_reads(target, env)
    if tool == "curl":
        return _curl_reads(target, env)
    proxies, sources = _urllib_table(env)
    ws_scheme = "wss" if target.secure else "ws"
    http_scheme = "https" if target.secure else "http"
    if tool == "urllib":
        keys = [target.scheme] + (["no"] if target.scheme in proxies else [])
    elif tool == "aiohttp":
        keys = ["no"] + ([target.scheme] if target.scheme in ("http", "https", "ws", "wss") else [])
    elif tool == "websockets":
        order = (
            ("wss", "socks", "https") if ws_scheme == "wss" else ("ws", "socks", "https", "http")
        )
        keys = ["no", *_until_present(order, proxies)]
    else:  # httpx
        keys = ["no", *_until_present((http_scheme, "all"), proxies)]
    return {sources[key] for key in keys if key in sources}


def _until_present(order: tuple[str, ...], proxies: Mapping[str, str]) -> list[str]:
    """The keys a first-match lookup consults: up to and including the first one set."""
    consulted = []
    for key in order:
        consulted.append(key)
        if proxies.get(key):
            break
    return consulted


def _mpnet_reads(target: ProxyTarget, env: Mapping[str, str]) -> set[str]:
    """What :func:`mpnet.core.proxy.resolve_proxy`'s environment layer looks at: the lower-case
    name when it is set at all (empty disables the upper-case one), else the upper-case one."""
    names: set[str] = set()

    def pair(lower: str, *, upper_ignored: bool = False) -> bool:
        upper = lower.upper()
        if lower in env:
            names.add(lower)
            return bool(env[lower].strip())
        if env.get(upper, "").strip() and not upper_ignored:
            names.add(upper)
            return True
        return False

    first = "https_proxy" if target.secure else "http_proxy"
    httpoxy = first == "http_proxy" and "REQUEST_METHOD" in env
    if not pair(first, upper_ignored=httpoxy):
        pair("all_proxy")
    pair("no_proxy")
    return names


def _curl_reads(target: ProxyTarget, env: Mapping[str, str]) -> set[str]:
    """curl's ``detect_proxy`` order (an empty variable counts as unset), then no_proxy."""
    proxy_env = f"{target.scheme}_proxy"
    order = [proxy_env] + ([proxy_env.upper()] if proxy_env != "http_proxy" else [])
    if target.scheme == "ws":
        order.append("http_proxy")
    elif target.scheme == "wss":
        order += ["https_proxy", "HTTPS_PROXY"]
    order += ["all_proxy", "ALL_PROXY"]
    found = next((name for name in order if env.get(name)), None)
    if found is None:
        return set()
    no_proxy = next((name for name in ("no_proxy", "NO_PROXY") if env.get(name)), None)
    return {found} | ({no_proxy} if no_proxy else set())
