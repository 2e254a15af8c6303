"""The ``files`` target: PEM files in a directory, plus an optional post-deploy command.

Layout written: ``cert.pem`` (leaf), ``chain.pem`` (intermediates),
``fullchain.pem`` (leaf + intermediates), ``ca.pem`` (root) and ``key.pem``
(mode 0600).  Each file is replaced atomically; observed state is what is on
disk, compared with the size, mtime and SHA-256 recorded at deploy time (the
hash is only computed when size or mtime moved, so a no-change plan costs a
few ``stat`` calls per binding).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import Field

from reconciler.config.types import Duration, StrictModel
from reconciler.durations import parse_duration
from reconciler.errors import ProviderError
from reconciler.fsutil import fsync_directory, write_atomic
from reconciler.providers.base import CertificateMaterial, Facts, Observation, Target

KEY_FILE = "key.pem"
KEY_MODE = 0o600
PUBLIC_MODE = 0o644


class FilesTargetConfig(StrictModel):
    """PEM bundle in a directory (relative paths are relative to the config)."""

    type: Literal["files"]
    directory: str = Field(min_length=1, description="Directory to write the PEM files into.")
    post_deploy: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Command (argv list, no shell) run after the files changed.",
    )
    post_deploy_timeout: Duration = Field(
        default="60s", description="How long post_deploy may run before it is stopped."
    )


def _contents(material: CertificateMaterial) -> dict[str, tuple[bytes, int]]:
    return {
        "cert.pem": (material.certificate_pem.encode(), PUBLIC_MODE),
        "chain.pem": (material.chain_pem.encode(), PUBLIC_MODE),
        "fullchain.pem": (material.fullchain_pem.encode(), PUBLIC_MODE),
        "ca.pem": (material.root_pem.encode(), PUBLIC_MODE),
        KEY_FILE: (material.private_key_pem, KEY_MODE),
    }


def _sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class FilesTarget(Target):
    """Writes the PEM files of one certificate into one directory."""

    type_name = "files"
    config: FilesTargetConfig

    @property
    def directory(self) -> Path:
        return Path(self._directory())

    def _directory(self) -> str:
        # Plain string operations: a plan calls this for every binding (10,000s).
        directory = self.config.directory
        if os.path.isabs(directory):
            return os.path.normpath(directory)
        return os.path.normpath(os.path.join(self.root, directory))

    def identity(self) -> str:
        """The directory relative to the config when inside it, else absolute."""
        directory = self.config.directory
        if not os.path.isabs(directory):
            relative = os.path.normpath(directory)
            if relative != ".." and not relative.startswith(".." + os.sep):
                return relative
        resolved = self._directory()
        root = os.path.normpath(self.root)
        if resolved.startswith(root + os.sep):
            return resolved[len(root) + 1 :]
        return resolved

    def observe(self, facts: Facts) -> Observation:
        recorded: dict[str, list[int | str]] = facts.get("files", {})
        directory = self._directory()
        problems: list[str] = []
        missing = 0
        for name, (size, mtime_ns, digest) in recorded.items():
            path = f"{directory}/{name}"
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                problems.append(f"{name} missing")
                missing += 1
                continue
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns) and (
                _sha256_file(path) != digest
            ):
                problems.append(f"{name} changed on disk")
            if name == KEY_FILE and stat.st_mode & 0o777 != KEY_MODE:
                problems.append(f"{name} has mode {stat.st_mode & 0o777:o}, expected 600")
        if recorded and missing == len(recorded):
            return Observation("missing", (f"no files in {directory}",))
        if problems:
            return Observation("drifted", tuple(problems))
        return Observation("in_sync")

    def deploy(self, material: CertificateMaterial, previous: Facts | None = None) -> Facts:
        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            files: dict[str, list[int | str]] = {}
            for name, (data, mode) in _contents(material).items():
                path = directory / name
                write_atomic(path, data, mode)
                stat = path.stat()
                files[name] = [stat.st_size, stat.st_mtime_ns, hashlib.sha256(data).hexdigest()]
            fsync_directory(directory)
        except OSError as exc:
            raise ProviderError(f"cannot write {directory}: {exc.strerror or exc}") from None
        self._run_post_deploy(material)
        return {"directory": str(directory), "files": files}

    def remove(self, facts: Facts) -> bool:
        directory = self.directory
        for name in facts.get("files", {}):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()
        return True

    def _run_post_deploy(self, material: CertificateMaterial) -> None:
        argv = self.config.post_deploy
        if not argv:
            return
        timeout = parse_duration(self.config.post_deploy_timeout).total_seconds()
        env = dict(os.environ)
        env.update(
            CERTFORM_CERTIFICATE=material.name,
            CERTFORM_SERIAL=material.serial,
            CERTFORM_DIRECTORY=str(self.directory),
        )
        try:
            result = subprocess.run(
                argv,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise ProviderError(f"post_deploy command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"post_deploy {argv[0]} did not finish within {self.config.post_deploy_timeout}"
            ) from None
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
            detail = f": {' / '.join(tail)}" if tail else ""
            raise ProviderError(f"post_deploy {argv[0]} exited with {result.returncode}{detail}")
