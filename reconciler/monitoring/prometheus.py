"""Certificate expiry as Prometheus gauges, for node_exporter's textfile collector.

``render_prometheus`` is pure (the clock is a parameter); ``write_textfile`` is
the only I/O.  One series per certificate and gauge, labelled ``name``,
``issuer`` and ``tag_<key>`` per tag, so alerts such as::

    certform_certificate_expiration_timestamp_seconds - time() < 14 * 86400
    time() > certform_certificate_renewal_timestamp_seconds + 86400
    certform_certificate_ready == 0

work without certform running as a server.  Samples carry no timestamps (the
textfile collector rejects them); node_exporter's ``node_textfile_mtime_seconds``
tells how fresh the file is.

The text itself is ``prometheus_client``'s (``generate_latest`` over a private
``CollectorRegistry``: its escaping and number formatting, not ours), imported
only when metrics are rendered, so other commands do not pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.fsutil import write_atomic
from reconciler.issuers.registry import certificate_spec
from reconciler.model.desired import DesiredState
from reconciler.model.records import CertificateRecord, RecordedState
from reconciler.policy.renewal import renewal_time

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


@dataclass(frozen=True)
class CertificateMetric:
    """What monitoring needs to know about one certificate.

    ``not_before``/``not_after`` None: not issued yet (ready 0, timestamp gauges
    omitted).  ``renewal_at`` None: certform will not renew it (not issued yet,
    renewed by ACM itself, or about to be destroyed).  Naive datetimes are UTC.
    """

    name: str
    issuer: str
    tags: Mapping[str, str]
    not_before: datetime | None
    not_after: datetime | None
    renewal_at: datetime | None
    revoked: bool
    serial: str | None = None
    common_name: str | None = None
    """The first name of the certificate (what ACM calls its CommonName)."""
    arn: str | None = None
    """The ACM ARN of a certificate ACM holds (issued or imported there)."""

    def is_ready(self, now: datetime) -> bool:
        """Issued, not expired and not revoked."""
        return self.not_after is not None and not self.revoked and _utc(now) < _utc(self.not_after)


@dataclass(frozen=True)
class _Gauge:
    name: str
    help: str


EXPIRATION = _Gauge(
    "certform_certificate_expiration_timestamp_seconds",
    "The certificate's notAfter as a Unix timestamp.",
)
NOT_BEFORE = _Gauge(
    "certform_certificate_not_before_timestamp_seconds",
    "The certificate's notBefore as a Unix timestamp.",
)
READY = _Gauge(
    "certform_certificate_ready",
    "1 when the certificate is issued, not expired and not revoked; else 0.",
)
RENEWAL = _Gauge(
    "certform_certificate_renewal_timestamp_seconds",
    "When certform renews the certificate (its renewal time) as a Unix timestamp.",
)

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def render_prometheus(certificates: Sequence[CertificateMetric], now: datetime) -> str:
    """The text exposition format (version 0.0.4) for ``certificates`` as of ``now``.

    Series are ordered by certificate name, so the same input renders the same
    bytes.  Raises ``ValueError`` when two certificates share a name (their
    series would collide)."""
    from prometheus_client import CollectorRegistry, generate_latest

    ordered = sorted(certificates, key=lambda c: c.name)
    names = [c.name for c in ordered]
    if len(set(names)) != len(names):
        raise ValueError("certificate names must be unique to render metrics")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(ordered, now))
    return generate_latest(registry).decode("utf-8")


class _Snapshot:
    """A custom collector (prometheus_client's pattern for metrics that come from
    elsewhere): the four gauges of one fixed set of certificates.  Not a ``Gauge``:
    its label names are fixed per metric, while each certificate has its own tags."""

    def __init__(self, certificates: Sequence[CertificateMetric], now: datetime) -> None:
        self._certificates = certificates
        self._now = now

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        certificates = self._certificates
        labels = {c.name: _labels(c) for c in certificates}
        families = [
            (EXPIRATION, [(c.name, _seconds(c.not_after)) for c in certificates if c.not_after]),
            (NOT_BEFORE, [(c.name, _seconds(c.not_before)) for c in certificates if c.not_before]),
            (READY, [(c.name, float(c.is_ready(self._now))) for c in certificates]),
            (RENEWAL, [(c.name, _seconds(c.renewal_at)) for c in certificates if c.renewal_at]),
        ]
        for gauge, samples in families:
            family = GaugeMetricFamily(gauge.name, gauge.help)
            for name, value in samples:
                family.add_sample(gauge.name, labels[name], value)
            yield family


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically (temp file in the same directory, fsync, then
    ``os.replace``; mode 0644), so node_exporter never scrapes half a file.

    Not prometheus_client's ``write_to_textfile``: its file gets the umask's mode
    (0600 under ``umask 077``, which node_exporter, another user, cannot read) and
    is not synced; ``fsutil.write_atomic`` gives 0644 whatever the umask.  The
    collector reads only ``*.prom`` files in its directory; the temp file is named
    ``.<name>.<random>.tmp`` and is never picked up.  Raises ``OSError``."""
    if not text.endswith("\n"):
        text += "\n"
    write_atomic(path, text.encode("utf-8"), 0o644)


def tag_label_names(tags: Iterable[str]) -> dict[str, str]:
    """Map each tag key to its label name ``tag_<key>`` with every character
    outside ``[a-zA-Z0-9_]`` replaced by ``_``.  Keys that clash after that
    (``team-a`` and ``team_a``) get ``_2``, ``_3``… in sorted key order, so
    every label name is unique and stable."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(tags):
        base = "tag_" + _INVALID_LABEL_CHARS.sub("_", key)
        label, n = base, 1
        while label in taken:
            n += 1
            label = f"{base}_{n}"
        taken.add(label)
        result[key] = label
    return result


def certificate_metrics(recorded: RecordedState, desired: DesiredState) -> list[CertificateMetric]:
    """Pure: one metric per declared certificate (issued or not), plus any
    recorded certificate no longer declared (it still expires until destroyed).

    Tags and the renewal policy come from the configuration; dates, serial and
    the issuer that really signed come from the state.  certform renews at
    ``renewal_time`` (or, once revoked, from the revocation on); it does not
    renew certificates ACM issued, nor ones it is about to destroy."""
    metrics = []
    for wanted in desired.certificates:
        record = recorded.certificates.get(wanted.name)
        if record is None:
            metrics.append(
                CertificateMetric(
                    wanted.name,
                    wanted.issuer,
                    dict(wanted.tags),
                    None,
                    None,
                    None,
                    revoked=False,
                    common_name=_first(wanted.spec.names),
                )
            )
            continue
        metrics.append(_from_record(record, wanted.tags, wanted.renew_before, renews=True))
    declared = {c.name for c in desired.certificates}
    for name, record in sorted(recorded.certificates.items()):
        if name not in declared:
            metrics.append(_from_record(record, record.tags, None, renews=False))
    return metrics


def _from_record(
    record: CertificateRecord, tags: Mapping[str, str], renew_before: str | None, *, renews: bool
) -> CertificateMetric:
    revoked = record.revoked_at is not None
    renewal_at = None
    if renews and not record.external_id:
        renewal_at = record.revoked_at or renewal_time(
            record.not_before, record.not_after, renew_before
        )
    spec = certificate_spec(record.spec)
    issuer = spec.issuing_authority
    return CertificateMetric(
        name=record.name,
        issuer=issuer,
        tags=dict(tags),
        not_before=record.not_before,
        not_after=record.not_after,
        renewal_at=renewal_at,
        revoked=revoked,
        serial=record.serial,
        common_name=_first(spec.names),
        arn=record.external_id,
    )


def _first(names: Sequence[str]) -> str | None:
    return names[0] if names else None


def _labels(certificate: CertificateMetric) -> dict[str, str]:
    label_names = tag_label_names(certificate.tags)
    tags = {label_names[key]: value for key, value in certificate.tags.items()}
    return {"name": certificate.name, "issuer": certificate.issuer, **tags}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _seconds(moment: datetime | None) -> float:
    assert moment is not None  # callers filter None out
    return _utc(moment).timestamp()
