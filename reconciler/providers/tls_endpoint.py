"""``tls-endpoint``: a read-only binding that says "clients of this endpoint
must see this certificate".

certform does not deploy anything here: the certificate gets there some other
way (another binding, another team's pipeline, a CDN).  Observing it is a real
TLS handshake with SNI; the plan shows drift when the endpoint serves an old or
foreign certificate, and apply only *confirms* (it fails, naming what is
served, until the endpoint catches up).  That makes ``plan
--detailed-exitcode`` in a scheduled job a drift detector for what clients
really see.  An unreachable endpoint is reported as unreachable, never as
drift that apply could fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts
from reconciler.providers.base import Target
from reconciler.providers.endpoint import (
    EndpointSettings,
    WatchedEndpoint,
    ca_bundle_problem,
    presented_by,
    serial_problems,
)

if TYPE_CHECKING:
    from reconciler.pki.inspect import Presented


class TlsEndpointTargetConfig(WatchedEndpoint):
    """An endpoint that must serve the binding's certificate (read-only)."""

    type: Literal["tls-endpoint"]


class TlsEndpointTarget(Target):
    """Observes what an endpoint serves; never writes anywhere."""

    type_name = "tls-endpoint"
    watch_only = True
    config: TlsEndpointTargetConfig

    @property
    def per_certificate(self) -> bool:
        # Several certificates may be expected behind one host:port (SNI names).
        return self.config.server_name is None

    def identity(self) -> str:
        return self.config.describe().replace(" (", "/").rstrip(")")

    def read(self, facts: Facts) -> Presented:
        return presented_by(self.config)

    def compare(self, seen: Presented, facts: Facts) -> list[str]:
        return serial_problems(self.config, seen, str(facts.get("serial", "")))

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        from reconciler.providers.tls_probe import EndpointMismatch, wait_for_serial

        endpoint = self.config
        try:
            presented = wait_for_serial(
                endpoint.host,
                endpoint.port,
                endpoint.sni,
                material.serial,
                timeout=endpoint.timeout_seconds,
                confirmations=1,
                settle=0,
            )
        except EndpointMismatch as exc:
            raise ProviderError(
                f"{exc} (tls-endpoint is read-only: certform cannot change what it serves)"
            ) from None
        return {"serial": presented.serial, "fingerprint": presented.fingerprint}

    def local_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problem = ca_bundle_problem(self.config.ca_bundle, self.root)
        return [(("ca_bundle",), problem)] if problem else []

    def remove(self, facts: Facts) -> bool:
        return True

    def verify_endpoint(self) -> EndpointSettings | None:
        return None  # deploy already is the handshake
