"""What a child process (post_deploy, nginx commands, dns-01 hooks) inherits, and how
it is stopped.

certform runs next to its own secrets (the master key) and the cloud credentials
of the CI job.  A hook is third-party code: it gets the environment *minus*
every variable certform knows to be secret, unless the hook names that variable
in its ``pass_env`` list.  These are secret:

* ``CERTFORM_MASTER_KEY``, which opens every private key in the state;
* the AWS credential variables (the secret key, the session token and its old
  name, and the access key id with them: an id without its secret makes AWS
  SDKs fail with "partial credentials" instead of falling back to a profile or
  an instance role);
* every variable the configuration names in a ``*_env`` setting
  (``tsig_secret_env``, ``hmac_key_env``, ``private_key_env``, ``url_env``,
  ``headers_env``...), found by walking the configuration, so a setting added
  later is covered without editing a list here.

The same names are refused to ``env()`` in templates (``template_env``).

Every child process certform starts goes through ``run_child``: its own process group,
so a timeout kills the command *and* whatever it started in the background.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import threading
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from reconciler.state.sealing import MASTER_KEY_ENV

__all__ = [
    "ALWAYS_SECRET",
    "ENV_NAME_PATTERN",
    "ChildResult",
    "ChildTimeout",
    "child_environment",
    "is_env_name",
    "remember_secret_names",
    "run_child",
    "secret_env_names",
    "secret_names",
]

ALWAYS_SECRET: frozenset[str] = frozenset(
    {
        MASTER_KEY_ENV,
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",  # the session token's old name, still read by botocore
    }
)
"""Secret whatever the configuration says."""

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_SECRET_SUFFIX = "_env"
_NOT_SECRET_FIELDS = frozenset({"pass_env"})
"""``pass_env`` names what a hook may see, not a secret of certform's."""

_KILL_GRACE = 2.0
"""Seconds to collect the output of a killed process group before giving up on it."""

_remembered: set[str] = set()
_remembered_lock = threading.Lock()


def is_env_name(name: str) -> bool:
    """True for a valid environment variable name (what ``pass_env`` accepts)."""
    return bool(_ENV_NAME.match(name))


def secret_env_names(config: BaseModel | Mapping[str, Any]) -> frozenset[str]:
    """Every variable named by a ``*_env`` setting anywhere in ``config``.

    ``config`` is the validated model or the raw merged YAML (templates are
    checked before validation).  A ``*_env`` value is a name, a list of names or
    a mapping whose values are names (``headers_env``: header -> variable)."""
    found: set[str] = set()
    if isinstance(config, BaseModel):
        _walk_model(config, found)
    else:
        _walk_data(config, found)
    return frozenset(found)


def _is_secret_field(name: str) -> bool:
    return name.endswith(_SECRET_SUFFIX) and name not in _NOT_SECRET_FIELDS


def _walk_data(value: Any, found: set[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _is_secret_field(key):
                _names(item, found)
            else:
                _walk_data(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_data(item, found)


def _walk_model(value: Any, found: set[str]) -> None:
    """Like ``_walk_data`` but guided by the models' annotations: only fields that
    are, or may contain, a ``*_env`` setting are visited (10,000 bindings whose
    targets have none cost nothing)."""
    if isinstance(value, BaseModel):
        for name, secret in _fields_to_visit(type(value)):
            item = getattr(value, name)
            if secret:
                _names(item, found)
            else:
                _walk_model(item, found)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk_model(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_model(item, found)


@functools.cache
def _fields_to_visit(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """``(field, is a *_env setting)`` for the fields of ``model`` worth visiting."""
    fields = []
    for name, info in model.model_fields.items():
        if _is_secret_field(name):
            fields.append((name, True))
        elif any(_fields_to_visit(inner) for inner in _models_in(info.annotation)):
            fields.append((name, False))
    return tuple(fields)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The model classes an annotation may hold (through unions, lists, dicts...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _names(value: Any, found: set[str]) -> None:
    """The string leaves of a ``*_env`` value (mapping keys are not names)."""
    if isinstance(value, str):
        if value:
            found.add(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _names(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _names(item, found)


def remember_secret_names(names: frozenset[str]) -> None:
    """Record the configuration's secret names for every later child and template.

    Called once the configuration is validated.  Names only accumulate: forgetting
    one could only leak it."""
    with _remembered_lock:
        _remembered.update(names)


def secret_names() -> frozenset[str]:
    """The secret names known now: the fixed ones plus the configuration's."""
    with _remembered_lock:
        return ALWAYS_SECRET | frozenset(_remembered)


def child_environment(pass_env: Sequence[str] = ()) -> dict[str, str]:
    """``os.environ`` minus certform's secrets, except those listed in ``pass_env``."""
    withheld = secret_names() - set(pass_env)
    return {name: value for name, value in os.environ.items() if name not in withheld}


# --- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class ChildTimeout(Exception):
    """The command ran past its timeout; its whole process group was killed."""


def run_child(
    argv: Sequence[str],
    *,
    timeout: float,
    pass_env: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ChildResult:
    """Run ``argv`` (no shell) with the filtered environment plus ``variables``.

    The child leads a new session, so on timeout ``killpg`` reaches everything
    it started.  The timeout covers the output pipes too: a background
    grandchild holding stdout open counts as still running and is killed with
    the rest.  ``OSError`` (not found, not executable) propagates to the caller,
    which words it for its own setting."""
    env = child_environment(pass_env)
    env.update(variables or {})
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise ChildTimeout() from None
    except BaseException:  # KeyboardInterrupt: leave nothing running behind us
        _kill_group(process)
        raise
    return ChildResult(process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group, then reap it without waiting on the pipes
    for long (a process that left the group may still hold them)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()  # the leader, should it have left its group
    try:
        process.communicate(timeout=_KILL_GRACE)
    except subprocess.TimeoutExpired:
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        process.wait()
