"""What a target saw when refresh asked it: the observed side of every plan.

The diff turns an ``Observation`` into changes (drifted and missing
deployments are redeployed, unreachable ones only warned about); targets
produce them in ``providers/``.  Both sides import this module, so the pure
diff needs nothing from the providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ObservationStatus = Literal["in_sync", "drifted", "missing", "unreachable", "unfinished"]

Facts = dict[str, Any]
"""What a target's ``deploy`` returned, recorded with the binding (JSON, no secrets)."""

UNFINISHED = "unfinished"
"""The facts key of a deployment whose deploy failed after it changed the target
(``errors.DeployedButFailed``): what failed, for the next plan to say."""


@dataclass(frozen=True)
class Observation:
    """What a target saw: in sync, drifted (with the reasons), missing, or unreachable."""

    status: ObservationStatus
    details: tuple[str, ...] = ()

    @property
    def needs_redeploy(self) -> bool:
        return self.status in ("drifted", "missing", "unfinished")


class Missing(Exception):
    """Raised by ``read``: the deployment is not there; the message says what is absent."""


class Unreachable(Exception):
    """Raised by ``read``: the target could not be asked (network, credentials).

    That says nothing about the deployment, so it is reported, never repaired."""
