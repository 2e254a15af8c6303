"""Every target type certform knows, by its ``type`` key.

Adding a target is adding one module and one line here: its config model joins
the discriminated union the config schema is built from, its class is what the
engine instantiates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, Field

from reconciler.providers.base import Target
from reconciler.providers.files import FilesTarget, FilesTargetConfig

TARGETS: dict[str, tuple[type[BaseModel], type[Target]]] = {
    "files": (FilesTargetConfig, FilesTarget),
}

TargetConfig = Annotated[
    Union[tuple(model for model, _ in TARGETS.values())],  # noqa: UP007
    Field(discriminator="type"),
]


def build_target(config: BaseModel, root: Path) -> Target:
    """Instantiate the target implementation for a validated target config."""
    _, cls = TARGETS[config.type]  # type: ignore[attr-defined]
    return cls(config, root)


def target_from_settings(settings: dict, root: Path, *, trusted: bool = False) -> Target:
    """Rebuild a target from settings recorded in a plan or in state.

    ``trusted`` skips re-validation of settings certform itself recorded after
    validating them (a plan observes every recorded binding; validation would
    dominate its cost).  Settings from a plan file are always validated.
    """
    model, cls = TARGETS[settings["type"]]
    if trusted:
        return cls(model.model_construct(**settings), root)
    return cls(model.model_validate(settings), root)
