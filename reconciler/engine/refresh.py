"""The read side: what targets really serve now, for bindings certform recorded."""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import ProviderError
from reconciler.filestamp import stamp_problems
from reconciler.forked import ForkedCall, ForkedFailure, fork_call
from reconciler.fsutil import config_path
from reconciler.issuers.registry import authority_issuer
from reconciler.model.desired import DesiredState
from reconciler.model.observed import Observation, Unreachable
from reconciler.model.records import BindingRecord, CrlRecord, RecordedState, peek
from reconciler.providers.base import Target
from reconciler.providers.batch import fetch_wanted, observation_batch
from reconciler.providers.catalog import target_from_settings
from reconciler.providers.endpoint import endpoint_observation

FORK_AT = 2000
"""Recorded bindings from which refresh observes half of them in a forked copy of
this process (``forked.py``): below it, forking costs more than it saves."""


def refresh(desired: DesiredState, recorded: RecordedState, root: Path) -> dict[str, Observation]:
    """Observe every recorded binding that is still desired (read-only), including,
    for bindings with ``verify_endpoint``, what a TLS handshake there presents; and
    every watched endpoint (``tls-endpoint``), against its certificate's current
    serial, whether or not a binding was ever recorded for it."""
    wanted = {b.address for b in desired.bindings if not b.watch_only}
    observed: dict[str, Observation] = _watched(desired, recorded, root)
    with observation_batch():
        # A target on a host announces its reads first (``prefetch``): the files of
        # all bindings on one SSH host are then stamped in one remote command.  A
        # local target has nothing to announce: it is observed at once, its facts
        # decoded, used and let go (10,000 targets and decoded facts kept alive to
        # the last observe cost more than building and decoding them).
        found: dict[str, Observation | None] = {}
        remote = []
        items = [(a, record) for a, record in recorded.bindings.items() if a in wanted]
        split = len(items) // 2 if len(items) >= FORK_AT else len(items)
        helper = _observe_local_in_child(items[split:], root) if split < len(items) else None
        for address, record in items[:split] if helper is not None else items:
            found[address] = _observe_or_announce(address, record, root, remote)
        if helper is not None:
            seen = _child_observations(helper)
            for address, record in items[split:]:
                if address in seen:
                    found[address] = seen[address]
                else:  # remote, or the child failed: as if there had been no child
                    found[address] = _observe_or_announce(address, record, root, remote)
        fetch_wanted()
        for address, record, target in remote:
            found[address] = _observe(target, record)
        observed.update(found)  # type: ignore[arg-type]  # every None replaced
    observed.update(_published_crls(desired, recorded, root))
    observed.update(_authorities(desired, recorded))
    return observed


def _observe_or_announce(
    address: str,
    record: BindingRecord,
    root: Path,
    remote: list[tuple[str, BindingRecord, Target]],
) -> Observation | None:
    """A local binding observed at once; a remote one announced (``prefetch``) and
    added to ``remote``, to observe after ``fetch_wanted`` (None keeps its place)."""
    target = target_from_settings(record.target, root, trusted=True)
    if target.via is None:
        return _observe(target, record)
    target.prefetch(peek(record, "facts"))
    remote.append((address, record, target))
    return None


def _observe_local_in_child(
    items: list[tuple[str, BindingRecord]], root: Path
) -> ForkedCall | None:
    """Observe the local bindings of ``items`` in a forked copy of this process, on
    the other core (their ``stat`` calls and stamp comparisons are most of a large
    plan's refresh); the remote ones are left to this process."""

    def observe() -> dict[str, Observation]:
        seen: dict[str, Observation] = {}
        for address, record in items:
            target = target_from_settings(record.target, root, trusted=True)
            if target.via is None:
                seen[address] = _observe(target, record)
        return seen

    return fork_call(observe)


def _child_observations(helper: ForkedCall) -> dict[str, Observation]:
    """What the child observed; nothing when it failed (this process then observes
    its half, and an error is raised here, as without the child)."""
    try:
        seen: dict[str, Observation] = helper.result()
    except ForkedFailure:
        return {}
    return seen


def _observe(target: Target, record: BindingRecord) -> Observation:
    """What a recorded binding's target serves now, and, for a binding with
    ``verify_endpoint`` found in sync, what a TLS handshake there presents (what
    clients see is part of the observed state)."""
    observation = target.observe(peek(record, "facts"))
    endpoint = target.verify_endpoint()
    if endpoint is not None and observation.status == "in_sync":
        return endpoint_observation(endpoint, record.serial)
    return observation


def _watched(desired: DesiredState, recorded: RecordedState, root: Path) -> dict[str, Observation]:
    """What each watched endpoint serves, against the serial its certificate has now
    (none yet: nothing to check)."""
    observed: dict[str, Observation] = {}
    for binding in desired.bindings:
        current = recorded.certificates.get(binding.certificate) if binding.watch_only else None
        if current is not None:
            target = target_from_settings(binding.target, root)
            observed[binding.address] = target.observe({"serial": current.serial})
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
    """Are the CRL files and S3 objects certform published still there, unchanged?"""
    observed: dict[str, Observation] = {}
    for authority in desired.authorities:
        settings = authority.spec.crl
        record = recorded.crls.get(authority.name)
        if not settings or record is None:
            continue
        problems: list[str] = []
        if settings["publish"].get("directory"):
            directory = config_path(root, settings["publish"]["directory"])
            entries = [
                (name, str(directory / name), stamp)
                for name, stamp in record.files.items()
                if not name.startswith("s3://")
            ]
            problems, _ = stamp_problems(entries)
        s3 = settings["publish"].get("s3")
        unreachable = None
        if s3:
            try:
                problems += _s3_problems(s3, record, recorded, authority.name)
            except (ProviderError, Unreachable) as exc:
                unreachable = str(exc)
        if unreachable is not None:
            observation = Observation("unreachable", (unreachable,))
        else:
            observation = Observation("drifted" if problems else "in_sync", tuple(problems))
        observed[f"crl.{authority.name}"] = observation
    return observed


def _s3_problems(
    s3: dict[str, object], record: CrlRecord, recorded: RecordedState, name: str
) -> list[str]:
    """The S3 object of the CA's current key: not put yet, gone or changed."""
    from reconciler.issuers.private_ca_signing import crl_key_id
    from reconciler.providers.aws.s3_crl import location, object_problems

    authority = recorded.authorities.get(name)
    if authority is None:
        return []
    where = location(s3, crl_key_id(authority.key_id))
    stamp = record.files.get(where)
    if stamp is None:
        return [f"{where} not published yet"]
    return object_problems(s3, where, stamp)
