"""policy.change_limit and CA rotation: a plan replacing, moving or destroying
too many certificates, or rotating a CA, is refused by apply without --force,
changes nothing, and says so up front; routine renewals never count."""

from __future__ import annotations

from tests.conftest import EXAMPLE, Workspace

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).

PKI = EXAMPLE.split("certificates:")[0]


def _config(count: int, *, rsa: int = 0, policy: str = "", issuing_cn: str = "") -> str:
    text = PKI
    if issuing_cn:
        text = text.replace("{common_name: Example Issuing CA}", f"{{common_name: {issuing_cn}}}")
    text += policy + "certificates:\n"
    for i in range(count):
        key = "rsa-2048" if i < rsa else "ec-p256"
        text += f"  c{i}: {{names: [c{i}.example.test], issuer: issuing, key: {key}}}\n"
    text += "bindings:\n"
    for i in range(count):
        text += f"  - {{certificate: c{i}, target: {{type: files, directory: out/c{i}}}}}\n"
    return text


def _state_serial(workspace: Workspace) -> int:
    ((serial,),) = workspace.query("SELECT value FROM meta WHERE key='serial'")
    return int(serial)


def test_replacing_more_than_the_limit_needs_force(workspace: Workspace) -> None:
    workspace.write(_config(10))
    workspace.ok("apply", "--auto-approve")
    serial = _state_serial(workspace)

    workspace.write(_config(10, rsa=3))  # 30%: at the limit, allowed
    plan = workspace.run("plan")
    assert "needs `apply --force`" not in plan.out

    workspace.write(_config(10, rsa=4))  # 40% > 30%
    plan = workspace.run("plan")
    assert "This plan needs `apply --force`" in plan.out
    assert "4 of 10 managed certificates" in plan.out and "policy limit 30%" in plan.out
    refused = workspace.run("apply", "--auto-approve")
    assert refused.code == 1 and "refusing to apply without --force" in refused.err
    assert _state_serial(workspace) == serial
    workspace.ok("apply", "--auto-approve", "--force")
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_limit_is_configurable_and_renewals_do_not_count(workspace: Workspace) -> None:
    policy = "policy:\n  change_limit: {percent: 50, minimum_certificates: 4}\n"
    workspace.write(_config(4, policy=policy))
    workspace.ok("apply", "--auto-approve")
    workspace.write(_config(4, rsa=2, policy=policy))  # 50%: allowed
    assert "needs `apply --force`" not in workspace.run("plan").out
    workspace.write(_config(4, rsa=3, policy=policy))  # 75%
    assert "3 of 4 managed certificates" in workspace.run("plan").out
    # Everything due for renewal at once is routine, not a mass change.
    workspace.write(_config(4, policy=policy))
    later = workspace.run("plan", "--at", "+80d", "--json")
    assert '"requires_force": []' in later.out
    assert '"renew": 4' in later.out


def test_rotating_a_ca_needs_force(workspace: Workspace) -> None:
    workspace.write(_config(2))
    workspace.ok("apply", "--auto-approve")
    workspace.write(_config(2, issuing_cn="Example Issuing CA G2"))
    plan = workspace.run("plan")
    assert "authority.issuing is a CA and would be replaced with a new key" in plan.out
    refused = workspace.run("apply", "--auto-approve")
    assert refused.code == 1
    saved = workspace.root / "rotate.plan"
    workspace.ok("plan", "--out", str(saved))
    assert workspace.run("apply", str(saved)).code == 1  # a saved plan too
    workspace.ok("apply", str(saved), "--force")
