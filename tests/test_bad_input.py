"""Bad input is reported precisely and changes nothing.

1. Every bad config (see ``helpers_bad_input``) run through ``certform validate``
   exits 1 and names the file, the exact line, the dotted field and what is
   expected; several problems in one file are reported in one run.
2. The same bad configs given to ``certform apply --auto-approve`` over an applied
   state exit 1 and leave the state rows, the serial and the deployed files
   untouched; so do a wrong or malformed master key and a damaged state.

Every ``certform`` run is a real subprocess.  To stay fast, the independent runs
(the validate table, the damaged-state copies) start in a thread pool as soon as
the module starts, and the tests that must run one after another in the shared
applied workspace come first in the file, while the pool works.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers_bad_input import (
    APPLY_CASE_IDS,
    CONFIG,
    GOOD,
    MULTI_CASES,
    OTHER_MASTER_KEY,
    VALIDATE_CASES,
    BadCase,
    Expected,
    Snapshot,
    assert_reports,
    certform_env,
    file_digest,
    line_of,
    run_certform,
    snapshot,
    tree,
    write_files,
)

Result = subprocess.CompletedProcess[str]

_DUPLICATE_FIELD_BUG = (
    "BUG: reconciler/config/loader.py _strict_load() builds the duplicate-key ConfigIssue "
    "with field '', so the report lacks the dotted field (certificates.web.key)"
)
_EMPTY_STATE_BUG = (
    "BUG: reconciler/state/sqlite.py SqliteStateStore._connect() treats an existing "
    "0-byte state.db as a new state (creates the schema, a new lineage and data key), so "
    "apply exits 0 after issuing a new root CA and overwriting the deployed out/ files"
)
_XFAIL: dict[str, str] = {}

CASES_BY_ID = {c.id: c for c in (*VALIDATE_CASES, *MULTI_CASES)}


def _param(case: BadCase) -> object:
    marks = []
    if case.id in _XFAIL:
        marks.append(pytest.mark.xfail(strict=True, reason=_XFAIL[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as executor:
        yield executor


@pytest.fixture(scope="module", autouse=True)
def validate_results(
    pool: ThreadPoolExecutor, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[Result]]:
    """``certform validate`` on every bad case, each in its own directory, in the background."""
    futures: dict[str, Future[Result]] = {}
    for case in CASES_BY_ID.values():
        workdir = tmp_path_factory.mktemp(case.id)
        write_files(workdir, case.files)
        futures[case.id] = pool.submit(run_certform, workdir, "validate", *case.args)
    return futures


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    """One workspace with the good config applied, and its snapshot."""
    workdir = tmp_path_factory.mktemp("applied")
    (workdir / CONFIG).write_text(GOOD)
    result = run_certform(workdir, "apply", "--auto-approve", "-c", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Apply complete: 4 change(s) made." in result.stdout
    before = snapshot(workdir)
    # Guard against a snapshot that could never change: it must hold the applied world.
    assert [row[0] for row in before.tables["authorities"]] == ["issuing", "root"]
    assert [row[0] for row in before.tables["certificates"]] == ["web"]
    assert len(before.tables["bindings"]) == 1
    assert before.tables["audit"], "apply records an audit trail"
    assert int(before.serial) > 0
    assert sorted(before.files) == [
        "web/ca.pem",
        "web/cert.pem",
        "web/chain.pem",
        "web/fullchain.pem",
        "web/key.pem",
    ]
    return workdir, before


# --- 2. bad input changes nothing (sequential, in the one applied workspace) ---------------


def assert_unchanged(workdir: Path, before: Snapshot) -> None:
    after = snapshot(workdir)
    assert after.serial == before.serial, "the state serial moved"
    assert sorted(after.tables) == sorted(before.tables)
    for table, rows in before.tables.items():
        assert after.tables[table] == rows, f"table {table} changed"
    assert after.directories == before.directories
    assert sorted(after.files) == sorted(before.files)
    for name, (data, mode, mtime) in before.files.items():
        assert after.files[name][0] == data, f"out/{name}: contents changed"
        assert after.files[name][1] == mode, f"out/{name}: mode changed"
        assert after.files[name][2] == mtime, f"out/{name}: mtime changed"


@pytest.mark.usefixtures("damaged_runs")  # start those early, in the background
@pytest.mark.parametrize("case_id", APPLY_CASE_IDS)
def test_apply_with_bad_config_changes_nothing(
    case_id: str, applied: tuple[Path, Snapshot]
) -> None:
    workdir, before = applied
    case = CASES_BY_ID[case_id]
    (workdir / CONFIG).write_text(case.text)
    extra = case.args[2:]  # whatever follows "-c certform.yaml"; apply uses the default config
    result = run_certform(workdir, "apply", "--auto-approve", *extra)
    assert_reports(result, case)
    assert "Apply complete" not in result.stdout
    assert_unchanged(workdir, before)


@pytest.mark.parametrize(
    ("master_key", "phrases"),
    [
        pytest.param(
            OTHER_MASTER_KEY,
            ("the master key does not open this state", "CERTFORM_MASTER_KEY"),
            id="wrong-key",
        ),
        pytest.param(
            "not-base64!", ("master key from $CERTFORM_MASTER_KEY is not valid base64",), id="junk"
        ),
        pytest.param("c2hvcnQ=", ("master key", "must be 32 bytes", "got 5"), id="too-short"),
    ],
)
def test_bad_master_key_changes_nothing(
    master_key: str, phrases: tuple[str, ...], applied: tuple[Path, Snapshot]
) -> None:
    workdir, before = applied
    (workdir / CONFIG).write_text(GOOD)
    result = run_certform(workdir, "apply", "--auto-approve", env=certform_env(master_key))
    context = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 1, context
    assert "Traceback" not in result.stderr, context
    assert result.stderr.startswith("Error: "), context
    for phrase in phrases:
        assert phrase in result.stderr, context
    assert master_key not in result.stderr, "the key itself must never be printed"
    assert "Apply complete" not in result.stdout
    assert_unchanged(workdir, before)


def test_good_config_is_still_in_sync_after_all_bad_input(applied: tuple[Path, Snapshot]) -> None:
    """The shared workspace is still healthy: the good config plans no changes."""
    workdir, before = applied
    (workdir / CONFIG).write_text(GOOD)
    result = run_certform(workdir, "plan", "--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_unchanged(workdir, before)


# --- 2b. damaged state (each in its own copy of the applied workspace) ---------------------


def _garbage_header(db: Path) -> None:
    with db.open("r+b") as handle:
        handle.write(bytes(range(100)))


def _foreign_database(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('not certform')")
    conn.commit()
    conn.close()


def _truncated(db: Path) -> None:
    db.write_bytes(b"")


@dataclass(frozen=True)
class Damage:
    id: str
    damage: Callable[[Path], None]
    command: tuple[str, ...]
    phrases: tuple[str, ...]


DAMAGES = (
    Damage(
        "garbage-header-apply",
        _garbage_header,
        ("apply", "--auto-approve"),
        ("not a certform state", "unreadable database", "nothing was changed"),
    ),
    Damage(
        "garbage-header-plan",
        _garbage_header,
        ("plan",),
        ("not a certform state", "unreadable database"),
    ),
    Damage(
        "foreign-database-apply",
        _foreign_database,
        ("apply", "--auto-approve"),
        ("not a certform state", "foreign database"),
    ),
    Damage("empty-file-apply", _truncated, ("apply", "--auto-approve"), ("state",)),
)


@dataclass(frozen=True)
class DamagedRun:
    result: Result
    db: Path
    digest_before: str
    out_before: object
    out: Path


def _prepare_damage(source: Path, workdir: Path, damage: Damage) -> Path:
    shutil.copytree(source, workdir, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm"))
    (workdir / CONFIG).write_text(GOOD)
    db = workdir / ".certform" / "state.db"
    damage.damage(db)
    return db


def _damaged_run(workdir: Path, db: Path, damage: Damage) -> DamagedRun:
    digest, out_before = file_digest(db), tree(workdir / "out")
    result = run_certform(workdir, *damage.command)
    return DamagedRun(result, db, digest, out_before, workdir / "out")


@pytest.fixture(scope="module")
def damaged_runs(
    applied: tuple[Path, Snapshot],
    pool: ThreadPoolExecutor,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Future[DamagedRun]]:
    """Copies of the freshly applied workspace, damaged, run in the background.

    Requested by the first sequential test, so the copies are taken before any
    bad input has been tried in the shared workspace.
    """
    source, _ = applied
    base = tmp_path_factory.mktemp("damaged")
    futures = {}
    for damage in DAMAGES:
        db = _prepare_damage(source, base / damage.id, damage)
        futures[damage.id] = pool.submit(_damaged_run, base / damage.id, db, damage)
    return futures


def _damage_param(damage: Damage, bug: str | None = None) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(damage, id=damage.id, marks=marks)


@pytest.mark.parametrize(
    "damage",
    [_damage_param(d) for d in DAMAGES],
)
def test_damaged_state_is_a_clear_error(
    damage: Damage, damaged_runs: dict[str, Future[DamagedRun]]
) -> None:
    run = damaged_runs[damage.id].result()
    result = run.result
    context = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 1, context
    assert "Traceback" not in result.stderr, context
    assert result.stderr.startswith("Error: "), context
    assert "state.db" in result.stderr, context
    for phrase in damage.phrases:
        assert phrase in result.stderr, context
    assert tree(run.out) == run.out_before, "deployed files changed"


@pytest.mark.parametrize(
    "damage",
    [_damage_param(d) for d in DAMAGES if d.id != "empty-file-apply"],
)
def test_damaged_state_file_is_left_byte_for_byte(
    damage: Damage, damaged_runs: dict[str, Future[DamagedRun]]
) -> None:
    run = damaged_runs[damage.id].result()
    assert run.result.returncode == 1, run.result.stderr
    assert "not a certform state" in run.result.stderr
    assert file_digest(run.db) == run.digest_before, "certform modified the state it refused"


# --- 1. validate: file, line, field, expectation ------------------------------------------


def test_good_config_validates(tmp_path: Path) -> None:
    """Control: the config every bad case is derived from is valid."""
    (tmp_path / CONFIG).write_text(GOOD)
    result = run_certform(tmp_path, "validate", "-c", CONFIG)
    assert result.returncode == 0, result.stderr
    assert "Configuration is valid: 2 authorities, 1 certificates, 1 bindings." in result.stdout


@pytest.mark.parametrize("case", [_param(c) for c in VALIDATE_CASES])
def test_validate_reports_file_line_field_and_expectation(
    case: BadCase, validate_results: dict[str, Future[Result]]
) -> None:
    assert_reports(validate_results[case.id].result(), case)


@pytest.mark.parametrize("case", [_param(c) for c in MULTI_CASES])
def test_validate_reports_every_problem_in_one_run(
    case: BadCase, validate_results: dict[str, Future[Result]]
) -> None:
    assert len(case.expected) >= 2
    assert_reports(validate_results[case.id].result(), case)


def test_duplicate_key_names_the_field(validate_results: dict[str, Future[Result]]) -> None:
    case = CASES_BY_ID["duplicate-key"]
    (expected,) = case.expected
    with_field = Expected(expected.marker, "certificates.web.key", expected.phrases)
    assert_reports(validate_results[case.id].result(), BadCase(case.id, case.files, (with_field,)))


def test_template_case_is_valid_once_the_variable_is_given(tmp_path: Path) -> None:
    """Control for the template cases: the same text renders once --var is given."""
    write_files(tmp_path, CASES_BY_ID["template-undefined-variable"].files)
    result = run_certform(tmp_path, "validate", "-c", CONFIG, "--var", "site=web")
    assert result.returncode == 0, result.stderr
    assert "Configuration is valid" in result.stdout


def test_case_table_is_consistent() -> None:
    ids = [c.id for c in (*VALIDATE_CASES, *MULTI_CASES)]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert set(APPLY_CASE_IDS) <= set(ids)
    assert len(APPLY_CASE_IDS) >= 10
    # The line helper refuses ambiguous markers, so no case can point at a wrong line.
    line = line_of(GOOD, "renew_before: 30d")
    assert GOOD.splitlines()[line - 1] == "    renew_before: 30d"
    with pytest.raises(AssertionError):
        line_of(GOOD, "validity:")
