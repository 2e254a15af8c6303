"""Locate configuration data back to the file and line that declared it.

Line numbers only matter when something is wrong, and building a node->line
index for a 70,000-line file costs far more than loading its data.  So the
loader keeps each file's (rendered) text, and the index is built lazily, per
file, on the first lookup, by replaying the YAML event stream: no
second load of the data, no PyYAML node objects.

Line numbers refer to the text that was parsed, i.e. after templating.  Simple
``{{ var }}`` substitutions keep lines aligned with the source file; see
``reconciler.config.templating`` for when they do not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from reconciler.errors import ConfigIssue

__all__ = [
    "LIST_SECTIONS",
    "MERGED_SECTIONS",
    "MERGE_KEY",
    "PlainScalars",
    "SourceFile",
    "SourceMap",
    "UnsupportedScalar",
    "display_path",
    "event_parser",
    "format_field",
    "scalar_key",
]

#: Top-level sections whose entries are merged by name across files.
MERGED_SECTIONS: tuple[str, ...] = ("authorities", "certificates", "providers")
#: Top-level sections that are lists, concatenated in file order.
LIST_SECTIONS: tuple[str, ...] = ("bindings",)

PathSegment = str | int
DataPath = Sequence[Any]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _MergeKey:
    """Type of ``MERGE_KEY``; a class so the sentinel has a readable repr."""

    def __repr__(self) -> str:
        return "<<"


#: What a plain ``<<`` key resolves to (YAML 1.1 merge key).
MERGE_KEY = _MergeKey()


class UnsupportedScalar(Exception):
    """A plain scalar resolved to a tag the safe constructor has no builder for."""


def event_parser(text: str) -> Any:
    """Return an object with ``get_event()`` over ``text``: libyaml when available.

    Reading events directly (rather than composing nodes) is what keeps large
    configurations fast: PyYAML's composer and resolver are pure Python.
    """
    parser_class = getattr(getattr(yaml, "cyaml", None), "CParser", None)
    if parser_class is not None:
        return parser_class(text)
    return yaml.SafeLoader(text)


class PlainScalars:
    """Resolve plain (unquoted, untagged) scalars exactly like ``yaml.safe_load``.

    Uses the safe loader's own implicit resolvers and constructors, and caches
    per value: configurations repeat the same scalars (issuer names, key
    types, durations) thousands of times.  ``cache`` is public so hot loops can
    consult it without a method call.
    """

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}
        self._resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = (
            _SAFE_LOADER.yaml_implicit_resolvers
        )
        self._constructors: dict[Any, Callable[..., Any]] = _SAFE_LOADER.yaml_constructors
        self._constructor = yaml.constructor.SafeConstructor()

    def resolve(self, value: str) -> Any:
        """Return the Python value of plain scalar ``value``; raise ``UnsupportedScalar``."""
        cached = self.cache.get(value, self)
        if cached is not self:
            return cached
        tag = self.tag_of(value)
        if tag == _STR_TAG:
            result: Any = value
        elif tag == _MERGE_TAG:
            result = MERGE_KEY
        else:
            result = self.construct(tag, value)
        self.cache[value] = result
        return result

    def tag_of(self, value: str) -> str:
        """The implicit tag of a plain scalar (same lookup as ``BaseResolver.resolve``)."""
        candidates = self._resolvers.get(value[0] if value else "", [])
        wildcard = self._resolvers.get(None, [])
        for tag, regexp in candidates + wildcard if wildcard else candidates:
            if regexp.match(value):
                return tag
        return _STR_TAG

    def construct(self, tag: str, value: str) -> Any:
        """Build a scalar of ``tag`` with the safe constructor, or raise ``UnsupportedScalar``."""
        builder = self._constructors.get(tag)
        if builder is None:
            raise UnsupportedScalar(tag)
        try:
            return builder(self._constructor, ScalarNode(tag, value))
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise UnsupportedScalar(tag) from exc


def display_path(path: Path) -> str:
    """Name a file for users: relative to the working directory when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_$-]+\Z")


def format_field(path: DataPath) -> str:
    """Dotted field name for a data path: ``certificates.web.names[0]``.

    Keys that would make the dotted form ambiguous (dots, spaces, ...) are
    quoted as ``["a.b"]``.
    """
    out = ""
    for segment in path:
        if isinstance(segment, int) and not isinstance(segment, bool):
            out += f"[{segment}]"
        elif _PLAIN_FIELD.match(str(segment)):
            out += f".{segment}" if out else str(segment)
        else:
            quoted = str(segment).replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{quoted}"]'
    return out


# --- per-file line index --------------------------------------------------------------
#
# A mapping is indexed as ``dict[key, (key_line, value_line, child)]`` (plus
# ``MERGE_KEY -> [child, ...]`` for ``<<`` keys), a sequence as
# ``list[(line, child)]``; ``child`` is ``None`` for scalars.  Lines are 1-based.

_NO_KEY = object()


class _UnhashableKey:
    """Stands in for a collection used as a mapping key (never looked up)."""


def scalar_key(event: Any, scalars: PlainScalars) -> Any:
    """The data key a scalar event denotes, as the loader would have built it."""
    if event.tag is not None and event.tag != "!":
        try:
            return scalars.construct(event.tag, event.value)
        except UnsupportedScalar:
            return event.value
    if event.implicit[0]:
        try:
            return scalars.resolve(event.value)
        except UnsupportedScalar:
            return event.value
    return event.value


def _events(text: str) -> Iterator[Any]:
    """Yield the events of the first document of ``text``."""
    parser = event_parser(text)
    try:
        while True:
            event = parser.get_event()
            if type(event) is StreamEndEvent or type(event) is DocumentEndEvent:
                return
            yield event
    finally:
        parser.dispose()


@dataclass
class _IndexBuilder:
    """Replays events into the line index (see the comment above)."""

    scalars: PlainScalars = field(default_factory=PlainScalars)
    anchors: dict[str, Any] = field(default_factory=dict)
    stack: list[tuple[Any, Any, int, int]] = field(default_factory=list)
    current: Any = None
    key: Any = _NO_KEY
    key_line: int = 0
    start_line: int = 0
    root: Any = None
    root_line: int | None = None

    def build(self, text: str) -> tuple[Any, int | None]:
        """Index ``text``; returns (root index, line of the root node)."""
        for event in _events(text):
            kind = type(event)
            line = event.start_mark.line + 1
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                self._open({} if kind is MappingStartEvent else [], event, line)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                child, line = self._close()
                self._attach(child, line, None)
            elif kind is ScalarEvent:
                if event.anchor is not None:
                    self.anchors[event.anchor] = None
                self._attach(None, line, event)
            elif kind is AliasEvent:
                self._attach(self.anchors.get(event.anchor), line, None)
        return self.root, self.root_line

    def _open(self, container: Any, event: Any, line: int) -> None:
        if event.anchor is not None:
            self.anchors[event.anchor] = container
        self.stack.append((self.current, self.key, self.key_line, self.start_line))
        self.current, self.key, self.start_line = container, _NO_KEY, line

    def _close(self) -> tuple[Any, int]:
        child, line = self.current, self.start_line
        self.current, self.key, self.key_line, self.start_line = self.stack.pop()
        return child, line

    def _attach(self, child: Any, line: int, scalar: Any) -> None:
        current = self.current
        if isinstance(current, dict):
            if self.key is _NO_KEY:
                key = scalar_key(scalar, self.scalars) if scalar is not None else _UnhashableKey()
                self.key, self.key_line = key, line
                return
            if self.key is MERGE_KEY:
                current.setdefault(MERGE_KEY, []).append(child)
            else:
                current[self.key] = (self.key_line, line, child)
            self.key = _NO_KEY
        elif isinstance(current, list):
            current.append((line, child))
        else:
            self.root, self.root_line = child, line


def _lookup(index: dict[Any, Any], key: Any) -> tuple[int, int, Any] | None:
    """Find ``key`` in a mapping index, following ``<<`` merges like the safe loader.

    Depth first, without recursion, and each mapping searched once: a mapping
    merged many times over (through aliases) or a long chain of merges costs
    time linear in the document, never exponential, and a cycle ends.
    """
    stack: list[dict[Any, Any]] = [index]
    seen: set[int] = set()
    while stack:
        mapping = stack.pop()
        if id(mapping) in seen:
            continue
        seen.add(id(mapping))
        hit = mapping.get(key)
        if hit is not None:
            return hit
        sources: list[Any] = []
        for merged in mapping.get(MERGE_KEY, ()):
            if isinstance(merged, list):
                sources.extend(child for _, child in reversed(merged))
            else:
                sources.append(merged)
        # later sources win, as in flatten_mapping: the last one pushed is searched first
        stack.extend(source for source in sources if isinstance(source, dict))
    return None


class SourceFile:
    """One parsed file: where it is, how to name it, and its lazily built line index."""

    def __init__(self, path: Path, display: str, text: str) -> None:
        self.path = path
        self.display = display
        self.text = text
        self._index: tuple[Any, int | None] | None = None

    def __repr__(self) -> str:
        return f"SourceFile({self.display!r})"

    def _built_index(self) -> tuple[Any, int | None]:
        if self._index is None:
            try:
                self._index = _IndexBuilder().build(self.text)
            except yaml.YAMLError:  # only parsed files get here; be safe anyway
                self._index = (None, None)
        return self._index

    def line_of(self, path: DataPath) -> int | None:
        """1-based line of the deepest existing node along ``path`` (local to this file).

        For a mapping entry this is the line of its value when the value is a
        scalar, else the line of its key (the ``web:`` line, not the line of
        its first field).
        """
        node, line = self._built_index()
        for segment in path:
            if isinstance(node, dict):
                hit = _lookup(node, segment)
                if hit is None:
                    break
                key_line, value_line, node = hit
                line = value_line if node is None else key_line
            elif isinstance(node, list) and _is_index(segment) and 0 <= segment < len(node):
                line, node = node[segment]
            else:
                break
        return line


def _is_index(segment: Any) -> bool:
    return isinstance(segment, int) and not isinstance(segment, bool)


@dataclass(frozen=True)
class BindingSlice:
    """Bindings ``start .. start+count-1`` of the merged list came from file ``file``."""

    start: int
    file: int
    count: int


class SourceMap:
    """Maps data paths of the merged configuration to (file, line).

    Built by the loader from what it learned while merging: which file
    declared each top-level key, each entry of the merged sections, and each
    slice of the concatenated ``bindings`` list.
    """

    def __init__(
        self,
        files: Sequence[SourceFile],
        root_display: str,
        section_files: Mapping[Any, Sequence[int]],
        entry_files: Mapping[str, Mapping[Any, int]],
        list_slices: Mapping[str, Sequence[BindingSlice]],
    ) -> None:
        self._files = tuple(files)
        self._root_display = root_display
        self._section_files = section_files
        self._entry_files = entry_files
        self._list_slices = list_slices

    @property
    def files(self) -> tuple[SourceFile, ...]:
        """The parsed files, in load order."""
        return self._files

    def locate(self, path: DataPath) -> tuple[str, int | None]:
        """Display file name and 1-based line of the deepest existing node of ``path``."""
        routed = self._route(path)
        if routed is None:
            return self._root_display, None
        source, local = routed
        return source.display, source.line_of(local)

    def file_of(self, path: DataPath) -> Path:
        """Absolute path of the file declaring the top-level entry of ``path``.

        Relative paths inside an entry resolve against this file's directory.
        Falls back to the first file: in a directory configuration every file
        lives in the same directory anyway.
        """
        routed = self._route(path)
        return routed[0].path if routed is not None else self._files[0].path

    def issue(self, path: DataPath, message: str) -> ConfigIssue:
        """A ``ConfigIssue`` located at ``path``, with a dotted field name."""
        file, line = self.locate(path)
        return ConfigIssue(file, line, format_field(path), message)

    def _route(self, path: DataPath) -> tuple[SourceFile, tuple[Any, ...]] | None:
        """Pick the file declaring ``path``; rewrite list indices to that file's own."""
        if not path:
            return None
        head, rest = path[0], tuple(path[1:])
        if head in self._list_slices and rest and _is_index(rest[0]):
            for piece in self._list_slices[head]:
                if piece.start <= rest[0] < piece.start + piece.count:
                    return self._files[piece.file], (head, rest[0] - piece.start, *rest[1:])
            rest = ()
        owners = self._entry_files.get(head) if isinstance(head, str) else None
        if owners is not None and rest and rest[0] in owners:
            return self._files[owners[rest[0]]], (head, *rest)
        declaring = self._section_files.get(head)
        if not declaring:
            return None
        return self._files[declaring[0]], (head, *rest)
