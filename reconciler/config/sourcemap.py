"""Locate configuration data back to the file and line that declared it.

Each file's line index is built by the same pass over its YAML events that
builds its data (``yamlbuild``): no second parse, no PyYAML node objects.
``SourceMap`` routes a path of the merged configuration to the file that
declared it and asks that file's index for the line.

Line numbers refer to the text that was parsed, i.e. after templating.  Simple
``{{ var }}`` substitutions keep lines aligned with the source file; see
``reconciler.config.templating`` for when they do not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.config.lineindex import LineIndex

if TYPE_CHECKING:
    from reconciler.config.parse_cache import LazyLineIndex
from reconciler.errors import ConfigIssue

__all__ = [
    "LIST_SECTIONS",
    "MERGED_SECTIONS",
    "BindingSlice",
    "SourceFile",
    "SourceMap",
    "display_path",
    "format_field",
]

#: Top-level sections whose entries are merged by name across files.
MERGED_SECTIONS: tuple[str, ...] = ("authorities", "certificates", "providers")
#: Top-level sections that are lists, concatenated in file order.
LIST_SECTIONS: tuple[str, ...] = ("bindings",)

DataPath = Sequence[Any]


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


class SourceFile:
    """One parsed file: where it is, how to name it, and the line index its parse built."""

    def __init__(self, path: Path, display: str, index: LineIndex | LazyLineIndex) -> None:
        self.path = path
        self.display = display
        self.index = index

    def __repr__(self) -> str:
        return f"SourceFile({self.display!r})"

    def line_of(self, path: DataPath) -> int | None:
        """1-based line of the deepest existing node along ``path`` (local to this file).

        For a mapping entry this is the line of its value when the value is a
        scalar, else the line of its key (the ``web:`` line, not the line of
        its first field).
        """
        return self.index.line_of(path)


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
