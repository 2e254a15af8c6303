"""Field types shared by the config models and the target modules.

Durations stay strings as the user wrote them (plans echo ``90d``), validated
here once; the policy code converts them with the cached parser.  Every
duration is bounded (``MAX_DURATION``, 100 years), and a timeout (a field whose
name ends in ``timeout``) by ``MAX_TIMEOUT``: the waits they feed (``poll``,
``selectors``, subprocess pipes) take milliseconds in a C int, about 24 days.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from reconciler.childenv import ENV_NAME_PATTERN, is_env_name
from reconciler.durations import (
    DURATION_PATTERN,
    MAX_DURATION,
    RENEW_BEFORE_PATTERN,
    parse_duration,
    parse_renew_before,
)
from reconciler.pki.keys import ALL_KEY_ALGORITHMS

KeyAlgorithm = Literal[ALL_KEY_ALGORITHMS]  # type: ignore[valid-type]
"""One of ``reconciler.pki.keys.ALL_KEY_ALGORITHMS`` (the single list of key names)."""


#: The longest timeout any setting accepts (see the module docstring).
MAX_TIMEOUT = timedelta(days=7)


def _check_duration(value: str, info: ValidationInfo) -> str:
    """Check the spelling and the bound; one rule for every timeout field, by its name,
    so that a timeout added later is bounded without anyone remembering to."""
    is_timeout = (info.field_name or "").endswith("timeout")
    parse_duration(value, MAX_TIMEOUT if is_timeout else MAX_DURATION)
    return value


def _check_renew_before(value: str) -> str:
    parse_renew_before(value)
    return value


Duration = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": DURATION_PATTERN},
        description="A duration: a number with a unit s, m, h, d or w (90d, 12h, 1d12h); "
        "at most 36500d (a timeout: at most 7d).",
    ),
    AfterValidator(_check_duration),
]

RenewBefore = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": RENEW_BEFORE_PATTERN},
        description="Renew this long before expiry (30d) or when this share of the "
        "lifetime remains (33%).",
    ),
    AfterValidator(_check_renew_before),
]


def _check_env_name(value: str) -> str:
    if not is_env_name(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


EnvName = Annotated[
    str, Field(json_schema_extra={"pattern": ENV_NAME_PATTERN}), AfterValidator(_check_env_name)
]


def pass_env_field(what: str) -> Any:
    """The ``pass_env`` setting of a target, provider or hook running ``what``.

    Unset (None, not ``[]``) by default, so the settings recorded in plans and
    state do not change for configurations that do not use it."""
    return Field(
        default=None,
        description=f"Secret environment variables {what} may see anyway: certform's own "
        "(CERTFORM_MASTER_KEY, AWS credentials, every variable a *_env setting names) "
        "are withheld from child processes unless listed here.",
    )


EntryName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=128)]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
