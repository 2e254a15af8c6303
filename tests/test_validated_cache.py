"""The validated-config cache: a second validation of an unchanged configuration
gives exactly the first one's result without re-validating; a changed outside
input (a template, a known_hosts file, an environment variable), changed code or
a tampered entry means validating in full again; and no outside read escapes the
recorder that decides all this (checked under an audit hook over every example)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import validated_cache
from reconciler.config.inputs import InputRecorder
from reconciler.config.loader import load_var_file, parse_var_assignments
from reconciler.config.validate import SETTINGS_ONLY_SKIPS, load_and_validate
from tests.conftest import Workspace
from tests.test_examples import DIRECTORIES, EXAMPLES, setup_scripts, validate_commands

REPOSITORY = Path(__file__).resolve().parent.parent


def _example_runs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(config path, template variables) of every ``certform validate`` line of every
    example's README, in a copy of examples/ under ``root`` (setup scripts run)."""
    shutil.copytree(EXAMPLES, root / "examples")
    runs = []
    for directory in DIRECTORIES:
        readme = (directory / "README.md").read_text()
        for script in setup_scripts(readme):
            subprocess.run(script, cwd=root, check=True, capture_output=True, timeout=60)
        for words in validate_commands(readme):
            config, variables = root / "certform.yaml", {}
            for flag, value in itertools.pairwise(words):
                if flag in ("-c", "--config"):
                    config = root / value
                elif flag == "--var":
                    variables.update(parse_var_assignments([value]))
                elif flag == "--var-file":
                    variables.update(load_var_file(root / value))
            runs.append((config, variables))
    return runs


def test_every_example_validates_to_the_same_result_from_the_cache(
    tmp_path: Path, cache: Path
) -> None:
    runs = _example_runs(tmp_path)
    assert len(runs) >= len(DIRECTORIES)
    hits = 0
    for config, variables in runs:
        first = load_and_validate(config, variables)
        second = load_and_validate(config, variables)
        hits += second.full is None  # from the cache: the whole config not validated yet
        where = f"{config.relative_to(tmp_path)} {variables}"
        assert second.desired == first.desired, where
        for kind in ("authorities", "certificates"):
            before, after = getattr(first.desired, kind), getattr(second.desired, kind)
            assert [type(x.spec) for x in after] == [type(x.spec) for x in before], where
        assert second.moves == first.moves, where
        skip = set(SETTINGS_ONLY_SKIPS)
        assert second.settings.model_dump(exclude=skip) == first.config.model_dump(exclude=skip)
        assert second.config == first.config, where
    # Every example but the one whose check depends on the time (imported: not expired).
    assert hits == len(runs) - sum("imported" in str(c) for c, _ in runs)
    entries = list(cache.glob("validated-*.json"))
    assert entries and all(e.stat().st_mode & 0o077 == 0 for e in entries)


_GUARD = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from reconciler.config.inputs import recording
    from reconciler.config.loader import load_config
    from reconciler.config.validate import _validate

    root, runs = sys.argv[1], json.loads(sys.argv[2])
    opened, watching = set(), [False]

    def hook(event, args):
        if watching[0] and event in ("open", "os.listdir", "os.scandir") and args:
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                opened.add(os.path.realpath(os.fsdecode(path)))

    sys.addaudithook(hook)
    escaped = {}
    for config, variables in runs:
        loaded = load_config(Path(config), variables)
        with recording() as inputs:
            watching[0] = True
            try:
                _validate(loaded)
            finally:
                watching[0] = False
        noted = {os.path.realpath(p) for p in inputs.files}
        outside = sorted(p for p in opened - noted if p.startswith(root))
        if outside:
            escaped[config] = outside
        opened.clear()
    print(json.dumps(escaped))
    """
)


def test_no_file_read_by_validation_escapes_the_input_recorder(tmp_path: Path) -> None:
    """Every file an example's validation opens under the repository copy was noted
    by ``config/inputs.py``: otherwise a cached verdict could outlive that file."""
    runs = _example_runs(tmp_path)
    argv = [str(tmp_path), json.dumps([[str(c), v] for c, v in runs])]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "CERTFORM_CACHE": "off"}
    result = subprocess.run(
        [sys.executable, "-c", _GUARD, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def _copy_example(workspace: Workspace, name: str) -> Path:
    target = workspace.root / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def test_a_broken_template_is_reported_after_a_cached_validation(workspace: Workspace) -> None:
    directory = _copy_example(workspace, "nginx")
    assert "Configuration is valid" in workspace.ok("validate", "-c", str(directory)).out
    workspace.ok("validate", "-c", str(directory))  # from the cache
    (directory / "certificate-info.conf.j2").write_text("{% if %}\n")
    result = workspace.run("validate", "-c", str(directory))
    assert result.code == 1
    assert "certificate-info.conf.j2:1:" in result.text


def test_a_removed_known_hosts_file_is_reported_after_a_cached_validation(
    workspace: Workspace,
) -> None:
    directory = _copy_example(workspace, "ssh")
    workspace.ok("validate", "-c", str(directory))
    workspace.ok("validate", "-c", str(directory))
    (directory / "known_hosts").unlink()
    result = workspace.run("validate", "-c", str(directory))
    assert result.code == 1
    assert "known_hosts" in result.text and "does not exist" in result.text
    assert "certform ssh-keyscan web1" in result.text


def test_a_tampered_entry_is_not_believed(workspace: Workspace) -> None:
    """An entry whose desired state was edited (one binding dropped) without the
    user's key: the plan still sees the binding (no destroy planned)."""
    cache = workspace.root / "cache"
    workspace.env["CERTFORM_CACHE_DIR"] = str(cache)
    workspace.ok("apply", "--auto-approve")
    workspace.ok("plan", "--detailed-exitcode")
    entries = list(cache.glob("validated-*.json"))
    assert len(entries) == 1
    for entry in entries:
        mac, _, body = entry.read_bytes().partition(b"\n")
        data = json.loads(body)
        data["desired"]["bindings"] = data["desired"]["bindings"][1:]
        entry.write_bytes(mac + b"\n" + json.dumps(data, separators=(",", ":")).encode())
    result = workspace.run("plan", "--detailed-exitcode")
    assert result.code == 0, result.text
    assert "destroy" not in result.out.lower()


def test_a_changed_environment_variable_or_file_stamp_is_a_miss(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stamps: an environment variable's keyed hash (never its value, which may be a
    key) and a file's size/mtime/mode."""
    config = tmp_path / "certform.yaml"
    config.write_text((REPOSITORY / "examples" / "quickstart" / "certform.yaml").read_text())
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("one")
    validated = load_and_validate(config)
    secret = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    monkeypatch.setenv("CERTFORM_TEST_INPUT", secret)
    inputs = InputRecorder(files={str(bundle)}, environment={"CERTFORM_TEST_INPUT"})
    where = (validated.root, validated.rendered.digest)
    validated_cache.store(*where, inputs, validated.desired, (), (), {})
    assert validated_cache.lookup(*where) is not None
    entry_text = "".join(e.read_text() for e in cache.glob("validated-*.json"))
    assert "PRIVATE KEY" not in entry_text and "AAAA" not in entry_text

    monkeypatch.setenv("CERTFORM_TEST_INPUT", secret.replace("AAAA", "BBBB"))
    assert validated_cache.lookup(*where) is None
    monkeypatch.setenv("CERTFORM_TEST_INPUT", secret)
    assert validated_cache.lookup(*where) is not None
    bundle.chmod(0o600)
    assert validated_cache.lookup(*where) is None


def test_volatile_results_and_a_disabled_cache_store_nothing(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "certform.yaml"
    config.write_text((REPOSITORY / "examples" / "quickstart" / "certform.yaml").read_text())
    validated = load_and_validate(config)
    for entry in cache.glob("validated-*.json"):
        entry.unlink()
    where = (validated.root, validated.rendered.digest)
    validated_cache.store(*where, InputRecorder(volatile=True), validated.desired, (), (), {})
    assert not list(cache.glob("validated-*.json"))
    monkeypatch.setenv("CERTFORM_CACHE", "off")
    load_and_validate(config)
    assert not list(cache.glob("validated-*.json"))


def test_changed_code_is_a_different_entry(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "package"
    package.mkdir()
    module = package / "module.py"
    module.write_text("X = 1\n")
    monkeypatch.setattr(validated_cache, "_PACKAGE", package)
    validated_cache._code_stamp.cache_clear()
    try:
        before = validated_cache._code_stamp()
        validated_cache._code_stamp.cache_clear()
        module.write_text("X = 22\n")
        assert validated_cache._code_stamp() != before
    finally:
        validated_cache._code_stamp.cache_clear()


def test_the_cli_plan_is_identical_from_the_cache(workspace: Workspace) -> None:
    first = workspace.run("plan")
    second = workspace.run("plan")
    assert first.code == second.code == 0
    assert first.out == second.out and "to issue" in first.out


def test_a_hit_parses_no_yaml(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What validation decided is in the entry: the files are read and hashed, not
    parsed (neither YAML nor the parse cache's copy); the source map is built only
    if something asks for a line."""
    from reconciler.config import loader

    config = tmp_path / "certform.yaml"
    config.write_text((REPOSITORY / "examples" / "quickstart" / "certform.yaml").read_text())
    first = load_and_validate(config)
    parses: list[str] = []
    real = loader.cached_parse
    counting = lambda text, *rest: parses.append(text) or real(text, *rest)  # noqa: E731
    monkeypatch.setattr(loader, "cached_parse", counting)
    second = load_and_validate(config)
    assert parses == [] and second.desired == first.desired
    assert second.loaded.sources.file_of(("certificates",)) == config and len(parses) == 1
