"""Which endpoints ``certform check`` handshakes with, and what each should show.

``tls-endpoint`` bindings should present the certificate certform recorded
(its serial, chained to its own private root when it has one); ``endpoints:``
entries are watched for expiry, name and chain only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from reconciler.engine.check import EndpointWatch
from reconciler.errors import ConfigError, ConfigIssue
from reconciler.model.desired import DesiredState
from reconciler.model.records import RecordedState
from reconciler.providers.endpoint import WatchedEndpoint, load_ca_bundle
from reconciler.providers.tls_endpoint import TlsEndpointTargetConfig
from reconciler.state.store import StateStore


def endpoint_watches(
    desired: DesiredState,
    recorded: RecordedState,
    store: StateStore,
    endpoints: Mapping[str, WatchedEndpoint],
    root: Path,
) -> list[EndpointWatch]:
    watches: list[EndpointWatch] = []
    for binding in desired.bindings:
        if not binding.watch_only:
            continue
        settings = TlsEndpointTargetConfig.model_validate(binding.target)
        record = recorded.certificates.get(binding.certificate)
        roots = _bundle(settings.ca_bundle, root, binding.address)
        if roots is None and record is not None and not record.external_id:
            root_pem = store.material("certificate", binding.certificate).root_pem
            roots = tuple(x509.load_pem_x509_certificates(root_pem.encode())) or None
        watches.append(
            EndpointWatch(
                binding.address,
                settings,
                roots,
                record.serial if record else None,
                f"certificate.{binding.certificate}",
            )
        )
    for name, endpoint in endpoints.items():
        address = f"endpoint.{name}"
        watches.append(EndpointWatch(address, endpoint, _bundle(endpoint.ca_bundle, root, address)))
    return watches


def _bundle(path: str | None, root: Path, address: str) -> tuple[x509.Certificate, ...] | None:
    if path is None:
        return None
    try:
        return load_ca_bundle(path, root)
    except ValueError as exc:
        raise ConfigError([ConfigIssue(path, None, f"{address}.ca_bundle", str(exc))]) from None
