"""From an authority's ``solvers:`` (as recorded in the plan) to objects that
publish and withdraw challenge answers.

Secrets (TSIG, via ``tsig_secret_env``) are read from the environment here, at
apply time, and only here; a missing variable is a clear error naming it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.durations import parse_duration
from reconciler.errors import ProviderError
from reconciler.fsutil import config_path


@dataclass
class SolverChoice:
    """The solver for one name: its kind and what it publishes through."""

    kind: str  # "dns-01" or "http-01"
    index: int
    settings: dict[str, Any]


def choose(solvers: list[dict[str, Any]], name: str) -> SolverChoice:
    """The first solver whose ``domains`` match ``name`` (the rule validate checks)."""
    from reconciler.acme.config import AcmeSolver, first_solver

    models = [AcmeSolver.model_validate(solver) for solver in solvers]
    chosen = first_solver(models, name)
    if chosen is None:
        raise ProviderError(f"no solver for {name}")
    index = models.index(chosen)
    kind = "dns-01" if chosen.dns01 is not None else "http-01"
    return SolverChoice(kind, index, solvers[index]["dns01" if kind == "dns-01" else "http01"])


def secret_from_env(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ProviderError(f"environment variable {variable} ({what}) is not set")
    return value


class _Route53Writer:
    """dns-01 through Route 53; values at one name are merged (wildcard + apex)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from reconciler.providers.aws.config import AwsProviderConfig
        from reconciler.providers.aws.route53 import Route53Dns

        provider = AwsProviderConfig.model_validate(settings["provider_settings"])
        self.dns = Route53Dns(provider, settings.get("zone_id"))
        self.lock = threading.Lock()
        self.changes: dict[str, str] = {}

    def record_name(self, domain: str) -> str:
        return "_acme-challenge." + (domain[2:] if domain.startswith("*.") else domain)

    def present(self, record: str, value: str) -> None:
        with self.lock:
            values = sorted({*self.dns.values(record, "TXT"), value})
            self.changes[record] = self.dns.upsert(record, "TXT", values)

    def cleanup(self, record: str, value: str) -> None:
        with self.lock:
            current = self.dns.values(record, "TXT")
            if value not in current:
                return
            self.dns.delete(record, "TXT", current)
            rest = [v for v in current if v != value]
            if rest:
                self.dns.upsert(record, "TXT", rest)

    def wait_visible(self, record: str, value: str, timeout: float) -> None:
        change = self.changes.get(record)
        if change:
            self.dns.wait_in_sync(change, timeout=timeout, interval=1.0)


def dns_writer(settings: dict[str, Any]) -> Any:
    """A ``DnsChallengeWriter`` for one ``dns01`` block."""
    from reconciler.acme.dns01 import CommandWriter, Rfc2136Writer

    if "rfc2136" in settings:
        rfc = settings["rfc2136"]
        return Rfc2136Writer(
            server=rfc["server"],
            port=rfc.get("port", 53),
            zone=rfc.get("zone"),
            tsig_key_name=rfc["tsig_key_name"],
            tsig_algorithm=rfc.get("tsig_algorithm", "hmac-sha256"),
            tsig_secret=secret_from_env(rfc["tsig_secret_env"], "tsig_secret_env"),
        )
    if "route53" in settings:
        return _Route53Writer(settings["route53"])
    command = settings["command"]
    return CommandWriter(
        present_command=command["present"],
        cleanup_command=command["cleanup"],
        timeout=parse_duration(command.get("timeout", "60s")).total_seconds(),
        check_server=command.get("check_server"),
        pass_env=command.get("pass_env") or (),
    )


def http_sink(settings: dict[str, Any], root: Path) -> Any:
    """Where http-01 answers go: a webroot or the standalone responder."""
    from reconciler.acme.http01 import Standalone, Webroot

    if settings.get("webroot"):
        webroot = settings["webroot"]
        return Webroot(config_path(root, webroot))
    return Standalone(settings.get("standalone", {}).get("address", "0.0.0.0:80"))


def propagation_timeout(settings: Mapping[str, Any]) -> float:
    return parse_duration(str(settings.get("propagation_timeout", "120s"))).total_seconds()
