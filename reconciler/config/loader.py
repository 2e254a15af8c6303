"""Raw configuration loading: files -> templating -> YAML -> one merged dict.

This layer knows nothing of the schema (the pydantic models validate
``LoadedConfig.data`` afterwards).  It finds the files, renders templates,
parses YAML safely, refuses duplicate keys, merges files, and records enough
to point any later error back at a file and line (``SourceMap``).

Why a hand-written YAML builder: ``yaml.load(..., Loader=CSafeLoader)`` only
parses in C; composing nodes and resolving scalars run in Python and take
seconds on a 10,000-certificate file.  ``_FastBuilder`` turns libyaml's event
stream straight into dicts and lists, resolving plain scalars with the safe
loader's own rules (cached per value) and detecting duplicate keys for free.
Anything unusual (explicit tags, duplicate keys, several documents, odd
keys...) makes it give up and hand the text to ``yamlcheck.check_document``
(duplicate keys, resource limits) and then to ``_StrictSafeLoader``, PyYAML's
safe loader, which either loads it the standard way or produces the precise
error.  Both builders count what aliases expand to and how deep the document
nests (``yamlcheck``): a "billion laughs" fails at once, with a clear error,
before anything walks the expanded data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
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
)

from reconciler.config.sourcemap import (
    LIST_SECTIONS,
    MERGE_KEY,
    MERGED_SECTIONS,
    BindingSlice,
    PlainScalars,
    SourceFile,
    SourceMap,
    UnsupportedScalar,
    display_path,
    event_parser,
    format_field,
)
from reconciler.config.yamlcheck import (
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    Finding,
    LimitExceeded,
    alias_cycle,
    check_document,
    too_deep,
    too_large,
    too_many_nodes,
)
from reconciler.errors import ConfigError, ConfigIssue

__all__ = [
    "LoadedConfig",
    "SourceMap",
    "load_config",
    "load_var_file",
    "parse_var_assignments",
    "parse_yaml",
]

_CONFIG_SUFFIXES = (".yaml", ".yml")
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class LoadedConfig:
    """The merged, not yet validated configuration and where each part came from."""

    data: dict[str, Any]
    sources: SourceMap
    files: tuple[Path, ...]
    root: Path


# --- YAML -----------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast builder met something it leaves to the full safe loader."""


class _StrictSafeLoader(_SAFE_LOADER):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader whose construction errors are all ``YAMLError``s.

    Duplicate keys and resource limits are checked before it runs
    (``yamlcheck.check_document``): it only ever sees a bounded document.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """The safe constructor's value, with its non-YAML errors (``!!int abc``,
        ``2024-13-45``, a 5,000-digit int) turned into a ``ConstructorError`` at the node."""
        try:
            return super().construct_object(node, deep=deep)
        except _CONSTRUCTION_ERRORS as exc:
            value = node.value if isinstance(node, yaml.ScalarNode) else ""
            shown = value if len(value) <= 40 else value[:37] + "..."
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            problem = f"invalid {tag} value {shown!r}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


#: What the safe constructor raises besides ``YAMLError`` on a malformed scalar.
_CONSTRUCTION_ERRORS = (ValueError, TypeError, OverflowError, ArithmeticError)

_NO_KEY = object()
_TEMPLATE_MARKERS = re.compile(r"\{[{%#]")


@dataclass
class _FastBuilder:
    """Builds plain data from libyaml events; raises ``_Fallback`` on anything unusual,
    ``LimitExceeded`` on a document over the limits of ``yamlcheck``."""

    scalars: PlainScalars = field(default_factory=PlainScalars)
    anchors: dict[str, Any] = field(default_factory=dict)

    def build(self, text: str) -> Any:
        """Data of the single document in ``text`` (``None`` for an empty stream)."""
        parser = event_parser(text)
        try:
            parser.get_event()  # StreamStartEvent
            start = parser.get_event()
            if type(start) is StreamEndEvent:
                return None
            if type(start) is not DocumentStartEvent or start.tags:
                raise _Fallback
            data = self._document(parser.get_event)
            if type(parser.get_event()) is not StreamEndEvent:
                raise _Fallback  # several documents: let the full loader say so
            return data
        finally:
            parser.dispose()

    def _document(self, get_event: Any) -> Any:
        """Consume one document's events up to and including its end event.

        One flat loop with locals rather than small methods: this runs once per
        YAML event (300,000 of them for 10,000 certificates).
        """
        cache, resolve, anchors = self.scalars.cache, self.scalars.resolve, self.anchors
        stack: list[tuple[Any, bool, Any, list[Any] | None, int, str | None]] = []
        current: Any = None
        is_map = False
        key: Any = _NO_KEY
        merges: list[Any] | None = None
        root: Any = None
        # Resource limits (see ``yamlcheck``): ``count`` is the number of values the
        # document denotes so far with every alias expanded; ``sizes`` the expanded
        # size of each anchored node, known once the node is complete.
        count = 0
        sizes: dict[str, int] = {}
        started, anchor = 0, None  # count when ``current`` started, and its anchor
        while True:
            event = get_event()
            kind = type(event)
            if kind is ScalarEvent:
                if event.tag is not None:
                    raise _Fallback
                count += 1
                value = event.value
                if event.implicit[0]:
                    resolved = cache.get(value, cache)
                    if resolved is cache:
                        try:
                            resolved = resolve(value)
                        except UnsupportedScalar:
                            raise _Fallback from None
                    value = resolved
                if event.anchor is not None:
                    if event.anchor in anchors:
                        raise _Fallback  # duplicate anchor: the full loader reports it
                    anchors[event.anchor] = value
                    sizes[event.anchor] = 1
                if is_map and key is _NO_KEY:  # the common case, short-cut
                    key = value
                    continue
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.tag is not None or event.anchor in anchors:
                    raise _Fallback
                if len(stack) >= MAX_DEPTH:
                    raise too_deep(event)
                stack.append((current, is_map, key, merges, started, anchor))
                is_map = kind is MappingStartEvent
                current = {} if is_map else []
                key, merges = _NO_KEY, None
                started, anchor = count, event.anchor
                count += 1
                if anchor is not None:
                    anchors[anchor] = current
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                if count > MAX_NODES:
                    raise too_many_nodes(event)
                if anchor is not None:
                    sizes[anchor] = count - started
                value = current
                if merges is not None:
                    _apply_merges(value, merges)
                current, is_map, key, merges, started, anchor = stack.pop()
            elif kind is AliasEvent:
                if event.anchor not in anchors:
                    raise _Fallback
                size = sizes.get(event.anchor)
                if size is None:
                    raise alias_cycle(event)  # its node is still open: it contains the alias
                count += size
                if count > MAX_NODES:
                    raise too_many_nodes(event)
                value = anchors[event.anchor]
            elif kind is DocumentEndEvent:
                return root
            else:
                raise _Fallback
            if is_map:
                if key is _NO_KEY:
                    if type(value) is dict or type(value) is list:
                        raise _Fallback  # complex key: the full loader reports it
                    key = value
                    continue
                if key is MERGE_KEY:
                    merges = [*(merges or ()), value]
                elif key in current:
                    raise _Fallback  # duplicate key: the full loader reports all of them
                else:
                    current[key] = value
                key = _NO_KEY
            elif current is not None:
                current.append(value)
            else:
                root = value


def _apply_merges(mapping: dict[Any, Any], merges: list[Any]) -> None:
    """Apply ``<<`` merge keys the way ``SafeConstructor.flatten_mapping`` does.

    Explicit keys win over merged ones; of several merged mappings the later
    ``<<`` key wins, and within one ``<<: [a, b]`` list the earlier mapping
    wins.  The dict is updated in place because anchors may already refer to it.
    """
    merged: dict[Any, Any] = {}
    for source in merges:
        parts = reversed(source) if type(source) is list else (source,)
        for part in parts:
            if type(part) is not dict:
                raise _Fallback  # not a mapping: the full loader reports it
            merged.update(part)
    merged.update(mapping)
    mapping.clear()
    mapping.update(merged)


def parse_yaml(text: str, display: str) -> Any:
    """Safely parse one YAML document; duplicate keys, syntax errors and documents
    over the resource limits (``yamlcheck``) -> ``ConfigError``."""
    if len(text) > MAX_CONFIG_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        raise ConfigError([_limit_issue(too_large(size, after_templating=True), display)])
    fast_limit: LimitExceeded | None = None
    try:
        try:
            return _FastBuilder().build(text)
        except _Fallback:
            pass
        except LimitExceeded as exc:
            fast_limit = exc  # the check below finds it again, with every duplicate key
        check = check_document(text)
        if check.limit is None and fast_limit is not None:  # never expected; never go on
            check.limit = Finding(fast_limit.line, "", fast_limit.message)
        if check.limit is not None:
            raise ConfigError(_issues(display, [check.limit, *check.duplicates]))
        data = _strict_load(text, display)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_issue(exc, display)]) from None
    if check.duplicates:
        raise ConfigError(_issues(display, check.duplicates))
    return data


def _issues(display: str, findings: list[Finding]) -> list[ConfigIssue]:
    ordered = sorted(findings, key=lambda finding: finding.line or 0)
    return [ConfigIssue(display, f.line, f.field, f.message) for f in ordered]


def _limit_issue(exc: LimitExceeded, display: str) -> ConfigIssue:
    return ConfigIssue(display, exc.line, "", exc.message)


def _strict_load(text: str, display: str) -> Any:
    """Load with the full safe loader (the document is known to be within the limits)."""
    loader = _StrictSafeLoader(text)
    try:
        return loader.get_single_data()
    except _CONSTRUCTION_ERRORS as exc:  # not through construct_object: no node to name
        raise ConfigError([ConfigIssue(display, None, "", f"invalid YAML value: {exc}")]) from None
    finally:
        loader.dispose()


def _yaml_issue(exc: yaml.YAMLError, display: str) -> ConfigIssue:
    """A ``ConfigIssue`` from a PyYAML error: the problem text at its 1-based line."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ConfigIssue(display, None, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    message = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        where = exc.context_mark.line + 1 if exc.context_mark is not None else None
        message += f" ({exc.context}" + (f" started on line {where})" if where else ")")
    return ConfigIssue(display, line, "", message)


# --- files ----------------------------------------------------------------------------


def _show(path: Path) -> str:
    """How to name a path the user gave us (``./certform.yaml`` rather than ``certform.yaml``)."""
    text = str(path)
    if path.is_absolute() or text.startswith("."):
        return text
    return f".{os.sep}{text}"


def _discover(path: Path) -> tuple[list[Path], Path]:
    """The configuration files for ``path`` (absolute, in load order) and the config root."""
    absolute = Path(os.path.abspath(path))
    if not absolute.exists():
        where = _show(path)
        message = f"no configuration at {where}; pass -c PATH"
        raise ConfigError([ConfigIssue(where, None, "", message)])
    if not absolute.is_dir():
        return [absolute], absolute.parent
    try:
        files = sorted(
            (p for p in absolute.iterdir() if p.suffix in _CONFIG_SUFFIXES and p.is_file()),
            key=lambda p: p.name,
        )
    except OSError as exc:
        raise ConfigError([ConfigIssue(_show(path), None, "", f"cannot list: {exc}")]) from None
    if not files:
        message = "no *.yaml or *.yml files in this directory; pass -c PATH"
        raise ConfigError([ConfigIssue(_show(path), None, "", message)])
    return files, absolute


def _read_text(path: Path, display: str) -> str:
    """A file's text as UTF-8 (a BOM is tolerated), at most ``MAX_CONFIG_BYTES``.

    Reads no more than the limit (plus one byte to know it was passed), so
    ``-c /dev/zero`` or a 20 MB file fails at once instead of filling memory.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                size = max(os.fstat(stream.fileno()).st_size, len(data))
                raise ConfigError([_limit_issue(too_large(size), display)])
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(display, None, "", f"not UTF-8 text: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, None, "", f"cannot read: {exc}")]) from None


def _load_file(path: Path, variables: Mapping[str, Any]) -> tuple[SourceFile, Any]:
    """Read, render and parse one configuration file."""
    display = display_path(path)
    text = _read_text(path, display)
    if _TEMPLATE_MARKERS.search(text):
        # Imported on demand: jinja2 (and the asyncio it pulls in) costs ~30 ms at start-up.
        from reconciler.config.templating import render_config_text

        text = render_config_text(text, str(path), display, variables)
    return SourceFile(path, display, text), parse_yaml(text, display)


# --- merging --------------------------------------------------------------------------


_SECTION_SHAPES = {
    **{name: (dict, "a mapping of names to entries") for name in MERGED_SECTIONS},
    **{name: (list, "a list") for name in LIST_SECTIONS},
}


def _kind(value: Any) -> str:
    """Name a YAML value's kind for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__} ({value!r})"


@dataclass
class _Merger:
    """Merges parsed files into one dict, remembering who declared what."""

    files: list[SourceFile] = field(default_factory=list)
    data: dict[Any, Any] = field(default_factory=dict)
    section_files: dict[Any, list[int]] = field(default_factory=dict)
    entry_files: dict[str, dict[Any, int]] = field(default_factory=dict)
    list_slices: dict[str, list[BindingSlice]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def add(self, source: SourceFile, document: Any) -> None:
        """Merge one file's top-level mapping (``None``: an empty file, skipped)."""
        index = len(self.files)
        self.files.append(source)
        if document is None:
            return
        if not isinstance(document, dict):
            message = f"the top level must be a mapping of sections, got {_kind(document)}"
            self.issues.append(ConfigIssue(source.display, source.line_of(()), "", message))
            return
        for key, value in document.items():
            self.section_files.setdefault(key, []).append(index)
            if key in _SECTION_SHAPES:
                self._add_section(index, key, value)
            else:
                self._add_single(index, key, value)

    def _issue(self, index: int, path: tuple[Any, ...], message: str) -> None:
        source = self.files[index]
        line = source.line_of(path)
        self.issues.append(ConfigIssue(source.display, line, format_field(path), message))

    def _where(self, index: int, path: tuple[Any, ...]) -> str:
        source = self.files[index]
        line = source.line_of(path)
        return f"{source.display}:{line}" if line else source.display

    def _add_section(self, index: int, key: str, value: Any) -> None:
        shape, description = _SECTION_SHAPES[key]
        if value is None:
            value = shape()  # an empty section (everything commented out) is fine
        if not isinstance(value, shape):
            self._issue(index, (key,), f"must be {description}, got {_kind(value)}")
            return
        if shape is list:
            merged = self.data.setdefault(key, [])
            slices = self.list_slices.setdefault(key, [])
            slices.append(BindingSlice(len(merged), index, len(value)))
            merged.extend(value)
            return
        merged = self.data.setdefault(key, {})
        owners = self.entry_files.setdefault(key, {})
        for name, entry in value.items():
            owner = owners.setdefault(name, index)
            if owner == index:
                merged[name] = entry
                continue
            first, second = self._where(owner, (key, name)), self._where(index, (key, name))
            message = f"{key} entry {name!r} is declared twice: at {first} and at {second}"
            self._issue(index, (key, name), message)

    def _add_single(self, index: int, key: Any, value: Any) -> None:
        if key not in self.data:
            self.data[key] = value
            return
        first = self._where(self.section_files[key][0], (key,))
        second = self._where(index, (key,))
        message = f"top-level key {key!r} may appear in only one file: at {first} and at {second}"
        self._issue(index, (key,), message)

    def source_map(self, root_display: str) -> SourceMap:
        """The ``SourceMap`` of everything merged so far."""
        return SourceMap(
            self.files, root_display, self.section_files, self.entry_files, self.list_slices
        )


# --- public API -----------------------------------------------------------------------


def load_config(path: Path, variables: Mapping[str, Any] | None = None) -> LoadedConfig:
    """Load the configuration at ``path`` (a YAML file or a directory of them).

    Every file is rendered with ``variables`` (see ``templating``), parsed and
    merged; all problems found are raised together as one ``ConfigError``.
    """
    files, root = _discover(Path(path))
    merger = _Merger()
    issues: list[ConfigIssue] = []
    for file in files:
        try:
            merger.add(*_load_file(file, variables or {}))
        except ConfigError as exc:
            issues.extend(exc.issues)
    issues.extend(merger.issues)
    if issues:
        raise ConfigError(issues)
    given_directory = Path(os.path.abspath(path)) == root
    root_display = display_path(root) if given_directory else merger.files[0].display
    return LoadedConfig(merger.data, merger.source_map(root_display), tuple(files), root)


def parse_var_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``--var key=value`` arguments -> a dict (a later assignment of a key wins).

    Keys must be identifiers, since templates can only name those.
    """
    result: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            issues.append(ConfigIssue("--var", None, "", f"expected KEY=VALUE, got {pair!r}"))
        elif not key.isidentifier():
            message = f"invalid variable name {key!r} in {pair!r}"
            issues.append(ConfigIssue("--var", None, "", message))
        else:
            result[key] = value
    if issues:
        raise ConfigError(issues)
    return result


def load_var_file(path: Path) -> dict[str, Any]:
    """Template variables from a YAML mapping (safe-loaded, never templated itself)."""
    path = Path(path)
    display = display_path(path)
    if not path.is_file():
        raise ConfigError([ConfigIssue(display, None, "", "variable file not found")])
    text = _read_text(path, display)
    data = parse_yaml(text, display)
    if data is None:
        return {}
    source = SourceFile(Path(os.path.abspath(path)), display, text)
    if not isinstance(data, dict):
        message = f"a variable file must be a mapping of names to values, got {_kind(data)}"
        raise ConfigError([ConfigIssue(display, source.line_of(()), "", message)])
    bad = [key for key in data if not (isinstance(key, str) and key.isidentifier())]
    if bad:
        raise ConfigError(
            [
                ConfigIssue(display, source.line_of((key,)), str(key), "not a valid variable name")
                for key in bad
            ]
        )
    return data
