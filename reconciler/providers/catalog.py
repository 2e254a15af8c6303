"""Every target and provider type certform knows, by its ``type`` key.

Adding a target is adding one module and one line here: its config model joins
the discriminated union the config schema is built from, its class is what the
engine instantiates and what validation asks about its bindings (what the
class implements is listed in ``providers/base.py``).  Providers (connection
settings shared by targets) work the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, Field

from reconciler.providers.aws.alb import AlbListenerTarget, AlbListenerTargetConfig
from reconciler.providers.aws.apigateway import ApiGatewayTarget, ApiGatewayTargetConfig
from reconciler.providers.aws.cloudfront import CloudFrontTarget, CloudFrontTargetConfig
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.base import PROVIDER_SETTINGS, VIA_SETTINGS, Target, via_name
from reconciler.providers.files import FilesTarget, FilesTargetConfig
from reconciler.providers.haproxy import (
    HaproxyProviderConfig,
    HaproxyTarget,
    HaproxyTargetConfig,
)
from reconciler.providers.nginx import NginxProviderConfig, NginxTarget, NginxTargetConfig
from reconciler.providers.ssh.config import SshProviderConfig
from reconciler.providers.tls_endpoint import TlsEndpointTarget, TlsEndpointTargetConfig

TARGETS: dict[str, tuple[type[BaseModel], type[Target]]] = {
    "files": (FilesTargetConfig, FilesTarget),
    "aws-alb-listener": (AlbListenerTargetConfig, AlbListenerTarget),
    "aws-cloudfront": (CloudFrontTargetConfig, CloudFrontTarget),
    "aws-apigateway": (ApiGatewayTargetConfig, ApiGatewayTarget),
    "haproxy": (HaproxyTargetConfig, HaproxyTarget),
    "nginx": (NginxTargetConfig, NginxTarget),
    "tls-endpoint": (TlsEndpointTargetConfig, TlsEndpointTarget),
}

PROVIDERS: dict[str, type[BaseModel]] = {
    "aws": AwsProviderConfig,
    "haproxy": HaproxyProviderConfig,
    "nginx": NginxProviderConfig,
    "ssh": SshProviderConfig,
}

TargetConfig = Annotated[
    Union[tuple(model for model, _ in TARGETS.values())],  # noqa: UP007
    Field(discriminator="type"),
]

ProviderConfig = Annotated[
    Union[tuple(PROVIDERS.values())],  # noqa: UP007
    Field(discriminator="type"),
]


def provider_name(config: BaseModel) -> str | None:
    """The ``provider:`` a target config names, if it takes one.  Asked of the
    model's declared fields: a ``getattr`` miss goes through pydantic's slow
    ``__getattr__`` (tens of thousands of times in a large validate)."""
    if "provider" not in type(config).model_fields:
        return None
    return config.provider  # type: ignore[attr-defined]


def build_target(
    config: BaseModel, root: Path, providers: Mapping[str, BaseModel] | None = None
) -> Target:
    """Instantiate the target implementation for a validated target config."""
    _, cls = TARGETS[config.type]  # type: ignore[attr-defined]
    name = provider_name(config)
    provider = (providers or {}).get(name) if name else None
    via = via_name(config, provider)
    ssh = (providers or {}).get(via) if via else None
    if ssh is None or getattr(ssh, "type", None) != "ssh":
        return cls(config, root, provider)  # an unknown via is a validate problem
    return cls(config, root, provider, (via, ssh))  # type: ignore[arg-type]


def target_from_settings(settings: dict, root: Path, *, trusted: bool = False) -> Target:
    """Rebuild a target from settings recorded in a plan or in state.

    ``trusted`` skips re-validation of settings certform itself recorded after
    validating them (a plan observes every recorded binding; validation would
    dominate its cost).  Settings from a plan file are always validated.
    """
    own: dict[str, Any] = settings
    provider_settings = settings.get(PROVIDER_SETTINGS)
    via_settings = settings.get(VIA_SETTINGS)
    if PROVIDER_SETTINGS in settings or VIA_SETTINGS in settings:
        own = {k: v for k, v in settings.items() if k not in (PROVIDER_SETTINGS, VIA_SETTINGS)}
    model, cls = TARGETS[own["type"]]
    provider = None
    if provider_settings is not None:
        provider_model = PROVIDERS[provider_settings["type"]]
        provider = provider_model.model_validate(provider_settings)
    if trusted and not any(map(isinstance, own.values(), repeat(dict))):
        # model_construct does not build nested models: those are validated.
        config = _construct(model, own)
    else:
        config = model.model_validate(own)
    via = None
    if via_settings is not None:
        name = via_name(config, provider)
        via = (name or "ssh", SshProviderConfig.model_validate(via_settings))
    return cls(config, root, provider, via)


_IMMUTABLE = (str, int, float, bool, type(None), tuple, frozenset)
_LAYOUTS: dict[type[BaseModel], tuple[tuple[str, ...], dict[str, Any]] | None] = {}


def _layout(model: type[BaseModel]) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """(field names in order, default of every optional field) when ``_construct``
    may build ``model`` itself; None when ``model_construct`` must (aliases, default
    factories, mutable defaults, private attributes, extra fields kept, post-init)."""
    if model in _LAYOUTS:
        return _LAYOUTS[model]
    layout: tuple[tuple[str, ...], dict[str, Any]] | None = None
    fields = model.model_fields
    simple = (
        not model.__private_attributes__
        and model.model_config.get("extra") != "allow"
        and not model.__pydantic_post_init__
        and not model.__pydantic_root_model__
        and all(
            f.alias is None and f.validation_alias is None and f.default_factory is None
            for f in fields.values()
        )
    )
    if simple:
        defaults = {name: f.default for name, f in fields.items() if not f.is_required()}
        if all(isinstance(value, _IMMUTABLE) for value in defaults.values()):
            layout = (tuple(fields), defaults)
    _LAYOUTS[model] = layout
    return layout


_SHAPES: dict[tuple[type[BaseModel], tuple[str, ...]], tuple[dict[str, Any], frozenset[str]]] = {}
_MAX_SHAPES = 256


def _construct(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """``model.model_construct(**values)``, the same instance (values, defaults,
    fields set), built without its per-field generality: refresh rebuilds every
    recorded binding's target, 10,000 of them in a large plan, nearly all with the
    same keys: what a set of keys makes (the defaults beside them, in field order,
    and the fields set) is worked out once per model and keys."""
    layout = _layout(model)
    if layout is None:
        return model.model_construct(**values)
    shape = _SHAPES.get((model, tuple(values)))
    if shape is None:
        shape = _shape(layout, tuple(values))
        if shape is None:
            return _construct_each(model, layout, values)
        if len(_SHAPES) < _MAX_SHAPES:
            _SHAPES[(model, tuple(values))] = shape
    template, fields_set = shape
    data = template.copy()
    data.update(values)  # every key a field's: the template's order is kept
    return _instance(model, data, set(fields_set))


def _shape(
    layout: tuple[tuple[str, ...], dict[str, Any]], keys: tuple[str, ...]
) -> tuple[dict[str, Any], frozenset[str]] | None:
    """(every field ``_construct_each`` would set, in its order, holding its default or
    a placeholder for a given value; the fields set) for values with ``keys``; None
    when a key is no field (``_construct_each`` drops it)."""
    names, defaults = layout
    if not set(keys) <= set(names):
        return None
    template = {n: defaults.get(n) for n in names if n in keys or n in defaults}
    return template, frozenset(keys)


def _construct_each(
    model: type[BaseModel],
    layout: tuple[tuple[str, ...], dict[str, Any]],
    values: dict[str, Any],
) -> BaseModel:
    """``_construct`` field by field (values with a key that is no field)."""
    names, defaults = layout
    data: dict[str, Any] = {}
    for name in names:
        if name in values:
            data[name] = values[name]
        elif name in defaults:
            data[name] = defaults[name]
    return _instance(model, data, {n for n in values if n in names})


def _instance(model: type[BaseModel], data: dict[str, Any], fields_set: set[str]) -> BaseModel:
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", data)
    object.__setattr__(instance, "__pydantic_fields_set__", fields_set)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance
