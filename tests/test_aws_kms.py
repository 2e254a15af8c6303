"""State keys under AWS KMS (moto server): envelope encryption, and switching from
the local master key to KMS re-wraps the data key in one step."""

from __future__ import annotations

import json
import sqlite3

from tests.aws_lab import AwsLab
from tests.conftest import EXAMPLE, Workspace, openssl_verify


def kms_config(aws: AwsLab, key_id: str) -> str:
    return (
        EXAMPLE
        + "providers:\n"
        + aws.provider_yaml()
        + f"state:\n  key_store: {{type: aws-kms, key_id: '{key_id}', provider: aws}}\n"
    )


def meta(ws: Workspace) -> dict[str, str]:
    with sqlite3.connect(ws.state_db) as db:
        return dict(db.execute("SELECT key, value FROM meta"))


def test_new_state_under_kms_needs_no_master_key(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/certform", TargetKeyId=key)
    ws.write(kms_config(aws, "alias/certform"))
    ws.ok("apply", "--auto-approve")
    assert not (ws.root / ".certform/master.key").exists()
    recorded = json.loads(meta(ws)["key_store"])
    assert recorded["type"] == "aws-kms" and recorded["key_id"] == "alias/certform"
    (ws.root / "out/web/key.pem").unlink()
    ws.ok("apply", "--auto-approve")  # the sealed key is opened through KMS
    assert openssl_verify(ws.root / "out/web").returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_switching_local_to_kms_rewraps_in_one_step(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    before = meta(ws)
    key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    ws.write(kms_config(aws, key))
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "key_store: local master key → aws-kms" in plan.out
    ws.ok("apply", "--auto-approve")
    after = meta(ws)
    assert after["data_key"] != before["data_key"]
    assert int(after["serial"]) == int(before["serial"]) + 1
    assert json.loads(after["key_store"])["key_id"] == key
    # From now on the master key is not needed at all.
    del ws.env["CERTFORM_MASTER_KEY"]
    (ws.root / "out/api/key.pem").unlink()
    ws.ok("apply", "--auto-approve")
    assert openssl_verify(ws.root / "out/api").returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_unknown_kms_key_is_a_clear_error(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(kms_config(aws, "alias/does-not-exist"))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "KMS" in result.err and "Traceback" not in result.err
    assert not (ws.root / "out").exists()
