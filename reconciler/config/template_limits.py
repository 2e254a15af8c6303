"""Resource limits for the sandboxed Jinja templates (configuration files, nginx snippets).

Jinja's sandbox stops a template from reaching Python internals, not from
exhausting the machine: ``{{ 9**(9**9) }}`` computes for hours,
``{{ "a"*1000000000 }}`` allocates a gigabyte and ``|center(10**9)`` as much.
``BoundedSandbox`` closes that with the sandbox's own hooks, so every refusal
is a ``TemplateLimitError`` raised inside the template, which the caller turns
into an error at the template's line:

* the operators that multiply sizes (``*``, ``**``, ``%``, ``+``) are
  intercepted (``intercepted_binops``) and refused *before* computing a result
  above the limits: a string, list or rendered text over ``MAX_TEXT``
  characters or ``MAX_ITEMS`` items, an integer over ``MAX_INT_BITS`` bits, a
  format width over ``MAX_WIDTH``;
* the filters, ``str`` methods and globals whose arguments multiply sizes
  (``center``, ``indent``, ``replace``, ``join``, ``format``, ``wordwrap``,
  ``batch``, ``slice``, ``sum``, ``tojson``, ``lipsum``, ``str.ljust``...)
  check those arguments first, and every call's result is checked after;
* every loop's iterable is wrapped (``LOOP_GUARD``, added to the parsed
  template) and ``~`` concatenations are checked (``TEXT_GUARD``), and the
  rendered text as a whole is bounded by ``concat``;
* a render-wide deadline (``RENDER_SECONDS``) is checked at every loop step,
  call, attribute access and operator, which bounds nested loops and
  recursive macros that stay within every size limit; no thread or signal.

Jinja's own ``range()`` limit (``MAX_RANGE``, 100,000) stays.
"""

from __future__ import annotations

import contextlib
import math
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.exceptions import TemplateRuntimeError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

__all__ = [
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_TEXT",
    "MAX_WIDTH",
    "RENDER_SECONDS",
    "BoundedSandbox",
    "TemplateLimitError",
    "render_limits",
]

MAX_TEXT = 16 * 1024 * 1024
"""Characters in any string a template builds, and in its rendered text."""
MAX_ITEMS = 1_000_000
"""Items in any list, tuple or mapping a template builds."""
MAX_INT_BITS = 16_384
"""Bits of any integer a template computes (Python prints at most 4,300 digits anyway)."""
MAX_WIDTH = 10_000
"""Field width or precision in a format string."""
RENDER_SECONDS = 10.0
"""Wall-clock time one template may take to compile and render."""

LOOP_GUARD = "certform_loop_guard"
TEXT_GUARD = "certform_text_guard"

_deadline: ContextVar[float | None] = ContextVar("certform_template_deadline", default=None)


class TemplateLimitError(TemplateRuntimeError):
    """A template went over one of the limits above.

    ``python_line`` is set when the error is found outside the template's own
    frames (the rendered text as a whole) and locates where rendering was."""

    def __init__(self, message: str, python_line: int | None = None) -> None:
        super().__init__(message)
        self.python_line = python_line


@contextlib.contextmanager
def render_limits() -> Iterator[None]:
    """Start the deadline for one template (compile and render)."""
    token = _deadline.set(time.monotonic() + RENDER_SECONDS)
    try:
        yield
    finally:
        _deadline.reset(token)


def _tick() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateLimitError(
            f"the template took longer than {RENDER_SECONDS:g} s to render (endless loop?)"
        )


# --- sizes --------------------------------------------------------------------------------


def _text_limit(size: int, what: str) -> None:
    if size > MAX_TEXT:
        raise TemplateLimitError(
            f"{what} would be {size:,} characters long; templates are limited to {MAX_TEXT:,}"
        )


def _items_limit(size: int, what: str) -> None:
    if size > MAX_ITEMS:
        raise TemplateLimitError(
            f"{what} would hold {size:,} items; templates are limited to {MAX_ITEMS:,}"
        )


def _int_limit(bits: float) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(
            f"the number would have over {MAX_INT_BITS:,} bits, the limit for templates"
        )


def _width_limit(width: int, what: str) -> None:
    if width > MAX_WIDTH:
        raise TemplateLimitError(
            f"{what} {width:,} is too large; templates are limited to {MAX_WIDTH:,}"
        )


def _check(value: Any, what: str = "the result") -> Any:
    """Refuse a value over the limits (after the fact: for what could not be predicted)."""
    if isinstance(value, str | bytes | bytearray):
        _text_limit(len(value), what)
    elif isinstance(value, list | tuple | dict | set | frozenset):
        _items_limit(len(value), what)
    elif isinstance(value, int) and not isinstance(value, bool):
        _int_limit(value.bit_length())
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sized(value: Any) -> bool:
    return isinstance(value, str | bytes | bytearray | list | tuple)


def _length_limit(value: Any, size: int, what: str) -> None:
    if isinstance(value, str | bytes | bytearray):
        _text_limit(size, what)
    else:
        _items_limit(size, what)


# --- operators ----------------------------------------------------------------------------


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be over the limits, before computing it."""
    if operator == "**" and _is_int(left) and _is_int(right) and right > 0:
        if abs(left) > 1:
            huge = right.bit_length() > MAX_INT_BITS.bit_length()
            _int_limit(math.inf if huge else right * math.log2(abs(left)))
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            _int_limit(left.bit_length() + right.bit_length())
        elif _sized(left) and _is_int(right):
            _length_limit(left, len(left) * max(right, 0), "the repeated value")
        elif _is_int(left) and _sized(right):
            _length_limit(right, len(right) * max(left, 0), "the repeated value")
    elif operator == "+" and _sized(left) and _sized(right):
        _length_limit(left, len(left) + len(right), "the joined value")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)


def _check_printf(template: str, arguments: Any) -> None:
    """``template % arguments``: bounded widths and a bounded result."""
    longest = _longest(arguments)
    total = len(template)
    for match in _PRINTF_SPEC.finditer(template):
        if match.group(3) == "%":
            continue
        widths = [0]
        for size in (match.group(1), match.group(2)):
            if size == "*":
                raise TemplateLimitError("a '*' width in a format string is not supported")
            if size:
                _width_limit(int(size), "the format width")
                widths.append(int(size))
        total += max(widths) + longest
    _text_limit(total, "the formatted text")


def _longest(arguments: Any) -> int:
    """An upper bound for the length of any one argument once formatted."""
    if isinstance(arguments, dict):
        values: Iterable[Any] = arguments.values()
    elif isinstance(arguments, tuple | list):
        values = arguments
    else:
        values = (arguments,)
    return max((len(str(v)) for v in values), default=0)


def _check_str_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``template.format(...)``: static widths only, bounded, and a bounded result."""
    longest = max(_longest(args), _longest(kwargs))
    total = len(template)
    for _literal, field, spec, _conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if spec and "{" in spec:
            raise TemplateLimitError("a computed width in a format string is not supported")
        widths = [int(size) for size in re.findall(r"\d+", spec or "")] or [0]
        for width in widths:
            _width_limit(width, "the format width")
        total += max(widths) + longest
    _text_limit(total, "the formatted text")


# --- filters, methods, globals ------------------------------------------------------------


def _int_argument(value: Any) -> int:
    return value if _is_int(value) else 0


def _pre_center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
    _text_limit(_int_argument(width), "the centered text")


def _pre_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    indent = len(width) if isinstance(width, str) else _int_argument(width)
    text = str(s)
    _text_limit(len(text) + (text.count("\n") + 2) * indent, "the indented text")


def _replaced_length(text: str, old: Any, new: Any, count: Any) -> int:
    old, new = str(old), str(new)
    occurrences = len(text) + 1 if not old else text.count(old)
    if _is_int(count) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * max(len(new) - len(old), 0)


def _pre_replace(
    s: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any, **__: Any
) -> None:
    _text_limit(_replaced_length(str(s), old, new, count), "the replaced text")


def _pre_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), kwargs or args)


def _pre_wordwrap(
    s: Any, width: Any = 79, _breaks: Any = True, wrapstring: Any = None, *_: Any, **__: Any
) -> None:
    text = str(s)
    joiner = len(str(wrapstring)) if wrapstring is not None else 1
    lines = len(text) // max(_int_argument(width), 1) + text.count("\n") + 1
    _text_limit(len(text) + lines * joiner, "the wrapped text")


def _pre_batch(value: Any, count: Any = 1, *_: Any, **__: Any) -> None:
    _items_limit(_int_argument(count), "a batch")


def _pre_tojson(value: Any, indent: Any = None, *_: Any, **__: Any) -> None:
    size = len(indent) if isinstance(indent, str) else _int_argument(indent)
    _width_limit(size, "the JSON indent")


_PRE_CHECKS: dict[str, Callable[..., None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "replace": _pre_replace,
    "format": _pre_format,
    "wordwrap": _pre_wordwrap,
    "batch": _pre_batch,
    "slice": _pre_batch,
    "tojson": _pre_tojson,
}
"""Filters whose arguments multiply the size of the result; keyed by filter name,
called with the filter's own arguments minus any context/environment."""


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with the deadline, its pre-check (if any) and a check of its result."""
    pre = _PRE_CHECKS.get(name)
    passes = getattr(function, "jinja_pass_arg", None)

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        own = args[1:] if passes is not None else args
        if pre is not None:
            pre(*own, **kwargs)
        if name == "join":
            args, kwargs = _materialized_join(args, kwargs, passes is not None)
        elif name == "sum":
            _check_sum(own, kwargs)
        return _check(function(*args, **kwargs))

    return bounded


def _materialized_join(
    args: tuple[Any, ...], kwargs: dict[str, Any], passes: bool
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``|join``: the items listed once, so their total length can be checked first."""
    offset = 1 if passes else 0
    items = list(args[offset]) if len(args) > offset else []
    _items_limit(len(items), "the joined list")
    separator = args[offset + 1] if len(args) > offset + 1 else kwargs.get("d", "")
    if kwargs.get("attribute") is None and len(args) <= offset + 2:
        total = sum(len(str(item)) for item in items)
        _text_limit(total + len(str(separator)) * len(items), "the joined text")
    else:
        _text_limit(len(str(separator)) * len(items), "the joined text")
    return (*args[:offset], items, *args[offset + 1 :]), kwargs


def _check_sum(own: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``|sum(start=[])`` concatenates: bound the total, not just each step."""
    start = own[2] if len(own) > 2 else kwargs.get("start", 0)
    if _sized(start) and own and isinstance(own[0], list | tuple):
        total = len(start) + sum(len(item) for item in own[0] if _sized(item))
        _length_limit(start, total, "the summed value")


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """``lipsum()`` with its paragraph and word counts bounded."""
    _width_limit(_int_argument(n), "lipsum's paragraph count")
    _width_limit(_int_argument(max), "lipsum's word count")
    _tick()
    return generate_lorem_ipsum(n, html, min, max)


_STR_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_method_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Pre-checks for the ``str`` methods that multiply sizes; returns the (possibly
    materialized) first argument list."""
    owner = getattr(function, "__self__", None)
    if not isinstance(owner, str) or not isinstance(function, types.BuiltinMethodType):
        return args
    name = function.__name__
    if name in _STR_WIDTH_METHODS and args:
        _text_limit(_int_argument(args[0]), f"str.{name}'s result")
    elif name == "expandtabs":
        size = _int_argument(args[0] if args else kwargs.get("tabsize", 8))
        _text_limit(len(owner) + owner.count("\t") * size, "str.expandtabs's result")
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        _text_limit(_replaced_length(owner, args[0], args[1], count), "str.replace's result")
    elif name == "join" and args:
        items = list(args[0])
        _items_limit(len(items), "the joined list")
        total = sum(len(item) for item in items if isinstance(item, str))
        _text_limit(total + len(owner) * len(items), "str.join's result")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _text_limit(len(owner) * max(longest, 1), "str.translate's result")
    return args


# --- loops and concatenation ---------------------------------------------------------------


@pass_context
def _loop_guard(_context: Context, iterable: Any) -> Iterator[Any]:
    """Every loop's iterable goes through here: one deadline check per step."""
    for item in iterable:
        _tick()
        yield item


@pass_context
def _text_guard(_context: Context, value: Any) -> Any:
    """``a ~ b``: concatenation adds sizes, but doubling in a loop grows without end."""
    _tick()
    return _check(value, "the concatenated text")


class _AddGuards(NodeTransformer):
    """Wraps loop iterables and ``~`` concatenations of a parsed template."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _guarded(node.iter, LOOP_GUARD)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _guarded(node, TEXT_GUARD)


def _guarded(node: nodes.Expr, guard: str) -> nodes.Filter:
    return nodes.Filter(node, guard, [], [], None, None, lineno=node.lineno)


# --- the environment ----------------------------------------------------------------------


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with the limits above; see the module docstring."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[LOOP_GUARD] = _loop_guard
        self.filters[TEXT_GUARD] = _text_guard
        self.globals["lipsum"] = _bounded_lipsum
        self.concat = self._bounded_concat  # type: ignore[method-assign]

    def parse_guarded(self, source: str, name: str, filename: str) -> nodes.Template:
        """Parse ``source`` and add the loop and concatenation guards."""
        template = self.parse(source, name, filename)
        return _AddGuards().visit(template)  # type: ignore[no-any-return]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _check(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        args = _check_method_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, list | dict | set):  # list.extend in a loop doubles the list
            _check(owner, "the modified collection")
        return _check(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template: str = value.__self__
        is_format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            _tick()
            if is_format_map and len(args) == 1 and isinstance(args[0], dict):
                _check_str_format(template, (), args[0])
            else:
                _check_str_format(template, args, kwargs)
            return _check(wrapped(*args, **kwargs))  # type: ignore[no-any-return]

        return bounded

    def _bounded_concat(self, chunks: Iterable[str]) -> str:
        """The rendered text (and macro / block output), bounded as it is produced."""
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_TEXT:
                frame = getattr(chunks, "gi_frame", None)
                raise TemplateLimitError(
                    f"the rendered text is over {MAX_TEXT:,} characters long",
                    frame.f_lineno if frame is not None else None,
                )
            _tick()
            parts.append(chunk)
        return "".join(parts)
