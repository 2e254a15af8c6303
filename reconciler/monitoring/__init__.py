"""Expiry monitoring for scheduled ``certform check`` runs.

``prometheus``: gauges for node_exporter's textfile collector.
``notifications``: ACM-style expiry events and their delivery (stdout, file,
webhook; ``eventbridge``: in ACM's own event shape).  ``cloudwatch``: the
``DaysToExpiry`` metric per certificate.  All read ``CertificateMetric``s, built
from state and config by ``certificate_metrics``; none touches the state store,
and only the EventBridge and CloudWatch calls reach a provider (``providers/aws``).

The names below are imported on first use (PEP 562): the configuration models
import ``notifications`` for its config classes, and must not pull in
``prometheus`` (and through it every issuer) with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DeliveryFailure": "notifications",
    "DeliveryReport": "notifications",
    "NotificationsConfig": "notifications",
    "deliver": "notifications",
    "deliver_all": "notifications",
    "expiry_events": "notifications",
    "notify": "notifications",
    "CloudWatchConfig": "cloudwatch",
    "publish": "cloudwatch",
    "CertificateMetric": "prometheus",
    "certificate_metrics": "prometheus",
    "render_prometheus": "prometheus",
    "write_textfile": "prometheus",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
