"""One pass over a YAML document: its data, its line index, and every problem in it.

``yaml.load(..., Loader=CSafeLoader)`` only parses in C; composing nodes and
resolving scalars run in Python and take seconds on a 10,000-certificate
file, and a node tree holds far more than the data.  So the builder reads the
parser's events (libyaml's when available) and, in a single loop over them:

* builds the Python data, with the safe loader's scalar semantics
  (``yamlvalues``: PyYAML's own resolvers and safe constructors, so only the
  safe tags exist and nothing can build an object);
* records the line of every mapping key and sequence item (``LineIndex``),
  for error messages that name ``FILE:LINE``;
* applies ``<<`` merge keys as ``SafeConstructor.flatten_mapping`` does;
* finds duplicate keys (a dict lookup per key: linear time, aliases never
  expanded);
* enforces the resource limits of ``yamllimits`` (nesting depth, values after
  alias expansion, alias cycles) on the events, where an alias is one event.

A problem does not stop the pass: the first broken limit, every duplicate key
and the first refused node (undefined alias, bad scalar, bad merge, unhashable
key, unknown tag...) are collected, the data is no longer trusted (merges stop)
and nothing expands, and ``DocumentRejected`` carries them at the end.  As the
safe loader would, a refused node hides the duplicate keys, and a broken limit
hides a refused node.  Syntax errors are the parser's ``yaml.YAMLError``.
"""

from __future__ import annotations

from dataclasses import dataclass
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

from reconciler.config.lineindex import LineIndex
from reconciler.config.sourcemap import format_field
from reconciler.config.yamllimits import (
    MAX_DEPTH,
    MAX_NODES,
    Finding,
    alias_cycle,
    too_deep,
    too_many_nodes,
)
from reconciler.config.yamlvalues import (
    MERGE_KEY,
    MERGE_TAG,
    BadValue,
    YamlValues,
    check_collection_tag,
    finish_collection,
)

__all__ = ["DocumentBuilder", "DocumentRejected", "ParsedDocument", "event_parser"]

_NO_KEY = object()  # the open mapping expects a key
#: Stands in for the limits once one is broken: only the first is reported.
_NEVER = float("inf")
#: A limit's field shows at most this many segments, then ``...``.
_SHOWN_DEPTH = 8
_PARSER_CLASS: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)


def event_parser(text: str) -> Any:
    """An object with ``get_event()`` and ``dispose()`` over ``text``: libyaml's
    parser when available, else PyYAML's (the same events, slower)."""
    if _PARSER_CLASS is not None:
        return _PARSER_CLASS(text)
    return yaml.SafeLoader(text)


@dataclass(frozen=True)
class ParsedDocument:
    """The data of one document and the index of its lines, from one pass."""

    data: Any
    index: LineIndex


class DocumentRejected(Exception):
    """The document breaks a limit, repeats a key or holds a node the safe loader
    refuses; ``findings`` are in line order."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(f.message for f in findings))
        self.findings = findings


def _label(event: Any) -> Any:
    """How a key shows in a field name: its text as written, ``?`` for an alias or
    a collection (``m["?"]``)."""
    return event.value if type(event) is ScalarEvent else "?"


def _kind(value: Any) -> str:
    """The safe loader's name for the node a value came from."""
    if type(value) is dict or type(value) is set:
        return "mapping"
    return "sequence" if type(value) is list else "scalar"


def _line(event: Any) -> int:
    """0-based line where ``event`` starts."""
    return int(event.start_mark.line)


def _value_line(location: Any) -> int:
    """0-based line of an index location (see ``LineIndex``): the value's own line."""
    return int(location[1] if type(location) is tuple else location)


def _key_line(location: Any) -> int:
    """0-based line of the key of a mapping entry's index location."""
    return int(location[0] if type(location) is tuple else location)


class DocumentBuilder:
    """Builds one document (see the module docstring); use each builder once."""

    def __init__(self) -> None:
        self.values = YamlValues()
        self.anchors: dict[str, Any] = {}
        self.anchor_lines: dict[str, int] = {}
        self.limit: Finding | None = None
        self._refused_structure: Finding | None = None
        self._refused_value: Finding | None = None
        self.duplicates: list[Finding] = []
        # the line index (``LineIndex``), filled as the data is built
        self.lines: dict[int, Any] = {}
        self.merges: dict[int, list[Any]] = {}

    def build(self, text: str) -> ParsedDocument:
        """Data and index of the single document in ``text`` (``None`` for an empty
        stream); raise ``DocumentRejected`` or the parser's ``yaml.YAMLError``."""
        data: Any = None
        root_location: Any = None
        parser = event_parser(text)
        try:
            parser.get_event()  # StreamStartEvent
            start = parser.get_event()
            if type(start) is not StreamEndEvent:
                data, root_location = self._document(parser.get_event)
                extra = parser.get_event()
                if type(extra) is not StreamEndEvent:
                    self._refuse(
                        "but found another document",
                        _line(extra),
                        "expected a single document in the stream",
                        _line(start),
                        structure=True,
                    )
        finally:
            parser.dispose()
        findings = self._findings()
        if findings:
            raise DocumentRejected(findings)
        index = LineIndex(data, root_location, self.lines, self.merges)
        return ParsedDocument(data, index)

    def _findings(self) -> list[Finding]:
        if self.limit is not None:
            return sorted([self.limit, *self.duplicates], key=lambda f: f.line or 0)
        if self.refused is not None:
            return [self.refused]
        return sorted(self.duplicates, key=lambda f: f.line or 0)

    # --- the pass -------------------------------------------------------------------

    def _document(self, get_event: Any) -> tuple[Any, Any]:
        """Consume one document's events up to and including its end event.

        One flat loop with locals rather than small methods: this runs once
        per YAML event (300,000 of them for 10,000 certificates).  Everything
        unusual (tags, anchors, merge keys, problems) leaves the loop for a
        method.  ``count`` is the number of values the document denotes so far
        with every alias expanded; ``sizes`` the expanded size of each anchored
        node, known once the node is complete.
        """
        cache, plain = self.values.cache, self.values.plain
        anchors, table = self.anchors, self.lines
        # The open collection: its data, whether it is a mapping, the pending key
        # and the event it came from, its index entry (``LineIndex``), its merge
        # sources, ``special`` (the value count when it started, if it has an
        # anchor or a tag; else None), and its start event.  ``stack`` holds the
        # same for each enclosing collection.
        stack: list[tuple[Any, ...]] = []
        current: Any = None
        is_map = False
        key: Any = _NO_KEY
        key_event: Any = None
        lines: Any = None
        merges: list[Any] | None = None
        special: int | None = None
        opened: Any = None
        root: Any = None
        root_location: Any = None
        count = 0
        sizes: dict[str, int] = {}
        max_nodes: float = MAX_NODES
        max_depth: float = MAX_DEPTH
        while True:
            event = get_event()
            kind = type(event)
            if kind is ScalarEvent:
                count += 1
                value = event.value
                if event.tag is not None:
                    value = self._tagged(event, is_map and key is _NO_KEY)
                elif event.implicit[0]:
                    resolved = cache.get(value, cache)
                    if resolved is cache:
                        try:
                            resolved = plain(value, is_map and key is _NO_KEY)
                        except BadValue as exc:
                            resolved = self._bad_value(event, exc)
                    value = resolved
                if event.anchor is not None:
                    self._anchor(event, value)
                    sizes[event.anchor] = 1
                # the common cases, short-cut: a key, a new key's value, an item
                if is_map:
                    if key is _NO_KEY:
                        key, key_event = value, event
                        continue
                    # a scalar is located at its own line, its key (for a duplicate)
                    # at the key's: both are kept when they differ (see ``LineIndex``)
                    location: Any = event.start_mark.line
                    key_line = key_event.start_mark.line
                    if location != key_line:  # a scalar below its key
                        location = (key_line, location)
                    if key is not MERGE_KEY and key not in current:
                        current[key] = value
                        lines[key] = location
                        key = _NO_KEY
                        continue
                else:
                    location = event.start_mark.line
                    if current is not None:
                        current.append(value)
                        lines.append(location)
                        continue
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if len(stack) >= max_depth:
                    field = self._field(stack, current, is_map, key, key_event, event)
                    self.limit = Finding(_line(event) + 1, field, too_deep())
                    max_nodes = max_depth = _NEVER
                stack.append((current, is_map, key, key_event, lines, merges, special, opened))
                if kind is MappingStartEvent:
                    is_map, current, lines = True, {}, {}
                else:
                    is_map, current, lines = False, [], []
                table[id(current)] = lines
                key, merges, special, opened = _NO_KEY, None, None, event
                if event.anchor is not None or event.tag is not None:
                    special = count
                    self._open_special(event, current, sizes)
                count += 1
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                if count > max_nodes:
                    field = self._field(stack, current, is_map, key, key_event, None)
                    self.limit = Finding(_line(event) + 1, field, too_many_nodes(None))
                    max_nodes = max_depth = _NEVER
                value = current
                if merges is not None:
                    self._merge(value, merges)
                if special is not None:
                    value = self._close_special(value, opened, count - special, sizes)
                location = opened.start_mark.line
                current, is_map, key, key_event, lines, merges, special, opened = stack.pop()
                if is_map and key is not _NO_KEY:
                    location = key_event.start_mark.line  # a collection is located at its key
            elif kind is AliasEvent:
                name = event.anchor
                size = sizes.get(name)
                if size is None:  # undefined, or its node is still open: a cycle
                    value = None
                    if name not in anchors:
                        # worded as libyaml's composer: no name, which may be long
                        self._refuse("found undefined alias", _line(event), structure=True)
                    elif self.limit is None:
                        field = self._field(stack, current, is_map, key, key_event, event)
                        self.limit = Finding(_line(event) + 1, field, alias_cycle(name))
                        max_nodes = max_depth = _NEVER
                else:
                    count += size
                    if count > max_nodes:
                        field = self._field(stack, current, is_map, key, key_event, event)
                        self.limit = Finding(_line(event) + 1, field, too_many_nodes(name))
                        max_nodes = max_depth = _NEVER
                    value = anchors[name]
                    if value is MERGE_KEY and not (is_map and key is _NO_KEY):
                        value = self._refuse_merge_value(event)
                location = event.start_mark.line
                if is_map and key is not _NO_KEY:
                    key_line = key_event.start_mark.line
                    if type(value) is dict or type(value) is list:
                        location = key_line
                    elif key_line != location:
                        location = (key_line, location)
            elif kind is DocumentEndEvent:
                return root, root_location
            else:  # pragma: no cover - the parser sends nothing else inside a document
                continue
            # what the short-cuts above leave: collections, aliases, merge keys,
            # duplicate keys, the root
            if is_map:
                if key is _NO_KEY:  # an alias or a collection as a key
                    key, key_event = self._complex_key(value, location, opened), event
                    continue
                if key is MERGE_KEY:
                    merges = self._merge_source(merges, value, location, event, opened)
                elif key in current:
                    self._duplicate(stack, key, key_event, lines)
                else:
                    current[key] = value
                    lines[key] = location
                key = _NO_KEY
            elif current is not None:
                current.append(value)
                lines.append(location)
            else:
                root, root_location = value, location

    # --- the unusual, out of the loop -----------------------------------------------

    @property
    def refused(self) -> Finding | None:
        """The refused node to report: as the safe loader composes the whole document
        before it constructs any value, a structure problem (undefined alias,
        duplicate anchor, second document) comes first, else the first value
        problem."""
        return self._refused_structure or self._refused_value

    def _refuse(
        self,
        problem: str,
        line: int,
        context: str | None = None,
        context_line: int | None = None,
        structure: bool = False,
    ) -> None:
        """Record a node the safe loader refuses, worded like its ``MarkedYAMLError``
        (``structure``: its composer's, else its constructor's); lines are 0-based."""
        if (self._refused_structure if structure else self._refused_value) is not None:
            return
        message = problem
        if context is not None:
            started = f" started on line {context_line + 1}" if context_line is not None else ""
            message += f" ({context}{started})"
        if structure:
            self._refused_structure = Finding(line + 1, "", message)
        else:
            self._refused_value = Finding(line + 1, "", message)

    def _bad_value(self, event: Any, exc: BadValue) -> Any:
        """Refuse a scalar; what stands in for it is unique: no false duplicate key."""
        self._refuse(exc.problem, _line(event), exc.context)
        return object()

    def _tagged(self, event: Any, as_key: bool) -> Any:
        """A scalar with an explicit tag (``!`` alone means none: resolved as untagged)."""
        values = self.values
        try:
            if event.tag != "!":
                return values.tagged(event.tag, event.value, as_key)
            if not event.implicit[0]:
                return event.value
            resolved = values.cache.get(event.value, values)
            return values.plain(event.value, as_key) if resolved is values else resolved
        except BadValue as exc:
            return self._bad_value(event, exc)

    def _anchor(self, event: Any, value: Any) -> None:
        name = event.anchor
        if name in self.anchors:
            first = self.anchor_lines[name]
            context = "found duplicate anchor; first occurrence"
            self._refuse("second occurrence", _line(event), context, first, structure=True)
        self.anchors[name] = value
        self.anchor_lines[name] = _line(event)

    def _refuse_merge_value(self, event: Any) -> None:
        line = self.anchor_lines.get(event.anchor, _line(event))
        self._refuse(f"could not determine a constructor for the tag {MERGE_TAG!r}", line)

    def _open_special(self, event: Any, collection: Any, sizes: dict[str, int]) -> None:
        """A collection starts with an anchor or a tag."""
        if event.anchor is not None:
            self._anchor(event, collection)
            sizes.pop(event.anchor, None)  # open: an alias to it now is a cycle
        if event.tag is not None and event.tag != "!":
            try:
                check_collection_tag(event.tag, type(event) is MappingStartEvent)
            except BadValue as exc:
                self._refuse(exc.problem, _line(event), exc.context, _line(event))

    def _close_special(self, value: Any, opened: Any, size: int, sizes: dict[str, int]) -> Any:
        """A collection with an anchor or a tag is complete: record the expanded size
        of its anchor; make a set or a list of pairs of it, as its tag says."""
        if opened.anchor is not None:
            sizes[opened.anchor] = size
        if opened.tag is None or opened.tag == "!" or self.refused is not None:
            return value
        try:
            finished = finish_collection(opened.tag, value)
        except BadValue as exc:
            items = self.lines.get(id(value))
            line = _line(opened)
            if exc.item is not None and items is not None and exc.item < len(items):
                line = _value_line(items[exc.item])
            self._refuse(exc.problem, line, exc.context, _line(opened))
            return value
        if finished is not value:
            # the collection leaves the data: its index entry goes too (its id may be reused)
            self.lines.pop(id(value), None)
            self.merges.pop(id(value), None)
            if opened.anchor is not None and self.anchors.get(opened.anchor) is value:
                self.anchors[opened.anchor] = finished
        return finished

    def _complex_key(self, value: Any, location: Any, opened: Any) -> Any:
        """A key that is an alias or a collection: the aliased scalar, or refused."""
        if type(value) is dict or type(value) is list or type(value) is set:
            context = "while constructing a mapping"
            line = _value_line(location)
            self._refuse("found unhashable key", line, context, _line(opened))
            return object()
        return value

    def _merge_source(
        self, merges: list[Any] | None, value: Any, location: Any, event: Any, opened: Any
    ) -> list[Any] | None:
        """Take the value of a ``<<`` key: a mapping or a list of mappings."""
        line = _value_line(location)
        if type(event) is AliasEvent:
            line = self.anchor_lines.get(event.anchor, line)  # the safe loader names the node
        context, context_line = "while constructing a mapping", _line(opened)
        if type(value) is list:
            items = self.lines.get(id(value), [])
            for index, item in enumerate(value):
                if type(item) is not dict:
                    where = _value_line(items[index]) if index < len(items) else line
                    problem = f"expected a mapping for merging, but found {_kind(item)}"
                    self._refuse(problem, where, context, context_line)
                    return merges
        elif type(value) is not dict:
            kind = _kind(value)
            problem = f"expected a mapping or list of mappings for merging, but found {kind}"
            self._refuse(problem, line, context, context_line)
            return merges
        if merges is None:
            merges = []
        merges.append(value)
        return merges

    def _merge(self, mapping: dict[Any, Any], merges: list[Any]) -> None:
        """Apply ``<<`` merge keys the way ``SafeConstructor.flatten_mapping`` does.

        Explicit keys win over merged ones; of several merged mappings the later
        ``<<`` key wins, and within one ``<<: [a, b]`` list the earlier mapping
        wins.  The dict is updated in place because anchors may already refer to
        it.  Once a problem is found the data is never used: no more copying.
        """
        self.merges[id(mapping)] = merges
        if self.limit is not None or self.refused is not None:
            return
        merged: dict[Any, Any] = {}
        for source in merges:
            for part in reversed(source) if type(source) is list else (source,):
                merged.update(part)
        merged.update(mapping)
        mapping.clear()
        mapping.update(merged)

    def _duplicate(
        self, stack: list[tuple[Any, ...]], key: Any, key_event: Any, lines: dict[Any, Any]
    ) -> None:
        """Record a key repeated in one mapping (the first one stays)."""
        if len(stack) > MAX_DEPTH:
            return  # too deep: refused anyway, and a field name would cost O(depth)
        shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
        message = f"duplicate key {shown} (first on line {_key_line(lines[key]) + 1})"
        field = format_field([*self._path(stack), _label(key_event)])
        self.duplicates.append(Finding(_line(key_event) + 1, field, message))

    @staticmethod
    def _path(stack: list[tuple[Any, ...]]) -> list[Any]:
        """Key or index of each open collection but the root, from its parent."""
        path: list[Any] = []
        for parent, parent_is_map, parent_key, parent_key_event, *_ in stack:
            if parent is None:
                continue
            if not parent_is_map:
                path.append(len(parent))
            else:
                path.append("?" if parent_key is _NO_KEY else _label(parent_key_event))
        return path

    def _field(
        self,
        stack: list[tuple[Any, ...]],
        current: Any,
        is_map: bool,
        key: Any,
        key_event: Any,
        event: Any,
    ) -> str:
        """Dotted field of ``event`` in the open collection (``None``: of the collection
        itself), for a limit; past ``_SHOWN_DEPTH`` levels only its start, then ``...``."""
        path = self._path(stack)
        if event is not None and current is not None:
            if not is_map:
                path.append(len(current))
            else:
                path.append(_label(event if key is _NO_KEY else key_event))
        if len(path) > _SHOWN_DEPTH:
            return format_field(path[:_SHOWN_DEPTH]) + "..."
        return format_field(path)
