"""Adopting what already runs in AWS, against the moto server: `import --from-aws`
proposes YAML for every ACM certificate and where it is used (load balancer
default and SNI certificates, API Gateway v1/v2 domains, CloudFront), and
`import ADDRESS --acm-arn ARN` records ACM-issued and hand-imported certificates
with the bindings serving them, so that the next plan has nothing to do.

moto's limits met here: RequestCertificate ignores KeyAlgorithm (ACM-issued
certificates are RSA 2048 whatever was asked), DescribeCertificate's InUseBy is
always empty (so usage is found from the services themselves, as certform does
anyway), and API Gateway v1 and v2 domains are separate in moto (one namespace
in AWS)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from reconciler.pki.keys import private_key_to_der
from tests.adoption_trees import Authority
from tests.aws_lab import REGION, AwsLab
from tests.conftest import Workspace
from tests.test_aws_cloudfront import US_EAST_1, create_distribution, set_viewer_certificate


def _issued(aws: AwsLab, names: list[str], region: str = REGION) -> str:
    """An ACM-issued certificate (moto issues it after MOTO_ACM_VALIDATION_WAIT)."""
    acm = aws.client("acm", region)
    arn = acm.request_certificate(
        DomainName=names[0], SubjectAlternativeNames=names, ValidationMethod="DNS"
    )["CertificateArn"]
    deadline = time.monotonic() + 30
    while acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] != "ISSUED":
        assert time.monotonic() < deadline, "moto never issued"
        time.sleep(0.2)
    return str(arn)


def _imported(aws: AwsLab, ws: Workspace, name: str) -> str:
    """A certificate imported into ACM by hand, its files kept in conf/certs/."""
    ca = Authority()
    cert, key = ca.leaf([f"{name}.example.test"])
    certs = ws.root / "conf" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / f"{name}.pem").write_text(cert)
    (certs / f"{name}.key").write_bytes(key)
    (certs / f"{name}-chain.pem").write_text(ca.chain_pem)
    answer = aws.client("acm").import_certificate(
        Certificate=cert.encode(), PrivateKey=key, CertificateChain=ca.chain_pem.encode()
    )
    return str(answer["CertificateArn"])


def _world(aws: AwsLab, ws: Workspace) -> dict[str, str]:
    """What runs: an ALB serving `web` (default) and `legacy` (SNI, imported by
    hand), `api` on an API Gateway v1 regional domain and a v2 domain."""
    listener, _ = aws.https_load_balancer()
    arns = {
        "web": _issued(aws, ["web.example.test", "www.example.test"]),
        "api": _issued(aws, ["api.example.test"]),
        "legacy": _imported(aws, ws, "legacy"),
    }
    elb = aws.client("elbv2")
    elb.modify_listener(ListenerArn=listener, Certificates=[{"CertificateArn": arns["web"]}])
    elb.add_listener_certificates(
        ListenerArn=listener, Certificates=[{"CertificateArn": arns["legacy"]}]
    )
    aws.client("apigateway").create_domain_name(
        domainName="api.example.test",
        regionalCertificateArn=arns["api"],
        endpointConfiguration={"types": ["REGIONAL"]},
    )
    aws.client("apigatewayv2").create_domain_name(
        DomainName="v2.example.test",
        DomainNameConfigurations=[{"CertificateArn": arns["api"], "EndpointType": "REGIONAL"}],
    )
    return arns


def _conf(ws: Workspace, aws: AwsLab, region: str = REGION) -> Path:
    conf = ws.root / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "providers.yaml").write_text("providers:\n" + aws.provider_yaml(region=region))
    return conf


def _tags(aws: AwsLab, arn: str, region: str = REGION) -> dict[str, str]:
    tags = aws.client("acm", region).list_tags_for_certificate(CertificateArn=arn)["Tags"]
    return {t["Key"]: t["Value"] for t in tags}


def test_adopt_a_region_without_reissuing(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    arns = _world(aws, ws)
    conf = _conf(ws, aws)

    proposed = ws.ok("import", "--from-aws", "--region", REGION, "-c", "conf")
    document = yaml.safe_load(proposed.out)
    assert "providers" not in document  # the config's own aws provider is used
    assert document["authorities"] == {
        "acm": {"type": "aws-acm", "provider": "aws", "region": REGION}
    }
    assert document["certificates"] == {
        "web-example-test": {
            "issuer": "acm",
            "names": ["web.example.test", "www.example.test"],
            "key": "rsa-2048",
        },
        "api-example-test": {"issuer": "acm", "names": ["api.example.test"], "key": "rsa-2048"},
    }
    assert document["bindings"] == [
        {
            "certificate": "web-example-test",
            "target": {
                "type": "aws-alb-listener",
                "provider": "aws",
                "load_balancer": "prod-alb",
                "port": 443,
            },
        },
        {
            "certificate": "api-example-test",
            "target": {
                "type": "aws-apigateway",
                "provider": "aws",
                "domain_name": "api.example.test",
                "endpoint": "regional",
            },
        },
        {
            "certificate": "api-example-test",
            "target": {
                "type": "aws-apigateway",
                "provider": "aws",
                "domain_name": "v2.example.test",
                "endpoint": "regional",
                "api": "v2",
            },
        },
    ]
    out = proposed.out
    assert f"#   certform import certificate.web-example-test --acm-arn {arns['web']}" in out
    assert f"# {arns['legacy']} was imported into ACM by hand" in out
    assert (f"--acm-arn {arns['legacy']} --key certs/legacy-example-test.key") in out
    assert "#       sni: true" in out  # its SNI binding, commented out with it

    (conf / "adopted.yaml").write_text(out)
    assert ws.run("validate", "-c", "conf").code == 0
    assert ws.run("plan", "-c", "conf", "--detailed-exitcode").code == 2  # would issue
    for name in ("web", "api"):
        result = ws.ok(
            "import", f"certificate.{name}-example-test", "--acm-arn", arns[name], "-c", "conf"
        )
        assert f"Imported certificate.{name}-example-test from {arns[name]} (AMAZON_ISSUED" in (
            result.out
        )
        assert _tags(aws, arns[name]) == {
            "managed-by": "certform",
            "certform:address": f"certificate.{name}-example-test",
        }
    assert "binding.aws-apigateway:aws/v2.example.test: already serves it; recorded" in result.out

    # The hand-imported one: its files, an imported authority, its SNI binding; --key.
    (conf / "legacy.yaml").write_text(
        "authorities:\n  ext: {type: imported}\n"
        "certificates:\n  legacy:\n    issuer: ext\n    certificate: certs/legacy.pem\n"
        "    chain: certs/legacy-chain.pem\n    private_key: certs/legacy.key\n"
        "bindings:\n  - certificate: legacy\n    target: {type: aws-alb-listener, provider: aws,"
        " load_balancer: prod-alb, port: 443, sni: true}\n"
    )
    refused = ws.run("import", "certificate.legacy", "--acm-arn", arns["legacy"], "-c", "conf")
    assert refused.code == 1
    assert (
        "was imported into ACM, which never gives its private key back: pass the key "
        "file with --key" in refused.err
    )
    result = ws.ok(
        "import",
        "certificate.legacy",
        "--acm-arn",
        arns["legacy"],
        "--key",
        "certs/legacy.key",
        "-c",
        "conf",
    )
    assert "(IMPORTED," in result.out
    assert "binding.aws-alb-listener:aws/prod-alb:443/sni/legacy: already serves it" in result.out
    assert "PRIVATE KEY" not in result.text

    plan = ws.run("plan", "-c", "conf", "--detailed-exitcode")
    assert plan.code == 0, plan.text
    listed = ws.ok("state", "list", "-c", "conf").out
    assert (
        "certificate.legacy" in listed and "binding.aws-apigateway:aws/api.example.test" in listed
    )
    records = json.loads(ws.ok("audit", "-c", "conf", "--json").out)["records"]
    assert any(f"adopted {arns['legacy']} (IMPORTED)" in r["detail"] for r in records), records
    # The sealed key is the file's key (a changed file re-imports into the same ARN).
    key = serialization.load_pem_private_key((conf / "certs/legacy.key").read_bytes(), None)
    assert _sealed_key(ws, conf, "legacy") == private_key_to_der(key)  # type: ignore[arg-type]


def test_cloudfront_distributions_are_proposed_for_us_east_1(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    arn = _issued(aws, ["cdn.example.test"], US_EAST_1)
    distribution = create_distribution(aws, aliases=("cdn.example.test",))
    set_viewer_certificate(
        aws,
        distribution,
        ACMCertificateArn=arn,
        SSLSupportMethod="sni-only",
        MinimumProtocolVersion="TLSv1.2_2019",
    )
    conf = _conf(ws, aws, REGION)  # the config's provider is in eu-west-1
    proposed = ws.ok("import", "--from-aws", "--region", US_EAST_1, "-c", "conf")
    document = yaml.safe_load(proposed.out)
    provider = f"aws-{US_EAST_1}"
    assert document["providers"][provider]["region"] == US_EAST_1
    assert document["providers"][provider]["endpoint_url"] == aws.url
    assert document["bindings"] == [
        {
            "certificate": "cdn-example-test",
            "target": {
                "type": "aws-cloudfront",
                "provider": provider,
                "distribution_id": distribution,
                "minimum_protocol_version": "TLSv1.2_2019",
            },
        }
    ]
    (conf / "adopted.yaml").write_text(proposed.out)
    result = ws.ok("import", "cdn-example-test", "--acm-arn", arn, "-c", "conf")
    assert f"binding.aws-cloudfront:{provider}/{distribution}: already serves it" in result.out
    assert ws.run("plan", "-c", "conf", "--detailed-exitcode").code == 0


def _rows(conf: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(conf / ".certform" / "state.db")) as db:
        return db.execute("SELECT name, serial, external_id FROM certificates").fetchall()


def _declare(conf: Path, body: str) -> None:
    (conf / "site.yaml").write_text(body)


def test_acm_imports_that_do_not_fit_are_refused_and_change_nothing(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    conf = _conf(ws, aws)
    web = _issued(aws, ["web.example.test"])
    legacy = _imported(aws, ws, "legacy")
    other_ca = Authority()
    _, other_key = other_ca.leaf(["legacy.example.test"])
    (conf / "certs" / "other.key").write_bytes(other_key)
    acm_site = (
        "authorities:\n  acm: {type: aws-acm, provider: aws}\n"
        "certificates:\n  site: {issuer: acm, names: [NAMES], key: rsa-2048}\n"
    )
    imported_site = (
        "authorities:\n  ext: {type: imported}\ncertificates:\n  site: {issuer: "
        "ext, certificate: certs/legacy.pem, private_key: certs/legacy.key}\n"
    )
    cases: list[tuple[str, tuple[str, ...], str]] = [
        (
            acm_site.replace("NAMES", "web.example.test"),
            ("other", "--acm-arn", web),
            "certificate.other is not declared in the configuration; declare it first",
        ),
        (
            acm_site.replace("NAMES", "www.example.test"),
            ("site", "--acm-arn", web),
            f"{web} is for web.example.test; certificate.site declares www.example.test",
        ),
        (
            acm_site.replace("NAMES", "web.example.test").replace("rsa-2048", "ec-p256"),
            ("site", "--acm-arn", web),
            "has a rsa-2048 key; certificate.site declares key: ec-p256",
        ),
        (
            imported_site,
            ("site", "--acm-arn", web),
            f"{web} was issued by ACM (AMAZON_ISSUED): declare certificate.site with issuer: an "
            "aws-acm authority",
        ),
        (
            acm_site.replace("NAMES", "legacy.example.test"),
            ("site", "--acm-arn", legacy),
            f"{legacy} was imported into ACM: declare certificate.site under an imported authority",
        ),
        (
            imported_site,
            ("site", "--acm-arn", legacy, "--key", "certs/other.key"),
            "--key certs/other.key: the private key in certs/other.key does not match",
        ),
        (
            acm_site.replace("NAMES", "web.example.test"),
            ("site", "--acm-arn", web.replace("certificate/", "certificate/0")),
            "ResourceNotFoundException",
        ),
    ]
    for body, args, message in cases:
        _declare(conf, body)
        result = ws.run("import", *args, "-c", "conf")
        assert result.code == 1 and message in result.err, (args, result.text)
        assert "Traceback" not in result.err and "PRIVATE KEY" not in result.text
    assert not (conf / ".certform" / "state.db").exists()
    assert _tags(aws, web) == {}, "nothing is tagged before every check passed"

    # A declared binding that does not serve the ARN yet is left to apply.
    unbound = (
        "bindings:\n  - {certificate: site, target: {type: aws-alb-listener, provider: aws, "
        "load_balancer: new-alb}}\n"
    )
    _declare(conf, acm_site.replace("NAMES", "web.example.test") + unbound)
    adopted = ws.ok("import", "site", "--acm-arn", web, "-c", "conf")
    assert (
        "  binding.aws-alb-listener:aws/new-alb:443/default: load balancer new-alb not found; "
        "the next apply binds it"
    ) in adopted.out
    before = _rows(conf)
    again = ws.run("import", "site", "--acm-arn", web, "-c", "conf")
    assert again.code == 1 and "certificate.site is already in the state" in again.err
    assert _rows(conf) == before
    plan = json.loads(ws.ok("plan", "-c", "conf", "--json").out)
    assert [(c["address"], c["action"]) for c in plan["changes"]] == [
        ("binding.aws-alb-listener:aws/new-alb:443/default", "bind")
    ]


def _sealed_key(ws: Workspace, conf: Path, name: str) -> bytes:
    """The key the state sealed for certificate ``name`` of the config in ``conf``."""
    from reconciler.session import Session
    from tests.conftest import MASTER_KEY

    previous = os.environ.get(MASTER_KEY)
    os.environ[MASTER_KEY] = ws.env[MASTER_KEY]
    store = Session(conf).open_store()
    try:
        store.open()
        return store.private_key("certificate", name)
    finally:
        store.close()
        if previous is None:
            del os.environ[MASTER_KEY]
        else:
            os.environ[MASTER_KEY] = previous
