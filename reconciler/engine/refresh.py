"""The read side: what targets really serve now, for bindings certform recorded."""

from __future__ import annotations

from pathlib import Path

from reconciler.desired import DesiredState
from reconciler.providers.base import Observation
from reconciler.providers.batch import observation_batch
from reconciler.providers.catalog import target_from_settings
from reconciler.providers.endpoint import endpoint_observation
from reconciler.state.records import RecordedState


def refresh(desired: DesiredState, recorded: RecordedState, root: Path) -> dict[str, Observation]:
    """Observe every recorded binding that is still desired (read-only), including,
    for bindings with ``verify_endpoint``, what a TLS handshake there presents."""
    wanted = {b.address for b in desired.bindings}
    observed: dict[str, Observation] = {}
    with observation_batch():
        for address, record in recorded.bindings.items():
            if address in wanted:
                target = target_from_settings(record.target, root, trusted=True)
                observation = target.observe(record.facts)
                endpoint = target.verify_endpoint()
                if endpoint is not None and observation.status == "in_sync":
                    # What clients see is part of the observed state.
                    observation = endpoint_observation(endpoint, record.serial)
                observed[address] = observation
    return observed
