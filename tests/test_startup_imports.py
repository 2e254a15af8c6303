"""What start-up imports: the CLI module alone imports no session, and the config
models import no issuer, no monitoring output and no apply machinery.

Start-up is part of every command's time (``certform --version`` took 0.65 s when
the CLI imported everything up front); these pin the lazy imports so that a
top-level import added later cannot silently undo them.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import reconciler
from tests.conftest import Workspace

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


# -- what a scheduled job's commands load -------------------------------------------
NEVER_FOR_PRIVATE_FILES = (
    "asyncssh",  # the ssh provider's library (and its event loop, below)
    "reconciler.providers.ssh.loop",
    "reconciler.providers.ssh.connection",
    "acme",  # certbot's ACME library, and certform's client and issuer over it
    "josepy",
    "reconciler.acme.client",
    "reconciler.issuers.acme",
    "boto3",  # AWS: neither the SDK nor an AWS issuer
    "botocore",
    "reconciler.issuers.aws_acm",
    "reconciler.issuers.aws_pca",
    "rich",  # output is not a terminal: plain text, no rich console
    "requests",  # no webhook, no ACME Renewal Information
    "urllib3",
    "prometheus_client",  # no --format prometheus, no --textfile
    "jinja2",  # no report
    "psycopg",  # SQLite state
    "reconciler.plan.render_markdown",  # plan --format markdown only
)
"""Modules a files-only private-CA configuration never needs.  asyncio is not here:
pydantic imports it (pydantic_core's ``@deprecated`` helpers import asyncio.coroutines
on Python 3.11), so it is checked through what would start a loop (asyncssh, the ssh
loop module) and, for ``--version``, directly."""


def _modules_after_run(ws: Workspace, *args: str) -> list[str]:
    """Every module a ``certform ARGS`` process had loaded when it exited (its exit code
    checked), run as the console script runs, with stdout and stderr not a terminal."""
    listing = ws.root / "modules.json"
    code = (
        "import atexit, json, pathlib, sys\n"
        f"out = pathlib.Path({str(listing)!r})\n"
        "atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['certform', *{list(args)!r}]\n"
        "from reconciler.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ws.root, env=ws.env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(listing.read_text())


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` (packages with their submodules) among ``modules``."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_version_loads_neither_typer_nor_asyncio(workspace: Workspace) -> None:
    """``certform --version`` prints exactly what typer printed, without typer."""
    assert workspace.ok("--version").out == f"certform {reconciler.__version__}\n"
    modules = _modules_after_run(workspace, "--version")
    assert _loaded(modules, ("typer", "click", "asyncio", "pydantic", "reconciler.cli_app")) == []
    assert _loaded(modules, NEVER_FOR_PRIVATE_FILES) == []


def test_version_with_other_arguments_still_goes_through_typer(workspace: Workspace) -> None:
    """Only a lone ``--version`` takes the short way; with other arguments typer parses
    them as before (an eager option: the version, nothing run)."""
    for args in (("--version", "plan"), ("--no-color", "--version")):
        result = workspace.ok(*args)
        assert (result.out, result.err) == (f"certform {reconciler.__version__}\n", ""), args
    assert not workspace.state_exists()


def test_plan_apply_check_of_private_files_load_no_other_kinds_library(
    workspace: Workspace,
) -> None:
    """A scheduled job's commands on a files-only private-CA config: no SSH, ACME, AWS,
    rich, HTTP client, Prometheus, report or PostgreSQL module is imported."""
    first = _modules_after_run(workspace, "apply", "--auto-approve")
    assert _loaded(first, NEVER_FOR_PRIVATE_FILES) == []
    for args in (("plan",), ("plan", "--json"), ("apply", "--auto-approve"), ("check",)):
        modules = _modules_after_run(workspace, *args)
        assert _loaded(modules, NEVER_FOR_PRIVATE_FILES) == [], args
        assert "reconciler.issuers.private_ca" in modules  # the run did reach the issuers


def test_the_issuer_registry_table_matches_the_issuer_classes() -> None:
    """The registry imports an issuer's module on first use of its type; its table of
    types is checked here against what every issuer class declares."""
    from reconciler.issuers import registry
    from reconciler.issuers.base import Issuer

    by_class: dict[type[Issuer], tuple[str, ...]] = {}
    for type_name, (module, class_name) in registry._ISSUER_MODULES.items():
        cls = getattr(importlib.import_module(module), class_name)
        by_class[cls] = (*by_class.get(cls, ()), type_name)
    for cls, types in by_class.items():
        assert tuple(sorted(cls.types)) == tuple(sorted(types)), cls
        issuer_type = cls.certificate_spec_class.issuer_type
        assert registry._CERTIFICATE_TYPES[issuer_type] in cls.types, cls
    assert len(registry._CERTIFICATE_TYPES) == len(by_class)
    assert registry.issuer_named("private-root") is registry.issuer_named("private-subordinate")
