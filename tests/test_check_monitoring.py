"""`certform check` for monitoring, through the real CLI: Prometheus gauges (parsed
with prometheus_client), --textfile, --tag filters (also on show), and expiry
notifications to a file and to a real local webhook."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Workspace
from tests.webhook_lab import Receiver, receiving

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).


def _samples(text: str) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, sample.labels["name"])] = sample.value
    return values


def test_prometheus_gauges_and_textfile(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    result = workspace.run("check", "--format", "prometheus", "--textfile", "metrics.prom")
    assert result.code == 0, result.text
    values = _samples(result.out)
    assert values[("certform_certificate_ready", "web")] == 1
    assert values[("certform_certificate_ready", "api")] == 1
    expires = values[("certform_certificate_expiration_timestamp_seconds", "web")]
    renews = values[("certform_certificate_renewal_timestamp_seconds", "web")]
    assert expires - renews == pytest.approx(30 * 86400, abs=2)  # renew_before: 30d
    families = {f.name: f for f in text_string_to_metric_families(result.out)}
    web = next(
        s for s in families["certform_certificate_ready"].samples if s.labels["name"] == "web"
    )
    assert web.labels["issuer"] == "issuing" and web.labels["tag_team"] == "web"
    assert (workspace.root / "metrics.prom").read_text() == result.out
    later = workspace.run("check", "--format", "prometheus", "--at", "+100d")
    assert _samples(later.out)[("certform_certificate_ready", "web")] == 0


def test_tag_filters(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    shown = json.loads(workspace.ok("show", "--json", "--tag", "team=web").out)
    assert [c["address"] for c in shown["certificates"]] == ["certificate.web"]
    checked = workspace.run("check", "--json", "--within", "365d", "--tag", "team=web")
    assert checked.code == 2
    addresses = {f["address"] for f in json.loads(checked.out)["findings"]}
    assert addresses == {"certificate.web"}
    assert workspace.run("check", "--tag", "nonsense").code == 1


@pytest.fixture
def hook() -> Iterator[str]:
    with receiving("/hook") as url:
        yield url


def test_expiry_notifications_to_file_and_webhook(workspace: Workspace, hook: str) -> None:
    workspace.ok("apply", "--auto-approve")
    workspace.env["HOOK_TOKEN"] = "Bearer s3cr3t-token"
    text = workspace.config.read_text() + (
        "notifications:\n"
        "  days: 45\n"
        "  sinks:\n"
        "    - {type: file, path: events.jsonl}\n"
        f"    - {{type: webhook, url: '{hook}', headers_env: {{Authorization: HOOK_TOKEN}}}}\n"
    )
    workspace.write(text)
    quiet = workspace.run("check")
    assert quiet.code == 0 and not (workspace.root / "events.jsonl").exists()  # 90 days left
    result = workspace.run("check", "--at", "+60d")
    assert "s3cr3t-token" not in result.text
    events = [
        json.loads(line) for line in (workspace.root / "events.jsonl").read_text().splitlines()
    ]
    assert {e["detail"]["name"] for e in events} == {"web", "api"}
    assert all(e["detail-type"] == "Certificate Approaching Expiration" for e in events)
    assert {r["event"]["id"] for r in Receiver.received} == {e["id"] for e in events}
    assert all(r["auth"] == "Bearer s3cr3t-token" for r in Receiver.received)
