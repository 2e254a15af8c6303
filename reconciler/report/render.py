"""The report model as one self-contained HTML page.

Why a sandboxed, autoescaping environment: names, tags, subjects and audit
details come from a configuration and a state that other people write; every
value is escaped (a common name ``<script>...`` is text on the page, never an
element), and the template can call nothing the model does not offer.

The page loads nothing: the stylesheet is inline, the timeline inline SVG, no
script at all.  Its Content-Security-Policy says so (``default-src 'none'``)
and admits the one stylesheet by its SHA-256, so even an injected element could
neither load nor run anything.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from importlib.resources import files

from jinja2 import PackageLoader
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from reconciler.report.model import Report

TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"


def _when(moment: datetime | str | None) -> str:
    if moment is None or moment == "":
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _short(serial: str | None) -> str:
    return f"{serial[:16]}…" if serial else "-"


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader("reconciler.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["short"] = _short
    return env


def content_security_policy(stylesheet: str) -> str:
    """Nothing may load; the inline stylesheet is admitted by its hash."""
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


def render_html(report: Report) -> str:
    """The page for ``report``."""
    stylesheet = files("reconciler.report").joinpath("templates", STYLESHEET).read_text("utf-8")
    template = _environment().get_template(TEMPLATE)
    return template.render(
        report=report,
        # Our own file, not data: inserted as is (escaping would break CSS selectors).
        stylesheet=Markup(stylesheet),
        csp=content_security_policy(stylesheet),
    )
