"""validate reads like the files: every problem once, in file and line order, no false
'unknown' for an entry that is declared but malformed, and the closest name suggested."""

from __future__ import annotations

from tests.conftest import Workspace

CONFIG = """\
providers:
  web: {type: nginx, test_command: [/bin/true], reload_command: [/bin/true]}
authorities:
  le:
    type: acme
    directory: https://acme.example.test/directory
    contact: [https://x]
    terms_of_service_agreed: true
    solvers:
      - http01: {webroot: www}
  root: {type: private, key: ec-p256, validity: 10y, subject: {common_name: R}}
certificates:
  web:
    names: [web.example.test]
    issuer: le
  api: {names: [api.example.test], issuer: roott}
bindings:
  - {certificate: web, target: {type: nginx, provider: web, certificate_path: a, key_path: b}}
  - {certificate: api, target: {type: files, directroy: out/api}}
"""


def test_every_problem_in_order_with_suggestions_and_no_false_unknown(
    workspace: Workspace,
) -> None:
    workspace.write(CONFIG)
    result = workspace.run("validate")
    assert result.code == 1 and "Traceback" not in result.err, result.text
    lines = [line.strip() for line in result.err.splitlines() if line.startswith("  ")]
    assert lines == [
        "certform.yaml:7: authorities.le.contact: contact entries must be email addresses "
        "(mailto: optional), got 'https://x'",
        "certform.yaml:11: authorities.root: unknown type 'private'; expected one of: acme, "
        "aws-acm, aws-pca, imported, private-root, private-subordinate "
        "(did you mean 'private-root'?)",
        "certform.yaml:16: certificates.api.issuer: unknown authority 'roott'; "
        "expected one of: le, root (did you mean 'root'?)",
        "certform.yaml:19: bindings[1].target.directory: missing required field 'directory'",
        "certform.yaml:19: bindings[1].target.directroy: unknown key 'directroy'; expected one "
        "of: directory, pass_env, post_deploy, post_deploy_timeout, type, verify_endpoint, via "
        "(did you mean 'directory'?)",
    ], result.err
    assert "unknown provider" not in result.err


def test_a_reference_typo_in_a_valid_config_gets_a_suggestion(workspace: Workspace) -> None:
    workspace.write(
        """\
authorities:
  root: {type: private-root, key: ec-p256, validity: 10y, subject: {common_name: R}}
  issuing: {type: private-subordinate, parent: root, key: ec-p256, validity: 5y,
            subject: {common_name: I}}
certificates:
  web: {names: [web.example.test], issuer: isuing}
bindings:
  - {certificate: webb, target: {type: files, directory: out/web}}
"""
    )
    result = workspace.run("validate")
    assert result.code == 1, result.text
    assert "unknown authority 'isuing'; expected one of: issuing, root (did you mean " \
        "'issuing'?)" in result.err  # fmt: skip
    assert "unknown certificate 'webb'; expected one of: web (did you mean 'web'?)" in result.err
