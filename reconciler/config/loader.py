"""Raw configuration loading: files -> templating -> YAML -> one merged dict.

This layer knows nothing of the schema (the pydantic models validate
``LoadedConfig.data`` afterwards).  It finds the files, renders templates,
parses YAML safely, refuses duplicate keys, merges files, and records enough
to point any later error back at a file and line (``SourceMap``).

Each file's YAML is read once, by ``yamlbuild.DocumentBuilder``: one pass over
the parser's events yields the data, the line index, every duplicate key and
any broken resource limit (``yamllimits``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.config.lineindex import LineIndex
from reconciler.config.parse_cache import cached_parse, text_sha256
from reconciler.config.sourcemap import (
    LIST_SECTIONS,
    MERGED_SECTIONS,
    BindingSlice,
    SourceFile,
    SourceMap,
    display_path,
    format_field,
)
from reconciler.config.yamlbuild import DocumentBuilder, DocumentRejected, ParsedDocument
from reconciler.config.yamllimits import MAX_CONFIG_BYTES, too_large
from reconciler.errors import ConfigError, ConfigIssue

__all__ = [
    "LoadedConfig",
    "SourceMap",
    "load_config",
    "load_var_file",
    "parse_document",
    "parse_var_assignments",
    "parse_yaml",
]

_CONFIG_SUFFIXES = (".yaml", ".yml")
_TEMPLATE_MARKERS = re.compile(r"\{[{%#]")


@dataclass(frozen=True)
class LoadedConfig:
    """The merged, not yet validated configuration and where each part came from."""

    data: dict[str, Any]
    sources: SourceMap
    files: tuple[Path, ...]
    root: Path


@dataclass(frozen=True)
class RenderedConfig:
    """The configuration's files read and rendered, not parsed yet: enough to know
    whether it is the one validated last time (``digest``), which then need not be
    parsed at all (``validated_cache``)."""

    path: Path
    """What the user gave (a file or a directory)."""
    files: tuple[Path, ...]
    root: Path
    texts: tuple[tuple[Path, str, str, bytes], ...]
    """(file, display name, rendered text, its SHA-256) of every file that rendered."""
    issues: tuple[ConfigIssue, ...]
    """Problems reading or rendering, reported with the parse's (``parse_rendered``)."""
    digest: str
    """SHA-256 over every file's path and rendered text: equal digests, equal data."""


# --- YAML -----------------------------------------------------------------------------


def parse_document(text: str, display: str) -> ParsedDocument:
    """Safely parse one YAML document into its data and line index; duplicate keys,
    syntax errors, refused nodes and documents over the resource limits
    (``yamllimits``) -> ``ConfigError``."""
    if len(text) > MAX_CONFIG_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        raise ConfigError([ConfigIssue(display, None, "", too_large(size, after_templating=True))])
    try:
        return DocumentBuilder().build(text)
    except DocumentRejected as exc:
        issues = [ConfigIssue(display, f.line, f.field, f.message) for f in exc.findings]
        raise ConfigError(issues) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_issue(exc, display, text)]) from None


def parse_yaml(text: str, display: str) -> Any:
    """The data of one YAML document (see ``parse_document``)."""
    return parse_document(text, display).data


def _yaml_issue(exc: yaml.YAMLError, display: str, text: str = "") -> ConfigIssue:
    """A ``ConfigIssue`` from a PyYAML error: the problem at its 1-based line and
    column, with a hint chosen by the character the parser stopped at."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ConfigIssue(display, None, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    message = "invalid YAML: " + (exc.problem or exc.context or "syntax error")
    if exc.problem and exc.context:
        where = exc.context_mark.line + 1 if exc.context_mark is not None else None
        message += f" ({exc.context}" + (f" started on line {where})" if where else ")")
    marks = (m for m in (exc.problem_mark, exc.context_mark) if m is not None)
    hint = next((h for m in marks if (h := _yaml_hint(text, m))), None)
    if hint:
        message += f"; hint: {hint}"
    return ConfigIssue(display, line, "", message, column)


_HINTS = {
    "\t": "YAML indents with spaces, not tabs",
    "@": "a value starting with @ must be quoted ('@...')",
    "`": "a value starting with ` must be quoted",
    "%": "a value starting with % must be quoted",
    ":": "quote a value that contains ': ' (key: 'a: b')",
    "{": "a value starting with { is a flow mapping: close it with } or quote it if it is text",
    "[": "a value starting with [ is a flow list: close it with ] or quote it if it is text",
    "*": "a value starting with * is an alias: quote it if it is text ('*.example.com')",
    "&": "a value starting with & is an anchor: quote it if it is text",
    "-": "check the indentation of this list item",
}


def _yaml_hint(text: str, mark: yaml.Mark) -> str | None:
    """What usually causes a syntax error at this character (None: no hint)."""
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return None
    row = lines[mark.line]
    if "\t" in row[: mark.column + 1]:
        return _HINTS["\t"]
    char = row[mark.column] if mark.column < len(row) else ""
    return _HINTS.get(char)


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
            (
                p
                for p in absolute.iterdir()
                # Dotfiles are editors' and tools' (.#a.yaml, .hidden.yaml), not config.
                if p.suffix in _CONFIG_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ),
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
                raise ConfigError([ConfigIssue(display, None, "", too_large(size))])
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(display, None, "", f"not UTF-8 text: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, None, "", f"cannot read: {exc}")]) from None


def _render_file(path: Path, variables: Mapping[str, Any]) -> tuple[str, str]:
    """Read and render one configuration file: (display name, rendered text)."""
    display = display_path(path)
    text = _read_text(path, display)
    if _TEMPLATE_MARKERS.search(text):
        # Imported on demand: jinja2 (and the asyncio it pulls in) costs ~30 ms at start-up.
        from reconciler.config.templating import render_config_text

        text = render_config_text(text, str(path), display, variables)
    return display, text


def _parse_file(path: Path, display: str, text: str, text_digest: bytes) -> tuple[SourceFile, Any]:
    data, index = cached_parse(text, lambda rendered: _parsed(rendered, display), text_digest)
    return SourceFile(path, display, index), data


def _parsed(text: str, display: str) -> tuple[Any, LineIndex]:
    parsed = parse_document(text, display)
    return parsed.data, parsed.index


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
        if key not in self.data:  # the first file with this section: no entry can clash
            self.data[key] = dict(value)
            self.entry_files[key] = dict.fromkeys(value, index)
            return
        merged = self.data[key]
        owners = self.entry_files[key]
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
    return parse_rendered(render_config(path, variables))


def render_config(path: Path, variables: Mapping[str, Any] | None = None) -> RenderedConfig:
    """Find, read and render the configuration's files (raises ``ConfigError`` only
    when there are none; a file's own problems wait for ``parse_rendered``)."""
    files, root = _discover(Path(path))
    texts: list[tuple[Path, str, str, bytes]] = []
    issues: list[ConfigIssue] = []
    digest = hashlib.sha256()
    for file in files:
        try:
            display, text = _render_file(file, variables or {})
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        text_digest = text_sha256(text)
        texts.append((file, display, text, text_digest))
        digest.update(os.fsencode(file) + b"\0" + text_digest)
    return RenderedConfig(
        Path(path), tuple(files), root, tuple(texts), tuple(issues), digest.hexdigest()
    )


def parse_rendered(rendered: RenderedConfig) -> LoadedConfig:
    """Parse and merge rendered files; every problem (reading, rendering, parsing,
    merging) raised together as one ``ConfigError``, in file order."""
    merger = _Merger()
    issues = list(rendered.issues)
    for file, display, text, text_digest in rendered.texts:
        try:
            merger.add(*_parse_file(file, display, text, text_digest))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues or merger.issues:
        # Each file's own problems in file order (as one pass over them gave), then
        # what merging found.
        issues.sort(key=lambda issue: _file_order(rendered.files, issue))
        raise ConfigError(issues + merger.issues)
    given_directory = Path(os.path.abspath(rendered.path)) == rendered.root
    root_display = display_path(rendered.root) if given_directory else merger.files[0].display
    return LoadedConfig(merger.data, merger.source_map(root_display), rendered.files, rendered.root)


def _file_order(files: Sequence[Path], issue: ConfigIssue) -> int:
    """The position of the file an issue is about."""
    for index, file in enumerate(files):
        if issue.file == display_path(file):
            return index
    return len(files)


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
    parsed = parse_document(_read_text(path, display), display)
    data = parsed.data
    if data is None:
        return {}
    source = SourceFile(Path(os.path.abspath(path)), display, parsed.index)
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
