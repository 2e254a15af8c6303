"""dns-01 through Route 53 (moto server): values at one name are merged, so a
wildcard and its apex can be validated together, and cleanup removes only its own."""

from __future__ import annotations

from reconciler.acme.solvers import dns_writer
from tests.aws_lab import AwsLab


def test_present_merges_and_cleanup_removes_only_its_value(aws: AwsLab) -> None:
    aws.client("route53").create_hosted_zone(Name="example.test", CallerReference="z")
    settings = {
        "route53": {
            "provider": "aws",
            "provider_settings": {"type": "aws", "region": "eu-west-1", "endpoint_url": aws.url},
        }
    }
    writer = dns_writer(settings)
    record = writer.record_name("*.web.example.test")
    assert record == "_acme-challenge.web.example.test"
    writer.present(record, "apex-token")
    writer.present(record, "wildcard-token")
    writer.wait_visible(record, "wildcard-token", 10)
    assert sorted(writer.dns.values(record, "TXT")) == ["apex-token", "wildcard-token"]
    writer.cleanup(record, "apex-token")
    assert writer.dns.values(record, "TXT") == ["wildcard-token"]
    writer.cleanup(record, "wildcard-token")
    writer.cleanup(record, "wildcard-token")  # already gone: fine
    assert writer.dns.values(record, "TXT") == []
