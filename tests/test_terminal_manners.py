"""Terminal and CI manners (issue 14), through the real CLI: progress (a bar on a
terminal, timestamped lines in a log), -q / -v / CERTFORM_LOG on stderr with no
secret in it, colour in plans only on a terminal, help without Python type
names, -h, shell completion.

The terminal is a real pseudo-terminal (``tests/pty_lab.py``) given to the
``certform`` process as stdin, stdout and stderr; what it wrote is read back
from the other end, ANSI escapes and all.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess

import pytest
import typer

from reconciler import logs
from reconciler.cli import app
from tests.conftest import Workspace, certform_argv
from tests.pty_lab import run_on_terminal

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TYPE_NAMES = re.compile(r"<(bool|str|int|float|path|list\[[^>]*\]|[a-z|]+)>|list\[|int range")


def on_terminal(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """certform on a pseudo-terminal 100 columns wide (``pty_lab``)."""
    if env is None:  # whatever the machine running the tests says
        env = {k: v for k, v in ws.env.items() if k != "NO_COLOR"}
    environment = {**env, "COLUMNS": "100", "TERM": "xterm"}
    return run_on_terminal([*certform_argv(), *args], ws.root, environment)


def plain(text: str) -> str:
    return ANSI.sub("", text)


# -- progress -------------------------------------------------------------------------
def test_apply_in_a_log_writes_timestamped_lines_with_counts(workspace: Workspace) -> None:
    out = workspace.ok("apply", "--auto-approve").out
    assert re.search(rf"^{STAMP} authority\.root: issue…$", out, re.M), out
    assert re.search(rf"^{STAMP} \[1/6\] authority\.root: issue done \(serial ", out, re.M), out
    assert re.search(rf"^{STAMP} \[6/6\] binding\.files:out/api: bind done", out, re.M), out
    assert re.search(rf"^{STAMP} 6/6 step\(s\) finished in \d+\.\ds$", out, re.M), out
    assert "\x1b[" not in out  # no bar, no colour in a log


def test_apply_on_a_terminal_shows_a_progress_bar(workspace: Workspace) -> None:
    code, output = on_terminal(workspace, "apply", "--auto-approve")
    assert code == 0, output
    text = plain(output)
    assert re.search(r"Applying .*6/6 elapsed \d:\d\d:\d\d remaining", text), text
    assert "binding.files:out/api: bind done" in text  # the messages above the bar
    assert not re.search(rf"{STAMP} \[", text)  # no log lines on a terminal
    assert "Apply complete: 6 change(s) made." in text


def test_quiet_apply_prints_only_the_summary(workspace: Workspace) -> None:
    result = workspace.ok("apply", "--auto-approve", "-q")
    assert result.out == "\nApply complete: 6 change(s) made.\n"
    assert result.err == ""


# -- logging --------------------------------------------------------------------------
def test_verbose_and_certform_log_write_the_reconciler_loggers_to_stderr(
    workspace: Workspace,
) -> None:
    default = workspace.ok("plan")
    assert " INFO " not in default.err and " DEBUG " not in default.err
    info = workspace.ok("plan", "-v")  # after the command, as Terraform users type it
    assert re.search(r"INFO reconciler\.session: loaded certform\.yaml in", info.err), info.err
    assert " DEBUG " not in info.err
    assert info.out == default.out  # logs never mix into stdout
    debug = workspace.ok("-vv", "plan")
    assert "DEBUG reconciler.session: no state yet" in debug.err
    workspace.env["CERTFORM_LOG"] = "debug"
    assert "DEBUG reconciler.session" in workspace.ok("plan").err
    workspace.env["CERTFORM_LOG"] = "loud"
    assert workspace.ok("plan").err.startswith(
        "Warning: CERTFORM_LOG=loud is not a level (debug, info, warning, error); using warning."
    )


def test_a_debug_apply_logs_no_key_and_no_master_key(workspace: Workspace) -> None:
    workspace.env["CERTFORM_LOG"] = "debug"
    result = workspace.ok("apply", "--auto-approve")
    assert "DEBUG reconciler." in result.err
    key_pem = (workspace.root / "out/web/key.pem").read_text()
    body = [line for line in key_pem.splitlines() if line and "-----" not in line]
    for line in body:
        assert line not in result.text
    assert "PRIVATE KEY" not in result.text
    assert workspace.env["CERTFORM_MASTER_KEY"] not in result.text


def test_library_debug_calls_are_reachable_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The dns01 solver's ``log.debug`` (no command reaches it without a DNS
    server): -vv switches the ``reconciler`` hierarchy on, secrets are replaced."""
    logs.configure(logs.level_for(quiet=False, verbose=2))
    try:
        log = logging.getLogger("reconciler.acme.dns01")
        log.debug("dns-01: added TXT %r", "abc")
        log.debug("oops %s", "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----")
        logging.getLogger("botocore.endpoint").debug("request body PrivateKey=...")
    finally:
        logs.configure(logging.WARNING)
    err = capsys.readouterr().err
    assert "DEBUG reconciler.acme.dns01: dns-01: added TXT 'abc'" in err
    assert "oops [redacted]" in err and "MIIB" not in err
    assert "botocore" not in err  # libraries stay at warnings


# -- colour ---------------------------------------------------------------------------
def test_plans_are_coloured_on_a_terminal_only(workspace: Workspace) -> None:
    piped = workspace.ok("plan").out
    assert "\x1b[" not in piped
    code, coloured = on_terminal(workspace, "plan")
    assert code == 0, coloured
    assert "  \x1b[32m+\x1b[0m authority.root" in coloured
    assert plain(coloured) == piped  # the same text underneath
    for off in (("plan", "--no-color"), ("--no-color", "plan")):
        code, output = on_terminal(workspace, *off)
        assert code == 0 and output == piped, output
    code, output = on_terminal(workspace, "plan", env={**workspace.env, "NO_COLOR": "1"})
    assert code == 0 and output == piped, output


def test_renewals_are_yellow_on_a_terminal(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve", "-q")
    code, output = on_terminal(workspace, "plan", "--replace", "certificate.web")
    assert code == 0, output
    assert "\x1b[31m-/+\x1b[0m certificate.web" in output or "\x1b[33m~\x1b[0m" in output


# -- help and completion ----------------------------------------------------------------
def _commands() -> list[list[str]]:
    group = typer.main.get_group(app)
    found: list[list[str]] = []
    for name, command in group.commands.items():
        found.append([name])
        for sub in getattr(command, "commands", {}):
            found.append([name, sub])
    return found


def test_help_of_every_command_names_no_python_type() -> None:
    commands = _commands()
    assert ["apply"] in commands and ["state", "mv"] in commands
    for command in [[], *commands]:
        flag = "-h" if len(command) % 2 else "--help"  # both, across the commands
        result = subprocess.run(
            [*certform_argv(), *command, flag], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage: certform" in result.stdout, command
        assert not TYPE_NAMES.search(result.stdout), (command, result.stdout)


def test_shell_completion_is_offered_and_completes() -> None:
    script = subprocess.run(
        [*certform_argv(), "--show-completion", "bash"], capture_output=True, text=True
    )
    assert script.returncode == 0 and "_CERTFORM_COMPLETE=complete_bash" in script.stdout
    env = {**os.environ, "_CERTFORM_COMPLETE": "complete_bash",
           "COMP_WORDS": "certform state ", "COMP_CWORD": "2"}  # fmt: skip
    completed = subprocess.run(certform_argv(), capture_output=True, text=True, env=env)
    assert completed.stdout.split() == ["list", "show", "migrate", "mv", "rm"]
