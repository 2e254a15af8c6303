"""ALB listeners through a real AWS API endpoint (moto server): import into ACM,
bind as default and SNI certificate, renew in place (same ARN), detect a
certificate swapped by hand, restore it, and refuse incompatible keys."""

from __future__ import annotations

import json

from tests.aws_lab import AwsLab
from tests.conftest import Workspace

PKI = """\
authorities:
  root:
    type: private-root
    subject: {common_name: AWS Test Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: AWS Test Issuing}
certificates:
  web:
    names: [web.example.test]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
    tags: {team: web}
  api:
    names: [api.example.test]
    issuer: issuing
    key: rsa-2048
    validity: 90d
    renew_before: 30d
"""


def config(aws: AwsLab, *, sni: bool = True) -> str:
    bindings = (
        "bindings:\n"
        "  - certificate: web\n"
        "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, port: 443}\n"
    )
    if sni:
        bindings += (
            "  - certificate: api\n"
            "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, "
            "port: 443, sni: true}\n"
        )
    return PKI + "providers:\n" + aws.provider_yaml() + bindings


def serials(ws: Workspace) -> dict[str, str]:
    rows = json.loads(ws.ok("show", "--json").out)
    return {r["address"]: r["serial"] for r in rows["certificates"]}


def test_alb_default_and_sni_lifecycle(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    listener, placeholder = aws.https_load_balancer()
    ws.write(config(aws))
    plan = json.loads(ws.run("plan", "--json").out)
    assert [c["address"] for c in plan["changes"] if c["action"] == "bind"] == [
        "binding.aws-alb-listener:aws/prod-alb:443/default",
        "binding.aws-alb-listener:aws/prod-alb:443/sni/api",
    ]
    ws.ok("apply", "--auto-approve")

    web_arn = aws.arn_for("certificate.web")
    api_arn = aws.arn_for("certificate.api")
    assert web_arn and api_arn and web_arn != api_arn
    default, sni = aws.listener_certificates(listener)
    assert default == web_arn
    assert sni == {api_arn}
    before = serials(ws)
    assert aws.acm_serial(web_arn) == before["certificate.web"]
    tags = aws.client("acm").list_tags_for_certificate(CertificateArn=web_arn)["Tags"]
    assert {"Key": "managed-by", "Value": "certform"} in tags
    assert {"Key": "team", "Value": "web"} in tags

    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Renewal re-imports into the same ARN: the listener is never touched.
    ws.ok("plan", "--at", "+61d", "--out", "renew.plan")
    ws.ok("apply", "renew.plan")
    after = serials(ws)
    assert after["certificate.web"] != before["certificate.web"]
    assert aws.arn_for("certificate.web") == web_arn
    assert aws.acm_serial(web_arn) == after["certificate.web"]
    assert aws.acm_serial(api_arn) == after["certificate.api"]
    assert aws.listener_certificates(listener) == (web_arn, {api_arn})
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Someone swaps the default certificate in the console: drift, then repair.
    aws.client("elbv2").modify_listener(
        ListenerArn=listener, Certificates=[{"CertificateArn": placeholder}]
    )
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert f"listener serves {placeholder} instead of {web_arn}" in drift.out
    ws.ok("apply", "--auto-approve")
    assert aws.listener_certificates(listener)[0] == web_arn
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Removing the SNI binding takes the certificate off the listener.
    ws.write(config(aws, sni=False))
    ws.ok("apply", "--auto-approve")
    assert aws.listener_certificates(listener) == (web_arn, set())


def test_certificate_deleted_from_acm_is_drift(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    listener, _ = aws.https_load_balancer()
    ws.write(config(aws, sni=False))
    ws.ok("apply", "--auto-approve")
    web_arn = aws.arn_for("certificate.web")
    assert web_arn
    aws.client("acm").delete_certificate(CertificateArn=web_arn)
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 2
    assert f"ACM certificate {web_arn} no longer exists" in result.out
    ws.ok("apply", "--auto-approve")
    new_arn = aws.arn_for("certificate.web")
    assert new_arn and new_arn != web_arn
    assert aws.listener_certificates(listener)[0] == new_arn
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_missing_listener_fails_clearly_and_records_nothing(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    ws.write(config(aws, sni=False))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "load balancer prod-alb not found" in result.text
    assert "Traceback" not in result.text
    assert aws.arn_for("certificate.web") is None, "nothing is imported for a missing listener"
    plan = json.loads(ws.run("plan", "--json").out)
    assert [c["action"] for c in plan["changes"]] == ["bind"]


def test_incompatible_key_is_a_validate_error(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, sni=False).replace("key: ec-p256", "key: ed25519"))
    result = ws.run("validate")
    assert result.code == 1
    assert "bindings[0].target" in result.err
    assert "certificate 'web' has a ed25519 key" in result.err
    assert "load balancer listeners cannot serve ed25519" in result.err


def test_unknown_provider_is_a_validate_error(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, sni=False).replace("provider: aws,", "provider: prod,"))
    result = ws.run("validate")
    assert result.code == 1
    assert "bindings[0].target.provider: unknown provider 'prod'" in result.err


def test_listener_quota_is_enforced_at_validate(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    certs = "".join(
        f"  s{i}:\n    names: [s{i}.example.test]\n    issuer: issuing\n" for i in range(4)
    )
    binds = "".join(
        f"  - certificate: s{i}\n    target: {{type: aws-alb-listener, provider: aws, "
        "load_balancer: prod-alb, sni: true}\n"
        for i in range(4)
    )
    provider = aws.provider_yaml().rstrip().rstrip("}") + ", certificates_per_listener: 3}\n"
    ws.write(PKI + certs + "providers:\n" + provider + "bindings:\n" + binds)
    result = ws.run("validate")
    assert result.code == 1
    assert "bindings[3].target: listener prod-alb:443 would hold more than 3" in result.err
    ws.write(PKI + certs + "providers:\n" + aws.provider_yaml() + "bindings:\n" + binds)
    assert ws.run("validate").code == 0
