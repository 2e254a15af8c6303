"""Expiry monitoring for scheduled ``certform check`` runs.

``prometheus``: gauges for node_exporter's textfile collector.
``notifications``: ACM-style expiry events and their delivery (stdout, file,
webhook).  Both read ``CertificateMetric``s, built from state and config by
``certificate_metrics``; neither touches the state store or a provider.
"""

from reconciler.monitoring.notifications import (
    DeliveryFailure,
    DeliveryReport,
    NotificationsConfig,
    deliver,
    deliver_all,
    expiry_events,
    notify,
)
from reconciler.monitoring.prometheus import (
    CertificateMetric,
    certificate_metrics,
    render_prometheus,
    write_textfile,
)

__all__ = [
    "CertificateMetric",
    "DeliveryFailure",
    "DeliveryReport",
    "NotificationsConfig",
    "certificate_metrics",
    "deliver",
    "deliver_all",
    "expiry_events",
    "notify",
    "render_prometheus",
    "write_textfile",
]
