"""The read-only reporting commands: ``show``, ``check`` and ``audit``.
Formatting only; the work is the session's."""

from __future__ import annotations

import sys

import typer

from reconciler import cli_format, cli_json
from reconciler import cli_options as opt
from reconciler.cli_common import err, session_for
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command()(show)
    app.command()(check)
    app.command()(audit)


def show(
    address: opt.ShowAddress = None,
    config: opt.Config = DEFAULT_CONFIG,
    json_output: opt.Json = False,
    tag: opt.Tag = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Inventory: authorities and certificates, serials, expiry, where bound, tags;
    with ADDRESS, one certificate in full (fingerprint, chain, bindings, history)."""
    from reconciler import inventory

    session = session_for(config, var, var_file, lock_timeout)
    if address is not None:
        document = session.show_certificate(address)
        if json_output:
            typer.echo(cli_json.dumps(document), nl=False)
        else:
            inventory.render_certificate(document)
        return
    rows = session.show(tag)
    if json_output:
        typer.echo(cli_json.dumps(rows), nl=False)
    else:
        inventory.render_inventory(rows)


def check(
    config: opt.Config = DEFAULT_CONFIG,
    within: opt.Within = None,
    at: opt.CheckAt = None,
    json_output: opt.CheckJson = False,
    output_format: opt.Format = opt.CheckFormat.text,
    textfile: opt.Textfile = None,
    cloudwatch: opt.CloudWatch = False,
    tag: opt.Tag = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """For scheduled jobs: expiring certificates, ACM renewal health, what TLS endpoints
    really serve; Prometheus gauges, CloudWatch metrics and expiry notifications. Exit 0
    all well, 1 error (including a notification or metric not delivered), 2 something
    needs attention."""
    session = session_for(config, var, var_file, lock_timeout)
    publishing = session.cloudwatch_settings(cloudwatch)
    result = session.check(within, at, tag, textfile)
    fmt = opt.CheckFormat.json if json_output else output_format
    if fmt is opt.CheckFormat.prometheus:
        from reconciler.monitoring.prometheus import render_prometheus

        typer.echo(render_prometheus(result.metrics, result.now), nl=False)
    elif fmt is opt.CheckFormat.text:
        typer.echo(cli_format.check_text(result), nl=False)
    # The stdout sink must not corrupt JSON or Prometheus output: it goes to stderr then.
    reports = session.notify(result, sys.stdout if fmt is opt.CheckFormat.text else sys.stderr)
    metrics = session.publish_metrics(result, publishing)
    if fmt is opt.CheckFormat.json:
        typer.echo(cli_json.dumps(cli_json.check_document(result, reports, metrics)), nl=False)
    text = fmt is opt.CheckFormat.text
    for line in cli_format.notification_lines(reports, text):
        err(line)
    for line in cli_format.notification_lines([metrics] if metrics else [], text, "CloudWatch"):
        err(line)
    if status := result.exit_status([*(reports or ()), *([metrics] if metrics else [])]):
        raise typer.Exit(status)


def audit(
    config: opt.Config = DEFAULT_CONFIG,
    verify: opt.Verify = False,
    json_output: opt.Json = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """The audit log: who did what, when, with what result; --verify checks its chain."""
    session = session_for(config, var, var_file, lock_timeout)
    if verify:  # needs the master key: the chain is keyed (see state/audit_chain.py)
        verification = session.verify_audit()
        typer.echo(cli_format.audit_verification(verification, json_output), nl=False)
        if not verification.intact:
            raise typer.Exit(1)
    else:
        typer.echo(cli_format.audit_log(session.audit_log(), json_output), nl=False)
