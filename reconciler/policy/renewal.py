"""When a certificate is due for renewal: one small pure function.

Default (no ``renew_before``): at two thirds of the lifetime, as cert-manager
does, so 90-day certificates renew with 30 days left.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.durations import parse_renew_before

DEFAULT_RENEW_SHARE = 1 / 3


def renewal_time(not_before: datetime, not_after: datetime, renew_before: str | None) -> datetime:
    """The instant from which the certificate should be renewed."""
    lifetime = not_after - not_before
    if renew_before is None:
        return not_after - lifetime * DEFAULT_RENEW_SHARE
    window = parse_renew_before(renew_before)
    if window.duration is not None:
        return not_after - window.duration
    return not_after - lifetime * ((window.percent or 0) / 100)


def describe_window(renew_before: str | None) -> str:
    """How the plan names the renewal window."""
    if renew_before is None:
        return "inside the default renewal window (last third of its lifetime)"
    return f"inside renew_before {renew_before}"
