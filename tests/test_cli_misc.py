"""Schema freshness, templating through the CLI, every key algorithm through apply."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.schema import schema_text
from tests.conftest import EXAMPLE, Workspace, openssl_verify, pkilint_findings

REPO = Path(__file__).resolve().parent.parent


def test_committed_schema_is_current() -> None:
    committed = (REPO / "schemas/certform.schema.json").read_text()
    assert committed == schema_text(), (
        "run `certform schema --out schemas/certform.schema.json` and commit the result"
    )
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False
    assert {"authorities", "certificates", "bindings"} <= set(schema["properties"])


def test_schema_command_writes_the_file(tmp_path: Path, workspace: Workspace) -> None:
    result = workspace.run("schema", "--out", str(tmp_path / "s.json"))
    assert result.code == 0, result.text
    assert (tmp_path / "s.json").read_text() == schema_text()
    assert result.out == f"Wrote {tmp_path / 's.json'}\n"


def test_schema_without_arguments_prints_it_and_writes_nothing(workspace: Workspace) -> None:
    result = workspace.run("schema")
    assert result.code == 0, result.text
    assert json.loads(result.out) == json.loads(schema_text())
    assert not (workspace.root / "schemas").exists()


def test_templated_config_with_vars_var_file_and_env(workspace: Workspace) -> None:
    ws = workspace
    templated = EXAMPLE.replace(
        "validity: 90d\n    renew_before: 30d",
        "validity: {{ validity }}\n    renew_before: {{ window }}",
    )
    templated = templated.replace("tags: {team: web}", 'tags: {team: {{ env("TEAM") }}}')
    ws.write(templated)
    (ws.root / "vars.yaml").write_text("validity: 60d\nwindow: 20d\n")
    ws.env["TEAM"] = "edge"
    result = ws.run("apply", "--auto-approve", "--var-file", "vars.yaml", "--var", "window=15d")
    assert result.code == 0, result.text
    rows = json.loads(ws.ok("show", "--json", "--var-file", "vars.yaml", "--var", "window=15d").out)
    web = next(r for r in rows["certificates"] if r["address"] == "certificate.web")
    assert web["tags"] == {"team": "edge"}
    assert 58 <= web["days_left"] <= 60
    early = ws.run("plan", "--var-file", "vars.yaml", "--var", "window=15d", "--at", "+44d",
                   "--detailed-exitcode")  # fmt: skip
    assert early.code == 0, early.text
    late = ws.run("plan", "--var-file", "vars.yaml", "--var", "window=15d", "--at", "+46d",
                  "--detailed-exitcode")  # fmt: skip
    assert late.code == 2 and "inside renew_before 15d" in late.out


def test_sandbox_escape_is_refused_with_file_and_line(workspace: Workspace) -> None:
    ws = workspace
    ws.write(
        EXAMPLE.replace(
            "tags: {team: web}", "tags: {team: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"}"
        )
    )
    result = ws.run("validate")
    assert result.code == 1
    line = EXAMPLE.splitlines().index("    tags: {team: web}") + 1
    assert f"certform.yaml:{line}" in result.err
    assert "sandbox" in result.err


ALGORITHMS = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]


def test_every_key_algorithm_issues_verifiable_lint_clean_certificates(
    workspace: Workspace,
) -> None:
    ws = workspace
    head = EXAMPLE.split("certificates:\n")[0]
    certs = "".join(
        f"  k-{alg}:\n    names: [{alg}.example.test]\n    issuer: issuing\n    key: {alg}\n"
        for alg in ALGORITHMS
    )
    binds = "".join(
        f"  - certificate: k-{alg}\n    target: {{type: files, directory: out/{alg}}}\n"
        for alg in ALGORITHMS
    )
    ws.write(head + "certificates:\n" + certs + "bindings:\n" + binds)
    result = ws.run("apply", "--auto-approve", timeout=300)
    assert result.code == 0, result.text
    for alg in ALGORITHMS:
        directory = ws.root / "out" / alg
        verify = openssl_verify(directory, "-x509_strict", "-purpose", "sslserver")
        assert verify.returncode == 0, (alg, verify.stdout, verify.stderr)
        # pkilint is a test dependency: every algorithm is linted, none is skipped.
        for pem in ("cert.pem", "chain.pem", "ca.pem"):
            findings = pkilint_findings(directory / pem)
            assert not [f for f in findings if f[1] in ("ERROR", "FATAL")], (alg, pem, findings)


def test_help_lists_commands_in_working_order_with_whole_sentences(workspace: Workspace) -> None:
    workspace.env["COLUMNS"] = "100"
    result = workspace.run("--help")
    assert result.code == 0, result.text
    rows = [line.strip("│ ") for line in result.out.splitlines() if line.startswith("│ ")]
    names = [row.split()[0] for row in rows if row[:1].isalpha() and "  " in row]
    start = names.index("init")
    assert names[start : start + 6] == ["init", "validate", "plan", "apply", "show", "check"]
    # a docstring's line breaks are not kept: iam-policy's help flows on in one paragraph
    assert "destroy of this configuration need" in " ".join(rows)
