"""A real PostgreSQL for tests: one server per test session on 127.0.0.1, a free port.

``initdb`` refuses to run as root, so when the suite runs as root the cluster
directory belongs to ``nobody`` and the server runs as ``nobody`` (LAB.md).  The
cluster trusts local connections (user ``test``, a superuser); fsync is off
(``-F``): durability against power loss is PostgreSQL's job, not what the tests
check.  Each test gets its own database (``PostgresLab.database()``), so states,
locks and schema versions never leak between tests; ``stop()`` (also an atexit
hook) shuts the server down and removes the cluster.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.aws_lab import free_port

_USER = "test"


def postgres_bin_dir() -> Path | None:
    """The directory of PostgreSQL's server binaries (Debian keeps them per version),
    or None when PostgreSQL is not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresLab:
    """One running cluster; ``dsn(db)`` is a libpq connection string for a database."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="certform-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_nobody = os.geteuid() == 0
        self._started = False

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_nobody:
            command = ["runuser", "-u", "nobody", "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, cwd=self.root, check=False
        )

    def start(self) -> PostgresLab:
        os.chmod(self.root, 0o755)
        if self._as_nobody:
            shutil.chown(self.root, "nobody")
        init = self._run("initdb", "-D", str(self.data), "-U", _USER, "--auth=trust", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -F -c max_connections=200"
        started = self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{log}")
        self._started = True
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={_USER} dbname={database}"

    def database(self) -> str:
        """A fresh, empty database; its connection string."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop(self, dsn: str) -> None:
        """Drop the database of ``dsn`` (its connections are ended first)."""
        import psycopg

        name = dsn.rsplit("dbname=", 1)[1]
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.dsn(), autocommit=True) as connection,
        ):
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
