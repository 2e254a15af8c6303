"""Template variables: names the templates' own functions use are refused, printing a
function is an error rather than '<function ...>' in a tag, and a --var no template
uses is a warning (with the closest used name)."""

from __future__ import annotations

from tests.conftest import Workspace

CONFIG = """\
authorities:
  root:
    type: private-root
    key: ec-p256
    validity: 3650d
    subject: {common_name: "Root {{ stage }}"}
certificates:
  web:
    names: [web.example.test]
    issuer: root
    tags: {team: TEAM}
bindings:
  - {certificate: web, target: {type: files, directory: out/web}}
"""


def test_printing_env_without_calling_it_is_an_error(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("TEAM", '"{{ env }}"'))
    result = workspace.run("validate", "--var", "stage=dev")
    assert result.code == 1 and "Traceback" not in result.err, result.text
    expected = (
        "certform.yaml:11: template: a template prints the function 'env' instead of "
        "calling it (env(...)); a template variable cannot be named 'env'"
    )
    assert expected in result.err
    assert "<function" not in result.text


def test_reserved_variable_names_are_refused_and_nothing_changes(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("TEAM", "web"))
    result = workspace.run("apply", "--auto-approve", "--var", "stage=dev", "--var", "env=prod")
    assert result.code == 1, result.text
    assert "template variable 'env' is reserved: templates call env() by that name" in result.err
    (workspace.root / "vars.yaml").write_text("stage: dev\nrange: 3\n")
    result = workspace.run("plan", "--var-file", "vars.yaml")
    assert result.code == 1 and "template variable 'range' is reserved" in result.err
    assert not (workspace.root / ".certform").exists()
    assert not (workspace.root / "out").exists()


def test_an_unused_variable_is_a_warning_with_the_closest_name(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("TEAM", "web"))
    result = workspace.run("validate", "--var", "stage=dev", "--var", "stgae=prod")
    assert result.code == 0, result.text
    assert (
        "Warning: template variable(s) 'stgae' (did you mean 'stage'?) given but used by "
        "no template." in result.err
    )
    quiet = workspace.run("validate", "--var", "stage=dev")
    assert quiet.code == 0 and "Warning" not in quiet.err, quiet.text
