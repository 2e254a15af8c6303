"""The options and arguments of the ``certform`` commands (typer annotations).

Declared here, apart from ``cli.py``, so that each command reads as a list of
its options and what it does with them, and an option several commands share
has its help text written once.  Names follow the flags: ``Var`` is ``--var``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

MAX_LOCK_TIMEOUT = 86400.0


class PlanFormat(StrEnum):
    """What ``certform plan`` prints on stdout."""

    text = "text"
    json = "json"
    markdown = "markdown"


class CheckFormat(StrEnum):
    """What ``certform check`` prints on stdout."""

    text = "text"
    json = "json"
    prometheus = "prometheus"


def _lock_timeout(value: float) -> float:
    """Bounded, so that ``nan`` or ``inf`` cannot make a job wait forever."""
    if not math.isfinite(value) or not 0 <= value <= MAX_LOCK_TIMEOUT:
        raise typer.BadParameter(f"expected seconds between 0 and {MAX_LOCK_TIMEOUT:.0f}")
    return value


# -- the application's own (accepted after the command too: see cli_group.py) ------
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Errors only: no progress, no warnings, no notes."),
]
Verbose = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        show_default=False,
        help="Log what certform does on stderr (-v info, -vv debug).",
    ),
]
NoColor = Annotated[
    bool,
    typer.Option("--no-color", help="No colour (also: NO_COLOR set, or not a terminal)."),
]

# -- shared by the commands that load a configuration -----------------------------
Config = Annotated[
    Path,
    typer.Option("--config", "-c", help="Config file or directory of *.yaml files."),
]
Var = Annotated[
    list[str] | None,
    typer.Option("--var", metavar="KEY=VALUE", help="Template variable key=value (repeatable)."),
]
VarFile = Annotated[
    list[Path] | None,
    typer.Option("--var-file", help="YAML file of template variables (repeatable)."),
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        help="Seconds to wait for the state lock (default: fail fast).",
        callback=_lock_timeout,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Tag = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="KEY=VALUE",
        help="Only certificates with this tag (key=value; repeatable).",
    ),
]

# -- plan ---------------------------------------------------------------------------
PlanOut = Annotated[Path | None, typer.Option("--out", help="Save the plan for apply.")]
PlanJson = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
PlanFormatOption = Annotated[
    PlanFormat,
    typer.Option("--format", help="text, json, or markdown (a pull-request comment, no secrets)."),
]
DetailedExitcode = Annotated[
    bool,
    typer.Option("--detailed-exitcode", help="Exit 0 no changes, 1 error, 2 changes/drift."),
]
PlanAt = Annotated[
    str | None,
    typer.Option("--at", help="Plan as if the clock said this (ISO-8601 or +61d)."),
]

# -- apply --------------------------------------------------------------------------
ApplyJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the steps and their results as JSON on stdout (plan and progress go "
        "to stderr).",
    ),
]
PlanFile = Annotated[
    Path | None, typer.Argument(help="A plan saved by 'plan --out'; applied exactly.")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")]
Parallelism = Annotated[
    int,
    typer.Option(
        "--parallelism",
        min=1,
        max=100,
        help="ACME orders placed, and bindings deployed, at the same time.",
    ),
]
Force = Annotated[
    bool,
    typer.Option("--force", help="Apply a plan that exceeds policy.change_limit or rotates a CA."),
]

# -- show, validate -----------------------------------------------------------------
ShowAddress = Annotated[
    str | None,
    typer.Argument(
        metavar="ADDRESS",
        help="One certificate (certificate.NAME or NAME) or authority.NAME, in full.",
        show_default=False,
    ),
]
ValidateJson = Annotated[
    bool, typer.Option("--json", help="Print the result (or every problem) as JSON.")
]

# -- check --------------------------------------------------------------------------
Within = Annotated[
    str | None,
    typer.Option(
        "--within",
        help="Report what expires within this duration (default: what is past its "
        "own renewal time).",
    ),
]
CheckAt = Annotated[
    str | None,
    typer.Option("--at", help="Check as if the clock said this (ISO-8601 or +61d)."),
]
CheckJson = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
Format = Annotated[
    CheckFormat,
    typer.Option(
        "--format",
        help="text, json, or prometheus (node_exporter textfile format) on stdout.",
    ),
]
CloudWatch = Annotated[
    bool,
    typer.Option(
        "--cloudwatch",
        help="Publish DaysToExpiry per certificate to CloudWatch (PutMetricData): with the "
        "cloudwatch: block's settings, else namespace certform through the first aws provider.",
    ),
]
IamCloudWatch = Annotated[
    bool,
    typer.Option(
        "--cloudwatch",
        help="Include PutMetricData for check --cloudwatch without a cloudwatch: block "
        "(namespace certform).",
    ),
]
Textfile = Annotated[
    Path | None,
    typer.Option(
        "--textfile",
        help="Also write the Prometheus gauges to this file, atomically (for "
        "node_exporter's textfile collector: name it *.prom).",
    ),
]

# -- report -------------------------------------------------------------------------
DEFAULT_REPORT = Path("inventory.html")
ReportOut = Annotated[
    Path,
    typer.Option("--out", help="Where to write the page (replaced if it exists; '-' for stdout)."),
]
ReportAt = Annotated[
    str | None,
    typer.Option("--at", help="Report as if the clock said this (ISO-8601 or +61d)."),
]

# -- revoke -------------------------------------------------------------------------
RevokeName = Annotated[
    str, typer.Argument(help="A certificate, or authority.NAME for a subordinate CA.")
]
Reason = Annotated[
    str,
    typer.Option(
        "--reason",
        help="RFC 5280 reason: unspecified, keyCompromise, superseded, "
        "cessationOfOperation, affiliationChanged, ...",
    ),
]

# -- schema, audit, export ----------------------------------------------------------
SchemaOut = Annotated[
    Path, typer.Option("--out", help="File to write the JSON Schema to (default: standard output).")
]
Verify = Annotated[
    bool, typer.Option("--verify", help="Check the hash chain: exit 1 if edited or deleted.")
]
ExportName = Annotated[str, typer.Argument(help="The certificate to export.")]
PassphraseFile = Annotated[
    Path,
    typer.Option(
        "--passphrase-file",
        help="File holding the passphrase that encrypts the key (one line, 8+ characters).",
    ),
]
ExportFormat = Annotated[
    str, typer.Option("--format", help="pem (NAME.crt, .chain.pem, .root.pem, .key) or pkcs12.")
]
ExportOut = Annotated[
    Path, typer.Option("--out", help="Directory to write into (existing files are kept).")
]

DEFAULT_CONFIG = Path("certform.yaml")
"""``--config``'s default: ``session.DEFAULT_CONFIG``, not imported for it (see cli.py)."""

# -- state commands ----------------------------------------------------------------
LockId = Annotated[str, typer.Argument(help="The lock ID the 'locked by' message names.")]
StateAddress = Annotated[
    str, typer.Argument(help="authority.NAME, certificate.NAME or binding.TARGET.")
]
MigrateFrom = Annotated[
    Path, typer.Option("--from", help="The SQLite state file to copy (e.g. .certform/state.db).")
]
MigrateMasterKey = Annotated[
    Path | None,
    typer.Option(
        "--from-master-key-file",
        help="The master key file of the state copied (default: $CERTFORM_MASTER_KEY, "
        "or master.key beside it).",
    ),
]
StateTarget = Annotated[str, typer.Argument(help="The new address: certificate.NEW.")]
StateAddresses = Annotated[
    list[str], typer.Argument(help="Addresses to forget (see `certform state list`).")
]
Replace = Annotated[
    list[str] | None,
    typer.Option(
        "--replace",
        help="Re-key and re-issue this certificate (certificate.NAME) whatever its state; "
        "repeatable.",
    ),
]
