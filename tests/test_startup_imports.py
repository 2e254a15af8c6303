"""What start-up imports: the CLI module alone imports no session, and the config
models import no issuer, no monitoring output and no apply machinery.

Start-up is part of every command's time (``certform --version`` took 0.65 s when
the CLI imported everything up front); these pin the lazy imports so that a
top-level import added later cannot silently undo them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """Modules under ``prefixes`` that a fresh interpreter has loaded after ``statement``."""
    code = (
        f"{statement}\nimport sys\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return ast.literal_eval(result.stdout)


def test_the_cli_module_imports_no_session_config_or_pydantic() -> None:
    heavy = ("reconciler.session", "reconciler.config", "reconciler.engine", "pydantic")
    assert _loaded_after("import reconciler.cli", heavy) == []


def test_the_config_models_import_no_issuer_monitoring_output_or_apply() -> None:
    loaded = _loaded_after(
        "import reconciler.config.models",
        (
            "reconciler.issuers",
            "reconciler.monitoring.prometheus",
            "reconciler.engine",
            "reconciler.session",
        ),
    )
    assert loaded == []


def test_a_plan_session_imports_no_apply_or_saved_plan_machinery() -> None:
    loaded = _loaded_after(
        "import reconciler.session",
        ("reconciler.engine.apply", "reconciler.engine.runner", "reconciler.engine.saved_plan"),
    )
    assert loaded == []


def test_the_monitoring_package_still_offers_its_names() -> None:
    loaded = _loaded_after(
        "from reconciler.monitoring import CertificateMetric, notify\n"
        "assert CertificateMetric.__name__ == 'CertificateMetric' and callable(notify)",
        ("reconciler.monitoring.",),
    )
    assert loaded == ["reconciler.monitoring.notifications", "reconciler.monitoring.prometheus"]


def test_the_libraries_of_one_command_load_only_when_used() -> None:
    """prometheus_client renders `check --format prometheus` / `--textfile`; requests
    sends webhooks and ARI requests: neither (nor any HTTP client) loads with the
    config models or the metrics module."""
    loaded = _loaded_after(
        "import reconciler.config.models, reconciler.monitoring.prometheus, reconciler.http",
        ("prometheus_client", "requests", "urllib3", "http.client", "urllib.request"),
    )
    assert loaded == []
