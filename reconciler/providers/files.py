"""The ``files`` target: PEM files in a directory, plus an optional post-deploy command.

Layout written: ``cert.pem`` (leaf), ``chain.pem`` (intermediates),
``fullchain.pem`` (leaf + intermediates), ``ca.pem`` (root) and ``key.pem``
(mode 0600).  Each file is replaced atomically; observed state is what is on
disk, compared with the size, mtime and SHA-256 recorded at deploy time (the
hash is only computed when size or mtime moved, so a no-change plan costs a
few ``stat`` calls per binding).

With ``via: NAME`` the directory is on that SSH host: the same files, modes and
atomic renames over SFTP, ``post_deploy`` run there, and a plan stamps the files
of every binding on the host with one remote command (``providers/ssh/``).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from reconciler.config.types import Duration, EntryName, EnvName, StrictModel, pass_env_field
from reconciler.errors import DeployedButFailed, ProviderError
from reconciler.filestamp import Stamp
from reconciler.fsutil import TARGET_DIR_MODE
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.base import BindingContext, Problem, Target
from reconciler.providers.endpoint import EndpointSettings

KEY_FILE = "key.pem"
KEY_MODE = 0o600
PUBLIC_MODE = 0o644


class FilesTargetConfig(StrictModel):
    """PEM bundle in a directory (relative paths are relative to the config)."""

    type: Literal["files"]
    directory: str = Field(min_length=1, description="Directory to write the PEM files into.")
    via: EntryName | None = Field(
        default=None,
        description="An `ssh` provider: the directory is on that host (absolute path), "
        "written over SFTP; post_deploy runs there.",
    )
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
        if self.via is not None:
            return posixpath.normpath(directory)  # on the host: absolute (validated)
        if directory.startswith("/"):
            return os.path.normpath(directory)
        joined = f"{os.fspath(self.root)}/{directory}"
        return joined if _NORMAL.fullmatch(joined) else os.path.normpath(joined)

    def identity(self) -> str:
        """The directory relative to the config when inside it, else absolute; on a
        host, ``HOST:/directory``."""
        directory = self.config.directory
        via = self.config.via
        if via is not None:
            return f"{via}:{posixpath.normpath(directory)}"
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
        problems, missing = self.host.stamp_problems(entries, private=(KEY_FILE,))
        if recorded and missing == len(recorded):
            raise Missing(f"no files in {self.host.where(directory)}")
        return problems

    def prefetch(self, facts: Facts) -> None:
        if self.via is not None:
            directory = self._directory()
            self.host.want_stamps(f"{directory}/{name}" for name in facts.get("files", {}))

    def validate(self, context: BindingContext) -> list[Problem]:
        problems = super().validate(context)
        if self.config.via is not None and not posixpath.isabs(self.config.directory):
            problems.append(
                (("target", "directory"), "must be an absolute path on the host with via")
            )
        return problems

    def compare(self, seen: list[str], facts: Facts) -> list[str]:
        return seen

    def key_directories(self) -> tuple[Path, ...]:
        return () if self.via is not None else (self.directory,)

    @property
    def deploy_waits(self) -> bool:
        """Local files with no ``post_deploy`` and no ``verify_endpoint`` wait for
        nothing: writing them is kernel work on this machine's disk."""
        command, handshake = self.config.post_deploy, self.config.verify_endpoint
        return self.via is not None or bool(command) or handshake is not None

    @property
    def deploys_in_fork(self) -> bool:
        """Local files (no SSH connection, which lives in this process's event loop)."""
        return self.via is None

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None = None, snapshot: Any = None
    ) -> Facts:
        host = self.host
        where = self._directory()
        try:
            # A directory made just now is ours (0750) and empty: no permission check,
            # no temp files of a killed run to look for.  One that was there is
            # checked (nothing was changed yet) and cleaned of temps (one may hold a key).
            if not host.make_dirs(where, TARGET_DIR_MODE):
                problem = host.unsafe_key_directory(where)
                if problem is not None:
                    raise ProviderError(problem)
                host.remove_stale_temps(where, FILE_MODES)
            contents = {f"{where}/{name}": item for name, item in _contents(material).items()}
            stamps = host.write_files(contents)
            host.fsync_directory(where)
        except OSError as exc:
            message = exc.strerror or exc
            raise ProviderError(f"cannot write {host.where(where)}: {message}") from None
        files: dict[str, Stamp] = {name: stamps[f"{where}/{name}"] for name in FILE_MODES}
        facts: Facts = {"directory": where, "files": files}
        try:
            self._run_post_deploy(
                CERTFORM_CERTIFICATE=material.name,
                CERTFORM_SERIAL=material.serial,
                CERTFORM_DIRECTORY=where,
            )
        except ProviderError as exc:
            unfinished = f"the post_deploy command failed at the last apply ({exc})"
            raise DeployedButFailed(str(exc), facts, unfinished) from None
        return facts

    def snapshot(
        self, material: CertificateMaterial, previous: Facts | None
    ) -> dict[str, bytes | None] | None:
        """The files served now, to put back when the handshake at ``verify_endpoint``
        fails; None without one (nothing else can fail a files deploy's verification,
        so a bulk renewal reads no key into memory for nothing)."""
        if self.config.verify_endpoint is None:
            return None
        directory = self._directory()
        host = self.host
        present = host.present_names(directory, FILE_MODES)
        return {
            name: host.read_if_present(f"{directory}/{name}") if name in present else None
            for name in FILE_MODES
        }

    def restore(self, snapshot: dict[str, bytes | None]) -> str:
        directory = self._directory()
        host = self.host
        try:
            for name, data in snapshot.items():
                if data is None:
                    host.unlink(f"{directory}/{name}")
            host.write_files(
                {
                    f"{directory}/{name}": (data, FILE_MODES[name])
                    for name, data in snapshot.items()
                    if data is not None
                }
            )
        except OSError as exc:
            message = exc.strerror or exc
            raise ProviderError(f"cannot restore {host.where(directory)}: {message}") from None
        self._run_post_deploy(CERTFORM_DIRECTORY=directory, CERTFORM_RESTORED="1")
        return f"previous files restored in {host.where(directory)}"

    def remove(self, facts: Facts) -> bool:
        directory = self._directory()
        host = self.host
        for name in facts.get("files", {}):
            host.unlink(f"{directory}/{name}")
        # Every file certform wrote goes, temp files of a killed run included (they
        # may hold the key, and would keep the directory from being removed).
        host.remove_stale_temps(directory, FILE_MODES)
        host.rmdir(directory)
        return True

    def _run_post_deploy(self, **variables: str) -> None:
        argv = self.config.post_deploy
        if argv:
            self.host.run_command(
                "post_deploy",
                argv,
                self.config.post_deploy_timeout,
                cwd=self._directory(),
                variables=variables,
                pass_env=self.config.pass_env or (),
            )
