"""``DaysToExpiry`` per certificate in CloudWatch, like ACM's own metric.

ACM publishes ``DaysToExpiry`` (namespace ``AWS/CertificateManager``, dimension
``CertificateArn``) for the certificates it holds; ``certform check`` publishes
the same metric for every issued certificate it manages, in its own namespace
(``AWS/`` is reserved), with the dimension ``Certificate`` (the certform address)
and, when ACM holds the certificate, ``CertificateArn`` as ACM does.  Alarms
copied from ACM's metric need only the namespace and dimensions changed.

``metric_data`` and ``batches`` are pure; ``publish`` makes the PutMetricData
calls (up to 1,000 metrics and 1 MB per call, the API's limits).  This module is
imported by the config models: boto3 only on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from reconciler.config.types import StrictModel
from reconciler.monitoring.notifications import DeliveryFailure, DeliveryReport

if TYPE_CHECKING:
    from reconciler.monitoring.prometheus import CertificateMetric
    from reconciler.providers.aws.iam import Statement

METRIC = "DaysToExpiry"
DEFAULT_NAMESPACE = "certform"
MAX_METRICS = 1000
"""PutMetricData: at most 1,000 different metrics per request."""
MAX_BYTES = 512 * 1024
"""Half of PutMetricData's 1 MB request limit, measured as JSON: the wire form
(query or CBOR) of the same data is never twice as long."""


class CloudWatchConfig(StrictModel):
    """``cloudwatch:``: ``certform check`` publishes DaysToExpiry per certificate."""

    provider: str = Field(min_length=1, description="The aws provider entry to publish with.")
    namespace: str = Field(
        default=DEFAULT_NAMESPACE,
        max_length=255,
        pattern=r"^[0-9A-Za-z._\-/#: ]*[0-9A-Za-z._\-/#:][0-9A-Za-z._\-/#: ]*$",
        description="The metric namespace (CloudWatch reserves AWS/).",
    )

    @field_validator("namespace")
    @classmethod
    def _not_aws(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("namespaces starting with AWS/ are reserved for AWS services")
        return value


def days_to_expiry(not_after: datetime, now: datetime) -> int:
    """Whole days left, as ACM counts them (negative once expired)."""
    return (_utc(not_after) - _utc(now)).days


def metric_data(certificates: Sequence[CertificateMetric], now: datetime) -> list[dict[str, Any]]:
    """Pure: one datum per issued certificate, ordered by name."""
    data = []
    for certificate in sorted(certificates, key=lambda c: c.name):
        if certificate.not_after is None:
            continue
        dimensions = [{"Name": "Certificate", "Value": f"certificate.{certificate.name}"}]
        if certificate.arn:
            dimensions.append({"Name": "CertificateArn", "Value": certificate.arn})
        data.append(
            {
                "MetricName": METRIC,
                "Dimensions": dimensions,
                "Timestamp": _utc(now),
                "Value": float(days_to_expiry(certificate.not_after, now)),
                "Unit": "None",
            }
        )
    return data


def batches(data: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches within PutMetricData's metric count and size limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for datum in data:
        datum_size = len(json.dumps(datum, default=str)) + 2  # the list's ", "
        if batch and (len(batch) == MAX_METRICS or size + datum_size > MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(datum)
        size += datum_size
    if batch:
        yield batch


def publish(
    config: CloudWatchConfig,
    providers: Mapping[str, Any],
    certificates: Sequence[CertificateMetric],
    now: datetime,
) -> DeliveryReport:
    """PutMetricData in batches; a failed call fails its batch and leaves the
    rest unattempted.  Reported per certificate address, never raised."""
    from reconciler.errors import ProviderError
    from reconciler.providers.aws.config import AwsProviderConfig

    where = f"cloudwatch {config.namespace} ({config.provider})"
    data = metric_data(certificates, now)
    provider = providers.get(config.provider)
    if not isinstance(provider, AwsProviderConfig):
        reason = f"unknown aws provider {config.provider!r}"
        return DeliveryReport(where, (), tuple(DeliveryFailure(_address(d), reason) for d in data))
    sent: list[str] = []
    failed: list[DeliveryFailure] = []
    given_up: str | None = None
    for batch in batches(data):
        if given_up is not None:
            failed += [DeliveryFailure(_address(d), given_up) for d in batch]
            continue
        try:
            _put(provider, config.namespace, batch)
        except ProviderError as exc:
            failed += [DeliveryFailure(_address(d), str(exc)) for d in batch]
            given_up = "not attempted: an earlier PutMetricData call failed"
            continue
        sent += [_address(d) for d in batch]
    return DeliveryReport(where, tuple(sent), tuple(failed))


def _put(provider: Any, namespace: str, batch: list[dict[str, Any]]) -> None:
    from reconciler.providers.aws.session import aws_errors, client

    with aws_errors("PutMetricData"):
        client(provider, "cloudwatch").put_metric_data(Namespace=namespace, MetricData=batch)


def iam_statements(config: CloudWatchConfig) -> list[Statement]:
    """PutMetricData takes no resource: limited to the namespace instead."""
    from reconciler.providers.aws.iam import Statement

    namespace = {"StringEquals": {"cloudwatch:namespace": config.namespace}}
    return [Statement.of("CloudWatchMetrics", ["cloudwatch:PutMetricData"], ["*"], namespace)]


def _address(datum: Mapping[str, Any]) -> str:
    return str(datum["Dimensions"][0]["Value"])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
