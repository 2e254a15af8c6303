"""'Did you mean ...?' for unknown names: a typo should cost one glance, not a search."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(wanted: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'issuing'?)`` for the closest of ``choices``, or ``""``."""
    if not isinstance(wanted, str):
        return ""
    close = difflib.get_close_matches(wanted, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def expected_one_of(wanted: object, choices: Iterable[str]) -> str:
    """``expected one of: a, b (did you mean 'b'?)``: the choices, then the closest."""
    names = sorted(choices)
    listed = ", ".join(names) or "(none declared)"
    return f"expected one of: {listed}{did_you_mean(wanted, names)}"
