"""YAML documents that remember where every value was written, for errors that name file:line.

PyYAML's composer gives each node a start mark; :func:`load_yaml` turns the node tree into plain
Python values and keeps a map from key path to line, so a schema error can say
``mpnet.yaml:12 exchanges.deribit.proxy: ...`` instead of only what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mpnet.core.proxy_url import redact_url_text
from mpnet.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass(slots=True)
class YamlDocument:
    """Plain data plus the line of every key path (1-based)."""

    path: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    error_class: type[ConfigError] = ConfigError

    def where(self, keys: KeyPath) -> str:
        """``file:line key.path`` for the deepest key path that has a recorded line."""
        probe = keys
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        dotted = ".".join(str(k) for k in keys)
        return f"{self.path}:{line} {dotted}".rstrip()

    def fail(self, keys: KeyPath, problem: str) -> NoReturn:
        """Raise this document's error class naming file, line and key."""
        raise self.error_class(f"{self.where(keys)}: {problem}")


def load_yaml(path: str | Path, error_class: type[ConfigError]) -> YamlDocument:
    """Read and parse a YAML file.

    Raises:
        error_class: the file cannot be read, is not valid YAML, or repeats a key.
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_class(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise error_class(f"{shown}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error_class(f"{shown}: cannot read: {reason}") from None
    return parse_yaml(text, shown, error_class)


def parse_yaml(text: str, path: str, error_class: type[ConfigError]) -> YamlDocument:
    """Parse YAML text; ``path`` is only used in messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        # An error found at the end of the stream is reported on the last line, not past it.
        last = max(1, len(text.splitlines()))
        line = f":{min(mark.line + 1, last)}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error_class(f"{path}{line}: invalid YAML: {problem}") from None
    doc = YamlDocument(path=path, data=None, error_class=error_class)
    if node is None:
        return doc
    doc.data = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, keys: KeyPath, doc: YamlDocument) -> Any:
    doc.lines.setdefault(keys, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, doc)
            if not isinstance(key, str | int | float | bool) or key is None:
                doc.lines[keys] = key_node.start_mark.line + 1
                doc.fail(keys, "mapping keys must be plain scalars")
            key = str(key)
            sub = (*keys, key)
            if key in result:
                doc.lines[sub] = key_node.start_mark.line + 1
                doc.fail(sub, "duplicate key")
            doc.lines[sub] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, sub, doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*keys, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node, doc)


def _scalar(node: yaml.Node, doc: YamlDocument) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a complex key; rejected by the caller
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise doc.error_class(
            f"{doc.path}:{node.start_mark.line + 1}: invalid value: {exc}"
        ) from None
    finally:
        loader.dispose()


# -- small typed readers used by the schema code ------------------------------------------------


class Reader:
    """Typed access to a YamlDocument's mappings, failing with file:line key messages."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def mapping(self, value: Any, keys: KeyPath, *, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.doc.fail(keys, f"expected a mapping, got {_kind(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            self.doc.fail(
                (*keys, unknown[0]),
                f"unknown key {unknown[0]!r}; expected one of {', '.join(allowed)}",
            )
        return value

    def string(self, value: Any, keys: KeyPath, *, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            if value is None:
                self.doc.fail(keys, "required key is missing")
            self.doc.fail(keys, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, value: Any, keys: KeyPath, *, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.doc.fail(keys, f"expected an integer, got {_kind(value)}")
        return value

    def boolean(self, value: Any, keys: KeyPath) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.doc.fail(keys, f"expected true or false, got {_kind(value)}")
        return value

    def string_map(self, value: Any, keys: KeyPath) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.doc.fail(keys, f"expected a mapping of strings, got {_kind(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                self.doc.fail((*keys, k), f"expected a string, got {_kind(v)}")
            out[str(k)] = str(v)
        return out

    def string_list(self, value: Any, keys: KeyPath) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.doc.fail(keys, "expected a list of strings")
        return tuple(value)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        # A misplaced proxy URL may carry a password.
        shown = redact_url_text(value)
        return f"string {shown!r}" if len(shown) < 60 else "a string"
    return f"{type(value).__name__} {value!r}"
