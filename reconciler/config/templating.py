"""Jinja templating of configuration files, rendered before YAML parsing.

Templates run in Jinja's sandbox with ``StrictUndefined``: a misspelt
variable is an error, never an empty string, and a template cannot reach
Python internals (``''.__class__``, ``cycler.__init__.__globals__``...).  The
only inputs are the variables given on the command line (``--var``,
``--var-file``) and the ``env(name, default)`` function; nothing else of the
process environment is visible, and ``env()`` refuses certform's secrets
(``template_env``).  Templates run under resource limits (``template_limits``):
a template that would compute a huge number or string, or loop for too long,
is an error at its line, not a hung or killed process.

Files without ``{{``, ``{%`` or ``{#`` skip Jinja entirely (the common, fast
case).

Line numbers.  YAML errors, validation errors and ``SourceMap`` lines refer to
the *rendered* text.  ``{{ var }}`` substitutions keep every line where it was
(as long as the value has no newline), and so do block tags alone on a line,
which render to an empty line.  But a block that adds or removes lines (an
``{% if %}`` whose body is skipped, a ``{% for %}`` emitting several lines, a
multi-line value) shifts the line numbers of everything after it in that
file.  Template errors themselves always carry the source line.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    Undefined,
    meta,
)
from jinja2.exceptions import SecurityError, UndefinedError

from reconciler.config.template_env import note_env_read, note_variables_used, refusal_reason
from reconciler.config.template_limits import BoundedSandbox, TemplateLimitError, render_limits
from reconciler.errors import ConfigError, ConfigIssue

__all__ = ["needs_rendering", "render_config_text"]

_MARKERS = ("{{", "{%", "{#")
_NO_DEFAULT: Any = object()
_VARIABLE_HINT = "set template variables with --var NAME=VALUE or --var-file FILE"


def needs_rendering(text: str) -> bool:
    """True when ``text`` contains Jinja markup; plain YAML is not rendered at all."""
    return any(marker in text for marker in _MARKERS)


def _env_function(name: str, default: Any = _NO_DEFAULT) -> Any:
    """``env(name, default)`` in templates: one environment variable, on request."""
    if not isinstance(name, str):
        raise TemplateRuntimeError(f"env() takes a variable name, got {name!r}")
    note_env_read(name)
    reason = refusal_reason(name)
    if reason is not None:
        raise TemplateRuntimeError(
            f"env({name!r}) is refused: {reason}, and what templates produce ends up in "
            "plans, state and output; pass it to the command that needs it instead"
        )
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is _NO_DEFAULT:
        raise TemplateRuntimeError(
            f"environment variable {name!r} is not set (use env({name!r}, default) to allow that)"
        )
    return default


def _printable(value: Any) -> Any:
    """``{{ env }}`` without a call would print ``<function ...>`` into a tag or a
    path: a template that prints a function is an error, not text."""
    if callable(value) and not isinstance(value, str | Undefined):  # Undefined: its own error
        name = getattr(value, "__name__", "a function").removeprefix("_").removesuffix("_function")
        raise TemplateRuntimeError(
            f"a template prints the function {name!r} instead of calling it "
            f"({name}(...)); a template variable cannot be named {name!r}"
        )
    return value


@cache
def _environment() -> BoundedSandbox:
    """The one sandboxed environment; stateless, so shared across files."""
    environment = BoundedSandbox(
        undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False,
        finalize=_printable,
    )  # fmt: skip
    environment.globals["env"] = _env_function
    return environment


def reserved_names() -> frozenset[str]:
    """Names templates already use for functions (``env``, ``range``...): a variable of
    that name would hide the function, or be hidden by it."""
    return frozenset(_environment().globals)


def render_config_text(text: str, filename: str, display: str, variables: Mapping[str, Any]) -> str:
    """Render one file's text; raise ``ConfigError`` with the template's line on failure.

    ``filename`` (the absolute path) becomes the template's file name, which
    Jinja writes into rewritten tracebacks: that is how an error raised while
    rendering is traced back to its line.  ``display`` names the file for users.
    """
    if not needs_rendering(text):
        return text
    environment = _environment()
    with render_limits():
        try:
            source = environment.parse_guarded(text, display, filename)
            note_variables_used(meta.find_undeclared_variables(source))
            code = environment.compile(source, name=display, filename=filename)
        except TemplateSyntaxError as exc:
            raise _error(display, exc.lineno, f"template syntax error: {exc.message}") from None
        except Exception as exc:  # constant folding at compile time evaluates template code
            raise _error(display, _template_line(exc, filename), _describe(exc)) from None
        template = environment.template_class.from_code(
            environment, code, environment.make_globals(None), None
        )
        try:
            rendered = template.render(dict(variables))
        except Exception as exc:  # anything raised by the template is the template's fault
            line = _template_line(exc, filename)
            python_line = getattr(exc, "python_line", None)
            if line is None and python_line is not None:
                line = template.get_corresponding_lineno(python_line)
            raise _error(display, line, _describe(exc)) from None
    return rendered


def _describe(exc: Exception) -> str:
    """User-facing text for an exception raised while rendering."""
    if isinstance(exc, SecurityError):
        return f"template tried to access an unsafe attribute (blocked by the sandbox): {exc}"
    if isinstance(exc, UndefinedError):
        return f"undefined template variable: {exc.message} ({_VARIABLE_HINT})"
    if isinstance(exc, TemplateLimitError):
        return f"template over its resource limits: {exc.message}"
    if isinstance(exc, MemoryError):
        return "template over its resource limits: it needs more memory than there is"
    if isinstance(exc, RecursionError):
        return "template over its resource limits: recursion too deep"
    if isinstance(exc, TemplateError):
        return str(exc.message or exc)
    return f"template evaluation failed: {type(exc).__name__}: {exc}"


def _template_line(exc: BaseException, filename: str) -> int | None:
    """Innermost traceback line that Jinja attributed to the template ``filename``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def _error(display: str, line: int | None, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(display, line, "template", message)])
