"""`certform report` through the real CLI, and the page it writes in headless Chromium.

A configuration like the quickstart's, with certificates of 3, 20 and 90 days
(critical, warning and ok bands) and a CA common name, a tag and a target
directory that carry ``<script>alert(1)</script>``, is applied; the report is
loaded in Chromium (Debian ``chromium``): from the DOM it parsed, every
certificate appears with its days left, band and binding targets, the script is
text and no element; the console shows no Content-Security-Policy violation
(nothing tried to load); the screenshot shows the bands' colours.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser_lab import console_lines, dump_dom, png_colours, png_size, screenshot
from tests.conftest import EXAMPLE, Workspace

XSS = "<script>alert(1)</script>"
# conftest's authorities (a root, an issuing CA), the root's common name made hostile.
CONFIG = (
    EXAMPLE.split("certificates:")[0].replace("Example Root CA", f"Root {XSS}")
    + """\
defaults:
  key: ec-p256
certificates:
  web:
    names: [web.example.test]
    issuer: issuing
    validity: 90d
    renew_before: 30d
    tags: {team: "<script>alert(1)</script>"}
  soon:
    names: [soon.example.test]
    issuer: issuing
    validity: 3d
  month:
    names: [month.example.test]
    issuer: root
    validity: 20d
bindings:
  - certificate: web
    target: {type: files, directory: "out/<script>alert(1)</script>"}
  - certificate: soon
    target: {type: files, directory: out/soon}
  - certificate: month
    target: {type: files, directory: out/month}
"""
)
EXPECTED_BANDS = {"web": "ok", "soon": "critical", "month": "warning"}
BAND_RGB = {"critical": (0xE8, 0x59, 0x0C), "warning": (0xF2, 0xB7, 0x05), "ok": (0x2B, 0x8A, 0x3E)}


class Dom(HTMLParser):
    """The parsed page: elements (tag, attributes, text inside) and the CSP."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text: list[str] = []
        self.elements.append((tag, {k: v or "" for k, v in attrs}, text))
        if tag not in ("meta", "br", "line", "circle", "input", "img", "link"):
            self._open.append(text)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "br", "line", "circle"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for text in self._open:
            text.append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [
            (a, "".join(t))
            for name, a, t in self.elements
            if name == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def test_report_in_headless_chromium(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    ws.write(CONFIG)
    ws.ok("apply", "--auto-approve")
    at = datetime.now(UTC).replace(microsecond=0)
    shown = {c["address"]: c for c in json.loads(ws.ok("show", "--json").out)["certificates"]}
    expected = {
        name: (datetime.fromisoformat(shown[f"certificate.{name}"]["not_after"]) - at).days
        for name in EXPECTED_BANDS
    }
    assert expected["soon"] == 2 and expected["month"] == 19  # issued just now
    out = ws.ok("report", "--out", "x.html", "--at", at.isoformat()).out
    assert out == "Wrote x.html (2 authorities, 3 certificates, 3 bindings).\n"
    page = ws.root / "x.html"
    html = page.read_text()

    dom_text, log = dump_dom(page, tmp_path / "profile-dom")
    assert console_lines(log) == []  # no CSP violation: nothing was blocked, nothing loaded
    dom = Dom(dom_text)
    assert dom.find("script") == []  # the injected script is text, never an element
    for name, band in EXPECTED_BANDS.items():
        rows = [t for a, t in dom.find("tr", data_address=f"certificate.{name}")]
        assert len(rows) == 1, name
        days = dom.find("span", data_days_left=str(expected[name]), data_band=band)
        assert days, (name, expected[name], band)
        assert f"{expected[name]} d" in rows[0]
    bound = {a["data-binding"]: t for a, t in dom.find("li") if "data-binding" in a}
    assert bound == {
        f"binding.files:out/{XSS}": f"files out/{XSS}",
        "binding.files:out/soon": "files out/soon",
        "binding.files:out/month": "files out/month",
    }
    assert any(XSS in text for _, text in dom.find("tr", data_address="authority.root"))
    assert any(XSS in text for _, text in dom.find("tr", data_address="certificate.web"))
    markers = {a["data-address"]: a["data-days-left"] for a, _ in dom.find("g")}
    # The timeline: all three certificates expire within 90 days, the CAs later.
    assert markers == {f"certificate.{name}": str(days) for name, days in expected.items()}
    last_apply = "".join(t for a, t in dom.find("div", id="last-apply"))
    assert "8 change(s)" in last_apply and "8 ok" in last_apply

    # Nothing to fetch: no src/href at all, and a policy that forbids fetching.
    (csp,) = [a["content"] for a, _ in dom.find("meta", http_equiv="Content-Security-Policy")]
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    assert "unsafe" not in csp
    linking = ("src", "href", "xlink:href", "srcset", "action", "formaction", "data", "poster")
    assert [a for _, a, _ in dom.elements if set(a) & set(linking)] == []

    # No key material: neither the deployed key nor a CA's sealed key, in any form.
    for der in (ws.deployed_key_der("out/soon"), ws.private_key_der("authority", "root")):
        encoded = base64.b64encode(der).decode()
        assert encoded[:64] not in html and encoded[-64:] not in html
    pem = (ws.root / "out/soon/key.pem").read_text().splitlines()[1]
    assert pem not in html and "PRIVATE KEY" not in html
    assert ws.env["CERTFORM_MASTER_KEY"] not in html

    png = tmp_path / "report.png"
    log = screenshot(page, png, tmp_path / "profile-shot")
    assert console_lines(log) == []
    assert png.stat().st_size > 30_000 and png_size(png) == (1280, 2000)
    colours = png_colours(png)
    assert [band for band, rgb in BAND_RGB.items() if rgb not in colours] == []


def test_out_default_stdout_and_errors(workspace: Workspace) -> None:
    ws = workspace
    # Before any apply: declared, not issued; the report creates no state.
    assert ws.ok("report").out == (
        "Wrote inventory.html (2 authorities, 2 certificates, 2 bindings).\n"
    )
    assert "not issued" in (ws.root / "inventory.html").read_text()
    assert not ws.state_exists()
    ws.ok("apply", "--auto-approve")
    printed = ws.ok("report", "--out", "-").out
    assert printed.startswith("<!DOCTYPE html>") and printed.rstrip().endswith("</html>")
    assert not (ws.root / "-").exists()
    missing = ws.run("report", "--out", "no/such/dir/x.html")
    assert missing.code == 1
    assert missing.err == "Error: cannot write no/such/dir/x.html: No such file or directory\n"
    bad_at = ws.run("report", "--at", "yesterday")
    assert bad_at.code == 1 and bad_at.err.startswith("Error: invalid --at 'yesterday'")


@pytest.mark.state_backends
def test_expired_recorded_only_and_tags(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    later = ws.ok("report", "--out", "-", "--at", "+95d").out
    dom = Dom(later)
    (web,) = [t for _, t in dom.find("tr", data_address="certificate.web")]
    assert "expired (-6 d)" in web  # 90 days, 95 days later
    assert len(dom.find("span", data_band="expired", data_days_left="-6")) == 4  # web, api
    # api dropped from the config: still recorded, shown as such with its binding.
    web_only = "bindings:\n  - certificate: web\n    target: {type: files, directory: out/web}\n"
    ws.write(ws.config.read_text().split("  api:")[0] + web_only)
    rows = Dom(ws.ok("report", "--out", "-").out)
    (api,) = [t for _, t in rows.find("tr", data_address="certificate.api")]
    assert "recorded only" in api
    (binding,) = [t for _, t in rows.find("tr", data_address="binding.files:out/api")]
    assert "recorded only" in binding
    tagged = Dom(ws.ok("report", "--out", "-", "--tag", "team=web").out)
    shown = [a.get("data-address", "") for a, _ in tagged.find("tr")]
    assert [a for a in shown if a.startswith("certificate.")] == ["certificate.web"]


def test_bands_renewal_due_and_last_apply() -> None:
    """The pure parts: band edges (7 and 30 days), renewal due as `check` counts it,
    and the last apply read from the audit log (the trailing run of apply records)."""
    from reconciler.report.audit_summary import summarize_audit
    from reconciler.report.model import expiry

    now = datetime(2030, 1, 1, tzinfo=UTC)
    issued = now - timedelta(days=60)

    def band(days: float, renew_before: str | None = None) -> tuple[str, bool]:
        e = expiry(issued, now + timedelta(days=days), now, renew_before)
        return e.band, e.renewal_due

    assert band(-0.5) == ("expired", False)
    assert band(6.9) == ("critical", True)  # default window: the last third of 67 days
    assert band(7) == ("warning", True)
    assert band(29.9, "10d") == ("warning", False)
    assert band(30, "10d") == ("ok", False)
    assert expiry(issued, now + timedelta(days=40), now, revoked=True).band == "revoked"
    assert expiry(None, None, now).band_label == "not issued"

    def record(i: int, command: str, result: str = "ok", actor: str = "ci") -> dict[str, object]:
        return {"id": i, "at": f"2030-01-01T00:00:0{i}+00:00", "actor": actor,
                "command": command, "address": f"certificate.c{i}", "action": "issue",
                "result": result, "detail": ""}  # fmt: skip

    rows = [record(1, "apply"), record(2, "export"), record(3, "apply", actor="ana"),
            record(4, "apply"), record(5, "apply", "failed"), record(6, "audit")]  # fmt: skip
    summary = summarize_audit(rows)
    assert summary.last_apply is not None and not summary.last_apply.ok
    assert (summary.last_apply.started, summary.last_apply.changes) == (rows[3]["at"], 2)
    assert summary.last_apply.results == (("ok", 1), ("failed", 1))
    assert [r.result for r in summary.problems] == ["failed"]
    assert summary.recent[0].command == "audit" and summary.total == 6
    assert summarize_audit([]).last_apply is None
