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
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from reconciler.config.types import Duration, EnvName, StrictModel, pass_env_field
from reconciler.errors import ProviderError
from reconciler.filestamp import Stamp, read_if_present, stamp_from, stamp_problems
from reconciler.fsutil import (
    TARGET_DIR_MODE,
    fsync_directory,
    make_dirs,
    remove_stale_temps,
    unsafe_key_directory,
    write_atomic,
)
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.base import Target
from reconciler.providers.commands import run_command
from reconciler.providers.endpoint import EndpointSettings

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
    pass_env: list[EnvName] | None = pass_env_field("post_deploy")
    verify_endpoint: EndpointSettings | None = Field(
        default=None,
        description="After deploy (and post_deploy), handshake here and require the new "
        "certificate; otherwise the previous files are restored and the binding fails.",
    )


FILE_MODES = {
    "cert.pem": PUBLIC_MODE,
    "chain.pem": PUBLIC_MODE,
    "fullchain.pem": PUBLIC_MODE,
    "ca.pem": PUBLIC_MODE,
    KEY_FILE: KEY_MODE,
}


_NORMAL = re.compile(r"(?:/(?!\.\.?(?:/|$))[^/]+)+")
"""An absolute path that ``os.path.normpath`` leaves as it is: no empty, ``.`` or
``..`` segment, no trailing slash."""


def _contents(material: CertificateMaterial) -> dict[str, tuple[bytes, int]]:
    return {
        "cert.pem": (material.certificate_pem.encode(), PUBLIC_MODE),
        "chain.pem": (material.chain_pem.encode(), PUBLIC_MODE),
        "fullchain.pem": (material.fullchain_pem.encode(), PUBLIC_MODE),
        "ca.pem": (material.root_pem.encode(), PUBLIC_MODE),
        KEY_FILE: (material.private_key_pem, KEY_MODE),
    }


class FilesTarget(Target):
    """Writes the PEM files of one certificate into one directory."""

    type_name = "files"
    config: FilesTargetConfig

    @property
    def directory(self) -> Path:
        return Path(self._directory())

    def _directory(self) -> str:
        # Plain string operations: a plan calls this for every binding (10,000s), and
        # most joined paths are already normal (normpath only for the others).
        directory = self.config.directory
        if directory.startswith("/"):
            return os.path.normpath(directory)
        joined = f"{os.fspath(self.root)}/{directory}"
        return joined if _NORMAL.fullmatch(joined) else os.path.normpath(joined)

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

    def read(self, facts: Facts) -> list[str]:
        """The recorded files' stamps checked against the disk (a few ``stat`` calls):
        what differs, or Missing when none of them is left."""
        recorded: dict[str, Stamp] = facts.get("files", {})
        directory = self._directory()
        entries = [(name, f"{directory}/{name}", stamp) for name, stamp in recorded.items()]
        problems, missing = stamp_problems(entries, private=(KEY_FILE,))
        if recorded and missing == len(recorded):
            raise Missing(f"no files in {directory}")
        return problems

    def compare(self, seen: list[str], facts: Facts) -> list[str]:
        return seen

    def key_directories(self) -> tuple[Path, ...]:
        return (self.directory,)

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None = None, snapshot: Any = None
    ) -> Facts:
        directory = self.directory
        where = str(directory)
        try:
            # A directory made just now is ours (0750) and empty: no permission check,
            # no temp files of a killed run to look for.  One that was there is
            # checked (nothing was changed yet) and cleaned of temps (one may hold a key).
            if not make_dirs(where, TARGET_DIR_MODE):
                problem = unsafe_key_directory(directory)
                if problem is not None:
                    raise ProviderError(problem)
                remove_stale_temps(directory, FILE_MODES)
            files: dict[str, Stamp] = {}
            for name, (data, mode) in _contents(material).items():
                written = write_atomic(f"{where}/{name}", data, mode)
                files[name] = stamp_from(written, data)
            fsync_directory(where)
        except OSError as exc:
            raise ProviderError(f"cannot write {directory}: {exc.strerror or exc}") from None
        self._run_post_deploy(
            CERTFORM_CERTIFICATE=material.name,
            CERTFORM_SERIAL=material.serial,
            CERTFORM_DIRECTORY=str(directory),
        )
        return {"directory": str(directory), "files": files}

    def snapshot(
        self, material: CertificateMaterial, previous: Facts | None
    ) -> dict[str, bytes | None] | None:
        """The files served now, to put back when the handshake at ``verify_endpoint``
        fails; None without one (nothing else can fail a files deploy's verification,
        so a bulk renewal reads no key into memory for nothing)."""
        if self.config.verify_endpoint is None:
            return None
        directory = self._directory()
        try:
            present = set(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            present = set()  # a first deploy: nothing to put back but absence
        except PermissionError:
            present = set(FILE_MODES)  # searchable, not listable: try each file
        return {
            name: read_if_present(f"{directory}/{name}") if name in present else None
            for name in FILE_MODES
        }

    def restore(self, snapshot: dict[str, bytes | None]) -> str:
        directory = self.directory
        try:
            for name, data in snapshot.items():
                if data is None:
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()
                else:
                    write_atomic(directory / name, data, FILE_MODES[name])
        except OSError as exc:
            raise ProviderError(f"cannot restore {directory}: {exc.strerror or exc}") from None
        self._run_post_deploy(CERTFORM_DIRECTORY=str(directory), CERTFORM_RESTORED="1")
        return f"previous files restored in {directory}"

    def remove(self, facts: Facts) -> bool:
        directory = self.directory
        for name in facts.get("files", {}):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                (directory / name).unlink()
        # Every file certform wrote goes, temp files of a killed run included (they
        # may hold the key, and would keep the directory from being removed).
        remove_stale_temps(directory, FILE_MODES)
        with contextlib.suppress(OSError):
            directory.rmdir()
        return True

    def _run_post_deploy(self, **variables: str) -> None:
        argv = self.config.post_deploy
        if argv:
            timeout = self.config.post_deploy_timeout
            run_command(
                "post_deploy",
                argv,
                timeout,
                cwd=self.directory,
                variables=variables,
                pass_env=self.config.pass_env or (),
            )
