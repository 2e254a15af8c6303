"""``certform report``: the inventory as one self-contained HTML page (see
``reconciler/report/``).  Read-only, lock-free, no network: like ``show``."""

from __future__ import annotations

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import session_for
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    config: opt.Config = DEFAULT_CONFIG,
    out: opt.ReportOut = opt.DEFAULT_REPORT,
    at: opt.ReportAt = None,
    tag: opt.Tag = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Write an HTML inventory: authorities, certificates and bindings, days left in
    colour bands, a 90-day expiry timeline, the CA tree, the last apply and the audit
    log. One file that loads nothing (open it anywhere, attach it to a ticket)."""
    from reconciler.errors import UsageError
    from reconciler.fsutil import write_atomic
    from reconciler.report.render import render_html

    data = session_for(config, var, var_file, lock_timeout).report(at, tag)
    page = render_html(data)
    if str(out) == "-":
        typer.echo(page, nl=False)
        return
    try:
        write_atomic(out, page.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(
        f"Wrote {out} ({len(data.authorities)} authorities, {len(data.certificates)} "
        f"certificates, {len(data.bindings)} bindings)."
    )
