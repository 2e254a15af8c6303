"""The ``ssh`` provider entry: how to reach one host, and the checks made before connecting.

The private key is never inline in the configuration: it is a file next to
the config (refused when group or others can read it, like the master key) or
the text of an environment variable (a CI secret).  ``known_hosts`` is
required: host keys are always checked, never trusted on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from reconciler.config.inputs import input_path
from reconciler.config.types import Duration, EnvName, StrictModel
from reconciler.fsutil import too_open

INLINE_KEYS = ("identity", "private_key", "key")
"""Keys someone might put a private key under: refused with a message that says
where the key goes instead (the strict model would only say "extra field")."""


class SshProviderConfig(StrictModel):
    """A host reached over SSH (targets on it say ``via: NAME``)."""

    type: Literal["ssh"]
    host: str = Field(min_length=1, description="Host name or address of the server.")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, description="The login user files are written as.")
    identity_file: str | None = Field(
        default=None,
        min_length=1,
        description="Private key file (relative to the config); must not be readable by "
        "group or others.",
    )
    identity_env: EnvName | None = Field(
        default=None, description="Environment variable holding the private key's text (CI)."
    )
    known_hosts: str = Field(
        min_length=1,
        description="known_hosts file the host key must be in (required: never trust on "
        "first use; `certform ssh-keyscan NAME` prints the line to add).",
    )
    timeout: Duration = Field(
        default="30s", description="Connect timeout, and the default for each operation."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in INLINE_KEYS:
                if key in data:
                    raise ValueError(
                        f"{key}: an inline private key is refused; put the key in a file "
                        "(identity_file, mode 0600) or name an environment variable holding "
                        "it (identity_env)"
                    )
        return data

    @model_validator(mode="after")
    def _one_identity(self) -> SshProviderConfig:
        if (self.identity_file is None) == (self.identity_env is None):
            raise ValueError("give exactly one of identity_file and identity_env")
        return self

    def address(self) -> str:
        """``user@host:port``, as messages name the host."""
        return f"{self.user}@{self.host}:{self.port}"


def identity_problem(config: SshProviderConfig, root: Path) -> str | None:
    """Why the identity file cannot be used (missing, unreadable, too open), or None."""
    if config.identity_file is None:
        return None
    path = input_path(root, config.identity_file)
    if not path.is_file():
        return f"identity file {path} does not exist"
    problem = too_open(path)
    if problem is not None:
        return problem.replace("Nothing was changed", "it holds an SSH private key")
    if not os.access(path, os.R_OK):
        return f"identity file {path} is not readable"
    return None


def known_hosts_problem(config: SshProviderConfig, root: Path, name: str) -> str | None:
    """Why the known_hosts file of provider ``name`` cannot be used, or None."""
    path = input_path(root, config.known_hosts)
    if not path.is_file():
        return (
            f"known_hosts file {path} does not exist; host keys are always checked: "
            f"run `certform ssh-keyscan {name}`, verify the fingerprint out of band, and "
            f"append the line it prints to {config.known_hosts}"
        )
    return None


def local_problems(config: SshProviderConfig, root: Path, name: str) -> list[tuple[str, str]]:
    """``(field, message)`` for the files this provider points at (validate time)."""
    problems = []
    identity = identity_problem(config, root)
    if identity is not None:
        problems.append(("identity_file", identity))
    known = known_hosts_problem(config, root, name)
    if known is not None:
        problems.append(("known_hosts", known))
    return problems
