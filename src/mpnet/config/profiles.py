"""Exchange profiles: shipped YAML files plus directories that override them by name.

Search order, later wins by ``name``: the profiles shipped in the wheel, then ``$MPNET_PROFILES``
(``os.pathsep``-separated), then each ``--profiles DIR``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mpnet.config.model import (
    BootstrapSpec,
    HealthCheck,
    PingSpec,
    Profile,
    RestSpec,
    ServerPingSpec,
    TimeRequest,
    WebSocketSpec,
)
from mpnet.config.network import read_exchange_network
from mpnet.config.source import KeyPath, Reader, YamlDocument, load_yaml, parse_yaml
from mpnet.core.clock import KINDS, UNITS, TimeField
from mpnet.core.match import matches
from mpnet.core.ratelimit import RateLimit
from mpnet.errors import InvalidProfile, UnknownExchange

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: RFC 9110 §5.1 field-name (a token).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
PROFILE_KEYS = ("name", "title", "rest", "websocket", "network", "rate_limit")
REST_KEYS = ("base_url", "headers", "health", "server_time", "time")
HEALTH_KEYS = (
    "method",
    "path",
    "body",
    "expect_status",
    "expect_json_keys",
    "expect_json",
    "status_endpoint",
)
WS_KEYS = (
    "url",
    "bootstrap",
    "headers",
    "welcome",
    "subscribe",
    "ack_match",
    "error_match",
    "data_match",
    "ping",
    "server_ping",
    "compression",
    "event_time",
)
BOOTSTRAP_KEYS = ("method", "path", "endpoint", "token", "query")
TIME_FIELD_KEYS = ("path", "unit")
TIME_REQUEST_KEYS = ("method", "path")
#: A JSON path: names or list indices, separated by dots.
TIME_PATH_PART = re.compile(r"[^\s.]+")
#: One request every 1000 s is the slowest pacing mpnet takes; a million per second is no limit.
MIN_REQUESTS_PER_S = 0.001
MAX_REQUESTS_PER_S = 1_000_000
RATE_LIMIT_KEYS = ("requests_per_s", "weight_header", "weight_limit", "weight_window_s")
HTTP_METHODS = ("GET", "POST", "HEAD")


def shipped_profiles_dir() -> Path:
    """The profiles inside the installed package, or the source tree's ``profiles/``."""
    packaged = Path(__file__).resolve().parent.parent / "profiles"
    if packaged.is_dir():
        return packaged
    # Editable installs and source checkouts: <repo>/src/mpnet/config -> <repo>/profiles
    return Path(__file__).resolve().parents[3] / "profiles"


@dataclass(frozen=True, slots=True)
class ProfileSet:
    """Profiles by name, after overrides."""

    profiles: Mapping[str, Profile]

    def get(self, name: str) -> Profile:
        """The profile called ``name``. Raises UnknownExchange listing the known names."""
        key = name.strip().lower()
        try:
            return self.profiles[key]
        except KeyError:
            raise UnknownExchange(name, list(self.profiles)) from None

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def select(self, names: Sequence[str]) -> list[Profile]:
        """The profiles called ``names`` in the order given, each once: a name given twice is
        probed once, with or without ``--lab``. Raises UnknownExchange at the first unknown one."""
        chosen: dict[str, Profile] = {}
        for name in names:
            profile = self.get(name)
            chosen.setdefault(profile.name, profile)
        return list(chosen.values())

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles[name] for name in self.names())

    def __len__(self) -> int:
        return len(self.profiles)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self.profiles


def load_profiles(
    extra_dirs: Sequence[str | Path] = (), env: Mapping[str, str] | None = None
) -> ProfileSet:
    """Load shipped profiles, then ``$MPNET_PROFILES`` and ``extra_dirs`` (later wins by name).

    Raises:
        InvalidProfile: a file fails to load or a directory does not exist.
    """
    dirs: list[tuple[Path, str]] = [(shipped_profiles_dir(), "shipped")]
    env_value = (env or {}).get("MPNET_PROFILES", "")
    dirs += [(Path(p), "$MPNET_PROFILES") for p in env_value.split(os.pathsep) if p]
    dirs += [(Path(p), "--profiles") for p in extra_dirs]
    found: dict[str, Profile] = {}
    for directory, origin in dirs:
        if not directory.is_dir():
            if origin == "shipped":
                continue
            raise InvalidProfile(f"{origin} {directory}: not a directory")
        for path in sorted(directory.glob("*.y*ml")):
            profile = load_profile_file(path)
            found[profile.name] = profile
    return ProfileSet(found)


def load_profile_file(path: str | Path) -> Profile:
    """Load and validate one profile file. Raises InvalidProfile naming file:line key."""
    return profile_from_document(load_yaml(path, InvalidProfile))


def parse_profile_text(text: str, path: str = "<profile>") -> Profile:
    """Validate a profile given as YAML text (``path`` is only used in messages)."""
    return profile_from_document(parse_yaml(text, path, InvalidProfile))


def profile_from_document(doc: YamlDocument) -> Profile:
    r = Reader(doc)
    if doc.data is None:
        doc.fail((), "empty profile")
    top = r.mapping(doc.data, (), allowed=PROFILE_KEYS)
    name = r.string(top.get("name"), ("name",))
    assert name is not None
    if not NAME_PATTERN.match(name):
        doc.fail(("name",), f"{name!r}: use lower-case letters, digits and '-'")
    title = r.string(top.get("title"), ("title",))
    assert title is not None
    rest = _rest(r, top.get("rest"), ("rest",))
    websocket = _websocket(r, top.get("websocket"), ("websocket",))
    if rest is None and websocket is None:
        doc.fail((), "a profile needs rest:, websocket: or both")
    if websocket and websocket.bootstrap and rest is None:
        doc.fail(("websocket", "bootstrap"), "bootstrap needs rest.base_url to send its request to")
    network = None
    if top.get("network") is not None:
        base_dir = str(Path(doc.path).parent)
        network = read_exchange_network(r, top["network"], ("network",), base_dir=base_dir)
    return Profile(
        name=name,
        title=title,
        rest=rest,
        websocket=websocket,
        network=network,
        source=doc.path,
        rate_limit=_rate_limit(r, top.get("rate_limit"), ("rate_limit",)),
    )


def _url(r: Reader, value: Any, keys: KeyPath, schemes: tuple[str, ...]) -> str:
    text = r.string(value, keys)
    assert text is not None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        r.doc.fail(keys, f"{text!r}: {exc}")
    if parts.scheme not in schemes or not parts.hostname:
        r.doc.fail(keys, f"{text!r}: expected a {' or '.join(schemes)} URL with a host")
    return text


def _rest(r: Reader, value: Any, keys: KeyPath) -> RestSpec | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=REST_KEYS)
    base_url = _url(r, block.get("base_url"), (*keys, "base_url"), ("http", "https"))
    health_keys = (*keys, "health")
    health_block = r.mapping(block.get("health") or {}, health_keys, allowed=HEALTH_KEYS)
    path = r.string(health_block.get("path"), (*health_keys, "path"))
    assert path is not None
    if not path.startswith("/"):
        r.doc.fail((*health_keys, "path"), f"{path!r}: must start with '/'")
    method = _method(r, health_block.get("method"), (*health_keys, "method"))
    status = r.integer(
        health_block.get("expect_status"), (*health_keys, "expect_status"), default=200
    )
    if not 100 <= status <= 599:
        r.doc.fail((*health_keys, "expect_status"), f"{status}: not an HTTP status")
    expect_json = _pattern(r, health_block.get("expect_json"), (*health_keys, "expect_json"))
    status_endpoint = bool(
        r.boolean(health_block.get("status_endpoint"), (*health_keys, "status_endpoint"))
    )
    if status_endpoint and expect_json is None:
        r.doc.fail(
            (*health_keys, "status_endpoint"),
            "a status endpoint needs expect_json: the pattern of an operational answer",
        )
    server_time = _time_field(r, block.get("server_time"), (*keys, "server_time"))
    time_request = _time_request(r, block.get("time"), (*keys, "time"))
    if time_request is not None and server_time is None:
        r.doc.fail(
            (*keys, "time"),
            "a time request needs server_time: where the time is in its answer",
        )
    return RestSpec(
        base_url=base_url,
        headers=r.string_map(block.get("headers"), (*keys, "headers")),
        health=HealthCheck(
            path=path,
            method=method,
            body=health_block.get("body"),
            expect_status=status,
            expect_json_keys=r.string_list(
                health_block.get("expect_json_keys"), (*health_keys, "expect_json_keys")
            ),
            expect_json=expect_json,
            status_endpoint=status_endpoint,
        ),
        server_time=server_time,
        time=time_request,
    )


def _method(r: Reader, value: Any, keys: KeyPath) -> str:
    method = (r.string(value, keys, required=False) or "GET").upper()
    if method not in HTTP_METHODS:
        r.doc.fail(keys, f"{method!r}: expected one of {', '.join(HTTP_METHODS)}")
    return method


def _websocket(r: Reader, value: Any, keys: KeyPath) -> WebSocketSpec | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=WS_KEYS)
    url = _url(r, block.get("url"), (*keys, "url"), ("ws", "wss"))
    subscribe = block.get("subscribe")
    if subscribe is None:
        messages: tuple[Any, ...] = ()
    elif isinstance(subscribe, list):
        messages = tuple(subscribe)
    else:
        messages = (subscribe,)
    for i, message in enumerate(messages):
        if not isinstance(message, dict | list | str):
            r.doc.fail((*keys, "subscribe", i), "a message is a mapping, a list or a string")
    if block.get("data_match") is None:
        r.doc.fail((*keys, "data_match"), "required key is missing")
    patterns = {
        name: _pattern(r, block.get(name), (*keys, name))
        for name in ("welcome", "ack_match", "data_match", "error_match")
    }
    error_match = patterns.pop("error_match")
    if error_match is not None:
        if error_match == "*" or error_match == {} or error_match == []:
            r.doc.fail((*keys, "error_match"), "matches every message: name the error's fields")
        for name, pattern in patterns.items():
            # The other patterns stand in for the messages they recognise: an error pattern that
            # recognises the acknowledgement would turn every healthy probe into a rejection.
            if pattern is not None and matches(error_match, pattern):
                r.doc.fail(
                    (*keys, "error_match"),
                    f"also matches {name} {_shown(pattern)}: it must recognise only the "
                    "exchange's error answer",
                )
    compression = r.string(block.get("compression"), (*keys, "compression"), required=False)
    if compression not in (None, "gzip"):
        r.doc.fail((*keys, "compression"), f"{compression!r}: only gzip is supported")
    return WebSocketSpec(
        url=url,
        subscribe=messages,
        data_match=block["data_match"],
        ack_match=block.get("ack_match"),
        error_match=error_match,
        welcome=block.get("welcome"),
        ping=_ping(r, block.get("ping"), (*keys, "ping")),
        server_ping=_server_ping(r, block.get("server_ping"), (*keys, "server_ping")),
        bootstrap=_bootstrap(r, block.get("bootstrap"), (*keys, "bootstrap")),
        compression=compression,
        headers=r.string_map(block.get("headers"), (*keys, "headers")),
        event_time=_time_field(r, block.get("event_time"), (*keys, "event_time"), kinds=KINDS),
    )


_JSON_SCALARS = (str, int, float, bool)


def _pattern(r: Reader, value: Any, keys: KeyPath) -> Any:
    """A message pattern (:mod:`mpnet.core.match`): JSON values only, so that what YAML reads
    as a date or a set cannot silently never match."""
    if value is None or isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            _pattern(r, item, (*keys, i))
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            _pattern(r, item, (*keys, key))
        return value
    r.doc.fail(keys, f"{type(value).__name__} is not a JSON value: quote it")


def _shown(pattern: Any, limit: int = 60) -> str:
    text = json.dumps(pattern, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ping(r: Reader, value: Any, keys: KeyPath) -> PingSpec | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=("send", "expect", "frame", "server_time"))
    frame = bool(r.boolean(block.get("frame"), (*keys, "frame")))
    if frame and ("send" in block or "expect" in block):
        r.doc.fail(keys, "frame: true takes no send/expect")
    if not frame and (block.get("send") is None or block.get("expect") is None):
        r.doc.fail(keys, "an application ping needs both send: and expect: (or frame: true)")
    server_time = _time_field(r, block.get("server_time"), (*keys, "server_time"))
    if frame and server_time is not None:
        r.doc.fail((*keys, "server_time"), "a ping frame's pong carries no time to read")
    return PingSpec(
        send=block.get("send"), expect=block.get("expect"), frame=frame, server_time=server_time
    )


def _time_field(
    r: Reader, value: Any, keys: KeyPath, *, kinds: tuple[str, ...] = ()
) -> TimeField | None:
    """``{path, unit}`` (and ``kind`` where ``kinds`` are allowed): where a time stamp is."""
    if value is None:
        return None
    allowed = (*TIME_FIELD_KEYS, "kind") if kinds else TIME_FIELD_KEYS
    block = r.mapping(value, keys, allowed=allowed)
    path = block.get("path")
    if isinstance(path, int) and not isinstance(path, bool):
        path = str(path)  # a list index alone, `path: 0`
    path = r.string(path, (*keys, "path"))
    assert path is not None
    parts = path.split(".")
    if not all(TIME_PATH_PART.fullmatch(part) for part in parts):
        r.doc.fail(
            (*keys, "path"),
            f"{path!r}: expected names or list indices separated by dots (data.0.ts)",
        )
    unit = r.string(block.get("unit"), (*keys, "unit"))
    if unit not in UNITS:
        r.doc.fail((*keys, "unit"), f"{unit!r}: expected one of {', '.join(UNITS)}")
    kind = r.string(block.get("kind"), (*keys, "kind"), required=False) or "event"
    if kinds and kind not in kinds:
        r.doc.fail((*keys, "kind"), f"{kind!r}: expected one of {', '.join(kinds)}")
    assert unit is not None
    return TimeField(path=path, unit=unit, kind=kind)


def _time_request(r: Reader, value: Any, keys: KeyPath) -> TimeRequest | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=TIME_REQUEST_KEYS)
    path = r.string(block.get("path"), (*keys, "path"))
    assert path is not None
    if not path.startswith("/"):
        r.doc.fail((*keys, "path"), f"{path!r}: must start with '/'")
    return TimeRequest(path=path, method=_method(r, block.get("method"), (*keys, "method")))


def _server_ping(r: Reader, value: Any, keys: KeyPath) -> ServerPingSpec | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=("field", "reply_field"))
    field = r.string(block.get("field"), (*keys, "field"))
    reply = r.string(block.get("reply_field"), (*keys, "reply_field"))
    assert field is not None and reply is not None
    return ServerPingSpec(field=field, reply_field=reply)


def _bootstrap(r: Reader, value: Any, keys: KeyPath) -> BootstrapSpec | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=BOOTSTRAP_KEYS)
    path = r.string(block.get("path"), (*keys, "path"))
    endpoint = r.string(block.get("endpoint"), (*keys, "endpoint"))
    token = r.string(block.get("token"), (*keys, "token"))
    assert path is not None and endpoint is not None and token is not None
    query = r.string_map(block.get("query"), (*keys, "query"))
    for name, template in query.items():
        # Filled in at probe time with str.format: a stray brace or another placeholder would
        # only fail then, in the middle of a probe.
        try:
            fields = [
                (field, spec, conversion)
                for _, field, spec, conversion in string.Formatter().parse(template)
                if field is not None
            ]
        except ValueError:  # a lone brace
            fields = [("{", "", None)]
        if any(f not in ("token", "connect_id") or spec or conv for f, spec, conv in fields):
            r.doc.fail(
                (*keys, "query", name),
                f"{template!r}: the only placeholders are {{token}} and {{connect_id}}",
            )
    return BootstrapSpec(
        path=path,
        endpoint=endpoint,
        token=token,
        method=_method(r, block.get("method") or "POST", (*keys, "method")),
        query=query,
    )


def _rate_limit(r: Reader, value: Any, keys: KeyPath) -> RateLimit | None:
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=RATE_LIMIT_KEYS)
    per_second = r.positive_number(
        block.get("requests_per_s"),
        (*keys, "requests_per_s"),
        least=MIN_REQUESTS_PER_S,
        most=MAX_REQUESTS_PER_S,
    )
    header = r.string(block.get("weight_header"), (*keys, "weight_header"), required=False)
    weight_limit = r.positive_integer(block.get("weight_limit"), (*keys, "weight_limit"))
    if header is not None and not HEADER_NAME.fullmatch(header):
        r.doc.fail((*keys, "weight_header"), f"{header[:60]!r} is not an HTTP header name")
    if (header is None) != (weight_limit is None):
        missing = "weight_limit" if weight_limit is None else "weight_header"
        r.doc.fail((*keys, missing), "weight_header and weight_limit go together")
    window = block.get("weight_window_s")
    return RateLimit(
        requests_per_s=per_second,
        weight_header=header,
        weight_limit=weight_limit,
        weight_window_s=60.0
        if window is None
        else r.positive_number(window, (*keys, "weight_window_s"), least=1, most=86_400),
    )
