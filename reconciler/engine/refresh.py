"""The read side: what targets really serve now, for bindings certform recorded."""

from __future__ import annotations

from pathlib import Path

from reconciler.filestamp import stamp_problems
from reconciler.fsutil import config_path
from reconciler.issuers.registry import authority_issuer
from reconciler.model.desired import DesiredState
from reconciler.model.observed import Observation
from reconciler.model.records import RecordedState, peek
from reconciler.providers.batch import observation_batch
from reconciler.providers.catalog import target_from_settings
from reconciler.providers.endpoint import endpoint_observation


def refresh(desired: DesiredState, recorded: RecordedState, root: Path) -> dict[str, Observation]:
    """Observe every recorded binding that is still desired (read-only), including,
    for bindings with ``verify_endpoint``, what a TLS handshake there presents."""
    wanted = {b.address for b in desired.bindings}
    observed: dict[str, Observation] = {}
    with observation_batch():
        for address, record in recorded.bindings.items():
            if address in wanted:
                target = target_from_settings(record.target, root, trusted=True)
                observation = target.observe(peek(record, "facts"))
                endpoint = target.verify_endpoint()
                if endpoint is not None and observation.status == "in_sync":
                    # What clients see is part of the observed state.
                    observation = endpoint_observation(endpoint, record.serial)
                observed[address] = observation
    observed.update(_published_crls(desired, recorded, root))
    observed.update(_authorities(desired, recorded))
    return observed


def _authorities(desired: DesiredState, recorded: RecordedState) -> dict[str, Observation]:
    """Authorities that live outside the state (an AWS Private CA), as their issuer sees them."""
    observed: dict[str, Observation] = {}
    for authority in desired.authorities:
        issuer = authority_issuer(authority.spec)
        observation = issuer.observe_authority(authority, recorded.authorities.get(authority.name))
        if observation is not None:
            observed[authority.address] = observation
    return observed


def _published_crls(
    desired: DesiredState, recorded: RecordedState, root: Path
) -> dict[str, Observation]:
    """Are the CRL files certform published still there, unchanged?"""
    observed: dict[str, Observation] = {}
    for authority in desired.authorities:
        settings = authority.spec.crl
        record = recorded.crls.get(authority.name)
        if not settings or record is None:
            continue
        directory = config_path(root, settings["publish"]["directory"])
        entries = [(name, str(directory / name), stamp) for name, stamp in record.files.items()]
        problems, _ = stamp_problems(entries)
        status = "drifted" if problems else "in_sync"
        observed[f"crl.{authority.name}"] = Observation(status, tuple(problems))
    return observed
