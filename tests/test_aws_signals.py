"""Expiry signals where AWS users already watch, and CRLs in S3, through the real CLI
against a moto server over HTTP:

- the ``eventbridge`` notification sink: events read back from an SQS queue that an
  EventBridge rule (matching ACM's detail-type) targets, with ACM's detail and
  resources (the ACM ARN for an ACM-issued certificate, the address otherwise);
  13 events, so PutEvents (at most 10 entries, which moto enforces) is batched;
- ``cloudwatch:`` and ``check --cloudwatch``: DaysToExpiry read back with
  ListMetrics and GetMetricData, dimensions Certificate and CertificateArn;
- delivery failures (an unreachable endpoint) exit 1 and name the sink;
- ``crl: {publish: {s3: ...}}``: the object read back and checked with
  ``openssl crl -CAfile`` and ``openssl verify -crl_check`` after ``certform revoke``;
  drift of the object (changed, deleted) is planned as a republish.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.aws_lab import AwsLab
from tests.conftest import EXAMPLE, Workspace

EXTRA = "".join(
    f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n    validity: 90d\n"
    for i in range(10)
)
ACM = """\
  acm:
    type: aws-acm
    provider: aws
    timeout: 60s
"""
SITE = """\
  site:
    names: [www.example.test]
    issuer: acm
    key: ec-p256
"""


def _config(aws: AwsLab, signals: str = "", dead: bool = False) -> str:
    text = EXAMPLE.replace("certificates:\n", ACM + "certificates:\n" + SITE + EXTRA)
    text += "providers:\n" + aws.provider_yaml()
    if dead:  # nothing listens there: every call fails fast
        text += "  dead: {type: aws, region: eu-west-1, endpoint_url: 'http://127.0.0.1:9', "
        text += "max_attempts: 1}\n"
    return text + signals


def _acm_zone(aws: AwsLab) -> None:
    aws.client("route53").create_hosted_zone(Name="example.test", CallerReference="z")


def _queue_for_rule(aws: AwsLab) -> str:
    """An SQS queue that an EventBridge rule on the default bus feeds, matching
    ACM's detail-type as an existing ACM rule would (its source aside)."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="expiry")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = aws.client("events")
    pattern = {"detail-type": ["ACM Certificate Approaching Expiration"]}
    events.put_rule(Name="acm-expiry", EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule="acm-expiry", Targets=[{"Id": "queue", "Arn": arn}])
    return str(url)


def _drain(aws: AwsLab, url: str) -> list[dict]:  # type: ignore[type-arg]
    sqs = aws.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


EVENTBRIDGE = """\
notifications:
  days: 397
  sinks:
    - {type: eventbridge, provider: aws, bus: default}
"""


def test_eventbridge_sink_sends_acm_shaped_events_in_batches(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    _acm_zone(aws)
    queue = _queue_for_rule(aws)
    ws.write(_config(aws, EVENTBRIDGE))
    assert ws.run("apply", "--auto-approve", timeout=180).code == 0
    arn = aws.arn_for("certificate.site")
    assert arn is not None

    result = ws.run("check")
    assert result.code in (0, 2), result.text  # 2: something due; never 1 (delivery)
    assert "Notifications: eventbridge default (aws): 13 sent, 0 failed" in result.err
    events = {e["detail"]["CommonName"]: e for e in _drain(aws, queue)}
    assert len(events) == 13  # 13 > 10: two PutEvents calls, or moto refuses them
    web = events["web.example.test"]
    assert web["detail-type"] == "ACM Certificate Approaching Expiration"
    assert web["source"] == "certform"
    assert web["resources"] == ["certificate.web"]
    assert set(web["detail"]) == {"DaysToExpiry", "CommonName"}
    assert web["detail"]["DaysToExpiry"] in (89, 90)
    site = events["www.example.test"]
    assert site["resources"] == [arn]
    not_after = aws.client("acm").describe_certificate(CertificateArn=arn)["Certificate"][
        "NotAfter"
    ]
    assert site["detail"]["DaysToExpiry"] == (not_after - datetime.now(UTC)).days


def test_eventbridge_delivery_failure_exits_1_and_names_the_sink(
    workspace: Workspace, aws: AwsLab
) -> None:
    sink = EVENTBRIDGE.replace("provider: aws, bus: default", "provider: dead, bus: ops")
    workspace.write(_config(aws, sink, dead=True).replace(ACM, "").replace(SITE, ""))
    workspace.ok("apply", "--auto-approve")
    result = workspace.run("check", "--json")
    assert result.code == 1, result.text
    assert "Notifications: eventbridge ops (dead): 0 sent, 12 failed (PutEvents: " in result.err
    assert "not attempted: an earlier PutEvents call failed" in result.err
    report = json.loads(result.out)["notifications"][0]
    assert len(report["failed"]) == 12 and report["sent"] == []
    assert workspace.env["CERTFORM_MASTER_KEY"] not in result.text


def _metric_values(aws: AwsLab, namespace: str) -> dict[str, tuple[float, dict[str, str]]]:
    """DaysToExpiry by Certificate dimension: (latest value, all dimensions)."""
    cloudwatch = aws.client("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace=namespace, MetricName="DaysToExpiry")["Metrics"]
    now = datetime.now(UTC)
    found = {}
    for index, metric in enumerate(metrics):
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": f"m{index}",
                    "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"},
                }
            ],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=10),
        )["MetricDataResults"][0]
        found[dimensions["Certificate"]] = (answer["Values"][0], dimensions)
    return found


def test_cloudwatch_block_publishes_days_to_expiry_with_acm_dimensions(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    _acm_zone(aws)
    ws.write(_config(aws, "cloudwatch: {provider: aws, namespace: Certs/Prod}\n"))
    assert ws.run("apply", "--auto-approve", timeout=180).code == 0
    arn = aws.arn_for("certificate.site")
    result = ws.run("check")
    assert result.code in (0, 2), result.text
    assert "CloudWatch: cloudwatch Certs/Prod (aws): 13 sent, 0 failed" in result.err
    found = _metric_values(aws, "Certs/Prod")
    assert len(found) == 13
    value, dimensions = found["certificate.web"]
    assert dimensions == {"Certificate": "certificate.web"} and value in (89.0, 90.0)
    value, dimensions = found["certificate.site"]
    assert dimensions == {"Certificate": "certificate.site", "CertificateArn": arn}
    not_after = aws.client("acm").describe_certificate(CertificateArn=arn)["Certificate"][
        "NotAfter"
    ]
    assert value == (not_after - datetime.now(UTC)).days


def test_check_cloudwatch_flag_defaults_and_failures(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(_config(aws).replace(ACM, "").replace(SITE, ""))
    ws.ok("apply", "--auto-approve")
    plain = ws.run("check")
    assert "CloudWatch" not in plain.err and plain.code in (0, 2)
    assert aws.client("cloudwatch").list_metrics()["Metrics"] == []

    flagged = ws.run("check", "--cloudwatch", "--json")
    assert flagged.code in (0, 2), flagged.text
    assert json.loads(flagged.out)["cloudwatch"]["sink"] == "cloudwatch certform (aws)"
    found = _metric_values(aws, "certform")
    assert set(found) == {"certificate.web", "certificate.api"} | {
        f"certificate.c{i}" for i in range(10)
    }
    later = ws.run("check", "--cloudwatch", "--at", "+100d")
    assert later.code == 2, later.text  # expired: reported, and still published (negative)

    ws.write(
        _config(aws, "cloudwatch: {provider: dead}\n", dead=True).replace(ACM, "").replace(SITE, "")
    )
    failed = ws.run("check")
    assert failed.code == 1, failed.text
    assert (
        "CloudWatch: cloudwatch certform (dead): 0 sent, 12 failed (PutMetricData: " in failed.err
    )

    ws.write(EXAMPLE)
    no_provider = ws.run("check", "--cloudwatch")
    assert no_provider.code == 1
    assert "check --cloudwatch: no aws provider under providers:" in no_provider.err
    assert "Traceback" not in no_provider.text


# -- CRLs in S3 -----------------------------------------------------------------------
URL = "http://crls.example.test/issuing.crl"
DEAD_ENDPOINT = "endpoint_url: 'http://127.0.0.1:9', max_attempts: 1"


def _crl_config(
    aws: AwsLab, publish: str = "{s3: {provider: aws, bucket: crls, key: ca/issuing.crl}}"
) -> str:
    block = f"    crl: {{publish: {publish}, validity: 7d, url: '{URL}'}}\n"
    anchor = "    name_constraints: {permitted: [example.test]}\n"
    return EXAMPLE.replace(anchor, anchor + block) + "providers:\n" + aws.provider_yaml()


def _openssl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False)


def _fetch_crl(aws: AwsLab, tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    answer = aws.client("s3").get_object(Bucket="crls", Key="ca/issuing.crl")
    der = tmp_path / "issuing.crl"
    der.write_bytes(answer["Body"].read())
    pem = tmp_path / "issuing.crl.pem"
    converted = _openssl("crl", "-inform", "DER", "-in", str(der), "-out", str(pem))
    assert converted.returncode == 0, converted.stderr
    return pem, answer


def _verify(ws: Workspace, crl: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    out = ws.root / "out/web"
    return _openssl(
        "verify", "-crl_check", "-CRLfile", str(crl), "-CAfile", str(out / "ca.pem"),
        "-untrusted", str(out / "chain.pem"), str(cert),
    )  # fmt: skip


def test_crl_published_to_s3_verified_by_openssl_and_drift_observed(
    workspace: Workspace, aws: AwsLab, tmp_path: Path
) -> None:
    ws = workspace
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="crls", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ws.write(_crl_config(aws))
    ws.ok("apply", "--auto-approve")
    assert not (ws.root / "crl").exists(), "s3 only: no directory written"
    pem, answer = _fetch_crl(aws, tmp_path)
    assert answer["ContentType"] == "application/pkix-crl"
    chain = ws.root / "out/web/chain.pem"
    checked = _openssl("crl", "-in", str(pem), "-CAfile", str(chain), "-noout")
    assert checked.returncode == 0 and "verify OK" in checked.stderr + checked.stdout
    cert = ws.root / "out/web/cert.pem"
    assert _verify(ws, pem, cert).returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0

    old = tmp_path / "old-web.pem"
    old.write_bytes(cert.read_bytes())
    ws.ok("revoke", "web", "--reason", "keyCompromise")
    ws.ok("apply", "--auto-approve")
    pem, _ = _fetch_crl(aws, tmp_path)
    revoked = _verify(ws, pem, old)
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    renewed = _verify(ws, pem, cert)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert ws.run("plan", "--detailed-exitcode").code == 0

    s3.put_object(Bucket="crls", Key="ca/issuing.crl", Body=b"not a CRL")
    plan = ws.run("plan")
    assert "drift: s3://crls/ca/issuing.crl changed in S3" in plan.out, plan.text
    s3.delete_object(Bucket="crls", Key="ca/issuing.crl")
    plan = ws.run("plan")
    assert "drift: s3://crls/ca/issuing.crl missing" in plan.out, plan.text
    ws.ok("apply", "--auto-approve")
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert _fetch_crl(aws, tmp_path)[1]["ContentType"] == "application/pkix-crl"

    ws.write(_crl_config(aws).replace(f"endpoint_url: '{aws.url}'", DEAD_ENDPOINT))
    plan = ws.run("plan")
    assert "crl.issuing unreachable: " in plan.text, plan.text
    assert "crl.issuing will be published" not in plan.out


def test_crl_to_directory_and_s3_and_a_missing_bucket(
    workspace: Workspace, aws: AwsLab, tmp_path: Path
) -> None:
    ws = workspace
    both = "{directory: crl, s3: {provider: aws, bucket: crls, key: ca/issuing.crl}}"
    ws.write(_crl_config(aws, both))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "publishing the CRL to s3://crls/ca/issuing.crl: NoSuchBucket" in result.text
    assert "Traceback" not in result.text
    aws.client("s3").create_bucket(
        Bucket="crls", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    plan = ws.run("plan")
    assert "crl.issuing will be published" in plan.out
    ws.ok("apply", "--auto-approve")
    pem, _ = _fetch_crl(aws, tmp_path)
    assert pem.read_text() == (ws.root / "crl/issuing.crl.pem").read_text()
    assert ws.run("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(
    ("signals", "marker", "message"),
    [
        (
            "notifications: {sinks: [{type: eventbridge, provider: nowhere}]}\n",
            "nowhere",
            "unknown aws provider 'nowhere'",
        ),
        (
            "notifications: {sinks: [{type: eventbridge, provider: aws, source: aws.acm}]}\n",
            "aws.acm",
            "sources starting with aws. are reserved for AWS services",
        ),
        ("cloudwatch: {provider: nowhere}\n", "cloudwatch", "unknown aws provider 'nowhere'"),
        (
            "cloudwatch: {provider: aws, namespace: AWS/CertificateManager}\n",
            "cloudwatch",
            "namespaces starting with AWS/ are reserved for AWS services",
        ),
    ],
)
def test_signal_config_errors(
    workspace: Workspace, aws: AwsLab, signals: str, marker: str, message: str
) -> None:
    text = _config(aws, signals).replace(ACM, "").replace(SITE, "")
    workspace.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    result = workspace.run("validate")
    assert result.code == 1
    assert f"certform.yaml:{line}" in result.err and message in result.err, result.text
    assert "Traceback" not in result.text


@pytest.mark.parametrize(
    ("publish", "url", "message"),
    [
        ("{}", URL, "give directory, s3 or both"),
        (
            "{s3: {provider: nowhere, bucket: crls, key: a.crl}}",
            URL,
            "unknown aws provider 'nowhere'",
        ),
        ("{s3: {provider: aws, bucket: Bad_Bucket, key: a.crl}}", URL, "bucket"),
        (
            "{s3: {provider: aws, bucket: crls, key: a.crl}}",
            "http://crls.example.test/{key_id}.crl",
            "publish.s3.key must contain {key_id} exactly when url does",
        ),
    ],
)
def test_crl_s3_config_errors(
    workspace: Workspace, aws: AwsLab, publish: str, url: str, message: str
) -> None:
    text = _crl_config(aws, publish).replace(URL, url)
    workspace.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "crl: {publish" in t)
    result = workspace.run("validate")
    assert result.code == 1
    assert f"certform.yaml:{line}" in result.err and message in result.err, result.text
    assert "Traceback" not in result.text


# -- pure parts -----------------------------------------------------------------------
def test_cloudwatch_batches_stay_within_put_metric_data_limits() -> None:
    from reconciler.monitoring.cloudwatch import MAX_BYTES, batches, metric_data
    from reconciler.monitoring.prometheus import CertificateMetric

    now = datetime(2025, 6, 1, tzinfo=UTC)

    def fleet(count: int, name_length: int) -> list[CertificateMetric]:
        return [
            CertificateMetric(
                f"{i:05d}".ljust(name_length, "x"),
                "ca",
                {},
                now,
                now + timedelta(days=30),
                None,
                revoked=False,
            )
            for i in range(count)
        ]

    data = metric_data(
        [*fleet(2500, 5), CertificateMetric("new", "ca", {}, None, None, None, False)], now
    )
    assert [len(b) for b in batches(data)] == [1000, 1000, 500]  # "new" is not issued
    assert data[0]["Value"] == 30.0 and data[0]["Dimensions"] == [
        {"Name": "Certificate", "Value": "certificate.00000"}
    ]
    large = list(batches(metric_data(fleet(1000, 900), now)))
    assert len(large) > 1 and all(len(json.dumps(b, default=str)) <= MAX_BYTES for b in large)


def test_eventbridge_entries_for_expired_and_revoked() -> None:
    from reconciler.monitoring.eventbridge import acm_entry
    from reconciler.monitoring.notifications import EventBridgeSink, expiry_events
    from reconciler.monitoring.prometheus import CertificateMetric

    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/x"
    fleet = [
        CertificateMetric("old", "ca", {}, now - timedelta(days=90), now - timedelta(days=1),
                          None, False, common_name="old.example.test", arn=arn),
        CertificateMetric("bad", "ca", {}, now, now + timedelta(days=9), None, True),
    ]  # fmt: skip
    sink = EventBridgeSink(type="eventbridge", provider="aws", source="com.example.certs")
    bad, old = (acm_entry(e, sink) for e in expiry_events(fleet, now))
    assert old["DetailType"] == "ACM Certificate Expired" and old["Resources"] == [arn]
    assert json.loads(old["Detail"]) == {
        "CommonName": "old.example.test",
        "CertificateExpirationDate": "2025-05-31T12:00:00Z",
    }
    assert old["Source"] == "com.example.certs" and old["EventBusName"] == "default"
    assert bad["DetailType"] == "Certificate Revoked"  # ACM has no such event: certform's
    assert bad["Resources"] == ["certificate.bad"] and json.loads(bad["Detail"])["name"] == "bad"
