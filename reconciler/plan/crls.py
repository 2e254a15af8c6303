"""When a private CA's CRL must be (re)published.  Pure, like the rest of the diff.

Publish when: no CRL was published yet; the CA was (re)issued in this plan; a
certificate it issued was revoked since the last CRL; the last CRL is in the
final third of its validity (relying parties must never see an expired CRL);
or the published files (or S3 object) are missing or were changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from datetime import datetime

from reconciler.model.desired import DesiredState
from reconciler.model.observed import Observation
from reconciler.model.records import RecordedState
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import CertificateSpec, CrlSpec


def crl_address(authority: str) -> str:
    return f"crl.{authority}"


def crl_changes(
    desired: DesiredState,
    recorded: RecordedState,
    observed: Mapping[str, Observation],
    reissued: Set[str],
    now: datetime,
    certificate_changes: Sequence[Change] = (),
) -> list[Change]:
    changes = []
    for authority in desired.authorities:
        settings = authority.spec.crl
        if not settings:
            continue
        record = recorded.crls.get(authority.name)
        revoked = sum(1 for r in recorded.revocations if r.issuer == authority.name)
        superseded = [
            c.address
            for c in certificate_changes
            if isinstance(c.after, CertificateSpec)
            and c.after.revoke_replaced
            and c.after.issuer == authority.name
            and c.action in (Action.RENEW, Action.REPLACE)
            and c.name in recorded.certificates
        ]
        reasons = []
        if record is None:
            reasons.append("no CRL published yet")
        else:
            if authority.name in reissued:
                reasons.append(f"authority.{authority.name} is re-issued in this plan")
            if revoked > record.entries:
                reasons.append(
                    f"{revoked - record.entries} revocation(s) since CRL #{record.number}"
                )
            due = record.this_update + (record.next_update - record.this_update) * 2 / 3
            if now >= due:
                reasons.append(
                    f"CRL #{record.number} is in the last third of its validity "
                    f"(next update {record.next_update:%Y-%m-%d %H:%M} UTC)"
                )
            if superseded:
                reasons.append(
                    f"{len(superseded)} superseded certificate(s) to revoke (revoke_replaced)"
                )
            observation = observed.get(crl_address(authority.name))
            if observation is not None and observation.needs_redeploy:
                reasons.append("drift: " + "; ".join(observation.details))
        if not reasons:
            continue
        before = None if record is None else {"number": record.number, "entries": record.entries}
        after = CrlSpec.parse({"authority": authority.name, "crl": settings, "entries": revoked})
        changes.append(
            Change(crl_address(authority.name), Action.PUBLISH, tuple(reasons), before, after)
        )
    return changes


def crl_warnings(desired: DesiredState, observed: Mapping[str, Observation]) -> tuple[str, ...]:
    """Published CRLs that could not be checked (S3 unreachable): said, not repaired."""
    warnings = []
    for authority in desired.authorities:
        observation = observed.get(crl_address(authority.name))
        if observation is not None and observation.status == "unreachable":
            details = "; ".join(observation.details)
            warnings.append(f"{crl_address(authority.name)} unreachable: {details}")
    return tuple(warnings)
