"""The lifecycle policy functions added for ACME, imports, CA revocation and
change limits, each tested on its own (pure: no I/O, the clock an input), plus
the audit actor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.engine.apply import actor
from reconciler.plan.model import Action, Change
from reconciler.policy.guards import ChangeLimit, force_reasons
from reconciler.policy.reissue import (
    IssuedFacts,
    ReissueInput,
    acme_issuer_changed,
    authority_revoked,
    imported_file_changed,
)

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def _input(issued_spec: dict, desired_spec: dict, revoked_at: datetime | None = None):  # type: ignore[no-untyped-def]
    facts = IssuedFacts(issued_spec, NOW - timedelta(days=1), NOW + timedelta(days=89), None,
                        True, revoked_at)  # fmt: skip
    return ReissueInput(desired_spec, None, facts, None, False, NOW)


def test_acme_issuer_changed_only_when_no_longer_listed() -> None:
    issued = {"issuer": "first", "issued_by": "second"}
    assert acme_issuer_changed(_input(issued, {"issuers": ["first", "second"]})) is None
    assert acme_issuer_changed(_input(issued, {"issuers": ["second", "first"]})) is None
    violation = acme_issuer_changed(_input(issued, {"issuers": ["first", "third"]}))
    assert violation is not None and violation.action == "replace"
    assert "issuer changed: second → [first, third]" in violation.reason


def test_imported_file_changed() -> None:
    assert imported_file_changed(_input({"fingerprint": "aa"}, {"fingerprint": "aa"})) is None
    violation = imported_file_changed(_input({"fingerprint": "aa"}, {"fingerprint": "bb"}))
    assert violation is not None and violation.action == "replace"


def test_revoked_authority_gets_a_new_key() -> None:
    assert authority_revoked(_input({}, {})) is None
    violation = authority_revoked(_input({}, {}, revoked_at=NOW))
    assert violation is not None and violation.action == "replace"
    assert "revoked on 2026-11-28" in violation.reason


def _change(address: str, action: Action, certificate: str | None = None) -> Change:
    after = {"certificate": certificate} if certificate else {}
    return Change(address, action, ("r",), after or None, after or None)


def test_change_limit_counts_replacements_moves_and_destroys_not_renewals() -> None:
    limit = ChangeLimit(30, 10)
    renewals = tuple(_change(f"certificate.c{i}", Action.RENEW) for i in range(10)) + tuple(
        _change(f"binding.files:out/c{i}", Action.REBIND, f"c{i}") for i in range(10)
    )
    assert force_reasons(renewals, 10, limit) == []
    three = tuple(_change(f"certificate.c{i}", Action.REPLACE) for i in range(3))
    assert force_reasons(three, 10, limit) == []
    four = (*three, _change("binding.files:out/c9", Action.UNBIND, "c9"))
    (reason,) = force_reasons(four, 10, limit)
    assert "4 of 10 managed certificates" in reason and "40%" in reason
    assert force_reasons(four, 9, limit) == []  # fewer than minimum_certificates
    rotation = (_change("authority.issuing", Action.REPLACE),)
    assert force_reasons(rotation, 1, limit) == [
        "authority.issuing is a CA and would be replaced with a new key"
    ]


def test_actor_names_the_ci_system() -> None:
    github = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "alice",
              "GITHUB_REPOSITORY": "org/pki", "GITHUB_RUN_ID": "42"}  # fmt: skip
    assert actor(github) == "alice via GitHub Actions org/pki run 42"
    gitlab = {"GITLAB_CI": "true", "GITLAB_USER_LOGIN": "bob", "CI_PROJECT_PATH": "g/p",
              "CI_JOB_ID": "7"}  # fmt: skip
    assert actor(gitlab) == "bob via GitLab CI g/p job 7"
    assert actor({"CI": "true", "BUILD_ID": "9"}).endswith("(CI job 9)")
    assert "@" in actor({})
