"""Running a user-configured command (post_deploy, ``nginx -t``, a reload).

argv lists only, never a shell: a certificate name cannot become a command.
Failures become one-line ProviderErrors carrying the last lines of the
command's output, which is what an operator needs to see in CI logs.  The
command sees the environment without certform's secrets except those named in
``pass_env``, and a timeout kills its whole process group (``childenv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.childenv import ChildTimeout, run_child
from reconciler.durations import parse_duration
from reconciler.errors import ProviderError


def run_command(
    label: str,
    argv: Sequence[str],
    timeout: str,
    *,
    cwd: Path | None = None,
    variables: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = (),
) -> None:
    """Run ``argv``; raise ProviderError naming ``label`` when it fails or hangs.

    ``timeout`` is a duration as written in the config (``60s``), so the error
    quotes the user's own setting."""
    try:
        result = run_child(
            argv,
            timeout=parse_duration(timeout).total_seconds(),
            pass_env=pass_env,
            variables=variables,
            cwd=cwd,
        )
    except FileNotFoundError:
        raise ProviderError(f"{label} command not found: {argv[0]}") from None
    except PermissionError:
        raise ProviderError(f"{label} command not executable: {argv[0]}") from None
    except ChildTimeout:
        raise ProviderError(f"{label} {argv[0]} did not finish within {timeout}") from None
    if result.returncode != 0:
        raise command_failure(label, argv, result.returncode, result.stdout, result.stderr)


def command_failure(
    label: str, argv: Sequence[str], returncode: int, stdout: bytes, stderr: bytes, where: str = ""
) -> ProviderError:
    """The one-line error for a command that exited non-zero (locally or on a host,
    ``where`` naming it): its last lines of output, never more."""
    output = (stderr or stdout).decode(errors="replace").strip()
    tail = output.splitlines()[-3:]
    detail = f": {' / '.join(tail)}" if tail else ""
    return ProviderError(f"{label} {argv[0]}{where} exited with {returncode}{detail}")
