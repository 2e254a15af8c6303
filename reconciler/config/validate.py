"""Load, validate and resolve a configuration; every problem is reported at once.

Pydantic checks shape and fields, ``semantic`` checks relations; both produce
data paths that the source map turns into file and line.  Nothing here touches
the state or any target, so bad input can never change anything.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.config import semantic
from reconciler.config.loader import LoadedConfig, load_config
from reconciler.config.models import CertformConfig
from reconciler.config.resolve import resolve
from reconciler.desired import DesiredState
from reconciler.errors import ConfigError, ConfigIssue


@dataclass(frozen=True)
class ValidatedConfig:
    config: CertformConfig
    desired: DesiredState
    loaded: LoadedConfig

    @property
    def root(self) -> Path:
        return self.loaded.root


def load_and_validate(path: Path, variables: Mapping[str, Any] | None = None) -> ValidatedConfig:
    """Raise ConfigError listing every issue; return the resolved desired state."""
    loaded = load_config(path, variables)
    try:
        config = CertformConfig.model_validate(loaded.data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, loaded)) from None
    findings = semantic.check(config, loaded.root)
    if findings:
        raise ConfigError([loaded.sources.issue(path, message) for path, message in findings])
    return ValidatedConfig(config, resolve(config, loaded.root), loaded)


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
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {path[-1]!r}{hint}"
    if kind == "missing":
        return f"missing required field {path[-1]!r}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
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
