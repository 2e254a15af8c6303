"""The ``Session`` API used in-process: what each operation returns.

These tests document the API the CLI is a thin layer over: operations return
plans, rows and result objects, raise ``CertformError`` subclasses for what a
user must be told, and never print (everything a person sees goes through the
callbacks the caller passes).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.plan.model import Plan
from reconciler.session import ApplyHooks, Session, UsageError
from reconciler.state.store import AuditVerification
from tests.conftest import EXAMPLE

ADDRESSES = {
    "authority.root",
    "authority.issuing",
    "certificate.web",
    "certificate.api",
    "binding.files:out/web",
    "binding.files:out/api",
}


@pytest.fixture
def config(tmp_path: Path, master_key: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CERTFORM_MASTER_KEY", master_key)
    path = tmp_path / "certform.yaml"
    path.write_text(EXAMPLE)
    return path


@pytest.fixture
def applied(config: Path) -> Path:
    outcome = Session(config).apply(auto_approve=True)
    assert outcome.result is not None and outcome.ok
    return config


def state_db(config: Path) -> Path:
    return config.parent / ".certform" / "state.db"


def test_validate_counts_what_the_config_declares(config: Path) -> None:
    result = Session(config).validate()
    assert (result.authorities, result.certificates, result.bindings) == (2, 2, 2)


def test_plan_returns_a_plan_with_changes_and_creates_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[Plan] = []
    the_plan = Session(config).plan(show=shown.append)
    assert isinstance(the_plan, Plan) and the_plan.has_changes
    assert {c.address for c in the_plan.changes} == ADDRESSES
    assert shown == [the_plan]
    assert not state_db(config).parent.exists()  # no state, no lock file, no directory
    assert capsys.readouterr() == ("", "")  # a session never prints


def test_apply_reports_through_hooks_and_returns_what_it_did(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[Plan] = []
    progress: list[str] = []
    hooks = ApplyHooks(show_plan=shown.append, progress=progress.append)
    outcome = Session(config).apply(auto_approve=True, hooks=hooks)
    assert outcome.ok and outcome.result is not None and not outcome.from_saved_plan
    assert set(outcome.result.done) == ADDRESSES
    assert len(shown) == 1 and shown[0].has_changes
    assert progress  # one line per step, for the caller to print
    assert capsys.readouterr() == ("", "")
    again = Session(config).apply(auto_approve=True)
    assert again.result is None and not again.plan.has_changes


def test_apply_without_a_way_to_ask_refuses_and_changes_nothing(config: Path) -> None:
    shown: list[Plan] = []
    with pytest.raises(UsageError, match="refusing to apply without confirmation"):
        Session(config).apply(hooks=ApplyHooks(show_plan=shown.append))
    assert len(shown) == 1  # the preview, for the operator to read
    assert not state_db(config).exists()


def test_apply_answered_no_is_cancelled_and_creates_no_state(config: Path) -> None:
    asked: list[bool] = []

    def confirm() -> bool:
        asked.append(True)
        return False

    with pytest.raises(UsageError, match="apply cancelled; nothing was changed"):
        Session(config).apply(hooks=ApplyHooks(confirm=confirm))
    assert asked == [True]
    assert not state_db(config).parent.exists()


def test_saved_plan_round_trip(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "saved.plan"
    saved = Session(config).plan(out=out)
    assert out.exists() and state_db(config).exists()  # the MAC needs the state's key
    outcome = Session(config).apply(out)
    assert outcome.from_saved_plan and outcome.ok
    assert outcome.plan.changes == saved.changes


def test_show_returns_inventory_rows_filtered_by_tag(applied: Path) -> None:
    rows = Session(applied).show()
    assert {c["address"] for c in rows["certificates"]} == {"certificate.web", "certificate.api"}
    assert {a["status"] for a in rows["authorities"] + rows["certificates"]} == {"issued"}
    tagged = Session(applied).show(["team=web"])
    assert [c["address"] for c in tagged["certificates"]] == ["certificate.web"]
    with pytest.raises(UsageError, match="--tag takes key=value, got 'team'"):
        Session(applied).show(["team"])


def test_check_returns_findings_and_an_exit_status(applied: Path) -> None:
    now = Session(applied).check()
    assert now.checked == 4 and not now.problems and now.exit_status() == 0
    later = Session(applied).check(at="+75d")  # web and api are past renewal (30d before)
    assert {f.address for f in later.problems} == {"certificate.web", "certificate.api"}
    assert later.exit_status() == 2
    assert Session(applied).notify(later) is None  # no notifications configured
    with pytest.raises(UsageError):
        Session(applied).check(within="soon")


def test_check_writes_the_textfile(applied: Path, tmp_path: Path) -> None:
    textfile = tmp_path / "certform.prom"
    result = Session(applied).check(textfile=textfile)
    assert result.metrics
    assert "certform_certificate_expiration_timestamp_seconds" in textfile.read_text()


def test_audit_through_the_state_interface(applied: Path) -> None:
    session = Session(applied)
    rows = session.audit_log()
    assert {r["address"] for r in rows} == ADDRESSES
    verification = session.verify_audit()
    assert isinstance(verification, AuditVerification)
    assert verification.intact and verification.records == len(rows)
    assert verification.head == f"{rows[-1]['id']}:{rows[-1]['hash']}"
    with sqlite3.connect(state_db(applied)) as db:
        db.execute("UPDATE audit SET result = 'error' WHERE id = 2")
    db.close()
    broken = Session(applied).verify_audit()
    assert not broken.intact and broken.problems


def test_audit_of_a_config_without_state_is_empty(config: Path) -> None:
    assert Session(config).audit_log() == []
    verification = Session(config).verify_audit()
    assert verification.intact and verification.records == 0
    assert not state_db(config).parent.exists()


def test_revoke_and_export_need_an_existing_state(config: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown revocation reason 'bored'"):
        Session(config).revoke("web", "bored")
    with pytest.raises(Exception, match="there is no state yet: nothing was issued"):
        Session(config).revoke("web")
    assert not state_db(config).parent.exists()


def test_revoke_returns_the_line_to_print(applied: Path) -> None:
    result = Session(applied).revoke("web", "superseded")
    assert "web" in result.message
    assert any(c.address == "certificate.web" for c in Session(applied).plan().changes)
