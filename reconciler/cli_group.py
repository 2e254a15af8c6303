"""The click group every ``certform`` command hangs from: help that names values
as a user reads them, and the global options accepted after the command too.

Typer labels option values with Python annotations (``<bool>``, ``<list[Path]>``);
``certform`` shows ``PATH``, ``TEXT``, ``INTEGER``... and nothing for a flag, once
here for every command (also those added later), unless an option sets its own
``metavar`` (``--var KEY=VALUE``).

``-q``, ``-v`` and ``--no-color`` are options of the application (they set up
logging and colour before any command runs) but users type them where Terraform
takes them, after the command (``certform apply -v``): ``parse_args`` moves them
in front of it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "-vv", "--no-color"})
"""Flags of the application that may follow the command name (no value each)."""

HELP_OPTIONS = ["-h", "--help"]

_PLAIN = {bool: "", int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


def value_label(param: Any) -> str | None:
    """What help shows for ``param``'s value: '' for a flag, None to leave it."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:  # an older typer: click's own names are already plain
        return None
    if descriptor.is_choice:
        return "[" + "|".join(str(_choice(c)) for c in descriptor.choices or ()) + "]"
    if descriptor.is_path:
        return "PATH"
    annotation = descriptor.annotation
    if descriptor.is_list:
        annotation = getattr(annotation, "__args__", (str,))[0]
    return _PLAIN.get(annotation, "VALUE")


def _choice(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def plain_help(params: list[Any]) -> list[Any]:
    """Give every parameter a plain label (in place): an option's value its metavar
    (unless it has its own), an argument its NAME and no type column."""
    for param in params:
        label = value_label(param)
        if label is None:
            continue
        if getattr(param, "param_type_name", "") == "argument":
            if param.metavar is None:
                param.metavar = param.name.upper()
            # Typer prints an argument's annotation beside its name whatever its
            # metavar: this instance prints nothing there instead.
            param.display_type_rich = _no_type
        elif param.metavar is None:
            param.metavar = label
    return params


def _no_type(ctx: Any = None) -> str:
    return ""


def hoist_global_flags(args: list[str]) -> list[str]:
    """``args`` with the global flags moved to the front (up to a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return [*flags, *rest, *args[end:]]


COMMAND_ORDER = (
    *("init", "validate", "plan", "apply", "show", "check", "report", "graph", "import"),
    *("export", "revoke", "audit", "state", "force-unlock", "iam-policy", "ssh-keyscan"),
    "schema",
)


class CertformGroup(TyperGroup):
    """A typer group with plain value labels in help and global flags anywhere."""

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_help(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:  # its help option included (created for ``ctx``)
            plain_help(command.get_params(ctx) if ctx is not None else command.params)
            if command.help:
                command.help = reflowed(command.help)
        return command

    def list_commands(self, ctx: Any) -> list[str]:
        """In the order of a day's work, not of registration (the top level only:
        ``state``'s subcommands keep theirs)."""
        if "init" not in self.commands:
            return list(self.commands)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda name: (rank.get(name, len(rank)), name))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_flags(args)
        return super().parse_args(ctx, args)


def reflowed(text: str) -> str:
    """Docstring help with each paragraph on one line: rich help keeps the source's
    line breaks, which break mid-sentence in the command list and on narrow terminals."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)
