"""What a YAML scalar or tag means: exactly what ``yaml.safe_load`` makes of it.

The builder (``yamlbuild``) reads parser events and builds the data itself,
so it needs the safe loader's decisions without its composer: which implicit
tag a plain scalar resolves to (YAML 1.1 as PyYAML has it: ``0x1f``, ``0o17``,
``1_000``, ``yes``/``no``/``on``/``off``, ``~``, timestamps, ``.inf``...) and
what a tag constructs.  Both come from PyYAML's own tables (the safe loader's
implicit resolvers and the safe constructor's scalar builders), never from
regular expressions of ours; only the safe tags exist, so no tag can build
an object or call anything.

A value that the safe loader would refuse (``!!int abc``, ``2024-13-45``, a
5,000-digit integer, an unknown tag) raises ``BadValue`` with the safe
loader's wording, for the builder to report at the node's line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import ScalarNode

__all__ = [
    "MERGE_KEY",
    "MERGE_TAG",
    "BadValue",
    "YamlValues",
    "check_collection_tag",
    "finish_collection",
]

_PREFIX = "tag:yaml.org,2002:"
STR_TAG = _PREFIX + "str"
MERGE_TAG = _PREFIX + "merge"
VALUE_TAG = _PREFIX + "value"
MAP_TAG = _PREFIX + "map"
SEQ_TAG = _PREFIX + "seq"
SET_TAG = _PREFIX + "set"
OMAP_TAG = _PREFIX + "omap"
PAIRS_TAG = _PREFIX + "pairs"
#: Tags the safe constructor builds from a scalar.
SCALAR_TAGS = frozenset(
    _PREFIX + name for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)
_MAPPING_TAGS = frozenset((MAP_TAG, SET_TAG))
_SEQUENCE_TAGS = frozenset((SEQ_TAG, OMAP_TAG, PAIRS_TAG))
#: What the safe loader calls an ordered map or pairs in its messages.
_LIST_OF_PAIRS = {OMAP_TAG: "an ordered map", PAIRS_TAG: "pairs"}

_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: What the safe constructor raises on a malformed scalar with a message worth showing.
_EXPLAINED = (ValueError, TypeError, OverflowError, ArithmeticError)


class _MergeKey:
    """Type of ``MERGE_KEY``; a class so the sentinel has a readable repr."""

    def __repr__(self) -> str:
        return "<<"


#: What a ``<<`` key (YAML 1.1 merge key) stands for while a mapping is built.
MERGE_KEY = _MergeKey()


class BadValue(Exception):
    """The safe loader would refuse this node: ``problem`` (and a ``context``, as its
    ``ConstructorError`` has); ``item`` is the offending entry of a sequence, if one."""

    def __init__(self, problem: str, context: str | None = None, item: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.context = context
        self.item = item


def _undefined(tag: str) -> BadValue:
    return BadValue(f"could not determine a constructor for the tag {tag!r}")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


class YamlValues:
    """Resolves and constructs scalars like ``yaml.safe_load``, caching plain ones.

    Configurations repeat the same scalars (issuer names, key types, durations)
    thousands of times; ``cache`` is public so the builder's hot loop can
    consult it without a method call.
    """

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}
        resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = (
            _SAFE_LOADER.yaml_implicit_resolvers
        )
        # ``BaseResolver.resolve``'s lookup, precomputed: the resolvers to try for a
        # scalar by its first character (``""`` for the empty scalar), wildcard last
        wildcard = resolvers.get(None, [])
        self._by_first: dict[str, list[tuple[str, re.Pattern[str]]]] = {
            first: [*candidates, *wildcard]
            for first, candidates in resolvers.items()
            if first is not None
        }
        self._wildcard = wildcard
        self._constructors: dict[Any, Callable[..., Any]] = _SAFE_LOADER.yaml_constructors
        self._constructor = yaml.constructor.SafeConstructor()

    def tag_of(self, value: str) -> str:
        """The implicit tag of a plain scalar (same lookup as ``BaseResolver.resolve``)."""
        for tag, regexp in self._by_first.get(value[:1], self._wildcard):
            if regexp.match(value):
                return tag
        return STR_TAG

    def plain(self, value: str, as_key: bool) -> Any:
        """The value of a plain (unquoted, untagged) scalar; ordinary values are cached.

        ``<<`` is the merge key and ``=`` the YAML 1.1 "value" key: both only mean
        something as a mapping key, as in the safe loader."""
        for tag, regexp in self._by_first.get(value[:1], self._wildcard):
            if regexp.match(value):
                return self.tagged(tag, value, as_key, cache=True)
        self.cache[value] = value  # most scalars are strings: no further call
        return value

    def tagged(self, tag: str, value: str, as_key: bool, cache: bool = False) -> Any:
        """The value of a scalar with (resolved or explicit) ``tag``; raise ``BadValue``."""
        if tag == STR_TAG:
            result: Any = value
        elif tag == MERGE_TAG and as_key:
            return MERGE_KEY
        elif tag == VALUE_TAG and as_key:
            return value  # the safe loader reads a "value" key as a string
        elif tag in SCALAR_TAGS:
            result = self._construct(tag, value)
        elif tag in _MAPPING_TAGS:
            raise BadValue("expected a mapping node, but found scalar")
        elif tag == SEQ_TAG:
            raise BadValue("expected a sequence node, but found scalar")
        elif tag in _LIST_OF_PAIRS:
            raise BadValue("expected a sequence, but found scalar", _constructing(tag))
        else:
            raise _undefined(tag)
        if cache:
            self.cache[value] = result
        return result

    def _construct(self, tag: str, value: str) -> Any:
        try:
            return self._constructors[tag](self._constructor, ScalarNode(tag, value))
        except yaml.MarkedYAMLError as exc:
            raise BadValue(exc.problem or f"invalid {_short(tag)} value {_shown(value)}") from None
        except _EXPLAINED as exc:  # "month must be in 1..12", "Exceeds the limit (4300 digits)"
            raise BadValue(f"invalid {_short(tag)} value {_shown(value)}: {exc}") from None
        # The constructors are not ours and the input is untrusted: whatever else
        # they raise (KeyError for ``!!bool maybe``, AttributeError for
        # ``!!timestamp abc``...) means the same thing, and its text explains nothing.
        except Exception:
            raise BadValue(f"invalid {_short(tag)} value {_shown(value)}") from None


def _short(tag: str) -> str:
    return tag.removeprefix(_PREFIX)


def _constructing(tag: str) -> str:
    return f"while constructing {_LIST_OF_PAIRS[tag]}"


def check_collection_tag(tag: str, mapping: bool) -> None:
    """Raise ``BadValue`` unless the safe loader builds a mapping (``mapping``) or a
    sequence with an explicit ``tag``."""
    found = "mapping" if mapping else "sequence"
    if tag in (_MAPPING_TAGS if mapping else _SEQUENCE_TAGS):
        return
    if tag in SCALAR_TAGS:
        raise BadValue(f"expected a scalar node, but found {found}")
    if tag in _MAPPING_TAGS:
        raise BadValue(f"expected a mapping node, but found {found}")
    if tag == SEQ_TAG:
        raise BadValue(f"expected a sequence node, but found {found}")
    if tag in _LIST_OF_PAIRS:
        raise BadValue(f"expected a sequence, but found {found}", _constructing(tag))
    raise _undefined(tag)


def finish_collection(tag: str, value: Any) -> Any:
    """The value of a complete mapping or sequence with an explicit ``tag`` (checked by
    ``check_collection_tag``): a set, a list of pairs, or the collection itself."""
    if tag == SET_TAG:
        return set(value)
    if tag not in _LIST_OF_PAIRS:
        return value
    pairs: list[tuple[Any, Any]] = []
    for index, item in enumerate(value):
        if type(item) is not dict:
            kind = "sequence" if type(item) is list else "scalar"
            problem = f"expected a mapping of length 1, but found {kind}"
            raise BadValue(problem, _constructing(tag), index)
        if len(item) != 1:
            problem = f"expected a mapping of length 1, but found {len(item)}"
            raise BadValue(problem, _constructing(tag), index)
        pairs.append(next(iter(item.items())))
    return pairs
