"""The per-user parse cache: a second load of the same text does not parse YAML again,
errors still name their lines, and an entry anyone but the user could have made
(another key, an edited body, a loose directory) is never believed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reconciler.config import yamlbuild
from reconciler.config.loader import load_config
from tests.conftest import Workspace

CONFIG = """\
authorities:
  root: {type: private-root, key: ec-p256, validity: 3650d, subject: {common_name: R}}
certificates:
  web: {names: [web.example.test], issuer: root}
bindings:
  - {certificate: web, target: {type: files, directory: out/web}}
"""


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    build = yamlbuild.DocumentBuilder.build

    def counting(self, text):  # type: ignore[no-untyped-def]
        calls.append(1)
        return build(self, text)

    monkeypatch.setattr(yamlbuild.DocumentBuilder, "build", counting)
    return calls


def test_second_load_parses_nothing_and_gives_equal_data(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "certform.yaml"
    config.write_text(CONFIG)
    calls = _parses(monkeypatch)
    first = load_config(config)
    second = load_config(config)
    assert len(calls) == 1 and first.data == second.data
    assert second.sources.file_of(("certificates", "web")) == config
    assert second.sources.issue(("certificates", "web", "issuer"), "x").line == 4
    assert len(calls) == 2  # the line was asked for: parsed once more, for the index
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "key").stat().st_mode) == 0o600
    [entry] = cache.glob("*.json")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_an_entry_not_made_with_the_users_key_is_ignored(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "certform.yaml"
    config.write_text(CONFIG)
    load_config(config)
    [entry] = cache.glob("*.json")
    mac, body = entry.read_bytes().split(b"\n", 1)
    forged = json.loads(body)
    forged["certificates"]["web"]["names"] = ["attacker.example"]
    entry.write_bytes(mac + b"\n" + json.dumps(forged).encode())  # body edited, MAC kept
    assert load_config(config).data["certificates"]["web"]["names"] == ["web.example.test"]
    (cache / "key").write_bytes(os.urandom(32))  # a key the attacker knows
    entry.write_bytes(mac + b"\n" + body)
    assert load_config(config).data["certificates"]["web"]["names"] == ["web.example.test"]


def test_a_loose_directory_or_off_uses_no_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "certform.yaml"
    config.write_text(CONFIG)
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    calls = _parses(monkeypatch)
    load_config(config)
    load_config(config)
    assert len(calls) == 2 and list(cache.iterdir()) == []
    cache.chmod(0o700)
    monkeypatch.setenv("CERTFORM_CACHE", "off")
    load_config(config)
    assert list(cache.iterdir()) == []


def test_errors_on_a_cache_hit_name_the_same_lines(workspace: Workspace, cache: Path) -> None:
    workspace.env["CERTFORM_CACHE_DIR"] = str(cache)
    workspace.write(CONFIG.replace("issuer: root}", "issuer: rot}"))
    first = workspace.run("validate")
    second = workspace.run("validate")
    assert first.code == second.code == 1
    assert "certform.yaml:4: certificates.web.issuer: unknown authority 'rot'" in second.err
    assert first.err == second.err
    assert len(list(cache.glob("*.json"))) == 1
