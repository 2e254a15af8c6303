"""Which line of a file declared each part of its parsed data.

Built by ``yamlbuild`` in the same pass that builds the data, so error
messages (``FILE:LINE: field: message``) cost no second parse.  The index is a
side table over the data itself: for every mapping (keyed by the ``id`` of the
dict) where each of its own entries is, for every sequence where each item
is, and for every mapping with ``<<`` merge keys the mappings it merged.  The
index keeps the document alive, so no ``id`` it holds is ever reused.

A location is the 0-based line where a node starts (a sequence item, or a
mapping entry: its key's line, which is also its value's unless the value is
a scalar on a later line), or for a mapping entry whose scalar value starts
on a later line than its key the pair (key line, value line): error messages
name a scalar's own line, a duplicate key the line of its first occurrence.
Plain ints rather than the parser's marks: a mark is three times the size of
an int and the index lives as long as the configuration.  Lines are returned
1-based.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LineIndex"]


def _is_index(segment: Any) -> bool:
    return isinstance(segment, int) and not isinstance(segment, bool)


class LineIndex:
    """Line lookups for one parsed document (see the module docstring)."""

    def __init__(
        self,
        root: Any,
        root_location: Any,
        locations: Mapping[int, Any],
        merges: Mapping[int, Sequence[Any]],
    ) -> None:
        self.root = root
        self._root = root_location
        self._locations = locations
        self._merges = merges

    def line_of(self, path: Sequence[Any]) -> int | None:
        """1-based line of the deepest existing node along ``path``.

        For a mapping entry this is the line of its value when the value is a
        scalar, else the line of its key (the ``web:`` line, not the line of
        its first field); ``<<`` merge keys are followed like the safe loader
        does.  For a sequence item it is the item's own line.
        """
        node, location = self.root, self._root
        for segment in path:
            if type(node) is dict:
                hit = self._entry(node, segment)
                if hit is None:
                    break
                location, node = hit
            elif type(node) is list and _is_index(segment) and 0 <= segment < len(node):
                items = self._locations.get(id(node))
                if items is None or segment >= len(items):
                    break
                location, node = items[segment], node[segment]
            else:
                break
        if location is None:
            return None
        return int(location[1] if type(location) is tuple else location) + 1

    def _entry(self, mapping: dict[Any, Any], key: Any) -> tuple[Any, Any] | None:
        """Location and value of ``key`` in ``mapping``, looking through ``<<`` merges.

        Depth first, without recursion, and each mapping searched once: a
        mapping merged many times over (through aliases) or a long chain of
        merges costs time linear in the document, and a cycle ends.  Later
        merge keys win, and of one ``<<: [a, b]`` list the earlier mapping, as
        in ``SafeConstructor.flatten_mapping``: the last one pushed is searched
        first.
        """
        try:
            hash(key)
        except TypeError:
            return None
        stack: list[dict[Any, Any]] = [mapping]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            own = self._locations.get(id(current))
            if own is not None and key in own:
                return own[key], current[key]
            sources: list[Any] = []
            for merged in self._merges.get(id(current), ()):
                sources.extend(reversed(merged) if type(merged) is list else (merged,))
            stack.extend(source for source in sources if type(source) is dict)
        return None
