"""Checks on a YAML document's event stream: resource limits and duplicate keys.

YAML aliases share one node among many places, so a 300-byte document with
nine levels of nine aliases ("billion laughs") denotes 9**9 values.  Loading
it is cheap (the loaders share the objects), but whatever walks the data
afterwards (validation, merge keys, error reporting) pays the expanded size.
So the expanded size is counted on the events, where an alias is a single
event: a document over ``MAX_NODES`` fails at once, at the alias that crossed
the limit, and an alias inside the node it names (a cycle, an infinite
expansion) fails too.  Nesting is bounded by ``MAX_DEPTH``: PyYAML's composer
and the validation after it recurse once per level.

Duplicate keys are found on the same single pass, so reporting them costs time
linear in the text whatever the document's aliases, and they are reported
even next to a broken limit.

``_FastBuilder`` (loader) applies the same limit rules inline in its event
loop, the hot path; ``check_document`` runs whenever the fast builder hands a
document over to the full safe loader, before that loader composes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from reconciler.config.sourcemap import (
    MERGE_KEY,
    PlainScalars,
    event_parser,
    format_field,
    scalar_key,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "DocumentCheck",
    "Finding",
    "LimitExceeded",
    "alias_cycle",
    "check_document",
    "too_deep",
    "too_large",
    "too_many_nodes",
]

#: Largest configuration (or variable) file, and largest text after templating.
#: Per file: a directory configuration may spread over many.  A file of 10,000
#: certificates with their bindings is about 2.3 MB.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: Most values (scalars, mappings, sequences) a document may denote once every
#: alias is expanded: about 80,000 certificates with their bindings.
MAX_NODES = 2_000_000
#: Deepest nesting of mappings and sequences (a configuration needs under 10).
MAX_DEPTH = 100


class LimitExceeded(Exception):
    """A document breaks a resource limit; ``line`` is 1-based (``None``: the whole file)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _at(event: Any, message: str) -> LimitExceeded:
    return LimitExceeded(event.start_mark.line + 1, message)


def too_large(size: int, after_templating: bool = False) -> LimitExceeded:
    """The file (or its rendered text) is over ``MAX_CONFIG_BYTES``."""
    what = "after templating " if after_templating else ""
    return LimitExceeded(
        None,
        f"document too large: {size:,} bytes {what}is more than the maximum "
        f"{MAX_CONFIG_BYTES // (1024 * 1024)} MiB",
    )


def too_deep(event: Any) -> LimitExceeded:
    """A mapping or sequence nested deeper than ``MAX_DEPTH``."""
    return _at(event, f"nesting deeper than the maximum {MAX_DEPTH} levels")


def too_many_nodes(event: Any) -> LimitExceeded:
    """The expanded document passed ``MAX_NODES`` values at ``event``."""
    if type(event) is AliasEvent:
        return _at(
            event,
            f"too many alias expansions: *{event.anchor} takes the document past the "
            f"maximum {MAX_NODES:,} values",
        )
    return _at(event, f"document too large: more than the maximum {MAX_NODES:,} values")


def alias_cycle(event: Any) -> LimitExceeded:
    """An alias used inside the node its anchor names: an infinite structure."""
    return _at(event, f"alias *{event.anchor} is used inside the node &{event.anchor} it names")


@dataclass(frozen=True)
class Finding:
    """One problem: 1-based line, dotted field (may be empty) and message."""

    line: int | None
    field: str
    message: str


@dataclass
class DocumentCheck:
    """What ``check_document`` found: the first broken limit, and every duplicate key."""

    limit: Finding | None = None
    duplicates: list[Finding] = field(default_factory=list)


_NO_KEY = object()  # a mapping expects a key
_IN_KEY = object()  # a mapping is inside a complex (collection) key


@dataclass
class _Frame:
    """One open mapping or sequence.

    ``slot``: for a sequence the index of its next item; for a mapping
    ``_NO_KEY``, ``_IN_KEY``, or the label of the key whose value comes next.
    """

    keys: dict[Any, int] | None  # a mapping's keys and their first lines; None: a sequence
    slot: Any


def check_document(text: str) -> DocumentCheck:
    """Check ``text`` in one pass over its events (raises ``yaml.YAMLError`` on bad syntax).

    Time is linear in the text: an alias is one event, never expanded, and
    nothing recurses.
    """
    checker = _Checker()
    parser = event_parser(text)
    try:
        while True:
            event = parser.get_event()
            if event is None or type(event) is StreamEndEvent:
                break
            checker.feed(event)
    finally:
        parser.dispose()
    checker.result.duplicates.sort(key=lambda finding: finding.line or 0)
    return checker.result


@dataclass
class _Checker:
    scalars: PlainScalars = field(default_factory=PlainScalars)
    result: DocumentCheck = field(default_factory=DocumentCheck)
    frames: list[_Frame] = field(default_factory=list)
    path: list[Any] = field(default_factory=list)  # key or index of each open frame but the root
    anchored_scalars: dict[str, Any] = field(default_factory=dict)  # anchor -> its event
    # limit accounting, as in ``_FastBuilder``
    count: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    open_anchors: set[str] = field(default_factory=set)
    starts: list[tuple[int, str | None]] = field(default_factory=list)

    def feed(self, event: Any) -> None:
        """Take the next event."""
        kind = type(event)
        if kind is DocumentStartEvent:
            self.sizes.clear()  # anchors do not cross documents
            self.anchored_scalars.clear()
            return
        if kind is StreamStartEvent or kind is DocumentEndEvent:
            return
        if kind is ScalarEvent and event.anchor is not None:
            self.anchored_scalars[event.anchor] = event
        if self.result.limit is None:
            try:
                self._account(event, kind)
            except LimitExceeded as exc:
                self.result.limit = Finding(exc.line, self._field_of(event, kind), exc.message)
        self._walk(event, kind)

    def _account(self, event: Any, kind: type) -> None:
        """Count the expanded size and the depth; raise ``LimitExceeded``."""
        if kind is ScalarEvent:
            self.count += 1
            if event.anchor is not None:
                self.sizes[event.anchor] = 1
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if len(self.starts) >= MAX_DEPTH:
                raise too_deep(event)
            self.starts.append((self.count, event.anchor))
            if event.anchor is not None:
                self.open_anchors.add(event.anchor)
                self.sizes.pop(event.anchor, None)
            self.count += 1
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            start, anchor = self.starts.pop()
            if anchor is not None:
                self.open_anchors.discard(anchor)
                self.sizes[anchor] = self.count - start
            if self.count > MAX_NODES:
                raise too_many_nodes(event)
        elif kind is AliasEvent:
            if event.anchor in self.open_anchors:
                raise alias_cycle(event)
            self.count += self.sizes.get(event.anchor, 0)  # undefined: the loader says so
            if self.count > MAX_NODES:
                raise too_many_nodes(event)

    def _walk(self, event: Any, kind: type) -> None:
        """Follow the path to ``event``; check mapping keys for duplicates."""
        opens = kind is MappingStartEvent or kind is SequenceStartEvent
        if kind is MappingEndEvent or kind is SequenceEndEvent:
            self.frames.pop()
            if self.frames:
                self.path.pop()
            self._advance()
            return
        frame = self.frames[-1] if self.frames else None
        if frame is not None and frame.slot is _NO_KEY:  # a mapping key
            label = event.value if kind is ScalarEvent else "?"
            self._check_key(frame, event, kind, label)
            frame.slot = _IN_KEY if opens else label
            if opens:
                self._open(kind, label)
            return
        if opens:
            self._open(kind, frame.slot if frame is not None else None)
            return
        self._advance()

    def _open(self, kind: type, segment: Any) -> None:
        if self.frames:
            self.path.append(segment)
        is_map = kind is MappingStartEvent
        self.frames.append(_Frame({} if is_map else None, _NO_KEY if is_map else 0))

    def _advance(self) -> None:
        """The innermost collection's value (or complex key) is complete."""
        if not self.frames:
            return
        frame = self.frames[-1]
        if frame.keys is None:
            frame.slot += 1
        else:
            frame.slot = "?" if frame.slot is _IN_KEY else _NO_KEY

    def _check_key(self, frame: _Frame, event: Any, kind: type, label: str) -> None:
        if frame.keys is None or len(self.frames) > MAX_DEPTH:
            return  # too deep: refused anyway, and a field name would cost O(depth)
        line = event.start_mark.line + 1
        if kind is AliasEvent and event.anchor in self.anchored_scalars:
            event, kind = self.anchored_scalars[event.anchor], ScalarEvent
        if kind is not ScalarEvent:
            return  # a collection as a key: the loader refuses it (unhashable)
        key = scalar_key(event, self.scalars)
        if key is MERGE_KEY:
            return  # several << keys are how YAML merges several mappings
        try:
            first = frame.keys.get(key)
        except TypeError:
            return
        if first is None:
            frame.keys[key] = line
        else:
            shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
            message = f"duplicate key {shown} (first on line {first})"
            field_name = format_field((*self.path, label))
            self.result.duplicates.append(Finding(line, field_name, message))

    def _field_of(self, event: Any, kind: type) -> str:
        """Dotted field of ``event`` before ``_walk`` takes it (for a limit finding);
        past ``_SHOWN_DEPTH`` levels only the start of it, then ``...``."""
        if kind is MappingEndEvent or kind is SequenceEndEvent or not self.frames:
            path = self.path
        elif self.frames[-1].slot is _NO_KEY:
            path = [*self.path, event.value if kind is ScalarEvent else "?"]
        else:
            slot = self.frames[-1].slot
            path = [*self.path, "?" if slot is _IN_KEY else slot]
        if len(path) > _SHOWN_DEPTH:
            return format_field(path[:_SHOWN_DEPTH]) + "..."
        return format_field(path)


_SHOWN_DEPTH = 8
