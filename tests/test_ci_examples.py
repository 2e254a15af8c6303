"""The CI examples (examples/ci) stay true: every ``certform`` command their jobs run
exists, with those options, in this certform."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import certform_argv

CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
WORKFLOWS = sorted(CI.rglob("*.yml"))
SUBCOMMANDS_WITH_GROUP = {"state"}


def _scripts(document: object) -> list[str]:
    """Every shell script in a GitHub workflow (``run``) or GitLab file (``script``)."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            elif key in ("script", "before_script") and isinstance(value, list):
                found.extend(str(line) for line in value)
            else:
                found.extend(_scripts(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(_scripts(item))
    return found


def _certform_commands(script: str) -> list[list[str]]:
    """``certform ...`` invocations in a script, continuation lines joined, up to the
    first redirection or shell operator."""
    joined = re.sub(r"\\\n\s*", " ", script)
    commands = []
    for line in joined.splitlines():
        for match in re.finditer(r"(?:^|[;&|(]\s*|\s)certform\s+([^;&|>]*)", line):
            words = shlex.split(match.group(1).split("||")[0])
            if words and not words[0].startswith("-"):
                commands.append(words)
    return commands


def _invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in WORKFLOWS:
        for script in _scripts(yaml.safe_load(path.read_text())):
            for words in _certform_commands(script):
                found.append((f"{path.relative_to(CI)}: certform {' '.join(words)}", words))
    return found


INVOCATIONS = _invocations()


def test_the_examples_run_the_whole_ci_workflow() -> None:
    run = {" ".join(words[:1]) for _, words in INVOCATIONS}
    assert {"plan", "apply", "check", "validate"} <= run, run
    assert len(WORKFLOWS) == 4


@pytest.mark.parametrize(("where", "words"), INVOCATIONS, ids=[w for w, _ in INVOCATIONS])
def test_every_certform_command_in_the_examples_exists(where: str, words: list[str]) -> None:
    command = words[:2] if words[0] in SUBCOMMANDS_WITH_GROUP else words[:1]
    helped = subprocess.run(
        [*certform_argv(), *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, f"{where}: {helped.stderr}"
    for option in (w.split("=")[0] for w in words if w.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helped.stdout), (
            f"{where}: {option} is not an option of certform {' '.join(command)}"
        )
