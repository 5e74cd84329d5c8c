"""Message patterns used by profiles to recognise welcome, ack, data and pong messages (pure).

A pattern matches a decoded message (JSON value or raw text) when:

* the pattern is a mapping: the message is a mapping holding every key of the pattern, and each
  value matches its sub-pattern (other keys are ignored);
* the pattern is a list: the message is a list at least as long, and each element matches;
* the pattern is ``"*"``: anything present;
* the pattern is ``"$list"``, ``"$dict"``, ``"$number"``, ``"$string"``: a value of that type;
* otherwise: equality (so ``"pong"`` matches the text message ``pong``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "$list": (list,),
    "$dict": (dict,),
    "$number": (int, float),
    "$string": (str,),
}


def matches(pattern: Any, message: Any) -> bool:
    """True when ``message`` matches ``pattern`` (see the module docstring)."""
    if isinstance(pattern, Mapping):
        if not isinstance(message, Mapping):
            return False
        return all(key in message and matches(sub, message[key]) for key, sub in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(message, list) or len(message) < len(pattern):
            return False
        return all(matches(sub, item) for sub, item in zip(pattern, message, strict=False))
    if pattern == "*":
        return True
    if isinstance(pattern, str) and pattern in _TYPES:
        kinds = _TYPES[pattern]
        return isinstance(message, kinds) and not isinstance(message, bool)
    if isinstance(pattern, bool) or isinstance(message, bool):
        # JSON true must not match 1.
        return type(pattern) is type(message) and pattern == message
    return bool(pattern == message)


def fill_placeholders(message: Any, *, now: float | None = None) -> Any:
    """Return ``message`` with ``"$now"`` / ``"$now_ms"`` replaced by the Unix time."""
    t = time.time() if now is None else now
    if isinstance(message, Mapping):
        return {k: fill_placeholders(v, now=t) for k, v in message.items()}
    if isinstance(message, list):
        return [fill_placeholders(v, now=t) for v in message]
    if message == "$now":
        return int(t)
    if message == "$now_ms":
        return int(t * 1000)
    return message


def dig(document: Any, dotted: str) -> Any:
    """Follow a dotted path (``data.instanceServers.0.endpoint``) into JSON; None if absent."""
    node = document
    for part in dotted.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
