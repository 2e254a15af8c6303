"""The ``eventbridge`` notification sink: certform's expiry events as ACM's own.

ACM sends "ACM Certificate Approaching Expiration" with ``detail:
{DaysToExpiry, CommonName}`` and the certificate's ARN in ``resources``; rules
that match that ``detail-type`` and read those fields work on certform's
certificates unchanged (only ``source`` differs: EventBridge keeps ``aws.*``
for AWS).  ``acm_entry`` is the pure translation, ``deliver_eventbridge`` the
PutEvents calls, 10 entries per call (the API's limit), failures reported per
event like the webhook sink's, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.monitoring.notifications import (
    APPROACHING,
    EXPIRED,
    DeliveryFailure,
    DeliveryReport,
    Event,
    EventBridgeSink,
)

if TYPE_CHECKING:
    from reconciler.providers.aws.iam import Statement

ACM_APPROACHING = "ACM Certificate Approaching Expiration"
ACM_EXPIRED = "ACM Certificate Expired"
BATCH = 10
"""PutEvents takes at most 10 entries per call (and 256 KB: these are < 1 KB each)."""


def acm_entry(event: Event, sink: EventBridgeSink) -> dict[str, Any]:
    """One PutEvents entry for ``event``: ACM's detail-type and detail.

    Approaching expiry: ``{DaysToExpiry, CommonName}`` exactly as ACM.  Expired:
    ACM's "ACM Certificate Expired" with the two fields certform knows
    (``CommonName``, ``CertificateExpirationDate``).  Revoked has no ACM event:
    it goes out as certform's own event.  ``resources``: the ACM ARN when ACM
    holds the certificate, else its certform address."""
    detail = event["detail"]
    common_name = detail.get("common_name") or detail["name"]
    kind = event["detail-type"]
    body: dict[str, Any]
    if kind == APPROACHING:
        detail_type = ACM_APPROACHING
        body = {"DaysToExpiry": detail["days_to_expiry"], "CommonName": common_name}
    elif kind == EXPIRED:
        detail_type = ACM_EXPIRED
        body = {"CommonName": common_name, "CertificateExpirationDate": detail["not_after"]}
    else:
        detail_type, body = kind, dict(detail)
    resource = detail.get("certificate_arn") or event["resources"][0]
    return {
        "Time": datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
        "Source": sink.source,
        "Resources": [resource],
        "DetailType": detail_type,
        "Detail": json.dumps(body, separators=(",", ":")),
        "EventBusName": sink.bus,
    }


def iam_statements(sink: EventBridgeSink, providers: Mapping[str, Any]) -> list[Statement]:
    """PutEvents on the sink's bus (a name in the provider's region, or an ARN)."""
    from reconciler.providers.aws.iam import Statement, partition

    if sink.bus.startswith("arn:"):
        bus = sink.bus
    else:
        region = providers[sink.provider].region
        bus = f"arn:{partition(region)}:events:{region}:*:event-bus/{sink.bus}"
    return [Statement.of("EventBridgeBuses", ["events:PutEvents"], [bus])]


def _batches(events: Sequence[Event]) -> Iterator[Sequence[Event]]:
    for start in range(0, len(events), BATCH):
        yield events[start : start + BATCH]


def deliver_eventbridge(
    events: Sequence[Event], sink: EventBridgeSink, providers: Mapping[str, Any]
) -> DeliveryReport:
    """PutEvents in batches of 10.  An entry EventBridge refuses fails with its
    ErrorCode; a call that fails (after botocore's retries) fails its batch and
    leaves the rest unattempted, as a dead webhook does."""
    from reconciler.errors import ProviderError
    from reconciler.providers.aws.config import AwsProviderConfig

    where = f"{sink.describe()} ({sink.provider})"
    provider = providers.get(sink.provider)
    if not isinstance(provider, AwsProviderConfig):
        reason = f"unknown aws provider {sink.provider!r}"
        return DeliveryReport(where, (), tuple(DeliveryFailure(e["id"], reason) for e in events))
    sent: list[str] = []
    failed: list[DeliveryFailure] = []
    given_up: str | None = None
    for batch in _batches(events):
        if given_up is not None:
            failed += [DeliveryFailure(e["id"], given_up) for e in batch]
            continue
        try:
            answers = _put_events(provider, [acm_entry(e, sink) for e in batch])
        except ProviderError as exc:
            failed += [DeliveryFailure(e["id"], str(exc)) for e in batch]
            given_up = "not attempted: an earlier PutEvents call failed"
            continue
        for event, answer in zip(batch, answers, strict=True):
            if answer.get("ErrorCode"):
                reason = f"{answer['ErrorCode']}: {answer.get('ErrorMessage', '')}".rstrip(": ")
                failed.append(DeliveryFailure(event["id"], reason))
            else:
                sent.append(event["id"])
    return DeliveryReport(where, tuple(sent), tuple(failed))


def _put_events(provider: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-entry answers of one PutEvents call, in request order."""
    from reconciler.providers.aws.session import aws_errors, client

    with aws_errors("PutEvents"):
        response = client(provider, "events").put_events(Entries=entries)
    answers = list(response.get("Entries", []))
    if len(answers) != len(entries):  # the API promises one answer per entry
        answers += [{"ErrorCode": "NoAnswer", "ErrorMessage": "no result for this entry"}] * (
            len(entries) - len(answers)
        )
    return answers
