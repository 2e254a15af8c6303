"""What adoption needs from the configuration, which may not exist yet (a first
``import`` or ``import --scan`` runs before there is one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError


def config_root(config: Path) -> Path:
    """The directory relative paths in the configuration are read from: the
    directory itself for a directory config, else the file's directory (as the
    loader decides, without needing the config to exist)."""
    absolute = Path(os.path.abspath(config))
    return absolute if absolute.is_dir() else absolute.parent


def declared(session: Any) -> tuple[set[str], set[str]]:
    """Certificate and authority names the configuration already uses (none when
    there is no configuration, or it does not load: the names only avoid clashes)."""
    if not session.config.exists():
        return set(), set()
    try:
        config = session.validated.config
    except ConfigError:
        return set(), set()
    return set(config.certificates), set(config.authorities)


def aws_provider(session: Any, region: str) -> tuple[str, Any, dict[str, Any] | None]:
    """The provider to read AWS with and to name in the proposal: the configuration's
    aws provider for ``region``; else a new entry for ``region`` copied from its
    first aws provider (same endpoint and profile); else a bare one.  The third
    value is the providers entry the proposal must add (None: already declared)."""
    from reconciler.providers.aws.config import AwsProviderConfig

    providers: dict[str, Any] = {}
    if session.config.exists():
        providers = {
            n: p
            for n, p in session.validated.config.providers.items()
            if getattr(p, "type", None) == "aws"
        }
    for name, provider in providers.items():
        if provider.region == region:
            return name, provider, None
    if providers:
        first = next(iter(providers.values()))
        provider = first.model_copy(update={"region": region})
        name = f"aws-{region}"
    else:
        provider = AwsProviderConfig.model_validate({"type": "aws", "region": region})
        name = "aws"
    block = provider.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return name, provider, {name: {"type": "aws", **block}}
