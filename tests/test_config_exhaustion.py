"""Hostile configuration input fails fast and cleanly (issue 10, item 6).

1. YAML aliases: nine levels of nine aliases plus one duplicate key took over
   30 s (the duplicate-key reporter expanded every alias); now the duplicate
   is named at its file:line in about a second, next to the alias limit.  A
   "billion laughs" without a duplicate fails at the alias that crosses
   ``MAX_NODES`` instead of handing 9**9 values to validation.
2. Durations are bounded at validate time: ``renew_before: 99999999999d``
   raised an ``OverflowError`` traceback, ``validity: 3000000d`` passed plan and
   crashed apply, leaving a ``started`` journal row.  Both are now a
   file:line:field error at validate, plan and apply, and apply creates or
   changes nothing.  Timeouts have their own bound (the waits they feed take
   milliseconds in a C int).
3. ``--at`` / ``--within`` with absurd values: a clear error, exit 1.
4. A set of hostile documents (deep nesting, huge ints, odd keys and tags,
   merge keys of non-maps, alias cycles, NUL bytes, invalid UTF-8, a 20 MB file,
   ...) through ``certform validate``: exit 1, the file named, no traceback,
   each within 5 s.

Every ``certform`` run is a real subprocess; the independent runs of the
hostile table run two at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.config.loader import parse_yaml
from reconciler.durations import parse_duration, parse_renew_before
from reconciler.errors import ConfigError
from reconciler.timeparse import parse_at, parse_within
from tests.conftest import EXAMPLE, Result, Workspace

TIME_BOUND = 5.0  # seconds, per certform run


def _timed(workspace: Workspace, *args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = workspace.run(*args, timeout=60)
    return result, time.monotonic() - started


def _line_of(text: str, marker: str) -> int:
    [line] = [n for n, row in enumerate(text.splitlines(), 1) if marker in row]
    return line


def _laughs(levels: int, width: int = 9) -> list[str]:
    """``a: &a [x, x, ...]``, ``b: &b [*a, *a, ...]``, ...: ``width ** levels`` values."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    rows = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    for previous, name in itertools.pairwise(names):
        rows.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * width)}]")
    return rows


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- 1. aliases -----------------------------------------------------------------------


def test_nine_levels_of_aliases_and_a_duplicate_key_name_the_duplicate_fast(
    workspace: Workspace,
) -> None:
    text = "\n".join([*_laughs(9), "a: again"]) + "\n"
    assert len(text) < 520  # the 510-byte reproduction of the issue
    workspace.write(text)
    result, elapsed = _timed(workspace, "validate")
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    line = _line_of(text, "a: again")
    assert f"certform.yaml:{line}: a: duplicate key 'a' (first on line 1)" in result.err
    assert "too many alias expansions" in result.err


def test_duplicate_key_among_many_aliases_within_the_limit_is_reported_fast(
    workspace: Workspace,
) -> None:
    """Six levels (531,441 values, under the limit): the document is loaded by the
    full loader, and the duplicate-key report does not walk the expanded aliases."""
    text = "\n".join([*_laughs(6), "f: again"]) + "\n"
    workspace.write(text)
    result, elapsed = _timed(workspace, "validate")
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert result.code == 1, result.text
    line = _line_of(text, "f: again")
    assert f"certform.yaml:{line}: f: duplicate key 'f' (first on line 6)" in result.err
    assert "Traceback" not in result.text


def test_billion_laughs_without_a_duplicate_fails_at_the_alias(workspace: Workspace) -> None:
    laughs = _laughs(9)
    text = EXAMPLE.replace("    tags: {team: web}\n", "    tags: *i\n") + "\n".join(laughs) + "\n"
    workspace.write(text)
    result, elapsed = _timed(workspace, "validate")
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    # 9**6 values fit; the third *f of g takes the document past 2,000,000
    line = _line_of(text, "g: &g")
    assert (
        f"certform.yaml:{line}: g[2]: too many alias expansions: *f takes the document "
        "past the maximum 2,000,000 values"
    ) in result.err


def test_alias_cycle_is_refused(workspace: Workspace) -> None:
    text = EXAMPLE.replace("    tags: {team: web}\n", "    tags: &t {team: *t}\n")
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1, result.text
    line = _line_of(text, "&t")
    assert (
        f"certform.yaml:{line}: certificates.web.tags.team: alias *t is used inside the "
        "node &t it names"
    ) in result.err


# --- 2. durations ---------------------------------------------------------------------

_BAD_DURATIONS = EXAMPLE.replace(
    "    validity: 90d\n    renew_before: 30d\n",
    "    validity: 3000000d\n    renew_before: 99999999999d\n",
)
_DURATION_ERRORS = (
    f"certform.yaml:{_line_of(_BAD_DURATIONS, '3000000d')}: certificates.web.validity: "
    "3000000d is longer than the maximum 36500d",
    f"certform.yaml:{_line_of(_BAD_DURATIONS, '99999999999d')}: certificates.web.renew_before: "
    "99999999999d is longer than the maximum 36500d",
)


@pytest.mark.parametrize("command", [("validate",), ("plan",), ("apply", "--auto-approve")])
def test_overlong_durations_are_config_errors_and_nothing_is_created(
    workspace: Workspace, command: tuple[str, ...]
) -> None:
    workspace.write(_BAD_DURATIONS)
    result = workspace.run(*command)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text and "OverflowError" not in result.text
    for error in _DURATION_ERRORS:
        assert error in result.err, result.err
    assert not (workspace.root / ".certform").exists()
    assert not (workspace.root / "out").exists()


def test_overlong_validity_leaves_an_applied_state_byte_identical(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    before = _tree_digest(workspace.root)
    workspace.write(_BAD_DURATIONS)
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert _DURATION_ERRORS[0] in result.err
    after = _tree_digest(workspace.root)
    assert {k: v for k, v in after.items() if k != "certform.yaml"} == {
        k: v for k, v in before.items() if k != "certform.yaml"
    }


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "    validity: 3650d\n",
            "    validity: 36501d\n",
            "authorities.root.validity",
            "36501d is longer than the maximum 36500d",
        ),
        (
            "    target: {type: files, directory: out/web}\n",
            "    target: {type: files, directory: out/web, post_deploy_timeout: 30d}\n",
            "bindings[0].target.post_deploy_timeout",
            "30d is longer than the maximum 7d",
        ),
        (
            "    validity: 90d\n    renew_before: 30d\n",
            "    validity: 90d\n    renew_before: " + "9" * 5000 + "d\n",
            "certificates.web.renew_before",
            "is longer than the maximum 36500d",
        ),
    ],
    ids=["ca-validity", "timeout", "5000-digit-renew-before"],
)
def test_duration_bounds(
    workspace: Workspace, old: str, new: str, field: str, message: str
) -> None:
    text = EXAMPLE.replace(old, new, 1)
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1, result.text
    line = _line_of(text, new.strip().splitlines()[-1][-20:])
    assert f"certform.yaml:{line}: {field}: " in result.err, result.err
    assert message in result.err
    assert "Traceback" not in result.text


@pytest.mark.parametrize(
    "text",
    ["99999999999d", "9" * 5000 + "s", "1" + "0" * 400 + "w", "36501d", "5215w"],
    ids=["11-digits", "5000-digits", "401-digits", "36501d", "5215w"],
)
def test_parse_duration_refuses_huge_values_with_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="longer than the maximum 36500d"):
        parse_duration(text)
    with pytest.raises(ValueError, match="longer than the maximum 36500d"):
        parse_renew_before(text)


def test_parse_duration_keeps_the_bound_itself() -> None:
    assert parse_duration("36500d").days == 36500
    assert parse_duration("0000000000000000000090d").days == 90


# --- 3. --at / --within ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--at", "+99999999999d"), "invalid --at '+99999999999d': 99999999999d is "),
        (("plan", "--at", "9999-12-31T23:59:59Z"), "must be between 1970-01-01 and 9000-01-01"),
        (("plan", "--at", "0001-01-01T00:00:00+14:00"), "must be between 1970-01-01 and"),
        (("check", "--within", "99999999999d"), "invalid --within: 99999999999d is longer"),
        (("check", "--at", "-" + "9" * 5000 + "d"), "is longer than the maximum 36500d"),
        (("plan", "--lock-timeout", "nan"), "expected seconds between 0 and 86400"),
        (("apply", "--auto-approve", "--lock-timeout", "inf"), "expected seconds between 0"),
        (("show", "--lock-timeout", "-1"), "expected seconds between 0 and 86400"),
    ],
)
def test_absurd_times_on_the_command_line(
    workspace: Workspace, args: tuple[str, ...], message: str
) -> None:
    result = workspace.run(*args)
    assert result.code == 1, result.text
    assert message in result.err, result.err
    assert "Traceback" not in result.text
    assert not (workspace.root / ".certform").exists()


def test_parse_at_and_within_raise_only_value_error() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for text in ("-30000d", "-36500d", "9000-01-02", "1969-12-31T23:59:59Z", "+" + "9" * 99 + "d"):
        with pytest.raises(ValueError, match="--at"):
            parse_at(text, now)
    assert parse_at("+61d", now) == datetime(2026, 3, 3, tzinfo=UTC)
    with pytest.raises(ValueError, match="--within"):
        parse_within("99999999999d")


# --- 4. hostile documents -------------------------------------------------------------

_LAUGHS = "\n".join(_laughs(9)) + "\n"
# 1,200 mappings each merging the previous one (1.44 million values expanded, under
# the limit): locating the bad validity follows the whole chain.
_MERGE_CHAIN = "chain:\n" + "".join(
    f"  - &m{i} {{<<: *m{i - 1}}}\n" if i else "  - &m0 {validity: soon}\n" for i in range(1200)
)

HOSTILE: dict[str, Callable[[], bytes]] = {
    "deep-sequence": lambda: b"certificates: " + b"[" * 10000 + b"]" * 10000 + b"\n",
    "deep-mapping": lambda: b"policy: " + b"{a: " * 10000 + b"1" + b"}" * 10000 + b"\n",
    "deep-after-tag": lambda: b"x: !!str s\ny: " + b"[" * 10000 + b"]" * 10000 + b"\n",
    "huge-int": lambda: b"policy: {change_limit: {minimum_certificates: " + b"9" * 5000 + b"}}\n",
    "huge-path-length": lambda: EXAMPLE.replace(
        "path_length: 0", "path_length: " + "9" * 40
    ).encode(),
    "non-string-keys": lambda: b"1: x\nnull: y\n3.5: z\n",
    "collection-key": lambda: b"? [1, 2]\n: x\n",
    "binary-tag": lambda: b"certificates: !!binary aGVsbG8=\n",
    "python-object-tag": lambda: b"certificates: !!python/object:os.system x\n",
    "bad-int-tag": lambda: b"x: !!int abc\n",
    "bad-timestamp": lambda: b"x: 2024-13-45\n",
    "timestamp-off-the-calendar": lambda: b"x: 0001-01-01 00:00:00 +01:00\n",
    "merge-scalar": lambda: b"certificates:\n  <<: 1\n",
    "merge-chain": lambda: (_MERGE_CHAIN + "certificates: {web: {<<: *m1199}}\n").encode(),
    "alias-cycle": lambda: b"certificates: &c {web: *c}\n",
    "undefined-alias": lambda: b"certificates: *nope\n",
    "nul-byte": lambda: b"certificates: {web: \x00}\n",
    "invalid-utf8": lambda: b"certificates: \xff\xfe\n",
    "several-documents": lambda: b"a: 1\n---\nb: 2\n",
    "billion-laughs-after-tag": lambda: b"z: !!str s\n" + _LAUGHS.encode(),
    "huge-duration": lambda: (
        EXAMPLE.replace("validity: 90d", "validity: " + "9" * 100000 + "d", 1)
        .replace("renew_before: 30d", "renew_before: 1" + "0" * 500 + "%")
        .encode()
    ),
    "twenty-megabytes": lambda: b"# " + b"x" * (20 * 1024 * 1024) + b"\n",
}


@pytest.fixture(scope="module")
def hostile_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Result, float]]:
    """Every hostile document through ``certform validate``, two runs at a time."""
    import base64
    import os

    env = dict(os.environ)
    env["CERTFORM_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()

    def run(name: str) -> tuple[Result, float]:
        root = tmp_path_factory.mktemp(name)
        (root / "certform.yaml").write_bytes(HOSTILE[name]())
        return _timed(Workspace(root, env), "validate")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(HOSTILE, pool.map(run, HOSTILE), strict=True))


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_document_is_refused_cleanly(
    hostile_results: dict[str, tuple[Result, float]], name: str
) -> None:
    result, elapsed = hostile_results[name]
    assert result.code == 1, result.text[-2000:]
    assert "certform.yaml" in result.err, result.err[-2000:]
    assert "Traceback" not in result.text, result.text[-3000:]
    assert elapsed < TIME_BOUND, f"{name} took {elapsed:.1f}s"
    assert len(result.text) < 20000, "an error message echoed the hostile input"


def test_hostile_variable_file_is_refused_cleanly(workspace: Workspace) -> None:
    (workspace.root / "vars.yaml").write_text(_LAUGHS + "a: again\n")
    result, elapsed = _timed(workspace, "validate", "--var-file", "vars.yaml")
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert result.code == 1, result.text
    assert "vars.yaml:10: a: duplicate key 'a' (first on line 1)" in result.err
    assert "Traceback" not in result.text


def test_endless_device_as_config_is_refused_cleanly(workspace: Workspace) -> None:
    result, elapsed = _timed(workspace, "validate", "-c", "/dev/zero")
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert result.code == 1, result.text
    assert "/dev/zero: document too large" in result.err
    assert "Traceback" not in result.text


def test_change_limit_minimum_is_bounded(workspace: Workspace) -> None:
    text = EXAMPLE + "policy: {change_limit: {minimum_certificates: " + "9" * 30 + "}}\n"
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1, result.text
    line = _line_of(text, "minimum_certificates")
    assert (
        f"certform.yaml:{line}: policy.change_limit.minimum_certificates: "
        "Input should be less than or equal to 1000000"
    ) in result.err, result.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1: a\n0x1: b\n", [(2, "0x1", "duplicate key 1 (first on line 1)")]),
        ("true: a\nyes: b\n", [(2, "yes", "duplicate key True (first on line 1)")]),
        (
            "x:\n  - {a: 1}\n  - {a: 1, a: 3}\n",
            [(3, "x[1].a", "duplicate key 'a' (first on line 3)")],
        ),
        ("k: &k x\nm: {x: 1, *k : 2}\n", [(2, 'm["?"]', "duplicate key 'x' (first on line 2)")]),
    ],
    ids=["int-spellings", "bool-spellings", "flow-in-sequence", "alias-as-key"],
)
def test_duplicate_keys_are_found_on_the_event_stream(
    text: str, expected: list[tuple[int, str, str]]
) -> None:
    """The event-stream check finds what the safe loader's key equality would."""
    with pytest.raises(ConfigError) as excinfo:
        parse_yaml(text, "t.yaml")
    assert [(i.line, i.field, i.message) for i in excinfo.value.issues] == expected


@pytest.mark.parametrize(
    "text",
    ["b: &b {p: 1}\nm:\n  <<: *b\n  <<: *b\n  p: 2\n", "'1': a\n1: b\n", "a: [x, x]\nb: [x]\n"],
    ids=["repeated-merge-keys", "string-and-int", "equal-values"],
)
def test_not_duplicates(text: str) -> None:
    parse_yaml(text, "t.yaml")
