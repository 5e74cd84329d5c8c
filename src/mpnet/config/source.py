"""YAML documents that remember where every value was written, for errors that name file:line.

PyYAML's composer gives each node a start mark; :func:`load_yaml` turns the node tree into plain
Python values and keeps a map from key path to line, so a schema error can say
``mpnet.yaml:12 exchanges.deribit.proxy: ...`` instead of only what was wrong.
"""

from __future__ import annotations

import math
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
        dotted = ".".join(_key_text(k) for k in keys)
        return f"{self.path}:{line} {dotted}".rstrip()

    def fail(self, keys: KeyPath, problem: str) -> NoReturn:
        """Raise this document's error class naming file, line and key."""
        raise self.error_class(f"{self.where(keys)}: {problem}")


def _key_text(key: str | int) -> str:
    # A key with a line break or control character would split or garble the one-line error.
    text = str(key)
    return text if text.isprintable() and text.strip() == text else repr(text)


def load_yaml(path: str | Path, error_class: type[ConfigError]) -> YamlDocument:
    """Read and parse a YAML file.

    Raises:
        error_class: the file cannot be read, is not valid YAML, or repeats a key.
    """
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error_class(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise error_class(f"{shown}: is a directory, not a YAML file") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise error_class(f"{shown}: cannot read: {reason}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error_class(f"{shown}: is UTF-16 text; save it as UTF-8") from None
    if b"\0" in data[:8192]:
        raise error_class(f"{shown}: is a binary file, not YAML text") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_class(
            f"{shown}: is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None
    return parse_yaml(text, shown, error_class)


#: libyaml's composer where PyYAML has it (about 4x faster on the shipped profiles; the same
#: nodes, marks and errors), else the pure-Python one.
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Builds each scalar from its node with the safe constructors (no tags beyond YAML's own).
_CONSTRUCTOR = yaml.SafeLoader("")


def parse_yaml(text: str, path: str, error_class: type[ConfigError]) -> YamlDocument:
    """Parse YAML text; ``path`` is only used in messages."""
    last = max(1, len(text.splitlines()))
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            number = mark.line + 1
        elif isinstance(exc, yaml.reader.ReaderError):
            # A forbidden character: the reader knows its offset, not its line.
            number = text.count("\n", 0, exc.position) + 1
        else:
            number = 1
        # An error found at the end of the stream is reported on the last line, not past it.
        problem = (
            getattr(exc, "problem", None)
            or getattr(exc, "reason", None)
            or (str(exc).splitlines() or ["unreadable"])[0]
        )
        raise error_class(f"{path}:{min(number, last)}: invalid YAML: {problem}") from None
    except RecursionError:
        raise error_class(f"{path}:1: invalid YAML: nested too deeply") from None
    doc = YamlDocument(path=path, data=None, error_class=error_class)
    if node is None:
        return doc
    doc.data = _Converter(doc).convert(node, ())
    return doc


#: Values a document may hold once aliases are expanded: far above any real profile or config,
#: far below what an alias bomb (``&a [x, x]``, ``&b [*a, *a]``, ...) expands to.
MAX_VALUES = 100_000
#: Nesting deeper than this is not a profile or a config file (and would exhaust the stack).
MAX_DEPTH = 100


_PLAIN_COLLECTION_TAGS = frozenset(
    {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"}
)


def _shown_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/object/apply:os.system`` -> ``!!python/object/apply``."""
    name = tag.removeprefix("tag:yaml.org,2002:")
    shown = f"!!{name}" if name != tag else tag
    return shown.split(":", 1)[0][:60]


class _Converter:
    """Node tree -> plain values, refusing alias loops, alias bombs and absurd nesting."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.values = 0
        self.open: set[int] = set()  # ids of the collection nodes being converted

    def convert(self, node: yaml.Node, keys: KeyPath) -> Any:
        doc = self.doc
        doc.lines.setdefault(keys, node.start_mark.line + 1)
        self.values += 1
        if self.values > MAX_VALUES:
            doc.fail(keys, f"more than {MAX_VALUES} values (aliases expanded)")
        if len(keys) > MAX_DEPTH:
            doc.fail(keys[:2], f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if node.tag not in _PLAIN_COLLECTION_TAGS:
                # A tag PyYAML's safe loader would refuse on a scalar (!!python/object/apply:...)
                # must not be dropped silently on a mapping or a list: refuse it the same way.
                doc.lines[keys] = node.start_mark.line + 1
                doc.fail(keys, f"invalid value: the tag {_shown_tag(node.tag)} is not allowed")
            if id(node) in self.open:
                doc.fail(keys, "an alias refers to a value that contains it")
            self.open.add(id(node))
            try:
                return self._collection(node, keys)
            finally:
                self.open.discard(id(node))
        return _scalar(node, doc)

    def _collection(self, node: yaml.Node, keys: KeyPath) -> Any:
        doc = self.doc
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*keys, i)) for i, item in enumerate(node.value)]
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
            result[key] = self.convert(value_node, sub)
        return result


def _scalar(node: yaml.Node, doc: YamlDocument) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a complex key; rejected by the caller
    loader = _CONSTRUCTOR
    # One constructor for every scalar (making a loader per value was most of the parse time);
    # it remembers what it built, and the nodes a failed construction left half-done: forget
    # both first, so that no earlier document's nodes are kept or consulted.
    loader.constructed_objects.clear()
    loader.recursive_objects.clear()
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        # Only the problem: the full message quotes the line, which may hold a proxy password.
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise doc.error_class(
            f"{doc.path}:{node.start_mark.line + 1}: invalid value: {problem}"
        ) from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
        # PyYAML's constructors for explicit tags (!!int abc, !!bool maybe, !!timestamp x)
        # fail with plain Python errors.
        tag = node.tag.rsplit(":", 1)[-1]
        raise doc.error_class(
            f"{doc.path}:{node.start_mark.line + 1}: invalid value: not a valid !!{tag}"
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

    def positive_number(
        self, value: Any, keys: KeyPath, *, least: float = 0.0, most: float = math.inf
    ) -> float:
        """A finite number above 0 (an integer or a decimal), within ``least``..``most``;
        required."""
        if value is None:
            self.doc.fail(keys, "required key is missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.doc.fail(keys, f"expected a positive number, got {_kind(value)}")
        # Compared before float(): an integer too large for a float would overflow.
        if not least <= value <= most:
            self.doc.fail(keys, f"{_kind(value)} is out of range {least:g} to {most:g}")
        return float(value)

    def positive_integer(self, value: Any, keys: KeyPath) -> int | None:
        """An integer above 0, or None when absent."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.doc.fail(keys, f"expected a positive integer, got {_kind(value)}")
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
    shown = repr(value) if not isinstance(value, int) or value.bit_length() < 128 else "..."
    return (
        f"{type(value).__name__} {shown}" if len(shown) < 60 else f"a long {type(value).__name__}"
    )
