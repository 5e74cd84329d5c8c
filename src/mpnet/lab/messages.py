"""Build server messages that a profile's patterns recognise, and recognise client requests (pure).

The simulators answer with the realistic shape of each exchange (see :mod:`mpnet.lab.dialects`)
laid under the profile's own pattern, so whatever a profile expects is what the lab sends, and an
edited profile is still honoured by the lab.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mpnet.core.match import matches

_TYPE_DEFAULTS: dict[str, Any] = {"$list": [], "$dict": {}, "$number": 0, "$string": ""}
_PLACEHOLDERS = ("$now", "$now_ms")


def synthesize(pattern: Any, template: Any = None) -> Any:
    """A message that matches ``pattern``: ``template`` where it already does, else the pattern.

    Mappings and lists are merged key by key and item by item, so a realistic template keeps
    every field the pattern does not mention.
    """
    if pattern == "*":
        return copy.deepcopy(template) if template is not None else True
    if matches(pattern, template):
        return copy.deepcopy(template)
    if isinstance(pattern, Mapping):
        merged = dict(template) if isinstance(template, Mapping) else {}
        for key, sub in pattern.items():
            merged[key] = synthesize(sub, merged.get(key))
        return merged
    if isinstance(pattern, list):
        items = list(template) if isinstance(template, list) else []
        for i, sub in enumerate(pattern):
            if i < len(items):
                items[i] = synthesize(sub, items[i])
            else:
                items.append(synthesize(sub, None))
        return items
    if isinstance(pattern, str) and pattern in _TYPE_DEFAULTS:
        return copy.deepcopy(_TYPE_DEFAULTS[pattern])
    return copy.deepcopy(pattern)


def request_pattern(message: Any) -> Any:
    """The pattern that recognises a profile message once the client has filled its placeholders.

    ``"$now"`` and ``"$now_ms"`` become ``"$number"``; everything else must be equal.
    """
    if isinstance(message, Mapping):
        return {key: request_pattern(value) for key, value in message.items()}
    if isinstance(message, list):
        return [request_pattern(value) for value in message]
    if isinstance(message, str) and message in _PLACEHOLDERS:
        return "$number"
    return message


def is_request(message: Any, received: Any) -> bool:
    """True when ``received`` is the profile ``message`` as a client sends it."""
    if isinstance(message, str):
        return bool(received == message)
    return matches(request_pattern(message), received)


def place(document: Any, dotted: str, value: Any) -> Any:
    """Return ``document`` with ``value`` at a dotted path (``data.instanceServers.0.endpoint``),
    creating mappings and lists on the way; the inverse of :func:`mpnet.core.match.dig`."""
    head, _, rest = dotted.partition(".")
    if head.isdigit():
        items = list(document) if isinstance(document, list) else []
        index = int(head)
        while len(items) <= index:
            items.append(None)
        items[index] = place(items[index], rest, value) if rest else value
        return items
    mapping = dict(document) if isinstance(document, Mapping) else {}
    mapping[head] = place(mapping.get(head), rest, value) if rest else value
    return mapping
