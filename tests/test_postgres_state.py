"""The PostgreSQL backend through the CLI, against a real PostgreSQL: what only a
shared database has (state names, the advisory lock and force-unlock, schema
versions, the connection string's secrecy) and ``state migrate`` from SQLite.

Everything a state does regardless of backend (apply, plan, crash recovery,
audit, CRLs, ...) runs against PostgreSQL in the modules marked
``state_backends``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, PG_DSN, Workspace
from tests.test_crash_recovery import kill, start_apply, wait_for

RENEWED = EXAMPLE.replace("validity: 90d\n    renew_before", "validity: 60d\n    renew_before")


def postgres_state(name: str) -> str:
    return f"state: {{backend: postgres, dsn_env: {PG_DSN}, name: {name}}}\n"


@pytest.fixture
def pg(workspace: Workspace, postgres_dsn: str) -> Workspace:
    """A workspace whose state is a fresh named state in the shared test database."""
    workspace.env[PG_DSN] = postgres_dsn
    workspace.backend = "postgres"
    workspace.state_header = postgres_state("t" + uuid.uuid4().hex[:20])
    workspace.write(EXAMPLE)
    return workspace


def paused_apply(ws: Workspace, marker_name: str = "paused"):  # type: ignore[no-untyped-def]
    marker = ws.root / marker_name
    proc = start_apply(
        ws,
        {
            "CERTFORM_TEST_PAUSE_AT": "certificate.web:acted",
            "CERTFORM_TEST_PAUSE_MARKER": str(marker),
        },
    )
    wait_for(marker, proc)
    return proc


def test_apply_plan_and_state_live_in_the_named_schema(pg: Workspace) -> None:
    pg.ok("apply", "--auto-approve")
    assert not (pg.root / ".certform").exists()  # nothing local: no state, no key file
    assert pg.run("plan", "--detailed-exitcode").code == 0
    name = pg.state_header.split("name: ")[1].rstrip("}\n")
    rows = pg.query("SELECT name FROM certificates WHERE status = 'active' ORDER BY name")
    assert rows == [("api",), ("web",)]
    assert pg.query("SELECT version FROM schema_version") == [(1,)]
    assert pg.query("SELECT current_schema()") == [(f"certform_{name}",)]


def test_reads_run_and_a_second_apply_fails_fast_while_one_holds_the_lock(pg: Workspace) -> None:
    pg.ok("apply", "--auto-approve")
    pg.write(RENEWED)
    holder = paused_apply(pg)
    try:
        for command in (("plan",), ("show",), ("check",), ("audit", "--verify"), ("state", "list")):
            start = time.monotonic()
            result = pg.run(*command)
            assert time.monotonic() - start < 10 and result.code in (0, 2), result.text
        start = time.monotonic()
        second = pg.run("apply", "--auto-approve")
        assert time.monotonic() - start < 10
        assert second.code == 1 and f"pid {holder.pid}, apply" in second.err
        assert "certform force-unlock" in second.err
    finally:
        kill(holder)
    # The runner died: PostgreSQL ended its session and with it the lock.
    recovered = pg.ok("apply", "--auto-approve")
    assert "Recovering from an interrupted apply" in recovered.out
    assert pg.run("plan", "--detailed-exitcode").code == 0


def test_two_states_in_one_database_never_block_each_other(
    pg: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pg.ok("apply", "--auto-approve")
    pg.write(RENEWED)
    holder = paused_apply(pg)
    try:
        other = Workspace(tmp_path_factory.mktemp("other"), dict(pg.env), "postgres")
        other.state_header = postgres_state("other-" + uuid.uuid4().hex[:12])
        other.write(EXAMPLE)
        result = other.run("apply", "--auto-approve")
        assert result.code == 0, result.text
        assert other.run("plan", "--detailed-exitcode").code == 0
        lineages = {json.loads(w.ok("plan", "--json").out)["lineage"] for w in (pg, other)}
        assert len(lineages) == 2
    finally:
        kill(holder)


def test_force_unlock_ends_the_session_of_a_runner_that_hangs(pg: Workspace) -> None:
    """A runner frozen mid-apply (SIGSTOP: its connection stays open, so the lock
    stays) is released by force-unlock with the ID the error names; the next apply
    recovers its interrupted step from the journal in PostgreSQL."""
    pg.ok("apply", "--auto-approve")
    pg.write(RENEWED)
    holder = paused_apply(pg)
    os.killpg(holder.pid, signal.SIGSTOP)
    try:
        locked = pg.run("apply", "--auto-approve")
        assert locked.code == 1
        lock_id = re.search(r"lock ID ([0-9a-f-]{36})\)", locked.err).group(1)  # type: ignore[union-attr]
        wrong = pg.run("force-unlock", str(uuid.uuid4()))
        assert wrong.code == 1 and f"locked under the ID {lock_id}" in wrong.err
        released = pg.ok("force-unlock", lock_id)
        assert f"released lock {lock_id}" in released.out
        recovered = pg.ok("apply", "--auto-approve")
        assert "Recovering from an interrupted apply" in recovered.out
        assert pg.run("plan", "--detailed-exitcode").code == 0
        assert "is not locked" in pg.ok("force-unlock", lock_id).out
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)


def test_the_connection_string_stays_secret(pg: Workspace) -> None:
    secret = "s3cr3t-pa55word"
    pg.env[PG_DSN] = f"host=127.0.0.1 port=1 user=certform password={secret} connect_timeout=2"
    result = pg.run("plan")
    assert result.code == 1 and "cannot connect to postgres:" in result.err
    assert secret not in result.text and "Traceback" not in result.text
    del pg.env[PG_DSN]
    unset = pg.run("plan")
    assert unset.code == 1
    assert f"reads its connection string from ${PG_DSN}, which is not set" in unset.err


def test_a_dsn_in_the_config_is_refused(workspace: Workspace) -> None:
    workspace.write("state: {backend: postgres, dsn: 'host=db password=x'}\n" + EXAMPLE)
    result = workspace.run("validate")
    assert result.code == 1 and "state.dsn: unknown key 'dsn'" in result.err
    workspace.write("state: {backend: postgres}\n" + EXAMPLE)
    result = workspace.run("validate")
    assert (
        result.code == 1 and "the postgres backend needs the name of the environment" in result.err
    )


def test_a_schema_from_a_newer_certform_is_refused(pg: Workspace) -> None:
    pg.ok("apply", "--auto-approve")
    pg.query("INSERT INTO schema_version VALUES (99, 'later')")
    result = pg.run("plan")
    assert result.code == 1 and "has schema version 99; this certform knows up to 1" in result.err


def test_no_master_key_file_is_ever_generated_for_a_team_state(pg: Workspace) -> None:
    del pg.env["CERTFORM_MASTER_KEY"]
    result = pg.run("apply", "--auto-approve")
    assert result.code == 1 and "no master key: set $CERTFORM_MASTER_KEY" in result.err
    assert not (pg.root / ".certform" / "master.key").exists()
    assert not (pg.root / "out").exists()


# -- state migrate ------------------------------------------------------------------
def test_state_migrate_copies_a_sqlite_state_with_its_history_and_chain(
    workspace: Workspace, postgres_dsn: str
) -> None:
    """The SQLite state was sealed under another master key (a file); the copy is
    re-wrapped for the configured key ($CERTFORM_MASTER_KEY) and keeps lineage,
    serial, history and the keyed audit chain."""
    ws = workspace
    old_key = base64.b64encode(os.urandom(32)).decode()
    (ws.root / "old.key").write_text(old_key + "\n")
    (ws.root / "old.key").chmod(0o600)
    ws.env["CERTFORM_MASTER_KEY"] = old_key
    ws.ok("apply", "--auto-approve")
    ws.write(RENEWED)
    ws.ok("apply", "--auto-approve")  # a renewal: history rows
    before = json.loads(ws.ok("plan", "--json").out)
    audit_before = json.loads(ws.ok("audit", "--json").out)["records"]
    history_before = ws.query("SELECT address, serial, reason FROM history ORDER BY id")
    assert history_before  # the renewal superseded a certificate
    ws.env["CERTFORM_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    ws.env[PG_DSN] = postgres_dsn
    name = "mig" + uuid.uuid4().hex[:12]
    ws.write(postgres_state(name) + RENEWED)
    copied = ws.run(
        "state", "migrate", "--from", ".certform/state.db", "--from-master-key-file", "old.key"
    )
    assert copied.code == 0, copied.text
    assert f"lineage {before['lineage']}, serial {before['state_serial']}" in copied.out
    assert "audit chain intact" in copied.out

    ws.backend, ws.state_header = "postgres", postgres_state(name)
    after = json.loads(ws.ok("plan", "--json", "--detailed-exitcode").out)
    assert (after["lineage"], after["state_serial"]) == (before["lineage"], before["state_serial"])
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    audit_after = json.loads(ws.ok("audit", "--json").out)["records"]
    assert audit_after[: len(audit_before)] == audit_before
    assert audit_after[-1]["command"] == "state migrate"
    assert ws.query("SELECT address, serial, reason FROM history ORDER BY id") == history_before
    # The sealed keys open under the new master key and are the deployed ones.
    assert ws.private_key_der("certificate", "web") == ws.deployed_key_der("out/web")
    # A second migration into the now non-empty state is refused.
    again = ws.run(
        "state", "migrate", "--from", ".certform/state.db", "--from-master-key-file", "old.key"
    )
    assert again.code == 1 and "already holds a state" in again.err


def test_state_migrate_refuses_a_tampered_source_and_creates_nothing(
    workspace: Workspace, postgres_dsn: str
) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.query("UPDATE certificates SET serial = 'ff' WHERE name = 'web'")
    source = Path(ws.state_db).read_bytes()
    ws.env[PG_DSN] = postgres_dsn
    name = "mig" + uuid.uuid4().hex[:12]
    ws.write(postgres_state(name) + EXAMPLE)
    result = ws.run("state", "migrate", "--from", ".certform/state.db")
    assert result.code == 1 and "state tampered: certificate.web (serial)" in result.err
    assert ws.state_db.read_bytes() == source
    ws.backend, ws.state_header = "postgres", postgres_state(name)
    assert not ws.state_exists()
