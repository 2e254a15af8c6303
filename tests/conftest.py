"""Shared helpers: run the real ``certform`` executable in a scratch workspace."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE = """\
authorities:
  root:
    type: private-root
    subject: {common_name: Example Root CA, organization: Example}
    key: ec-p384
    validity: 3650d
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Example Issuing CA}
    validity: 1825d
    path_length: 0
    name_constraints: {permitted: [example.test]}
certificates:
  web:
    names: [web.example.test, "*.web.example.test"]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
    tags: {team: web}
  api:
    names: [api.example.test]
    issuer: issuing
    key: rsa-2048
    validity: 90d
bindings:
  - certificate: web
    target: {type: files, directory: out/web}
  - certificate: api
    target: {type: files, directory: out/api}
"""


def certform_argv() -> list[str]:
    exe = shutil.which("certform")
    if exe:
        return [exe]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    backend: str = "sqlite"
    state_header: str = ""
    """Prepended to every config written without its own ``state:`` block: where the
    state lives when the test runs against PostgreSQL."""

    @property
    def config(self) -> Path:
        return self.root / "certform.yaml"

    @property
    def state_db(self) -> Path:
        return self.root / ".certform" / "state.db"

    def write(self, text: str, name: str = "certform.yaml") -> Path:
        path = self.root / name
        if self.state_header and not re.search(r"^state:", text, re.MULTILINE):
            text = self.state_header + text
        path.write_text(text)
        return path

    @contextlib.contextmanager
    def opened_store(self):  # type: ignore[no-untyped-def]
        """The configuration's state store, opened in this process (either backend),
        with this workspace's master key and DSN in the environment while it is used;
        closed afterwards."""
        from reconciler.session import Session

        previous = {k: os.environ.get(k) for k in (MASTER_KEY, PG_DSN)}
        os.environ.update({k: self.env[k] for k in (MASTER_KEY, PG_DSN) if k in self.env})
        store = None
        try:
            store = Session(self.config).open_store()
            yield store
        finally:
            if store is not None:
                store.close()
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def private_key_der(self, kind: str, name: str) -> bytes:
        """The sealed private key of ``kind.name``, opened with this workspace's master key."""
        with self.opened_store() as store:
            return store.private_key(kind, name)

    def deployed_key_der(self, directory: str) -> bytes:
        """The key file deployed in ``directory``, as PKCS#8 DER (to compare with a sealed one)."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(
            (self.root / directory / "key.pem").read_bytes(), None
        )
        return key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def state_exists(self) -> bool:
        """Whether a state was created (the SQLite file, or the PostgreSQL schema)."""
        if self.backend == "sqlite":
            return self.state_db.exists()
        with self.opened_store() as store:
            return bool(store.exists)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
        """Rows of ``sql`` run (and committed) on the state's database (SQLite file or
        the state's PostgreSQL schema): what is stored, or an edit behind its back."""
        if self.backend == "sqlite":
            with contextlib.closing(sqlite3.connect(self.state_db)) as db:
                rows = db.execute(sql, params).fetchall()
                db.commit()
                return rows
        from reconciler.state import pg_connection

        name = self.state_header.split("name: ")[1].split("}")[0]
        conn = pg_connection.connect(self.env[PG_DSN], name, "test")
        try:
            cursor = conn.execute(sql, params)
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        finally:
            conn.close()

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*certform_argv(), *args],
            cwd=self.root,
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, result.text
        return result


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty per-user cache directory (parse and validation caches) for
    a test that runs certform in this process."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("CERTFORM_CACHE_DIR", str(directory))
    monkeypatch.delenv("CERTFORM_CACHE", raising=False)
    return directory


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


MASTER_KEY = "CERTFORM_MASTER_KEY"
PG_DSN = "CERTFORM_PG_DSN"
BACKENDS = ("sqlite", "postgres")


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller made them and removes them at the end
    for variable, prefix in (("CERTFORM_CACHE_DIR", "certform-cache-"),
                             ("PYTHONPYCACHEPREFIX", "certform-pyc-")):  # fmt: skip
        made = os.environ.get(variable, "")
        if os.path.basename(made).startswith(prefix):
            shutil.rmtree(made, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # The parse cache (config/parse_cache.py) of the whole run in one private place,
    # not in the user's ~/.cache: tests share its hits, and leave nothing behind.
    os.environ.setdefault("CERTFORM_CACHE_DIR", tempfile.mkdtemp(prefix="certform-cache-"))
    # The suite starts certform thousands of times: with PYTHONDONTWRITEBYTECODE (set in
    # some sandboxes and CI images) each start would compile the whole package again.
    # Bytecode goes to a private prefix instead, so nothing is written into the tree.
    if "PYTHONPYCACHEPREFIX" not in os.environ:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="certform-pyc-")
    config.addinivalue_line(
        "markers",
        "state_backends: run the module's workspace tests against SQLite and PostgreSQL",
    )
    config.addinivalue_line(
        "markers", "sqlite_only: looks inside the SQLite file; not run against PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module marked ``state_backends`` run once per backend, unless the
    test itself is ``sqlite_only``."""
    if "state_backend" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("state_backends") is not None
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    backends = BACKENDS if both and not sqlite_only else ("sqlite",)
    metafunc.parametrize("state_backend", backends, indirect=True)


@pytest.fixture
def state_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_dsn():  # type: ignore[no-untyped-def]
    """One PostgreSQL for the session and one database in it; each test gets its own
    state name there (states sharing a database must not see each other)."""
    from tests.postgres_lab import PostgresLab, postgres_bin_dir

    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    lab = PostgresLab().start()
    yield lab.database()
    lab.stop()


@pytest.fixture
def workspace(
    tmp_path: Path, master_key: str, state_backend: str, request: pytest.FixtureRequest
) -> Workspace:
    env = dict(os.environ)
    env[MASTER_KEY] = master_key
    env.pop("CERTFORM_SKIP_INSTALL", None)
    for terminal in ("COLUMNS", "LINES"):  # pytest (or xdist) may set them: tables then wrap
        env.pop(terminal, None)
    ws = Workspace(tmp_path, env, state_backend)
    if state_backend == "postgres":
        env[PG_DSN] = request.getfixturevalue("postgres_dsn")
        name = "t" + uuid.uuid4().hex[:20]
        ws.state_header = f"state: {{backend: postgres, dsn_env: {PG_DSN}, name: {name}}}\n"
    ws.write(EXAMPLE)
    return ws


PKILINT = [sys.executable, "-m", "pkilint.bin.lint_pkix_cert"]
"""pkilint's RFC 5280 certificate linter, run with this interpreter: pkilint is a test
dependency (the ``test`` extra, installed by tests/run.sh), so it is required, never
skipped, and whether its console script is on PATH does not matter."""


def pkilint_findings(path: Path) -> list[tuple[str, str, str, str]]:
    """pkilint's findings for the PEM certificate at ``path``: (validator, severity, code,
    message), NOTICE and above. Fails when pkilint could not lint it (not installed,
    unreadable input), so that "no findings" always means it looked."""
    result = subprocess.run(
        [*PKILINT, "lint", "-f", "JSON", "-s", "NOTICE", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip(), f"pkilint could not lint {path}: {result.stderr}"
    return [
        (entry["validator"], finding["severity"], finding["code"], finding["message"])
        for entry in json.loads(result.stdout)["results"]
        for finding in entry["finding_descriptions"]
    ]


def openssl_verify(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not installed")
    argv = ["openssl", "verify", "-CAfile", str(directory / "ca.pem")]
    if (directory / "chain.pem").read_text().strip():
        argv += ["-untrusted", str(directory / "chain.pem")]
    argv += [*extra, str(directory / "cert.pem")]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def aws_lab():  # type: ignore[no-untyped-def]
    """A moto server for the whole session, reset before each test that uses it."""
    from tests.aws_lab import AwsLab

    lab = AwsLab.start()
    yield lab
    lab.stop()


@pytest.fixture
def aws(aws_lab, workspace: Workspace, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.aws_lab import CREDENTIALS

    aws_lab.reset()
    for key, value in CREDENTIALS.items():
        workspace.env[key] = value
        monkeypatch.setenv(key, value)
    workspace.env.pop("AWS_PROFILE", None)
    return aws_lab
