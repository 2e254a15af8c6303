"""Refactoring without re-issuing, through the CLI, on both state backends:
``moved`` blocks, ``state mv``, ``state rm`` and ``--replace``.

What is checked is what a user relies on: the certificate served keeps its
serial and key across a rename (nothing issued, nothing deployed), the key stays
usable under its new address, a forgotten resource leaves the world untouched and
its key gone from the state, and a replacement really re-keys.
"""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from tests.conftest import EXAMPLE, Workspace

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).

RENAMED = EXAMPLE.replace("  web:\n", "  website:\n").replace(
    "certificate: web\n", "certificate: website\n"
)
MOVED = RENAMED + "moved:\n  - {from: certificate.web, to: certificate.website}\n"


def served(ws: Workspace, name: str) -> tuple[str, bytes]:
    """(serial, key file bytes) deployed for ``name``."""
    cert = x509.load_pem_x509_certificate((ws.root / f"out/{name}/cert.pem").read_bytes())
    return format(cert.serial_number, "x"), (ws.root / f"out/{name}/key.pem").read_bytes()


@pytest.fixture
def applied(workspace: Workspace) -> Workspace:
    workspace.ok("apply", "--auto-approve")
    return workspace


def test_a_moved_block_renames_without_issuing(applied: Workspace) -> None:
    ws = applied
    before = served(ws, "web")
    ws.write(MOVED)
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert "# certificate.web has moved to certificate.website" in plan.out
    assert plan.out.rstrip().endswith("Plan: 1 to move.")
    document = json.loads(ws.ok("plan", "--json").out)
    assert document["moves"] == [{"from": "certificate.web", "to": "certificate.website"}]
    assert document["changes"] == []

    applied_out = ws.ok("apply", "--auto-approve").out
    assert "certificate.web: moved to certificate.website" in applied_out
    assert served(ws, "web") == before  # nothing issued, nothing deployed
    assert ws.run("plan", "--detailed-exitcode").code == 0  # the block can stay
    shown = json.loads(ws.ok("state", "show", "certificate.website", "--json").out)
    assert shown["serial"] == before[0] and shown["bindings"] == ["binding.files:out/web"]
    # The sealed key was re-bound to its new address and is still the deployed one.
    assert ws.private_key_der("certificate", "website") == ws.deployed_key_der("out/web")
    moves = [
        r for r in json.loads(ws.ok("audit", "--json").out)["records"] if r["action"] == "move"
    ]
    assert [(r["address"], r["detail"]) for r in moves] == [
        ("certificate.website", "moved from certificate.web")
    ]


def test_a_moved_block_travels_in_a_saved_plan(applied: Workspace) -> None:
    ws = applied
    before = served(ws, "web")
    ws.write(MOVED)
    ws.ok("plan", "--out", "move.plan")
    ws.ok("apply", "move.plan")
    assert served(ws, "web") == before
    assert "certificate.website" in ws.ok("state", "list").out.splitlines()


def test_a_moved_block_that_keeps_the_old_name_is_a_config_error(workspace: Workspace) -> None:
    ws = workspace
    ws.write(EXAMPLE + "moved:\n  - {from: certificate.web, to: certificate.api}\n")
    result = ws.run("validate")
    assert result.code == 1
    assert "certform.yaml:" in result.err
    assert "certificate.web is still declared" in result.err


def test_state_mv_renames_and_the_key_follows(applied: Workspace) -> None:
    ws = applied
    before = served(ws, "web")
    result = ws.ok("state", "mv", "certificate.web", "certificate.website")
    assert result.out == "Moved certificate.web to certificate.website.\n"
    ws.write(RENAMED)
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert ws.private_key_der("certificate", "website") == ws.deployed_key_der("out/web")
    assert served(ws, "web") == before


REFUSALS = [
    (("certificate.nope", "certificate.x"), "certificate.nope is not in the state"),
    (("certificate.web", "certificate.api"), "certificate.api is already in the state"),
    (("authority.root", "authority.r2"), "state mv renames certificates"),
    (("certificate.web", "certificate.web"), "are the same address"),
]


def test_state_mv_refusals_change_nothing(applied: Workspace) -> None:
    ws = applied
    before = ws.ok("state", "list").out
    serial = json.loads(ws.ok("plan", "--json").out)["state_serial"]
    for arguments, message in REFUSALS:
        result = ws.run("state", "mv", *arguments)
        assert result.code == 1 and message in result.err and "Traceback" not in result.err
    assert ws.ok("state", "list").out == before
    assert json.loads(ws.ok("plan", "--json").out)["state_serial"] == serial


def test_state_mv_refuses_a_tampered_row(applied: Workspace) -> None:
    ws = applied
    ws.query("UPDATE certificates SET fingerprint = 'forged' WHERE name = 'web'")
    result = ws.run("state", "mv", "certificate.web", "certificate.website")
    assert result.code == 1 and "state tampered: certificate.web (fingerprint)" in result.err
    assert ws.query("SELECT name FROM certificates WHERE name = 'website'") == []


def test_state_rm_forgets_without_touching_the_world(applied: Workspace) -> None:
    ws = applied
    before = served(ws, "api")
    result = ws.ok("state", "rm", "binding.files:out/api", "certificate.api")
    assert result.out.splitlines() == [
        "Removed binding.files:out/api from the state.",
        "Removed certificate.api from the state.",
    ]
    assert served(ws, "api") == before  # the files are still there
    assert ws.query("SELECT count(*) FROM certificates WHERE name = 'api'") == [(0,)]
    listed = ws.ok("state", "list").out.splitlines()
    assert "certificate.api" not in listed and "binding.files:out/api" not in listed
    plan = json.loads(ws.ok("plan", "--json").out)
    actions = {(c["address"], c["action"]) for c in plan["changes"]}
    assert actions == {("certificate.api", "issue"), ("binding.files:out/api", "bind")}
    forgets = [
        r["address"]
        for r in json.loads(ws.ok("audit", "--json").out)["records"]
        if r["action"] == "forget"
    ]
    assert forgets == ["binding.files:out/api", "certificate.api"]


def test_state_rm_of_an_unknown_address_removes_nothing(applied: Workspace) -> None:
    ws = applied
    before = ws.ok("state", "list").out
    result = ws.run("state", "rm", "certificate.api", "certificate.nope")
    assert result.code == 1 and "certificate.nope is not in the state" in result.err
    assert ws.ok("state", "list").out == before


def test_replace_rekeys_one_certificate(applied: Workspace) -> None:
    ws = applied
    web, api = served(ws, "web"), served(ws, "api")
    plan = ws.run("plan", "--replace", "certificate.web", "--detailed-exitcode")
    assert plan.code == 2
    assert (
        "-/+ certificate.web" in plan.out and "a replacement was requested (--replace)" in plan.out
    )
    ws.ok("apply", "--auto-approve", "--replace", "certificate.web")
    after = served(ws, "web")
    assert after[0] != web[0] and after[1] != web[1]  # new certificate, new key
    assert served(ws, "api") == api
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_replace_refusals(applied: Workspace) -> None:
    ws = applied
    unknown = ws.run("plan", "--replace", "certificate.nope")
    assert unknown.code == 1 and "--replace certificate.nope: not a certificate" in unknown.err
    authority = ws.run("plan", "--replace", "authority.root")
    assert authority.code == 1 and "not a certificate of the configuration" in authority.err
    ws.ok("plan", "--out", "saved.plan")
    saved = ws.run("apply", "saved.plan", "--replace", "certificate.web")
    assert saved.code == 1 and "cannot change a saved one" in saved.err
