"""Resource limits on one configuration document, and how a broken one is reported.

YAML aliases share one node among many places, so a 300-byte document with
nine levels of nine aliases ("billion laughs") denotes 9**9 values.  Loading
it is cheap (the loader shares the objects), but whatever walks the data
afterwards (validation, merge keys, error reporting) pays the expanded size.
So ``yamlbuild`` counts the expanded size on the event stream, where an alias
is a single event: a document over ``MAX_NODES`` fails at once, at the alias
that crossed the limit, and an alias inside the node it names (a cycle, an
infinite expansion) fails too.  Nesting is bounded by ``MAX_DEPTH``: the
validation after loading recurses once per level.

This module only holds the numbers and the wording; the counting lives in the
builder's single pass over the events.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Finding",
    "alias_cycle",
    "too_deep",
    "too_large",
    "too_many_nodes",
]

#: Largest configuration (or variable) file, and largest text after templating.
#: Per file: a directory configuration may spread over many.  A file of 10,000
#: certificates with their bindings is about 2.3 MB.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: Most values (scalars, mappings, sequences) a document may denote once every
#: alias is expanded: about 80,000 certificates with their bindings.
MAX_NODES = 2_000_000
#: Deepest nesting of mappings and sequences (a configuration needs under 10).
MAX_DEPTH = 100


@dataclass(frozen=True)
class Finding:
    """One problem in a document: 1-based line (``None``: the whole file), dotted
    field (may be empty) and message; the loader adds the file name."""

    line: int | None
    field: str
    message: str


def too_large(size: int, after_templating: bool = False) -> str:
    """The file (or its rendered text) is over ``MAX_CONFIG_BYTES``."""
    what = "after templating " if after_templating else ""
    return (
        f"document too large: {size:,} bytes {what}is more than the maximum "
        f"{MAX_CONFIG_BYTES // (1024 * 1024)} MiB"
    )


def too_deep() -> str:
    """A mapping or sequence nested deeper than ``MAX_DEPTH``."""
    return f"nesting deeper than the maximum {MAX_DEPTH} levels"


def too_many_nodes(alias: str | None) -> str:
    """The expanded document passed ``MAX_NODES`` values (at ``*alias``, if one)."""
    if alias is not None:
        return (
            f"too many alias expansions: *{alias} takes the document past the "
            f"maximum {MAX_NODES:,} values"
        )
    return f"document too large: more than the maximum {MAX_NODES:,} values"


def alias_cycle(anchor: str) -> str:
    """An alias used inside the node its anchor names: an infinite structure."""
    return f"alias *{anchor} is used inside the node &{anchor} it names"
