"""``nginx``: certificate and key files an nginx server block points at.

Deploy writes both files atomically (the key 0600), optionally renders a
server-block snippet from the user's jinja2 template (sandboxed), runs the
provider's ``test_command`` (``nginx -t``) and only then its
``reload_command``.  A failing test or reload puts every file back as it was,
so nginx keeps serving the previous certificate and a later reload cannot pick
up a half-written set.  Observed state is the files on disk (size, mtime,
hash) plus, with ``verify_endpoint``, what a handshake presents.

With ``via: NAME`` on the provider entry, nginx is on that SSH host: the files
are written there over SFTP (absolute paths), the test and reload commands run
there, the snippet template is still read (and rendered) here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Hashable
from pathlib import Path
from typing import Literal

from cryptography import x509
from pydantic import Field

from reconciler.config.inputs import input_path
from reconciler.config.types import Duration, EntryName, EnvName, StrictModel, pass_env_field
from reconciler.errors import ProviderError
from reconciler.filestamp import Stamp
from reconciler.fsutil import TARGET_DIR_MODE, config_path
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.base import BindingContext, Problem, Target, post_quantum_refusal
from reconciler.providers.endpoint import EndpointSettings

KEY_MODE = 0o600
PUBLIC_MODE = 0o644


class NginxProviderConfig(StrictModel):
    """How to test and reload one nginx instance (argv lists, no shell)."""

    type: Literal["nginx"]
    test_command: list[str] = Field(default=["nginx", "-t"], min_length=1)
    reload_command: list[str] = Field(default=["nginx", "-s", "reload"], min_length=1)
    command_timeout: Duration = Field(
        default="60s", description="How long test_command and reload_command may run."
    )
    pass_env: list[EnvName] | None = pass_env_field("test_command and reload_command")
    via: EntryName | None = Field(
        default=None,
        description="An `ssh` provider: this nginx is on that host; files are written "
        "there over SFTP (absolute paths) and the commands run there.",
    )


class NginxSnippet(StrictModel):
    """A server-block snippet rendered from a jinja2 template (sandboxed).

    Variables: certificate, serial, not_after, names, certificate_path, key_path."""

    template: str = Field(min_length=1, description="Template file (relative to the config).")
    path: str = Field(min_length=1, description="Where to write the rendered snippet.")


class NginxTargetConfig(StrictModel):
    """Certificate files for an nginx server block, tested and reloaded on change."""

    type: Literal["nginx"]
    provider: EntryName = Field(description="Name of an `nginx` entry under providers.")
    certificate_path: str = Field(
        min_length=1, description="Written with the leaf and its chain (ssl_certificate)."
    )
    key_path: str = Field(min_length=1, description="Written with the key, mode 0600.")
    snippet: NginxSnippet | None = None
    verify_endpoint: EndpointSettings | None = Field(
        default=None,
        description="After the reload, handshake here and require the new certificate; "
        "otherwise the previous files are restored and nginx reloaded.",
    )


class NginxTarget(Target):
    """Deploys to one nginx server block's certificate files."""

    type_name = "nginx"
    provider_type = "nginx"
    parallel_deploys = False

    def deploy_lane(self) -> Hashable:
        """One lane per provider (one nginx: its test and reload see every file):
        nginx servers on two hosts deploy at once."""
        return ("nginx", self.config.provider)

    """One at a time: every deploy tests and reloads the one nginx, so concurrent
    deploys would test each other's files and a failed test would restore files
    another deploy just wrote."""
    config: NginxTargetConfig
    provider: NginxProviderConfig

    def _path(self, value: str) -> str:
        if self.via is not None:
            return posixpath.normpath(value)  # on the host: absolute (validated)
        return str(config_path(self.root, value))

    def validate(self, context: BindingContext) -> list[Problem]:
        problems = super().validate(context)
        if self.via_name() is not None:
            paths = [("certificate_path",), ("key_path",)]
            values = [self.config.certificate_path, self.config.key_path]
            if self.config.snippet is not None:
                paths.append(("snippet", "path"))
                values.append(self.config.snippet.path)
            for path, value in zip(paths, values, strict=True):
                if not posixpath.isabs(value):
                    problems.append(
                        (("target", *path), "must be an absolute path on the host with via")
                    )
        return problems

    def compatibility_error(self, key_algorithm: str) -> str | None:
        return post_quantum_refusal(key_algorithm, self.type_name)

    def identity(self) -> str:
        return f"{self.config.provider}:{self._path(self.config.certificate_path)}"

    def _files(self) -> dict[str, str]:
        files = {
            "certificate": self._path(self.config.certificate_path),
            "key": self._path(self.config.key_path),
        }
        if self.config.snippet is not None:
            files["snippet"] = self._path(self.config.snippet.path)
        return files

    def local_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """The snippet template must exist and compile (in the sandbox)."""
        if self.config.snippet is None:
            return []
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        path = str(input_path(self.root, self.config.snippet.template))
        try:
            SandboxedEnvironment().parse(Path(path).read_text())
        except OSError as exc:
            return [(("snippet", "template"), f"cannot read {path}: {exc.strerror or exc}")]
        except TemplateSyntaxError as exc:
            return [(("snippet", "template"), f"{path}:{exc.lineno}: {exc.message}")]
        return []

    def read(self, facts: Facts) -> list[str]:
        """The recorded files' stamps checked against the disk: what differs, or
        Missing when none of them is left."""
        recorded: dict[str, Stamp] = facts.get("files", {})
        paths = self._files()
        entries = [
            (label, paths[label], stamp) for label, stamp in recorded.items() if label in paths
        ]
        problems, missing = self.host.stamp_problems(entries, private=("key",))
        if recorded and missing == len(recorded):
            raise Missing(f"no files at {self.host.where(paths['certificate'])}")
        return problems

    def prefetch(self, facts: Facts) -> None:
        if self.via is not None:
            paths = self._files()
            self.host.want_stamps(
                paths[label] for label in facts.get("files", {}) if label in paths
            )

    def compare(self, seen: list[str], facts: Facts) -> list[str]:
        return seen

    def deploy(
        self,
        material: CertificateMaterial,
        previous: Facts | None,
        snapshot: dict[str, bytes | None] | None = None,
    ) -> Facts:
        contents = self._contents(material)
        before = snapshot if snapshot is not None else self.snapshot(material, previous)
        try:
            stamps = self._write(contents)
        except OSError as exc:
            self._put_back(before)
            raise ProviderError(f"cannot write nginx files: {exc.strerror or exc}") from None
        try:
            self._test_and_reload()
        except ProviderError as exc:
            self._put_back(before)
            raise ProviderError(f"{exc}; previous files restored, nginx not reloaded") from None
        return {"files": stamps}

    def remove(self, facts: Facts) -> bool:
        # The server block still names these files: deleting them would break the
        # next reload.  Unbinding leaves them in place (say so in the output).
        return True

    def snapshot(
        self, material: CertificateMaterial, previous: Facts | None
    ) -> dict[str, bytes | None]:
        return {path: self.host.read_if_present(path) for path in self._files().values()}

    def restore(self, snapshot: dict[str, bytes | None]) -> str:
        self._put_back(snapshot)
        self._test_and_reload()
        return "previous files restored and nginx reloaded"

    # -- steps ----------------------------------------------------------------------
    def _contents(self, material: CertificateMaterial) -> dict[str, tuple[bytes, int]]:
        paths = self._files()
        contents = {
            paths["certificate"]: (material.fullchain_pem.encode(), PUBLIC_MODE),
            paths["key"]: (material.private_key_pem, KEY_MODE),
        }
        if self.config.snippet is not None:
            contents[paths["snippet"]] = (self._render_snippet(material).encode(), PUBLIC_MODE)
        return contents

    def _render_snippet(self, material: CertificateMaterial) -> str:
        from reconciler.config.templating import render_config_text

        assert self.config.snippet is not None
        template_path = str(config_path(self.root, self.config.snippet.template))
        try:
            text = Path(template_path).read_text()
        except OSError as exc:
            raise ProviderError(
                f"cannot read snippet template {template_path}: {exc.strerror or exc}"
            ) from None
        leaf = x509.load_pem_x509_certificate(material.certificate_pem.encode())
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(n.value) for n in sans]
        except x509.ExtensionNotFound:
            names = []
        variables = {
            "certificate": material.name,
            "serial": material.serial,
            "not_after": material.not_after.isoformat(),
            "names": names,
            "certificate_path": self._files()["certificate"],
            "key_path": self._files()["key"],
        }
        return render_config_text(text, template_path, template_path, variables) if text else ""

    def key_directories(self) -> tuple[Path, ...]:
        if self.via is not None:
            return ()  # on the host: checked there before writing
        return (Path(self._files()["key"]).parent,)

    def _write(self, contents: dict[str, tuple[bytes, int]]) -> dict[str, Stamp]:
        labels = {path: label for label, path in self._files().items()}
        host = self.host
        problem = host.unsafe_key_directory(posixpath.dirname(self._files()["key"]))
        if problem is not None:
            raise ProviderError(problem)
        stamps: dict[str, Stamp] = {}
        for path, (data, mode) in contents.items():
            directory, name = posixpath.split(path)
            host.make_dirs(directory, TARGET_DIR_MODE)
            host.remove_stale_temps(directory, (name,))
            stamps[labels[path]] = host.write_files({path: (data, mode)})[path]
        return stamps

    def _put_back(self, snapshot: dict[str, bytes | None]) -> None:
        host = self.host
        for path, data in snapshot.items():
            if data is None:
                host.unlink(path)
            else:
                mode = KEY_MODE if path == self._files()["key"] else PUBLIC_MODE
                host.write_files({path: (data, mode)})

    def _test_and_reload(self) -> None:
        provider = self.provider
        timeout = provider.command_timeout
        pass_env = provider.pass_env or ()
        cwd = None if self.via is not None else str(self.root)
        for label, argv in (
            ("test_command", provider.test_command),
            ("reload_command", provider.reload_command),
        ):
            self.host.run_command(label, argv, timeout, cwd=cwd, pass_env=pass_env)
