"""Throttling and 5xx from AWS: retried with backoff (botocore standard mode); when
retries run out, the step fails cleanly and the state says exactly what happened."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from tests.aws_lab import AwsLab
from tests.conftest import Workspace
from tests.fault_proxy import FaultProxy
from tests.test_aws_alb import PKI


@pytest.fixture
def proxy(aws: AwsLab) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(aws.url)
    yield fault_proxy
    fault_proxy.stop()


def config(proxy: FaultProxy, max_attempts: int) -> str:
    return (
        PKI
        + "providers:\n"
        + f"  aws: {{type: aws, region: eu-west-1, endpoint_url: '{proxy.url}', "
        + f"max_attempts: {max_attempts}}}\n"
        + "bindings:\n"
        + "  - certificate: web\n"
        + "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb}\n"
        + "  - certificate: api\n"
        + "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, "
        + "sni: true}\n"
    )


def test_throttling_and_5xx_are_retried(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    ws = workspace
    listener, _ = aws.https_load_balancer()
    proxy.fail = {
        "ImportCertificate": [400, 503],
        "ModifyListener": [503, 500],
        "AddListenerCertificates": [400],
        "DescribeListeners": [400],
    }
    ws.write(config(proxy, max_attempts=5))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert {action for action, _ in proxy.injected} == set(proxy.fail)
    assert all(not pending for pending in proxy.fail.values())
    default, sni = aws.listener_certificates(listener)
    assert default == aws.arn_for("certificate.web")
    assert sni == {aws.arn_for("certificate.api")}
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_exhausted_retries_fail_cleanly_and_state_says_what_happened(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    ws = workspace
    listener, placeholder = aws.https_load_balancer()
    proxy.fail = {"AddListenerCertificates": [503, 503, 503]}
    ws.write(config(proxy, max_attempts=2))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "Traceback" not in result.text
    assert "binding.aws-alb-listener:aws/prod-alb:443/sni/api: bind FAILED" in result.out
    assert "1 failed" in result.err
    # The default binding went through; the SNI binding is not recorded as done.
    plan = json.loads(ws.run("plan", "--json").out)
    assert [(c["address"], c["action"]) for c in plan["changes"]] == [
        ("binding.aws-alb-listener:aws/prod-alb:443/sni/api", "bind")
    ]
    with sqlite3.connect(ws.state_db) as db:
        audit = db.execute(
            "SELECT address, action, result FROM audit WHERE result = 'failed'"
        ).fetchall()
    assert audit == [("binding.aws-alb-listener:aws/prod-alb:443/sni/api", "bind", "failed")]
    assert aws.listener_certificates(listener)[0] != placeholder
    # The next apply retries and imports nothing twice.
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    summaries = aws.client("acm").list_certificates(
        Includes={"keyTypes": ["RSA_2048", "EC_prime256v1"]}
    )["CertificateSummaryList"]
    assert len(summaries) == 3, "placeholder, web and api: nothing imported twice"
    assert aws.listener_certificates(listener)[1] == {aws.arn_for("certificate.api")}


def test_retiring_a_copy_that_is_already_gone_is_decided_by_the_error_code(
    aws: AwsLab,
) -> None:
    """ACM answers ResourceNotFoundException for a copy deleted by hand: retire says
    nothing happened (the error code decides, not the message text); a copy that
    exists and is unused is deleted."""
    from reconciler.providers.aws.acm import retire

    acm = aws.client("acm")
    gone = acm.import_certificate(**_imported_pair())["CertificateArn"]
    acm.delete_certificate(CertificateArn=gone)
    assert retire(acm, gone) is None

    kept = acm.import_certificate(**_imported_pair())["CertificateArn"]
    assert retire(acm, kept) == f"deleted ACM certificate {kept}"
    assert kept not in {
        c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]
    }


def _imported_pair() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization

    from tests.selfsigned import self_signed

    certificate, key = self_signed("gone.example.test")
    return {
        "Certificate": certificate.public_bytes(serialization.Encoding.PEM),
        "PrivateKey": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
