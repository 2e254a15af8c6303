"""Where clients reach a deployed certificate: ``{host, port, server_name}``.

Shared by ``verify_endpoint`` (any target: handshake after deploy, and part of
the observed state) and the read-only ``tls-endpoint`` target.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from pydantic import Field

from reconciler.config.inputs import input_path
from reconciler.config.types import Duration, StrictModel
from reconciler.durations import parse_duration
from reconciler.model.observed import Observation, Unreachable
from reconciler.providers.base import observation_of
from reconciler.providers.batch import memo

if TYPE_CHECKING:
    from reconciler.pki.inspect import Presented


class EndpointSettings(StrictModel):
    """A TLS endpoint to handshake with (SNI = ``server_name``, default: ``host``)."""

    host: str = Field(min_length=1, description="Host name or IP address to connect to.")
    port: int = Field(default=443, ge=1, le=65535)
    server_name: str | None = Field(
        default=None, min_length=1, description="SNI name to send (default: host)."
    )
    timeout: Duration = Field(
        default="10s",
        description="How long to wait for the endpoint to serve the expected certificate "
        "(each handshake also times out after at most 5s).",
    )

    @property
    def sni(self) -> str:
        return self.server_name or self.host

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout).total_seconds()

    def describe(self) -> str:
        name = (
            f" ({self.server_name})" if self.server_name and self.server_name != self.host else ""
        )
        return f"{self.host}:{self.port}{name}"


class WatchedEndpoint(EndpointSettings):
    """An endpoint ``certform check`` watches (expiry, name, chain, self-signed),
    whether or not certform deploys there."""

    timeout: Duration = Field(default="5s", description="Handshake timeout.")
    ca_bundle: str | None = Field(
        default=None,
        description="PEM file of the roots the served chain must build to (relative to the "
        "config; default: the system trust store, or the private CA's root for bindings).",
    )


def load_ca_bundle(path: str, root: Path) -> tuple[x509.Certificate, ...]:
    """The trust anchors in ``ca_bundle``; ValueError saying which file and why."""
    full = input_path(root, path)
    try:
        data = full.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {full}: {exc.strerror or exc}") from None
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise ValueError(f"{full} holds no PEM certificates") from None


def ca_bundle_problem(path: str | None, root: Path) -> str | None:
    """Why ``ca_bundle`` cannot serve as trust anchors (None: it can, or none is set)."""
    if path is None:
        return None
    try:
        load_ca_bundle(path, root)
    except ValueError as exc:
        return str(exc)
    return None


PROBE_TIMEOUT = 5.0
"""Per-handshake timeout: a dead endpoint must not hold a plan for long."""


def endpoint_observation(endpoint: EndpointSettings, serial: str) -> Observation:
    """What clients of ``endpoint`` see, compared with the deployed ``serial``.

    Unreachable is its own status, never "in sync" and never drift to fix: a
    plan must not claim it can repair a network problem."""
    return observation_of(
        lambda: presented_by(endpoint), lambda seen: serial_problems(endpoint, seen, serial)
    )


def presented_by(endpoint: EndpointSettings) -> Presented:
    """The certificate a handshake with ``endpoint`` presents (once per plan);
    ``Unreachable`` when no handshake completes."""
    from reconciler.providers.tls_probe import EndpointUnreachable, probe

    key = ("tls-probe", endpoint.host, endpoint.port, endpoint.sni)
    timeout = min(PROBE_TIMEOUT, endpoint.timeout_seconds)
    try:
        return memo(key, lambda: probe(endpoint.host, endpoint.port, endpoint.sni, timeout))
    except EndpointUnreachable as exc:
        raise Unreachable(str(exc)) from None


def serial_problems(endpoint: EndpointSettings, presented: Presented, serial: str) -> list[str]:
    """Drift when ``endpoint`` presents another certificate than serial ``serial``."""
    from reconciler.pki.inspect import describe_leaf

    if presented.serial != serial:
        served = describe_leaf(presented.leaf)
        return [f"{endpoint.describe()} serves {served}, expected serial {serial}"]
    return []
