"""examples/aws-hybrid applied as a user would, against a moto server over HTTP and
a real nginx: the file is copied as is, only pointed at the lab (moto's endpoint,
the hosted zone moto made, the nginx the test runs, paths inside the workspace).

Checked: the exportable ACM certificate is served by the ALB (ACM's own ARN) and
by nginx (the exported certificate, seen in a TLS handshake, with the key that
matches it); the Private CA hierarchy exists in AWS Private CA and issued the
internal certificate; ``check`` puts an ACM-shaped event on the default bus and a
DaysToExpiry metric per certificate into CloudWatch; the next plan is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.aws import CountingProxy, Request
from tests import iam_lab
from tests.aws_lab import AwsLab
from tests.conftest import Workspace
from tests.nginx_lab import (
    NginxLab,
    ServerSpec,
    nginx_binary,
    served_serial_once_reloaded,
    write_self_signed,
)
from tests.test_aws_signals import _drain, _queue_for_rule

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aws-hybrid" / "certform.yaml"


@pytest.fixture
def nginx(workspace: Workspace) -> Iterator[NginxLab]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    tls = workspace.root / "nginx" / "tls"
    tls.mkdir(parents=True)
    write_self_signed(tls / "www.crt", tls / "www.key", "www.example.com")
    lab = NginxLab.start(
        workspace.root / "nginx", [ServerSpec("www.example.com", tls / "www.crt", tls / "www.key")]
    )
    yield lab
    lab.stop()


def pointed_at_the_lab(endpoint: str, nginx: NginxLab, zone_id: str) -> str:
    text = EXAMPLE.read_text()
    replacements = {
        "aws: {type: aws, region: eu-west-1}": (
            f"aws: {{type: aws, region: eu-west-1, endpoint_url: '{endpoint}'}}"
        ),
        "test_command: [sudo, nginx, -t]": f"test_command: {json.dumps(nginx.test_command)}",
        "reload_command: [sudo, systemctl, reload, nginx]": (
            f"reload_command: {json.dumps(nginx.reload_command)}"
        ),
        "/etc/nginx/tls/": "nginx/tls/",
        "/etc/payments/tls": "out/payments",
        "Z0EXAMPLE": zone_id,
    }
    for old, new in replacements.items():
        assert old in text, f"the example no longer says {old!r}"
        text = text.replace(old, new)
    return text


def _public(certificate_pem: bytes, key_pem: bytes) -> tuple[bytes, bytes]:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert_key = x509.load_pem_x509_certificate(certificate_pem).public_key().public_bytes(*spki)
    key = serialization.load_pem_private_key(key_pem, None).public_key().public_bytes(*spki)
    return cert_key, key


def test_the_aws_hybrid_example_applies_and_signals(
    workspace: Workspace, aws: AwsLab, nginx: NginxLab
) -> None:
    ws = workspace
    zone = aws.client("route53").create_hosted_zone(Name="example.com", CallerReference="z")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    aws.client("s3").create_bucket(
        Bucket="example-pca-crl", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    listener, placeholder = aws.https_load_balancer("web-alb")
    queue = _queue_for_rule(aws)
    requests: list[Request] = []
    proxy = CountingProxy(aws.url, observe=requests.append)  # records every AWS call
    ws.write(pointed_at_the_lab(proxy.url, nginx, zone_id))
    policy = json.loads(ws.ok("iam-policy").out)

    ws.ok("validate")
    applied = ws.run("apply", "--auto-approve")
    assert applied.code == 0, applied.text

    # The public certificate: ACM's ARN on the ALB, the exported copy in nginx.
    arn = aws.arn_for("certificate.www")
    assert arn is not None and aws.listener_certificates(listener)[0] == arn != placeholder
    expected = aws.acm_serial(arn)
    assert served_serial_once_reloaded(nginx.port, "www.example.com", expected) == expected
    cert, key = (
        (ws.root / "nginx/tls/www.crt").read_bytes(),
        (ws.root / "nginx/tls/www.key").read_bytes(),
    )
    assert _public(cert, key)[0] == _public(cert, key)[1]

    # The Private CA hierarchy as code, and the internal certificate it issued.
    pca = aws.client("acm-pca").list_certificate_authorities()["CertificateAuthorities"]
    assert sorted((ca["Type"], ca["Status"]) for ca in pca) == [
        ("ROOT", "ACTIVE"),
        ("SUBORDINATE", "ACTIVE"),
    ]
    internal = (ws.root / "out/payments/cert.pem").read_bytes()
    names = (
        x509.load_pem_x509_certificate(internal)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    assert names == ["payments.internal.example.com"]
    pair = _public(internal, (ws.root / "out/payments/key.pem").read_bytes())
    assert pair[0] == pair[1]
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Expiry signals, 340 days on (moto's Private CA signs for 365 days whatever the
    # validity asked): both certificates are inside the 45-day window.
    checked = ws.run("check", "--json", "--at", "+340d")
    assert checked.code in (0, 2), checked.text
    events = _drain(aws, queue)
    assert {e["detail-type"] for e in events} == {"ACM Certificate Approaching Expiration"}
    assert {e["detail"]["CommonName"] for e in events} == {
        "www.example.com",
        "payments.internal.example.com",
    }
    assert arn in {r for e in events for r in e["resources"]}
    metrics = aws.client("cloudwatch").list_metrics(Namespace="Certificates")["Metrics"]
    certificates = {
        d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "Certificate"
    }
    assert certificates == {"certificate.www", "certificate.payments-api"}
    assert "PRIVATE KEY" not in applied.text + checked.text

    # Every AWS call of the run is allowed by what `certform iam-policy` printed.
    proxy.stop()
    needed = {
        permission
        for r in requests
        for permission in iam_lab.permissions(
            r.method, r.path, r.headers, r.body, r.status, lambda region, key: key
        )
    }
    denied = sorted(f"{a} on {r}" for a, r in needed if not iam_lab.allows(policy, a, r))
    assert not denied, "calls the printed policy does not allow:\n  " + "\n  ".join(denied)
    assert {a for a, _ in needed} >= {
        "acm:ExportCertificate",
        "acm-pca:CreateCertificateAuthority",
        "acm-pca:IssueCertificate",
        "events:PutEvents",
        "cloudwatch:PutMetricData",
    }
