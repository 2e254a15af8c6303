"""The no-change plan's fast paths (state read, refresh, diff) give the same results as
the general code they stand in for, and refuse every edited row the same way."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime

import pytest

from reconciler.model.records import BindingRecord, peek
from reconciler.providers.catalog import TARGETS, _construct
from reconciler.state.row_auth import RowAuthenticator
from tests.conftest import EXAMPLE, Workspace

FACTS = '{"files": {"cert.pem": [1, 2, "ab"]}}'


def stored_binding(facts: object = FACTS) -> BindingRecord:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return BindingRecord("binding.files:out", "web", {"type": "files"}, "0a", facts, when)


def test_stored_json_is_decoded_once_and_kept() -> None:
    record = stored_binding()
    assert peek(record, "facts") == {"files": {"cert.pem": [1, 2, "ab"]}}
    assert peek(record, "facts") is not peek(record, "facts")  # not kept by peek
    facts = record.facts
    assert facts is record.facts  # one object from then on (apply relies on identity)
    assert peek(record, "facts") is facts
    eager = stored_binding({"files": {"cert.pem": [1, 2, "ab"]}})
    assert record == eager and repr(record) == repr(eager)
    assert dataclasses.asdict(record) == dataclasses.asdict(eager)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.facts = {}  # type: ignore[misc]


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_constructed_target_configs_equal_model_construct(kind: str) -> None:
    model, _ = TARGETS[kind]
    values = {"type": kind, "directory": "out/a", "host": "h", "post_deploy": ["x"]}
    values = {k: v for k, v in values.items() if k == "type" or k in model.model_fields}
    expected, built = model.model_construct(**values), _construct(model, values)
    assert built.__dict__ == expected.__dict__ and list(built.__dict__) == list(expected.__dict__)
    assert built.model_fields_set == expected.model_fields_set
    assert built.__pydantic_extra__ == expected.__pydantic_extra__
    assert built == expected and repr(built) == repr(expected)


def test_bulk_row_check_names_the_changed_column() -> None:
    auth = RowAuthenticator(bytes(range(32)))
    row = ("files:out/a", "a", "{}", "0a1b", '{"files": {}}', "2026-01-01T00:00:00+00:00")
    mac = auth.seal("bindings", row)
    auth.check_rows("bindings", [(*row, mac)])
    edited = (*row[:3], "ffff", *row[4:])
    with pytest.raises(Exception, match=r"state tampered: files:out/a \(serial\)"):
        auth.check_rows("bindings", [(*row, mac), (*edited, mac)])
    with pytest.raises(Exception, match=r"state tampered: files:out/a \(mac\)"):
        auth.check_rows("bindings", [(*row, mac.encode())])


def test_mac_edited_into_a_blob_is_refused_without_a_traceback(workspace: Workspace) -> None:
    """Before: comparing the text MAC with a BLOB raised TypeError (a traceback)."""
    ws = workspace
    ws.write(EXAMPLE)
    ws.ok("apply", "--auto-approve")
    db = sqlite3.connect(ws.state_db)
    with db:
        db.execute("UPDATE certificates SET mac = CAST(mac AS BLOB) WHERE name = 'web'")
    db.close()
    before = ws.state_db.read_bytes()
    result = ws.run("plan")
    assert result.code == 1, result.text
    assert "state tampered: certificate.web (mac)" in result.text
    assert "Traceback" not in result.text
    assert ws.state_db.read_bytes() == before


def test_no_change_plan_reads_every_row_and_keeps_nothing_decoded(workspace: Workspace) -> None:
    """A plan over an applied state is still empty, through the lazy fields."""
    ws = workspace
    ws.write(EXAMPLE)
    ws.ok("apply", "--auto-approve")
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_records_read_equal_records_made_by_their_init(workspace: Workspace) -> None:
    """The reader builds records without ``__init__`` (``records.assemble``): they must
    hold every field ``__init__`` sets, no other, and compare equal."""
    ws = workspace
    ws.write(EXAMPLE)
    ws.ok("apply", "--auto-approve")
    with ws.opened_store() as store:
        recorded = store.read()
    records = [*recorded.certificates.values(), *recorded.bindings.values()]
    assert len(records) == 4
    for record in records:
        made = dataclasses.replace(record)  # through __init__
        assert vars(record).keys() == vars(made).keys(), type(record).__name__
        assert record == made and repr(record) == repr(made)
