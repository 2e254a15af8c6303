"""Text the ``certform`` commands print, made from session results.

Pure functions from results to strings (each ending in a newline where the
command prints whole lines), so that what a user reads is one place to look
at and ``cli.py`` stays wiring.  The inventory table (``inventory.py``) and
the plan (``plan/render.py``) have their own renderers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: ``certform --version`` imports no session
    from reconciler.monitoring.notifications import DeliveryReport
    from reconciler.session import ApplyOutcome, CheckResult, ImportResult, ValidateResult
    from reconciler.state.store import AuditVerification

from reconciler.cli_json import FORMAT_VERSION

AUDIT_COLUMNS = ("at", "actor", "command", "address", "action", "result", "detail")


def validate_text(result: ValidateResult) -> str:
    return (
        f"Configuration is valid: {result.authorities} authorities, "
        f"{result.certificates} certificates, {result.bindings} bindings."
    )


def apply_summary(outcome: ApplyOutcome) -> str:
    """The last line of an apply that ran (for stderr when it is incomplete)."""
    result = outcome.result
    assert result is not None
    if not result.ok:
        return (
            f"\nApply incomplete: {len(result.done)} done, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped. Fix the errors above and run apply again."
        )
    done = f"\nApply complete: {len(result.done) + len(outcome.plan.moves)} change(s) made."
    if result.covered:
        done += (
            f" Warning: {', '.join(result.covered)} failed, but a fallback issuer did "
            "everything that needed it; the next apply tries again."
        )
    if result.waiting:
        return (
            f"{done} {len(result.waiting)} waiting for approval ("
            + ", ".join(result.waiting)
            + "): the next apply continues them."
        )
    return done


def check_text(result: CheckResult) -> str:
    """One line per finding and a count of what was checked."""
    lines = [f"{f.severity.upper():8} {f.address}: {f.message}" for f in result.findings]
    lines.append(f"Checked {result.checked} resources: {len(result.problems)} need attention.")
    return "".join(f"{line}\n" for line in lines)


def notification_lines(
    reports: Sequence[DeliveryReport] | None, text: bool, label: str = "Notifications"
) -> list[str]:
    """For stderr: failed deliveries always, sent ones only beside text output."""
    return [
        f"{label}: {report.summary()}"
        for report in reports or ()
        if not report.ok or (text and report.sent)
    ]


def import_header(result: ImportResult) -> str:
    material = result.material
    return (
        f"# {result.cert}: serial {material.serial}, {material.key_algorithm}, expires "
        f"{material.certificate.not_valid_after_utc:%Y-%m-%d}. Add to your config "
        "(keep the key file out of git, or use private_key_env):"
    )


def render_audit(rows: list[dict[str, Any]]) -> str:
    """A table, one record a row, oldest first, fitted to the terminal (rich)."""
    if not rows:
        return "No audit records.\n"
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in AUDIT_COLUMNS:
        table.add_column(column, overflow="fold", no_wrap=column not in ("detail", "actor"))
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in AUDIT_COLUMNS))
    return rendered(table)


def rendered(renderable: Any) -> str:
    """``renderable`` as plain text as wide as stdout allows, lines right-stripped."""
    import io

    from rich.console import Console

    from reconciler.terminal import width

    buffer = io.StringIO()
    Console(file=buffer, width=width(), color_system=None, highlight=False).print(renderable)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def audit_verification_text(verification: AuditVerification) -> str:
    lines = [f"audit chain broken: {problem}" for problem in verification.problems]
    if verification.unverifiable:
        lines.append(f"{verification.unverifiable} records before the chain began (not verifiable)")
    if verification.intact:
        lines.append(f"audit chain intact: {verification.records} records")
    return "".join(f"{line}\n" for line in lines)


def audit_verification_json(verification: AuditVerification) -> str:
    report = {
        "format_version": FORMAT_VERSION,
        "intact": verification.intact,
        "records": verification.records,
        "unverifiable": verification.unverifiable,
        "head": verification.head,
        "problems": list(verification.problems),
    }
    return json.dumps(report, indent=2)


def audit_verification(verification: AuditVerification, as_json: bool) -> str:
    """``audit --verify`` output, newline-terminated."""
    if as_json:
        return audit_verification_json(verification) + "\n"
    return audit_verification_text(verification)


def audit_log(rows: list[dict[str, Any]], as_json: bool) -> str:
    """``audit`` output, newline-terminated."""
    if as_json:
        return json.dumps({"format_version": FORMAT_VERSION, "records": rows}, indent=2) + "\n"
    return render_audit(rows)
