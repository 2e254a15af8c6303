"""``plan --format markdown``: the plan as a pull-request comment, through the real CLI.

What a reviewer sees first is the summary; drift is called out; every value from
the configuration is escaped; no private key is in it; and a plan too large for a
65,536-character comment is cut with a note saying how much was left out.
"""

from __future__ import annotations

import json

from tests.conftest import Workspace


def test_markdown_plan_has_summary_tables_and_collapsed_details(workspace: Workspace) -> None:
    result = workspace.ok("plan", "--format", "markdown")
    text = result.out
    assert text.startswith("## certform plan\n\n**Plan: 4 to issue, 2 to bind.**\n")
    assert "### Authorities" in text and "### Certificates" in text and "### Bindings" in text
    assert "| `certificate.web` | `+` issue | not issued yet | `binding.files:out/web` |" in text
    assert "<details><summary>Details</summary>" in text and text.rstrip().endswith("</details>")
    assert "Saved the plan" not in text
    assert not (workspace.root / ".certform").exists()  # a plan creates nothing


def test_markdown_plan_calls_out_drift_and_holds_no_key(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    key = (workspace.root / "out/web/key.pem").read_text()
    (workspace.root / "out/web/cert.pem").write_text("tampered\n")
    result = workspace.run("plan", "--format", "markdown", "--detailed-exitcode")
    assert result.code == 2, result.text
    assert "> :warning: **Drift**: 1 change(s)" in result.out
    assert "| `binding.files:out/web` | `~` rebind (drift) |" in result.out
    assert "PRIVATE KEY" not in result.out and key.strip().splitlines()[1] not in result.out


def test_markdown_without_changes_says_so(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    result = workspace.ok("plan", "--format", "markdown", "--detailed-exitcode")
    assert result.out == (
        "## certform plan\n\n**No changes.** Authorities, certificates and bindings match "
        "the configuration.\n"
    )


def test_json_format_and_the_json_alias_print_the_same_document(workspace: Workspace) -> None:
    by_format = json.loads(workspace.ok("plan", "--format", "json").out)
    by_alias = json.loads(workspace.ok("plan", "--json").out)
    assert by_format["summary"] == by_alias["summary"] == by_format["summary"] | {"issue": 4}
    assert [c["address"] for c in by_format["changes"]] == [
        c["address"] for c in by_alias["changes"]
    ]


def test_a_plan_too_large_for_a_comment_is_cut_with_a_note(workspace: Workspace) -> None:
    n = 600  # 1,200 table rows: far more than 65,536 characters
    certificates = "".join(
        f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n    key: ec-p256\n"
        f"    validity: 90d\n"
        for i in range(n)
    )
    bindings = "".join(
        f"  - certificate: c{i}\n    target: {{type: files, directory: out/c{i}}}\n"
        for i in range(n)
    )
    head = workspace.config.read_text().split("certificates:")[0]
    workspace.write(head + "certificates:\n" + certificates + "bindings:\n" + bindings)
    text = workspace.ok("plan", "--format", "markdown").out
    assert len(text) <= 65_536 + 1  # the comment, plus the newline echo adds
    assert "**Plan: 602 to issue, 600 to bind.**" in text
    assert "> **Plan truncated** to fit a comment: " in text
    shown = text.count("\n| `")
    left = int(text.split("to fit a comment: ")[1].split(" of ")[0])
    assert shown + left == 2 + 2 * n and shown > 300
    assert "<details>" not in text


def test_values_from_the_configuration_cannot_inject_markup() -> None:
    from datetime import UTC, datetime

    from reconciler.plan.model import Action, Change, Plan
    from reconciler.plan.render_markdown import render_markdown

    hostile = Change(
        address="binding.files:out/`x`|y",
        action=Action.REBIND,
        reasons=("served <img src=x onerror=alert(1)> | forged cell\nsecond line",),
        before=None,
        after=None,
    )
    plan = Plan((hostile,), (), datetime.now(UTC), "lineage", 1, "", "")
    table = render_markdown(plan).split("<details>")[0]
    row = next(line for line in table.splitlines() if line.startswith("| `binding"))
    assert "<img" not in table and "&lt;img src=x onerror=alert(1)&gt;" in row
    assert row.count(" | ") == 3  # four cells: the pipes inside were escaped
    assert "`binding.files:out/'x'\\|y`" in row and "second line" in row
