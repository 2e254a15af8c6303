"""Plans that travel between CI jobs: ``plan --out`` on one runner, ``apply FILE`` on
another, at another checkout path, without the ``--var`` values, through the CLI.

The two "runners" are two copies of one config repository in different
directories sharing one state; the plan names that state by lineage and serial,
carries its template variables, and files land under the checkout that applies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, Workspace

TEMPLATED = EXAMPLE.replace("tags: {team: web}", "tags: {team: web, stage: '{{ stage }}'}")


@pytest.fixture
def two_runners(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Runner A's workspace and runner B's checkout of the same repository."""
    shared = tmp_path_factory.mktemp("shared-state") / "state.db"
    workspace.write(f"state: {{path: {shared}}}\n" + TEMPLATED)
    checkout_b = tmp_path_factory.mktemp("runner-b") / "repo"
    checkout_b.mkdir()
    shutil.copy(workspace.config, checkout_b / "certform.yaml")
    return workspace, checkout_b, shared


def test_a_plan_saved_with_vars_applies_elsewhere_without_them(two_runners) -> None:  # type: ignore[no-untyped-def]
    ws, checkout_b, _ = two_runners
    ws.ok("plan", "--var", "stage=prod", "--out", "ci.plan")
    document = json.loads((ws.root / "ci.plan").read_text())
    assert document["variables"] == {"stage": "prod"}
    plan_b = checkout_b / "ci.plan"
    shutil.copy(ws.root / "ci.plan", plan_b)  # an artifact handed to the next job

    result = ws.run("apply", "-c", str(checkout_b / "certform.yaml"), str(plan_b))
    assert result.code == 0, result.text
    assert (checkout_b / "out/web/cert.pem").exists() and not (ws.root / "out").exists()
    shown = json.loads(ws.ok("show", "--json", "--var", "stage=prod").out)
    web = next(c for c in shown["certificates"] if c["address"] == "certificate.web")
    assert web["tags"] == {"team": "web", "stage": "prod"}
    # A later job in B's checkout finds nothing left to do with the same variables.
    config_b = str(checkout_b / "certform.yaml")
    assert ws.run("plan", "-c", config_b, "--var", "stage=prod", "--detailed-exitcode").code == 0


def test_apply_with_other_vars_than_the_plan_is_refused(two_runners) -> None:  # type: ignore[no-untyped-def]
    ws, checkout_b, shared = two_runners
    ws.ok("plan", "--var", "stage=prod", "--out", "ci.plan")
    before = shared.read_bytes()
    result = ws.run(
        "apply",
        "-c",
        str(checkout_b / "certform.yaml"),
        "--var",
        "stage=dev",
        str(ws.root / "ci.plan"),
    )
    assert result.code == 1 and "was made with other template variables" in result.err
    assert shared.read_bytes() == before and not (checkout_b / "out").exists()
    # The same values as the plan's are accepted.
    ws.ok("apply", "--var", "stage=prod", "ci.plan")


def test_edited_variables_in_the_plan_file_are_refused(two_runners) -> None:  # type: ignore[no-untyped-def]
    ws, checkout_b, shared = two_runners
    ws.ok("plan", "--var", "stage=prod", "--out", "ci.plan")
    document = json.loads((ws.root / "ci.plan").read_text())
    document["variables"] = {"stage": "dev"}
    (ws.root / "ci.plan").write_text(json.dumps(document))
    before = shared.read_bytes()
    result = ws.run("apply", "-c", str(checkout_b / "certform.yaml"), str(ws.root / "ci.plan"))
    assert result.code == 1 and "was modified or was not made for this state" in result.err
    assert shared.read_bytes() == before and not (checkout_b / "out").exists()


def test_a_plan_is_refused_once_the_state_moved_on(two_runners) -> None:  # type: ignore[no-untyped-def]
    ws, checkout_b, _ = two_runners
    ws.ok("plan", "--var", "stage=prod", "--out", "ci.plan")
    ws.ok("apply", "--auto-approve", "--var", "stage=prod")  # another job applied first
    result = ws.run("apply", "-c", str(checkout_b / "certform.yaml"), str(ws.root / "ci.plan"))
    assert result.code == 1 and "the state changed since this plan was made" in result.err
    assert not (checkout_b / "out").exists()


def test_a_plan_for_another_state_is_refused(
    two_runners, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    """Same configuration, another state (another lineage): the plan's MAC key is that
    state's, so it does not verify."""
    ws, _, _ = two_runners
    ws.ok("plan", "--var", "stage=prod", "--out", "ci.plan")
    other = tmp_path_factory.mktemp("other")
    (other / "certform.yaml").write_text(TEMPLATED)
    Path(other / ".certform").mkdir()
    ws.ok(
        "plan",
        "-c",
        str(other / "certform.yaml"),
        "--var",
        "stage=prod",
        "--out",
        str(other / "x.plan"),
    )
    result = ws.run("apply", "-c", str(other / "certform.yaml"), str(ws.root / "ci.plan"))
    assert result.code == 1 and "was modified or was not made for this state" in result.err
    assert not (other / "out").exists()
