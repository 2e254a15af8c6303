"""Every directory under examples/ is something a user can copy: it has a README.md and
a certform.yaml (starting with the schema modeline editors read), the README names
every template variable the configuration reads with a default, and the ``certform
validate`` commands its README shows (run from the repository root, with the
variables they pass) accept every configuration in it.

Data-driven over the directory list, so a new example is checked as soon as it
exists. The convention an example's README follows: at least one ``certform validate
-c examples/NAME ...`` line inside a fenced code block, covering each certform.yaml in
the directory. The commands run in a copy of examples/, so nothing is written into
the repository.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import certform_argv

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DIRECTORIES = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith("."))
MODELINE = "# yaml-language-server: $schema="
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def validate_commands(readme: str) -> list[list[str]]:
    """The argv of every ``certform validate`` line in the README's fenced code blocks
    (continuation lines joined, a ``$ `` prompt dropped, stopping at a shell operator)."""
    commands = []
    for block in _FENCE.findall(readme):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("certform validate"):
                words = shlex.split(re.split(r"\s(?:&&|\|\||;|\||>)\s", line)[0])
                commands.append(words[1:])
    return commands


def setup_scripts(readme: str) -> list[list[str]]:
    """``sh examples/NAME/SCRIPT.sh ...`` lines of the README's code blocks: what an
    example makes before it validates (throwaway demo files), run first."""
    return [
        shlex.split(line.strip())
        for block in _FENCE.findall(readme)
        for line in block.splitlines()
        if re.match(r"^sh examples/[\w./-]+\.sh\b", line.strip())
    ]


def template_variables(config: str) -> set[str]:
    """The variables a configuration reads with a default (``{{ NAME | default(...) }}``):
    the ones a user sets for production, so its README must name them."""
    return set(re.findall(r"\b(\w+)\s*\|\s*default\(", config))


def _config_arguments(words: list[str]) -> list[str]:
    found = []
    for index, word in enumerate(words):
        if word in ("-c", "--config") and index + 1 < len(words):
            found.append(words[index + 1])
        elif word.startswith(("-c=", "--config=")):
            found.append(word.split("=", 1)[1])
    return found or ["certform.yaml"]


def test_the_examples_are_found() -> None:
    names = {p.name for p in DIRECTORIES}
    assert {"acme-dns01", "acme-http01", "haproxy", "nginx", "quickstart"} <= names


@pytest.mark.parametrize("directory", DIRECTORIES, ids=[p.name for p in DIRECTORIES])
def test_every_example_has_a_readme_and_configurations_that_validate(
    directory: Path, tmp_path: Path
) -> None:
    readme = directory / "README.md"
    assert readme.is_file(), f"examples/{directory.name} has no README.md"
    configs = sorted(directory.rglob("certform.yaml"))
    assert configs, f"examples/{directory.name} has no certform.yaml"
    commands = validate_commands(readme.read_text())
    assert commands, (
        f"examples/{directory.name}/README.md shows no `certform validate -c "
        f"examples/{directory.name} ...` command in a code block"
    )

    text = readme.read_text()
    schema = (EXAMPLES.parent / "schemas" / "certform.schema.json").resolve()
    for config in configs:
        modeline = config.read_text().splitlines()[0]
        assert modeline.startswith(MODELINE), f"{config.relative_to(EXAMPLES)}: {modeline!r}"
        pointed = (config.parent / modeline.removeprefix(MODELINE)).resolve()
        assert pointed == schema, f"{config.relative_to(EXAMPLES)}: the modeline names {pointed}"
        undocumented = sorted(
            name for name in template_variables(config.read_text()) if f"`{name}`" not in text
        )
        assert not undocumented, (
            f"{config.relative_to(EXAMPLES)}: README.md never names {undocumented}"
        )

    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES, root / "examples")
    for script in setup_scripts(text):
        made = subprocess.run(script, cwd=root, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, f"README: {' '.join(script)}\n{made.stderr}"
    covered: set[Path] = set()
    for words in commands:
        for argument in _config_arguments(words):
            target = (root / argument).resolve()
            covered.add(target / "certform.yaml" if target.is_dir() else target)
        result = subprocess.run(
            [*certform_argv(), "validate", *words[1:]],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = " ".join(["certform", *words])
        assert result.returncode == 0, f"README: {shown}\n{result.stdout}{result.stderr}"
        assert "Configuration is valid" in result.stdout, result.stdout
    copies = {(root / "examples" / c.relative_to(EXAMPLES)).resolve() for c in configs}
    missing = sorted(str(c.relative_to(root.resolve())) for c in copies - covered)
    assert not missing, f"no `certform validate` command in the README covers {missing}"
