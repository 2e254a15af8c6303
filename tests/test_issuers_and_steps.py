"""The issuer registry and the step runner as units: unknown issuers are clear
errors, each issuer brings its own re-issue checks, typed specs serialise as
before, a failed step skips what depends on it, and every step is journaled
before it acts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.errors import PlanError, ProviderError
from reconciler.issuers.acme import AcmeIssuer, AcmeLeafSpec
from reconciler.issuers.aws_acm import AcmLeafSpec, AwsAcmIssuer
from reconciler.issuers.imported import ImportedIssuer, ImportedLeafSpec
from reconciler.issuers.private_ca import PrivateCaIssuer, PrivateCaSpec, PrivateLeafSpec
from reconciler.issuers.registry import (
    UnknownIssuer,
    authority_spec,
    certificate_issuer,
    certificate_spec,
    issuer_named,
)
from reconciler.plan.model import Action, Change, Plan
from reconciler.plan.specs import BindingSpec
from reconciler.policy.reissue import IssuedFacts, ReissueInput, evaluate, strongest
from tests.conftest import Workspace

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEAF = {
    "names": ["a.example.test"],
    "issuer": "ca",
    "key": "ec-p256",
    "validity": "90d",
    "usages": ["server_auth"],
}
ACME = {**LEAF, "issuer": "le", "issuer_type": "acme", "issuers": ["le", "zerossl"],
        "acme": {"le": {"type": "acme", "directory": "https://le.test/dir"}}}  # fmt: skip
ACM = {**LEAF, "issuer": "acm", "issuer_type": "aws-acm", "acm": {"region": "eu-west-1"}}
IMPORTED = {**LEAF, "issuer": "ext", "issuer_type": "imported", "fingerprint": "aa",
            "import": {"certificate": "c.pem", "chain": None, "private_key": "k.pem",
                       "private_key_env": None}}  # fmt: skip


# -- registry ----------------------------------------------------------------------------
def test_unknown_authority_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownIssuer) as caught:
        issuer_named("aws-private-ca")
    assert str(caught.value) == (
        "unknown issuer type 'aws-private-ca'; expected one of: "
        "acme, aws-acm, aws-pca, imported, private-root, private-subordinate"
    )
    with pytest.raises(PlanError, match="unknown issuer type 'nope'"):
        authority_spec({"type": "nope"})


def test_unknown_certificate_issuer_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownIssuer, match="unknown issuer_type 'smime-ca' in a certificate spec"):
        certificate_spec({**LEAF, "issuer_type": "smime-ca"})
    with pytest.raises(PlanError, match="unknown issuer_type"):
        Change.from_json(
            {"address": "certificate.a", "action": "issue", "reasons": [], "before": None,
             "after": {**LEAF, "issuer_type": "smime-ca"}}
        )  # fmt: skip


@pytest.mark.parametrize(
    ("data", "issuer", "spec_class"),
    [
        (LEAF, PrivateCaIssuer, PrivateLeafSpec),
        (ACME, AcmeIssuer, AcmeLeafSpec),
        (ACM, AwsAcmIssuer, AcmLeafSpec),
        (IMPORTED, ImportedIssuer, ImportedLeafSpec),
    ],
)
def test_specs_are_typed_and_serialise_verbatim(data: dict, issuer: type, spec_class: type) -> None:
    spec = certificate_spec(data)
    assert type(spec) is spec_class and type(certificate_issuer(spec)) is issuer
    assert type(certificate_issuer(data)) is issuer  # a recorded spec, as JSON
    assert spec.names == ("a.example.test",) and spec.to_json() == data
    change = Change("certificate.a", Action.ISSUE, ("new",), None, data)
    again = Change.from_json(change.to_json())
    assert again.to_json() == change.to_json() and again.after == data
    assert type(again.after) is spec_class


def test_typed_specs_carry_the_dependencies_of_their_step() -> None:
    assert certificate_spec(ACME).depends_on == (("authority.le", "authority.zerossl"),)
    assert certificate_spec(LEAF).depends_on == (("authority.ca",),)
    sub = authority_spec({"type": "private-subordinate", "parent": "root", "key": "ec-p256"})
    assert isinstance(sub, PrivateCaSpec) and sub.depends_on == (("authority.root",),)
    assert BindingSpec.parse({"certificate": "a", "target": {}}).depends_on == (("certificate.a",),)


def test_issuers_say_which_keys_they_cannot_issue() -> None:
    assert issuer_named("private-root").key_error("ml-dsa-65") is None
    assert issuer_named("acme").key_error("ec-p256") is None
    assert "not ml-dsa-65" in (issuer_named("acme").key_error("ml-dsa-65") or "")
    assert issuer_named("aws-acm").key_error("rsa-4096") == (
        "ACM issues ec-p256, ec-p384, rsa-2048 keys only, not rsa-4096"
    )


# -- each issuer's re-issue checks ----------------------------------------------------------
def _action(data: dict, issued: dict, now_days: float = 1, window: Any = None) -> str | None:
    facts = IssuedFacts(issued, T0, T0 + timedelta(days=90), "k1", True)
    spec = certificate_spec(data)
    checks = certificate_issuer(spec).certificate_checks
    data_in = ReissueInput(spec, "30d", facts, "k1", False, T0 + timedelta(days=now_days), window)
    return strongest(evaluate(checks, data_in))


def test_private_ca_checks() -> None:
    assert _action(LEAF, LEAF) is None
    assert _action({**LEAF, "validity": "60d"}, LEAF) == "renew"
    assert _action({**LEAF, "key": "ec-p384"}, LEAF) == "replace"
    assert _action(LEAF, LEAF, now_days=70) == "renew"


def test_acme_checks_allow_reordered_fallbacks_and_ignore_validity() -> None:
    issued = {**ACME, "issued_by": "zerossl"}
    assert _action({**ACME, "issuers": ["zerossl", "le"]}, issued) is None
    assert _action({**ACME, "validity": "30d"}, issued) is None  # the CA sets it
    assert _action({**ACME, "issuers": ["le"]}, issued) == "replace"
    assert _action(ACME, issued, now_days=70) == "renew"


def test_acm_checks_leave_renewal_to_acm() -> None:
    assert _action(ACM, ACM, now_days=89) is None
    assert _action({**ACM, "names": ["b.example.test"]}, ACM) == "replace"


def test_imported_checks_follow_the_file_only() -> None:
    assert _action(IMPORTED, IMPORTED, now_days=89) is None
    assert _action({**IMPORTED, "fingerprint": "bb"}, IMPORTED) == "replace"


# -- the runner -----------------------------------------------------------------------------
CONFIG = """\
authorities:
  root:
    type: private-root
    subject: {common_name: Runner Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Runner Issuing}
  other:
    type: private-root
    subject: {common_name: Other Root}
certificates:
  a: {names: [a.example.test], issuer: issuing}
  b: {names: [b.example.test], issuer: other}
bindings:
  - {certificate: a, target: {type: files, directory: out/a}}
  - {certificate: b, target: {type: files, directory: out/b}}
"""


@pytest.fixture
def in_process(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Plan and apply ``CONFIG`` in this process with the real state store."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.planning import plan_from
    from reconciler.engine.workspace import open_store

    monkeypatch.setenv("CERTFORM_MASTER_KEY", workspace.env["CERTFORM_MASTER_KEY"])
    monkeypatch.chdir(workspace.root)
    config = workspace.write(CONFIG)
    validated = load_and_validate(config, {})
    store = open_store(validated.config.state, validated.root)
    store.open()
    store.lock("apply", 0.0)
    recorded = store.read()
    plan = plan_from(validated, recorded, str(store.path.resolve()), datetime.now(UTC))
    try:
        yield store, plan, recorded, validated.root
    finally:
        store.unlock()
        store.close()


def test_a_failed_ca_skips_what_depends_on_it(
    in_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.engine.runner import run_apply

    store, plan, recorded, root = in_process
    original = PrivateCaIssuer.act_authority

    def failing(self: PrivateCaIssuer, ctx: Any, change: Change, prepared: Any) -> Any:
        if change.address == "authority.issuing":
            raise ProviderError("the HSM said no")
        return original(self, ctx, change, prepared)

    monkeypatch.setattr(PrivateCaIssuer, "act_authority", failing)
    lines: list[str] = []
    result = run_apply(store, plan, recorded, lines.append, root=root)
    assert result.failed == {"authority.issuing": "the HSM said no"}
    assert result.skipped == {
        "certificate.a": "authority.issuing failed",
        "binding.files:out/a": "certificate.a failed",
    }
    assert {"authority.root", "authority.other", "certificate.b", "binding.files:out/b"} <= set(
        result.done
    )
    assert "authority.issuing: issue FAILED: the HSM said no" in lines
    with sqlite3.connect(store.path) as db:
        statuses = dict(db.execute("SELECT address, status FROM journal"))
    assert statuses.get("authority.issuing") == "failed"
    assert "certificate.a" not in statuses  # skipped: never journaled


def test_every_step_is_journaled_before_it_acts(
    in_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.engine import runner

    store, plan, recorded, root = in_process
    # Written to a file: binding deploys may act in a forked process (early_deploy.py),
    # whose memory this test does not share.
    log = root / "journaled.log"

    def journaled(address: str, phase: str) -> None:
        if phase != "journaled":
            return
        with sqlite3.connect(store.path) as db:
            row = db.execute(
                "SELECT status, sealed_key IS NOT NULL FROM journal WHERE address = ? "
                "ORDER BY id DESC LIMIT 1",
                (address,),
            ).fetchone()
        status, has_key = (row[0], bool(row[1])) if row else ("absent", False)
        with log.open("a") as out:
            out.write(f"{address}\t{status}\t{int(has_key)}\n")

    monkeypatch.setattr(runner, "fault_point", journaled)
    result = runner.run_apply(store, plan, recorded, lambda _line: None, root=root)
    assert result.ok, result.failed
    seen = {
        address: (status, has_key == "1")
        for address, status, has_key in (line.split("\t") for line in log.read_text().splitlines())
    }
    assert set(seen) == {c.address for c in plan.changes}
    for address, (status, has_key) in seen.items():
        assert status == "started", address
        # New keys are in the journal (sealed) before anything is signed with them.
        assert has_key == address.startswith(("authority.", "certificate.")), address


def test_plan_order_is_kept_within_a_phase() -> None:
    from reconciler.engine.step import Phase, step_for

    plan = Plan.from_json(
        {
            "changes": [
                {"address": "crl.root", "action": "publish", "reasons": [], "before": None,
                 "after": {"authority": "root", "crl": {}, "entries": 0}},
                {"address": "certificate.a", "action": "destroy", "reasons": [],
                 "before": {}, "after": None},
                {"address": "binding.files:out/a", "action": "unbind", "reasons": [],
                 "before": {"certificate": "a", "target": {}}, "after": None},
            ],
            "planned_at": T0.isoformat(), "lineage": "", "state_serial": 0,
            "state_path": "s", "config_root": ".", "format_version": "1",
        }
    )  # fmt: skip
    phases = [step_for(c).phase for c in plan.changes]
    assert phases == [Phase.REVOCATIONS, Phase.DESTROYS, Phase.BINDINGS]
