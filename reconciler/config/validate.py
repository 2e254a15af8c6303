"""Load, validate and resolve a configuration; every problem is reported at once.

Pydantic checks shape and fields, ``semantic`` checks relations; both produce
data paths that the source map turns into file and line.  Nothing here touches
the state or any target, so bad input can never change anything.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.childenv import remember_secret_names, secret_env_names
from reconciler.config import semantic, validated_cache
from reconciler.config.inputs import recording
from reconciler.config.loader import (
    LoadedConfig,
    RenderedConfig,
    load_config,
    parse_rendered,
    render_config,
)
from reconciler.config.models import CertformConfig
from reconciler.config.resolve import resolve
from reconciler.config.template_env import (
    recording_env_reads,
    recording_variable_uses,
    refusing_env_names,
)
from reconciler.errors import ConfigError, ConfigIssue
from reconciler.model.desired import DesiredState
from reconciler.suggest import did_you_mean, expected_one_of

SETTINGS_ONLY_SKIPS = ("certificates", "bindings", "moved")
"""What ``ValidatedConfig.settings`` lacks when the desired state came from the
validated-config cache: the per-certificate sections (the desired state and
``moves`` carry what they decide) and ``moved``, whose check needs them."""


@dataclass(frozen=True)
class ValidatedConfig:
    settings: CertformConfig
    """What plan and apply read besides the desired state (state, providers,
    policy, endpoints, notifications).  After a validated-cache hit it lacks the
    sections in ``SETTINGS_ONLY_SKIPS``; ``config`` has everything."""
    desired: DesiredState
    rendered: RenderedConfig
    variables: Mapping[str, Any] = field(default_factory=dict)
    """The template variables it was rendered with (``--var``, ``--var-file``): a saved
    plan carries them, so that ``apply PLANFILE`` needs none."""
    unused_variables: tuple[str, ...] = ()
    """Given variables no template names (a typo, or a leftover), each quoted with
    the closest used name if any: worth a warning."""
    moves: tuple[tuple[str, str], ...] = ()
    """The ``moved`` blocks as (from, to) addresses."""
    full: CertformConfig | None = field(default=None, repr=False, compare=False)
    parsed: LoadedConfig | None = field(default=None, repr=False, compare=False)

    @property
    def root(self) -> Path:
        return self.rendered.root

    @property
    def loaded(self) -> LoadedConfig:
        """The parsed files and their source map (parsed on first use after a cache
        hit, which needs neither)."""
        if self.parsed is None:
            object.__setattr__(self, "parsed", parse_rendered(self.rendered))
        assert self.parsed is not None
        return self.parsed

    @property
    def config(self) -> CertformConfig:
        """The whole validated configuration (validated again on first use after a
        cache hit: only commands that read certificate entries ask)."""
        if self.full is None:
            object.__setattr__(self, "full", CertformConfig.model_validate(self.loaded.data))
        assert self.full is not None
        return self.full


def load_and_validate(path: Path, variables: Mapping[str, Any] | None = None) -> ValidatedConfig:
    """Raise ConfigError listing every issue; return the resolved desired state.

    The configuration's secret variable names (``*_env`` settings) are
    remembered for every child process and template of this run (``childenv``)."""
    with recording_env_reads() as reads, recording_variable_uses() as used:
        rendered = render_config(path, variables)
    unused = tuple(f"{n!r}{did_you_mean(n, used)}" for n in sorted(set(variables or {}) - used))
    cached = None if rendered.issues else validated_cache.lookup(rendered.root, rendered.digest)
    if cached is not None and not reads & cached.secret_names:
        # The files need not even be parsed: what validation decided is in the entry.
        remember_secret_names(cached.secret_names)
        settings = CertformConfig.model_validate(cached.settings)
        return ValidatedConfig(
            settings, cached.desired, rendered, dict(variables or {}), unused, cached.moves
        )
    loaded = parse_rendered(rendered)
    _refuse_secret_reads(path, variables, reads, loaded)
    with recording() as inputs:
        config, desired, secret = _validate(loaded)
    moves = tuple((m.from_, m.to) for m in config.moved)
    settings_data = {k: v for k, v in loaded.data.items() if k not in SETTINGS_ONLY_SKIPS}
    validated_cache.store(
        rendered.root, rendered.digest, inputs, desired, secret, moves, settings_data
    )
    return ValidatedConfig(
        config, desired, rendered, dict(variables or {}), unused, moves, full=config, parsed=loaded
    )


def _validate(loaded: LoadedConfig) -> tuple[CertformConfig, DesiredState, frozenset[str]]:
    """The full validation: shape, relations, then the desired state (and the
    secret variable names, remembered before any check runs)."""
    try:
        config = CertformConfig.model_validate(loaded.data)
    except ValidationError as exc:
        issues = _pydantic_issues(exc, loaded)
        issues += [loaded.sources.issue(p, m) for p, m in _partial_findings(loaded)]
        raise ConfigError(in_file_order(issues)) from None
    secret = secret_env_names(config)
    remember_secret_names(secret)
    bound = semantic.bound_targets(config, loaded.root)
    findings = semantic.check(config, loaded.root, bound)
    if findings:
        issues = [loaded.sources.issue(path, message) for path, message in findings]
        raise ConfigError(in_file_order(issues))
    return config, resolve(config, loaded.root, bound), secret


def load_models(path: Path, variables: Mapping[str, Any] | None = None) -> tuple[Any, Path]:
    """The configuration's models and root, without the semantic checks: for commands
    that must work while the config is not complete yet (``ssh-keyscan`` runs before
    the known_hosts file it helps make exists)."""
    loaded = load_config(path, variables)
    try:
        return CertformConfig.model_validate(loaded.data), loaded.root
    except ValidationError as exc:
        raise ConfigError(in_file_order(_pydantic_issues(exc, loaded))) from None


def in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Issues by file, then line (stable: one line's issues keep their order), so
    the output reads top to bottom like the files."""
    return sorted(issues, key=lambda i: (i.file, i.line or 0, i.column or 0))


def _refuse_secret_reads(
    path: Path, variables: Mapping[str, Any] | None, reads: set[str], loaded: LoadedConfig
) -> None:
    """A template read a variable that a ``*_env`` setting names: an error at its line.

    Those names are only known now that the files are parsed, so the files are
    rendered once more with them refused, which locates each read (see
    ``template_env``).  Runs before validation, whose messages may quote values."""
    if not reads:
        return
    secret = secret_env_names(loaded.data)
    read = reads & secret
    if not read:
        return
    remember_secret_names(secret)
    with refusing_env_names(secret):
        load_config(path, variables)  # raises: the same templates now refuse those names
    names = ", ".join(sorted(read))
    message = f"a template reads {names}, which a *_env setting names as a secret"
    raise ConfigError([loaded.sources.issue((), message)])


_NAMED_SECTIONS = ("providers", "authorities", "certificates")
"""Sections of named entries that others refer to by name."""


def _partial_findings(loaded: LoadedConfig) -> list[semantic.Finding]:
    """Relation problems among the entries whose shape is valid, so one run reports
    both kinds.  References to entries that exist but are malformed are not
    reported as unknown: fixing the shape error fixes them."""
    data = loaded.data if isinstance(loaded.data, dict) else {}
    partial: dict[str, Any] = {}
    for section in _NAMED_SECTIONS:
        entries = data.get(section)
        if isinstance(entries, dict):
            cleaned = {k: _salvage(section, k, v) for k, v in entries.items()}
            partial[section] = {k: v for k, v in cleaned.items() if v is not None}
    bindings = data.get("bindings")
    if isinstance(bindings, list):
        partial["bindings"] = [b for b in bindings if _salvage("bindings", 0, b) is not None]
    try:
        config = CertformConfig.model_validate(partial)
    except ValidationError:
        return []
    declared = {
        name
        for section in _NAMED_SECTIONS
        if isinstance(data.get(section), dict)
        for name in data[section]
    }
    kept = {*config.providers, *config.authorities, *config.certificates}
    malformed = declared - kept
    findings = semantic.check(config, loaded.root)
    return [
        _with_declared_choices(path, message, partial, data)
        for path, message in findings
        if not _refers_to_malformed(path, partial, malformed)
    ]


def _with_declared_choices(
    path: tuple[str | int, ...], message: str, partial: Mapping[str, Any], data: Mapping[str, Any]
) -> semantic.Finding:
    """An unknown reference, worded with every *declared* name as the choices: the
    partial config lacks the malformed entries, which are still valid targets of a
    reference (chosen by the finding's path, never by its message)."""
    section = _referenced_section(path)
    value = _value_at(partial, path)
    if section is None or not isinstance(value, str):
        return path, message
    declared = data.get(section)
    names = list(declared) if isinstance(declared, dict) else []
    if value in names:
        return path, message  # declared: the finding is about something else
    return path, f"unknown {_SINGULAR[section]} {value!r}; {expected_one_of(value, names)}"


_SINGULAR = {"providers": "provider", "authorities": "authority", "certificates": "certificate"}


def _referenced_section(path: tuple[str | int, ...]) -> str | None:
    """The section a reference field at ``path`` names an entry of (None: not one)."""
    if len(path) in (3, 4) and (path[0], path[2]) in _REFERENCE_FIELDS:
        return "certificates" if path[2] == "certificate" else "authorities"
    if len(path) == 4 and path[0] == "bindings" and path[2:] == ("target", "provider"):
        return "providers"
    return None


def _salvage(section: str, name: str | int, value: Any) -> Any:
    """The entry, minus the fields that failed validation, if what is left is valid."""
    for _ in range(2):
        probe = {section: [value] if section == "bindings" else {name: value}}
        try:
            CertformConfig.model_validate(probe)
        except ValidationError as exc:
            bad = {e["loc"][2] for e in exc.errors() if len(e["loc"]) >= 3}
            if not isinstance(value, dict) or not bad & set(value):
                return None
            value = {k: v for k, v in value.items() if k not in bad}
            continue
        return value
    return None


#: The fields that name another entry, as (section, field) of a finding's path
#: ``(section, entry, field[, index])``.
_REFERENCE_FIELDS = frozenset(
    {("authorities", "parent"), ("certificates", "issuer"), ("bindings", "certificate")}
)


def _refers_to_malformed(
    path: tuple[str | int, ...], partial: Mapping[str, Any], malformed: set[str]
) -> bool:
    """Whether a finding is about a reference field whose value names an entry that
    was declared but left out for its shape errors (decided on the finding's path
    and the data, never on its message)."""
    if _referenced_section(path) is None:
        return False
    value = _value_at(partial, path)
    return isinstance(value, str) and value in malformed


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` in ``data`` (None when the path leads nowhere)."""
    value: Any = data
    for step in path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def _pydantic_issues(exc: ValidationError, loaded: LoadedConfig) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path = _data_path(error["loc"], loaded.data)
        issues.append(loaded.sources.issue(path, _message(error, path, loaded.data)))
    return issues


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """Drop pydantic's discriminator steps so the path matches the YAML."""
    path: list[str | int] = []
    current = data
    for step in loc:
        if isinstance(current, dict) and step in current:
            current = current[step]
            path.append(step)
        elif isinstance(current, list) and isinstance(step, int) and step < len(current):
            current = current[step]
            path.append(step)
        elif isinstance(current, dict) and current.get("type") == step:
            continue
        elif step == "[key]":
            continue
        else:
            path.append(step)
            current = None
    return tuple(path)


def _message(error: Mapping[str, Any], path: tuple[str | int, ...], data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1], data)
        hint = f"; {expected_one_of(path[-1], allowed)}" if allowed else ""
        return f"unknown key {path[-1]!r}{hint}"
    if kind == "union_tag_invalid":
        context = error.get("ctx", {})
        tags = [t.strip(" '") for t in str(context.get("expected_tags", "")).split(",")]
        return f"unknown type {context.get('tag')!r}; {expected_one_of(context.get('tag'), tags)}"
    if kind == "missing":
        return f"missing required field {path[-1]!r}"
    message = str(error["msg"])
    cause = error.get("ctx", {}).get("error")
    if kind in ("value_error", "assertion_error") and cause is not None:
        message = str(cause)  # the validator's own words, without pydantic's prefix
    if kind in ("string_type", "int_type", "bool_type", "list_type", "dict_type", "model_type"):
        message += f" (got {_describe(error.get('input'))})"
    return message


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _allowed_keys(path: tuple[str | int, ...], data: Any) -> list[str]:
    """The fields of the model found at ``path`` (walking the config models)."""
    annotation: Any = CertformConfig
    current = data
    for step in path:
        annotation = _pick_union(annotation, current)
        annotation = _child_annotation(annotation, step)
        if annotation is None:
            return []
        current = current[step] if isinstance(current, dict | list) else None
    model = _pick_union(annotation, current)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(f.alias or n for n, f in model.model_fields.items())
    return []


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _pick_union(annotation: Any, value: Any) -> Any:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_strip(a) for a in typing.get_args(annotation) if a is not type(None)]
        tag = value.get("type") if isinstance(value, dict) else None
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                field = member.model_fields.get("type")
                if field is None or tag in typing.get_args(field.annotation) or len(members) == 1:
                    return member
        return members[0] if members else annotation
    return annotation


def _child_annotation(annotation: Any, step: str | int) -> Any:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if step in (name, field.alias):
                return field.annotation
        return None
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


def state_settings_only(
    path: Path, variables: Mapping[str, Any] | None = None
) -> tuple[CertformConfig, Path] | None:
    """The configuration reduced to what reading the state needs (``state:`` and the
    providers that validate on their own), for ``show``/``check``/``report`` when an
    unrelated part is invalid: they then show what the state records.  None when
    even that cannot be had (unparsable files, an invalid ``state:`` block)."""
    try:
        loaded = load_config(path, variables)
    except ConfigError:
        return None
    data = loaded.data if isinstance(loaded.data, dict) else {}
    providers = data.get("providers") if isinstance(data.get("providers"), dict) else {}
    kept = {}
    for name, settings in providers.items():
        try:
            CertformConfig.model_validate({"providers": {name: settings}})
        except ValidationError:
            continue
        kept[name] = settings
    reduced = {"providers": kept} | ({"state": data["state"]} if "state" in data else {})
    try:
        return CertformConfig.model_validate(reduced), loaded.root
    except ValidationError:
        return None
