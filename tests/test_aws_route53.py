"""The Route 53 DNS writer against moto server: zone lookup, UPSERT, INSYNC, DELETE."""

from __future__ import annotations

import pytest

from reconciler.errors import ProviderError
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.route53 import Route53Dns
from tests.aws_lab import AwsLab


def _dns(aws: AwsLab, zone_id: str | None = None) -> Route53Dns:
    provider = AwsProviderConfig(type="aws", region="eu-west-1", endpoint_url=aws.url)
    return Route53Dns(provider, zone_id)


def _zone(aws: AwsLab, name: str) -> str:
    zone = aws.client("route53").create_hosted_zone(Name=name, CallerReference=name)
    return str(zone["HostedZone"]["Id"].split("/")[-1])


def test_longest_zone_wins_and_txt_round_trip(aws: AwsLab) -> None:
    outer = _zone(aws, "example.test")
    inner = _zone(aws, "acme.example.test")
    dns = _dns(aws)
    assert dns.zone_for("_acme-challenge.www.example.test") == outer
    assert dns.zone_for("_acme-challenge.web.acme.example.test") == inner
    name = "_acme-challenge.web.acme.example.test"
    change = dns.upsert(name, "TXT", ["token-1", "token-2"])
    dns.wait_in_sync(change, timeout=10, interval=0.1)
    assert sorted(dns.values(name, "TXT")) == ["token-1", "token-2"]
    dns.upsert(name, "TXT", ["token-3"])  # UPSERT replaces
    assert dns.values(name, "TXT") == ["token-3"]
    dns.delete(name, "TXT", ["token-3"])
    assert dns.values(name, "TXT") == []
    dns.delete(name, "TXT", ["token-3"])  # deleting what is gone is fine


def test_cname_for_acm_validation_in_a_given_zone(aws: AwsLab) -> None:
    zone = _zone(aws, "example.test")
    dns = _dns(aws, zone)
    dns.upsert("_x1.api.example.test", "CNAME", ["_y1.acm-validations.aws."])
    assert dns.values("_x1.api.example.test", "CNAME") == ["_y1.acm-validations.aws."]


def test_no_zone_is_a_clear_error(aws: AwsLab) -> None:
    with pytest.raises(ProviderError, match=r"no Route 53 hosted zone holds www\.other\.test"):
        _dns(aws).zone_for("www.other.test")


def test_wait_gives_up_at_the_deadline(aws: AwsLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto answers INSYNC at once; a PENDING answer is layered over its real reply."""
    zone = _zone(aws, "example.test")
    dns = _dns(aws, zone)
    change = dns.upsert("_t.example.test", "TXT", ["v"])
    real = dns._r53()

    class Pending:
        def get_change(self, Id: str) -> dict:
            answer = real.get_change(Id=Id)
            answer["ChangeInfo"]["Status"] = "PENDING"
            return answer

    monkeypatch.setattr(dns, "_r53", lambda: Pending())
    with pytest.raises(ProviderError, match="not in sync after 0s"):
        dns.wait_in_sync(change, timeout=0.2, interval=0.05)
