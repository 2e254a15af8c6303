"""``certform iam-policy``: print the IAM policy the configuration needs.
Formatting only; the statements are declared by the modules that call AWS
(``providers/aws/iam_policy.py`` collects them)."""

from __future__ import annotations

import json

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import err, session_for
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    """Add ``iam-policy`` to the main application."""
    app.command("iam-policy")(iam_policy)


def iam_policy(
    config: opt.Config = DEFAULT_CONFIG,
    cloudwatch: opt.IamCloudWatch = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Print the IAM policy (JSON) that plan, apply, check and destroy of this
    configuration need: actions per service, resources scoped to what it names,
    ACM certificates to those tagged managed-by: certform."""
    policy = session_for(config, var, var_file).iam_policy(cloudwatch)
    typer.echo(json.dumps(policy, indent=2))
    if not policy["Statement"]:
        err("Note: this configuration makes no AWS call; the policy has no statement.")
