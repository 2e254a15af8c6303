"""examples/gitops run through its flow: staging and prod planned (saved plans, as the
pull request's job does) and applied separately from the same files, each into its
own SQLite state (.certform-staging/, .certform-prod/) with its own master key, and
each with an empty ``plan --detailed-exitcode`` afterwards.  A command without an
environment is refused and creates no state.  Every certform command of the example's
workflow exists with those options.  Only ``tls_dir`` is moved into the workspace."""

from __future__ import annotations

import json

import pytest
import yaml
from cryptography import x509

from tests.conftest import Workspace
from tests.examples_lab import EXAMPLES, copy_example
from tests.test_ci_examples import _certform_commands, _scripts
from tests.test_ci_examples import test_every_certform_command_in_the_examples_exists as exists

STAGES = ("staging", "prod")


def _env(stage: str) -> tuple[str, ...]:
    return ("--var-file", f"environments/{stage}.yaml", "--var", f"tls_dir=out/{stage}")


def _issuer_cn(ws: Workspace, stage: str) -> str:
    pem = (ws.root / f"out/{stage}/api/cert.pem").read_bytes()
    issuer = x509.load_pem_x509_certificate(pem).issuer
    return str(issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_the_gitops_example_keeps_one_state_per_environment(workspace: Workspace) -> None:
    ws = workspace
    ws.env.pop("CERTFORM_MASTER_KEY")  # each environment's generated key, beside its state
    copy_example(ws, "gitops")

    refused = ws.run("plan")
    assert refused.code == 1
    assert "'stage' is undefined" in refused.err and "--var-file" in refused.err
    assert not list(ws.root.glob(".certform*"))

    for stage in STAGES:  # the pull request: validate and plan each environment
        ws.ok("validate", *_env(stage))
        planned = ws.run("plan", *_env(stage), "--out", f"{stage}.plan", "--detailed-exitcode")
        assert planned.code == 2, planned.text

    ws.ok("apply", "staging.plan")  # merged: staging first
    assert not (ws.root / "out/prod").exists()
    assert _issuer_cn(ws, "staging") == "Payments Issuing CA (staging)"
    ws.ok("apply", "prod.plan")
    assert _issuer_cn(ws, "prod") == "Payments Issuing CA (prod)"

    assert sorted(p.parent.name for p in ws.root.glob(".certform*/state.db")) == [
        ".certform-prod",
        ".certform-staging",
    ]
    keys = {stage: (ws.root / f".certform-{stage}/master.key").read_bytes() for stage in STAGES}
    assert keys["staging"] != keys["prod"]
    for stage in STAGES:
        assert ws.run("plan", "--detailed-exitcode", *_env(stage)).code == 0
        shown = json.loads(ws.ok("show", "--json", *_env(stage)).out)
        names = {c["address"]: c["names"] for c in shown["certificates"]}
        domain = yaml.safe_load((EXAMPLES / f"gitops/environments/{stage}.yaml").read_text())
        assert names == {
            "certificate.api": [f"api.{domain['domain']}"],
            "certificate.worker": [f"worker.{domain['domain']}"],
        }


def _workflow_commands() -> list[tuple[str, list[str]]]:
    workflow = yaml.safe_load((EXAMPLES / "gitops/.github/workflows/certform.yml").read_text())
    return [
        (f"gitops: certform {' '.join(words)}", words)
        for script in _scripts(workflow)
        for words in _certform_commands(script)
    ]


def test_the_gitops_workflow_plans_and_applies_each_environment() -> None:
    run = {(words[0], words[-1]) for _, words in COMMANDS}
    for stage in STAGES:
        assert ("apply", f"environments/{stage}.yaml") in run
        assert ("plan", f"environments/{stage}.yaml") in run


COMMANDS = _workflow_commands()


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_certform_command_in_the_gitops_workflow_exists(where: str, words: list[str]) -> None:
    exists(where, words)
