"""Saved plans (issue 10, item 2): ``apply PLANFILE`` executes only what certform
wrote for this state (an HMAC under a key derived from the state's data key), and
checks it again against the state's guards and the config's policy.

Each attack edits a plan file the way someone with write access to it (a CI
artifact, a shared directory) could, and shows that apply refuses with exit 1
and changes nothing: the state file, the deployed files and the marker a command
would have created are exactly as before.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.plan.signing import MAC_FIELD, PLAN_MAC_LABEL, plan_mac
from reconciler.state.sealing import MasterKeySource
from reconciler.state.sqlite import SqliteStateStore
from tests.conftest import EXAMPLE, Workspace

TAMPERED = "the plan file was modified or was not made for this state"
POLICY = "policy:\n  allowed_domains: [example.test]\n  max_validity: 90d\n"
GUARDED_ROOT = EXAMPLE.replace(
    "    validity: 3650d\n", "    validity: 3650d\n    lifecycle: {prevent_destroy: true}\n", 1
)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (SQLite's transient -wal/-shm aside)."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))
    }


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def dump(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2))


def change(document: dict[str, Any], address: str) -> dict[str, Any]:
    return next(c for c in document["changes"] if c["address"] == address)


def resign(document: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The document with a MAC under ``key`` (what a forger with that key could do)."""
    body = {k: v for k, v in document.items() if k != MAC_FIELD}
    return body | {MAC_FIELD: plan_mac(body, key)}


def real_plan_key(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The state's own plan key, read in-process: to test apply's re-check of a plan
    whose MAC is valid (only the state's owner can compute it)."""
    monkeypatch.setenv("CERTFORM_MASTER_KEY", ws.env["CERTFORM_MASTER_KEY"])
    store = SqliteStateStore(ws.state_db, MasterKeySource(ws.state_db.parent / "master.key"))
    try:
        return store.derived_key(PLAN_MAC_LABEL)
    finally:
        store.close()


def refused(ws: Workspace, *args: str) -> str:
    before = tree(ws.root)
    result = ws.run("apply", *args)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    assert tree(ws.root) == before  # state.db byte-identical, no file written
    return result.err


def test_added_post_deploy_command_is_refused(workspace: Workspace) -> None:
    ws = workspace
    marker = ws.root / "marker"
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    target = change(document, "binding.files:out/web")["after"]["target"]
    target["post_deploy"] = ["sh", "-c", f"touch {marker}"]
    dump(ws.root / "saved.plan", document)
    state = ws.state_db.read_bytes() if ws.state_db.exists() else None
    assert TAMPERED in refused(ws, "saved.plan")
    assert not marker.exists()
    assert not (ws.root / "out").exists()
    assert ws.state_db.read_bytes() == state


def test_destroying_a_guarded_root_is_refused(workspace: Workspace) -> None:
    ws = workspace
    ws.write(GUARDED_ROOT)
    ws.ok("apply", "--auto-approve")
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    document["changes"].append(
        {
            "address": "authority.root",
            "action": "destroy",
            "reasons": ["removed from the configuration"],
            "before": {"type": "private-root"},
            "after": None,
        }
    )
    dump(ws.root / "saved.plan", document)
    assert TAMPERED in refused(ws, "saved.plan", "--force")
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_foreign_names_and_long_validity_are_refused(workspace: Workspace) -> None:
    ws = workspace
    ws.write(POLICY + EXAMPLE)
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    after = change(document, "certificate.web")["after"]
    after["names"], after["validity"] = ["*.google.com"], "3650d"
    dump(ws.root / "saved.plan", document)
    assert TAMPERED in refused(ws, "saved.plan")
    assert not (ws.root / "out").exists()


def test_missing_mac_is_refused(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    del document[MAC_FIELD]
    dump(ws.root / "saved.plan", document)
    assert TAMPERED in refused(ws, "saved.plan")


def test_plan_signed_with_another_key_is_refused(workspace: Workspace) -> None:
    ws = workspace
    marker = ws.root / "marker"
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    target = change(document, "binding.files:out/api")["after"]["target"]
    target["post_deploy"] = ["sh", "-c", f"touch {marker}"]
    dump(ws.root / "saved.plan", resign(document, os.urandom(32)))
    assert TAMPERED in refused(ws, "saved.plan")
    assert not marker.exists()


@pytest.mark.parametrize("other_has_state", [False, True], ids=["fresh", "own-state"])
def test_plan_made_for_another_state_is_refused(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, other_has_state: bool
) -> None:
    """Same config, same master key, another directory: the plan names the first
    state's paths; rewriting them to the second's is an edit the MAC catches."""
    ws = workspace
    ws.ok("plan", "--out", "saved.plan")
    other = Workspace(tmp_path_factory.mktemp("other"), dict(ws.env))
    other.write(EXAMPLE)
    if other_has_state:
        other.ok("apply", "--auto-approve")
    document = load(ws.root / "saved.plan")
    document["state_path"] = str(other.state_db.resolve())
    document["config_root"] = str(other.root)
    dump(other.root / "saved.plan", document)
    assert TAMPERED in refused(other, "saved.plan")
    assert other.state_db.exists() == other_has_state
    shutil.copy(ws.root / "saved.plan", other.root / "untouched.plan")
    assert TAMPERED in refused(other, "untouched.plan")


def test_untampered_plan_applies_even_reindented(workspace: Workspace) -> None:
    """The MAC covers the plan's content, not its layout: re-indenting is harmless."""
    ws = workspace
    ws.ok("plan", "--out", "saved.plan")
    text = (ws.root / "saved.plan").read_text()
    assert '"mac": "hmac-sha256:' in text
    (ws.root / "saved.plan").write_text(json.dumps(json.loads(text), indent=4))
    result = ws.ok("apply", "saved.plan")
    assert "Apply complete" in result.out
    assert (ws.root / "out/web/cert.pem").exists()
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_plan_json_needs_no_state_and_carries_no_mac(workspace: Workspace) -> None:
    ws = workspace
    result = ws.ok("plan", "--json")
    assert MAC_FIELD not in json.loads(result.out)
    assert not (ws.root / ".certform").exists()


def test_tightened_policy_refuses_a_valid_plan(workspace: Workspace) -> None:
    """A plan made under max_validity 90d, applied after the config lowered it to
    60d (and the certificates to 45d): the MAC verifies, the re-check refuses."""
    ws = workspace
    ws.write(POLICY + EXAMPLE)
    ws.ok("plan", "--out", "saved.plan")
    tightened = (POLICY + EXAMPLE).replace("max_validity: 90d", "max_validity: 60d")
    tightened = tightened.replace("validity: 90d", "validity: 45d").replace("30d", "15d")
    ws.write(tightened)
    ws.ok("validate")
    error = refused(ws, "saved.plan")
    assert "certificate.web: validity 90d exceeds policy.max_validity 60d" in error
    assert "certificate.api: validity 90d exceeds policy.max_validity 60d" in error
    assert not (ws.root / "out").exists()


def test_recheck_refuses_a_validly_signed_destroy_of_a_guarded_root(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: even with the state's own key, a plan that destroys what the
    state guards is refused, --force or not."""
    ws = workspace
    ws.write(GUARDED_ROOT)
    ws.ok("apply", "--auto-approve")
    ws.ok("plan", "--out", "saved.plan")
    document = load(ws.root / "saved.plan")
    document["changes"].append(
        {
            "address": "authority.root",
            "action": "destroy",
            "reasons": ["removed from the configuration"],
            "before": {"type": "private-root"},
            "after": None,
        }
    )
    dump(ws.root / "saved.plan", resign(document, real_plan_key(ws, monkeypatch)))
    error = refused(ws, "saved.plan", "--force")
    assert "authority.root: lifecycle.prevent_destroy is set in the state" in error


def test_force_reasons_are_recomputed_not_read(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA rotation needs --force whatever the plan's requires_force says."""
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.write(EXAMPLE.replace("Example Issuing CA", "Example Issuing CA G2"))
    ws.ok("plan", "--out", "rotate.plan")
    document = load(ws.root / "rotate.plan")
    assert document["requires_force"]
    document["requires_force"] = []
    dump(ws.root / "rotate.plan", resign(document, real_plan_key(ws, monkeypatch)))
    error = refused(ws, "rotate.plan")
    assert "refusing to apply without --force" in error
    assert "authority.issuing is a CA" in error


def test_recorded_config_root_is_not_where_apply_writes(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two checkouts of one config sharing one state (two CI runners): a plan made
    in the first and applied with -c the second writes under the second (the
    configuration apply loaded), never under the root the plan file names."""
    ws = workspace
    shared = tmp_path_factory.mktemp("shared") / "state.db"
    config = f"state: {{path: {shared}}}\n" + EXAMPLE
    ws.write(config)
    ws.ok("plan", "--out", "saved.plan")
    second = tmp_path_factory.mktemp("second")
    (second / "certform.yaml").write_text(config)
    ws.ok("apply", "-c", str(second / "certform.yaml"), "saved.plan")
    assert (second / "out/web/cert.pem").exists() and (second / "out/api/key.pem").exists()
    assert not (ws.root / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a certform plan"),
        ("[" * 200_000, "is not a certform plan"),
        ('{"changes": NaN, "mac": "hmac-sha256:00"}', TAMPERED),
        ('{"mac": "hmac-sha256:\\ud800"}', TAMPERED),
        (None, "not a regular file"),
    ],
    ids=["not-json", "deep-nesting", "nan", "lone-surrogate", "fifo"],
)
def test_junk_in_place_of_a_plan_is_a_clear_error(
    workspace: Workspace, content: str | None, message: str
) -> None:
    ws = workspace
    ws.ok("plan", "--out", "saved.plan")
    (ws.root / "saved.plan").unlink()
    if content is None:
        os.mkfifo(ws.root / "saved.plan")
    else:
        (ws.root / "saved.plan").write_text(content)
    assert message in refused(ws, "saved.plan")
