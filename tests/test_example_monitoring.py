"""examples/monitoring run as its systemd unit runs it: the ``certform check`` command
line of certform-check.service (paths moved into the workspace), a real HTTP server
on 127.0.0.1 as the webhook (URL and Authorization from the environment, as the
unit's EnvironmentFile gives them), the textfile parsed with prometheus_client.

Checked: today nothing needs attention (exit 0, no webhook call) and the textfile
gives each certificate its days left; 65 days on, ``web`` (30 days' window) is
posted with its fields and the token, ``reports`` is not, and check exits 2; every
metric the alert rules use is in the textfile; the token never appears in output."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Workspace
from tests.examples_lab import EXAMPLES, copy_example
from tests.webhook_lab import Receiver, receiving

TOKEN = "Bearer example-s3cret"


@pytest.fixture
def webhook() -> Iterator[str]:
    with receiving("/pki") as url:
        yield url


def _unit_check_args(textfile: Path) -> list[str]:
    """The arguments certform-check.service gives ``certform``, pointed at the workspace."""
    unit = (EXAMPLES / "monitoring" / "certform-check.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    assert Path(argv[0]).name == "certform" and argv[1] == "check", argv
    moved = {"/etc/certform/certform.yaml": "certform.yaml"}
    moved[next(a for a in argv if a.endswith(".prom"))] = str(textfile)
    return [moved.get(a, a) for a in argv[1:]]


def _days_left(textfile: Path, now: float) -> dict[str, float]:
    days = {}
    for family in text_string_to_metric_families(textfile.read_text()):
        for sample in family.samples:
            if sample.name == "certform_certificate_expiration_timestamp_seconds":
                days[sample.labels["name"]] = (sample.value - now) / 86400
    return days


def test_the_monitoring_example_checks_and_notifies(workspace: Workspace, webhook: str) -> None:
    ws = workspace
    copy_example(ws, "monitoring")
    ws.env.update(CERTFORM_WEBHOOK_URL=webhook, CERTFORM_WEBHOOK_AUTH=TOKEN)
    lab = ("--var", "tls_dir=out")
    ws.ok("validate", *lab)
    ws.ok("plan", *lab)
    ws.ok("apply", "--auto-approve", *lab)

    textfile = ws.root / "textfile" / "certform.prom"
    textfile.parent.mkdir()
    args = _unit_check_args(textfile)
    today = ws.run(*args, *lab)
    assert today.code == 0, today.text
    assert Receiver.received == []
    days = _days_left(textfile, time.time())
    assert days.keys() == {"web", "reports"}
    assert days["web"] == pytest.approx(90, abs=0.1)
    assert days["reports"] == pytest.approx(365, abs=0.1)
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    ready = {s.labels["name"]: s for s in families["certform_certificate_ready"].samples}
    assert ready["web"].value == 1 and ready["web"].labels["tag_severity"] == "page"

    # Every certform metric the alert rules use is written.
    rules = yaml.safe_load((ws.root / "prometheus/certform-alerts.yml").read_text())
    used = {
        name
        for rule in rules["groups"][0]["rules"]
        for name in re.findall(r"certform_\w+", rule["expr"])
    }
    assert used and used <= families.keys()

    later = ws.run(*args, "--at", "+65d", *lab)
    assert later.code == 2, later.text  # web is past its renewal time
    assert TOKEN.split()[1] not in later.text + today.text
    [post] = Receiver.received
    assert post["path"] == "/pki" and post["auth"] == TOKEN
    assert post["type"] == "application/json"
    event = post["event"]
    assert event["detail-type"] == "Certificate Approaching Expiration"
    assert event["source"] == "certform"
    assert event["resources"] == ["certificate.web"]
    detail = event["detail"]
    assert detail["name"] == "web" and detail["issuer"] == "issuing"
    assert detail["common_name"] == "web.example.com"
    assert detail["tags"] == {"team": "web", "severity": "page"}
    assert detail["days_to_expiry"] in (24, 25)
