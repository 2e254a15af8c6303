"""The ``acme`` authority's configuration: directory, account, solvers.

Secrets are never in the config itself: the EAB HMAC key and the TSIG secret
are named by environment variable (``hmac_key_env``, ``tsig_secret_env``) and
read only by apply, so plans and state hold no secret.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from reconciler.config.types import Duration, EntryName, EnvName, StrictModel, pass_env_field
from reconciler.pki.names import is_ip_address


class Rfc2136Solver(StrictModel):
    """Dynamic DNS updates (RFC 2136) signed with TSIG, e.g. BIND, Knot, PowerDNS."""

    server: str = Field(min_length=1, description="Primary (authoritative) server address.")
    port: int = Field(default=53, ge=1, le=65535)
    zone: str | None = Field(default=None, description="Zone to update (default: found by SOA).")
    tsig_key_name: str = Field(min_length=1)
    tsig_algorithm: str = Field(default="hmac-sha256")
    tsig_secret_env: str = Field(
        min_length=1, description="Environment variable holding the base64 TSIG secret."
    )


class Route53Solver(StrictModel):
    """TXT records in Route 53 through an `aws` provider."""

    provider: EntryName
    zone_id: str | None = Field(default=None, description="Default: found by the longest name.")


class CommandSolver(StrictModel):
    """A hook: commands that add and remove the TXT record (argv lists, no shell).

    They get CERTFORM_ACME_DOMAIN, CERTFORM_ACME_RECORD and CERTFORM_ACME_VALUE."""

    present: list[str] = Field(min_length=1)
    cleanup: list[str] = Field(min_length=1)
    timeout: Duration = "60s"
    check_server: str | None = Field(
        default=None, description="host:port of an authoritative server to poll for the record."
    )
    pass_env: list[EnvName] | None = pass_env_field("the present and cleanup commands")


class Dns01(StrictModel):
    """dns-01: a TXT record at ``_acme-challenge.<name>`` (CNAMEs are followed)."""

    rfc2136: Rfc2136Solver | None = None
    route53: Route53Solver | None = None
    command: CommandSolver | None = None
    propagation_timeout: Duration = Field(
        default="120s", description="How long to wait for the record on the zone's servers."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Dns01:
        chosen = [k for k in ("rfc2136", "route53", "command") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of rfc2136, route53 or command")
        return self


class Standalone(StrictModel):
    """certform answers http-01 itself on this address while an order is pending."""

    address: str = Field(default="0.0.0.0:80", description="host:port to listen on.")


class Http01(StrictModel):
    """http-01: a file at ``/.well-known/acme-challenge/<token>`` on port 80."""

    webroot: str | None = Field(default=None, description="Directory the web server serves.")
    standalone: Standalone | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Http01:
        if (self.webroot is None) == (self.standalone is None):
            raise ValueError("set exactly one of webroot or standalone")
        return self


class AcmeSolver(StrictModel):
    """One solver; the first whose ``domains`` match a name wins (none = any name)."""

    dns01: Dns01 | None = None
    http01: Http01 | None = None
    domains: list[str] = Field(
        default_factory=list,
        description="Exact names or parent domains this solver is for (empty: every name).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AcmeSolver:
        if (self.dns01 is None) == (self.http01 is None):
            raise ValueError("set exactly one of dns01 or http01")
        return self

    def matches(self, name: str) -> bool:
        """True when this solver is for ``name`` and can answer for it: wildcards
        only through dns-01, IP addresses only through http-01."""
        bare = name[2:] if name.startswith("*.") else name
        if self.domains and not any(bare == d or bare.endswith("." + d) for d in self.domains):
            return False
        if name.startswith("*.") and self.dns01 is None:
            return False
        return not (is_ip_address(name) and self.http01 is None)


def first_solver(solvers: list[AcmeSolver], name: str) -> AcmeSolver | None:
    """The solver for ``name``: the first that matches (cert-manager's selector rule)."""
    return next((solver for solver in solvers if solver.matches(name)), None)


class ExternalAccountBinding(StrictModel):
    """EAB (RFC 8555 §7.3.4): required by ZeroSSL, Google Trust Services, many private CAs."""

    kid: str = Field(min_length=1)
    hmac_key_env: str = Field(
        min_length=1, description="Environment variable with the base64url HMAC key."
    )
