"""Route 53 as a DNS writer: TXT records for ACME dns-01, CNAME records for ACM's
DNS validation.  Zones are given by id or found by the longest matching name.

Every change is an UPSERT (idempotent) or a DELETE of exactly what was written,
and ``wait_in_sync`` polls GetChange with a short interval and a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.errors import ProviderError
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, client


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def iam_statements(
    provider: AwsProviderConfig, zone_id: str | None, record_type: str, *, reads: bool
) -> list[Statement]:
    """What writing ``record_type`` records through ``Route53Dns`` needs.

    ListHostedZones (no resource) only when the zone is found by name; changes
    limited to the zone when its id is given and to ``record_type`` records
    (``route53:ChangeResourceRecordSetsRecordTypes``); GetChange on changes;
    ListResourceRecordSets only for a writer that reads first (``reads``: ACME's
    TXT values are merged with those already there)."""
    where = partition(provider.region)
    zone = f"arn:{where}:route53:::hostedzone/{zone_id.split('/')[-1] if zone_id else '*'}"
    types = {
        "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": [record_type]}
    }
    statements = [
        Statement.of(
            f"Route53{record_type.title()}Records",
            ["route53:ChangeResourceRecordSets"],
            [zone],
            types,
        ),
        Statement.of("Route53Changes", ["route53:GetChange"], [f"arn:{where}:route53:::change/*"]),
    ]
    if reads:
        statements.append(Statement.of("Route53Zones", ["route53:ListResourceRecordSets"], [zone]))
    if zone_id is None:
        statements.append(Statement.of("Route53ListZones", ["route53:ListHostedZones"], ["*"]))
    return statements


@dataclass
class Route53Dns:
    provider: AwsProviderConfig
    zone_id: str | None = None

    def _r53(self) -> Any:
        return client(self.provider, "route53", "us-east-1")

    def zone_for(self, name: str) -> str:
        """The hosted zone id holding ``name``: the configured one, else the public or
        private zone with the longest name that is a suffix of ``name``."""
        if self.zone_id:
            return self.zone_id
        wanted = _fqdn(name.lower())
        best: tuple[int, str] | None = None
        with aws_errors("listing Route 53 hosted zones"):
            for page in self._r53().get_paginator("list_hosted_zones").paginate():
                for zone in page["HostedZones"]:
                    zone_name = zone["Name"].lower()
                    if (wanted == zone_name or wanted.endswith("." + zone_name)) and (
                        best is None or len(zone_name) > best[0]
                    ):
                        best = (len(zone_name), zone["Id"].split("/")[-1])
        if best is None:
            raise ProviderError(f"no Route 53 hosted zone holds {name}")
        return best[1]

    def upsert(self, name: str, record_type: str, values: Sequence[str], ttl: int = 60) -> str:
        """Create or replace one record set; return the change id to wait on."""
        return self._change("UPSERT", name, record_type, values, ttl)

    def delete(self, name: str, record_type: str, values: Sequence[str], ttl: int = 60) -> None:
        """Delete exactly the record set that was written; absent is fine."""
        try:
            self._change("DELETE", name, record_type, values, ttl)
        except ProviderError as exc:
            if "InvalidChangeBatch" not in str(exc):
                raise

    def _change(
        self, action: str, name: str, record_type: str, values: Sequence[str], ttl: int
    ) -> str:
        zone = self.zone_for(name)
        records = [
            {"Value": f'"{v}"' if record_type == "TXT" and not v.startswith('"') else v}
            for v in values
        ]
        batch = {
            "Changes": [
                {
                    "Action": action,
                    "ResourceRecordSet": {
                        "Name": _fqdn(name),
                        "Type": record_type,
                        "TTL": ttl,
                        "ResourceRecords": records,
                    },
                }
            ]
        }
        with aws_errors(f"Route 53 {action} {record_type} {name}"):
            response = self._r53().change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch)
        return str(response["ChangeInfo"]["Id"]).split("/")[-1]

    def wait_in_sync(
        self,
        change_id: str,
        timeout: float = 120.0,
        interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll GetChange until INSYNC; ProviderError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            with aws_errors(f"Route 53 change {change_id}"):
                status = self._r53().get_change(Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return
            if time.monotonic() >= deadline:
                raise ProviderError(f"Route 53 change {change_id} not in sync after {timeout:.0f}s")
            sleep(interval)

    def values(self, name: str, record_type: str) -> list[str]:
        """The values of one record set (empty when absent)."""
        zone = self.zone_for(name)
        with aws_errors(f"Route 53 read {record_type} {name}"):
            response = self._r53().list_resource_record_sets(
                HostedZoneId=zone, StartRecordName=_fqdn(name), StartRecordType=record_type,
                MaxItems="1",
            )  # fmt: skip
        for record_set in response["ResourceRecordSets"]:
            if record_set["Name"].lower() == _fqdn(name).lower() and record_set["Type"] == (
                record_type
            ):
                return [r["Value"].strip('"') for r in record_set.get("ResourceRecords", [])]
        return []
