"""Running a user-configured command (post_deploy, ``nginx -t``, a reload).

argv lists only, never a shell: a certificate name cannot become a command.
Failures become one-line ProviderErrors carrying the last lines of the
command's output, which is what an operator needs to see in CI logs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.durations import parse_duration
from reconciler.errors import ProviderError


def run_command(
    label: str,
    argv: Sequence[str],
    timeout: str,
    *,
    cwd: Path | None = None,
    variables: Mapping[str, str] | None = None,
) -> None:
    """Run ``argv``; raise ProviderError naming ``label`` when it fails or hangs.

    ``timeout`` is a duration as written in the config (``60s``), so the error
    quotes the user's own setting."""
    env = dict(os.environ)
    env.update(variables or {})
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=parse_duration(timeout).total_seconds(),
            check=False,
        )
    except FileNotFoundError:
        raise ProviderError(f"{label} command not found: {argv[0]}") from None
    except PermissionError:
        raise ProviderError(f"{label} command not executable: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise ProviderError(f"{label} {argv[0]} did not finish within {timeout}") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        tail = output.splitlines()[-3:]
        detail = f": {' / '.join(tail)}" if tail else ""
        raise ProviderError(f"{label} {argv[0]} exited with {result.returncode}{detail}")
