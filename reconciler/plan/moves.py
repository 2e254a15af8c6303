"""``moved`` blocks: the recorded state as it will be once renamed certificates carry
their new names, so that the diff sees a rename as no change at all.

Pure: the plan lists the moves, apply performs them in the state (``rename_
certificate``) before anything else.  A move whose old address is no longer
recorded was done already (moved blocks stay in a config for a while); one whose
new address is already recorded cannot be done and is a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.model.records import RecordedState
from reconciler.plan.model import Move


def apply_moves(
    moved: Sequence[tuple[str, str]], recorded: RecordedState
) -> tuple[RecordedState, tuple[Move, ...], tuple[str, ...]]:
    """(the recorded state after the moves, the moves to make, warnings)."""
    certificates = dict(recorded.certificates)
    bindings = dict(recorded.bindings)
    moves: list[Move] = []
    warnings: list[str] = []
    for source, target in moved:
        old, new = source.split(".", 1)[1], target.split(".", 1)[1]
        if old not in certificates:
            continue
        if new in certificates:
            warnings.append(
                f"cannot move {source} to {target}: {target} is already in the state "
                "(remove one with `certform state rm` first)"
            )
            continue
        certificates[new] = dataclasses.replace(certificates.pop(old), name=new)
        for address, binding in bindings.items():
            if binding.certificate == old:
                bindings[address] = dataclasses.replace(binding, certificate=new)
        moves.append(Move(source, target))
    if not moves:
        return recorded, (), tuple(warnings)
    view = dataclasses.replace(recorded, certificates=certificates, bindings=bindings)
    return view, tuple(moves), tuple(warnings)
