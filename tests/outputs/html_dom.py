"""A small element tree from HTML (stdlib parser), for asserting on the pages mpnet writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    def iter(self, tag: str | None = None) -> Iterator[Element]:
        for child in self.children:
            if tag is None or child.tag == tag:
                yield child
            yield from child.iter(tag)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants with ``tag`` whose attributes hold these values (``class_`` for class;
        a class matches when it is one of the element's classes)."""
        found = []
        for element in self.iter(tag):
            ok = True
            for key, wanted in attrs.items():
                name = key.rstrip("_").replace("_", "-")
                value = element.attrs.get(name)
                if name == "class":
                    ok = ok and value is not None and wanted in value.split()
                else:
                    ok = ok and value == wanted
            if ok:
                found.append(element)
        return found

    def with_attr(self, name: str) -> list[Element]:
        return [e for e in self.iter() if name in e.attrs]

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        parent = self.stack[-1]
        parent.children.append(element)
        parent.parts.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        self.stack[-1].parts.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return
        raise AssertionError(f"</{tag}> closes nothing that is open")

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(text: str) -> Element:
    """The document's element tree; raises when an end tag closes nothing."""
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root
