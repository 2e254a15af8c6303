"""``haproxy``: one certificate in an HAProxy crt-list, deployed through the
runtime API with no reload (zero dropped connections).

New certificate: ``new ssl cert`` → ``set ssl cert`` → ``commit ssl cert`` →
``add ssl crt-list``.  Renewal: ``set`` → ``commit`` (a refused commit is
aborted, so nothing is half-applied).  Removal: ``del ssl crt-list`` → ``del
ssl cert``.  Runtime changes live in memory only, so the same PEM file
(certificate, chain, key; mode 0600) and the crt-list file are also written
atomically: a restart serves what the runtime serves.

Observed state: ``show ssl cert`` (the serial HAProxy really holds) and the
crt-list entry, plus the files on disk.  A certificate swapped by hand, through
the runtime API or in the file, is drift.

With ``via: NAME`` on the provider entry, HAProxy is on that SSH host: the
runtime API is reached through the connection (``providers/ssh/haproxy.py``)
and the files are written there (``self.host``; absolute paths).
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from reconciler.config.types import Duration, EntryName, StrictModel
from reconciler.durations import parse_duration
from reconciler.errors import ProviderError
from reconciler.filestamp import Stamp
from reconciler.fsutil import config_path
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing, Unreachable
from reconciler.providers.base import BindingContext, Problem, Target, post_quantum_refusal
from reconciler.providers.batch import memo
from reconciler.providers.endpoint import EndpointSettings
from reconciler.providers.haproxy_runtime import (
    CrtListEntry,
    HaproxyError,
    HaproxyRuntime,
    HaproxyUnreachable,
    is_unix_socket,
)
from reconciler.providers.hosts import Host

KEY_MODE = 0o600
SNI_FILTER = re.compile(r"^!?(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def _sni_filter(value: str) -> str:
    if not SNI_FILTER.match(value):
        raise ValueError(
            f"{value!r} is not an SNI filter (a host name, *.domain, or !name to exclude)"
        )
    return value.lower()


class HaproxyProviderConfig(StrictModel):
    """One HAProxy instance: its runtime API and where its certificates live."""

    type: Literal["haproxy"]
    socket: str = Field(
        min_length=1,
        description="Runtime API (`stats socket ... level admin`): a path or host:port.",
    )
    crt_dir: str = Field(min_length=1, description="Directory for the certificate PEM files.")
    crt_list: str = Field(min_length=1, description="The crt-list file a `bind ... ssl` uses.")
    timeout: Duration = Field(default="5s", description="Per-command runtime API timeout.")
    via: EntryName | None = Field(
        default=None,
        description="An `ssh` provider: this HAProxy is on that host; the runtime API is "
        "reached through the SSH connection and the files are written there (absolute paths).",
    )


class HaproxyTargetConfig(StrictModel):
    """A certificate served by HAProxy from a crt-list, selected by SNI."""

    type: Literal["haproxy"]
    provider: EntryName = Field(description="Name of a `haproxy` entry under providers.")
    sni: list[Annotated[str, AfterValidator(_sni_filter)]] = Field(
        default_factory=list,
        description="SNI filters for the crt-list line (default: the certificate's names); "
        "`*.example.com` and `!excluded.example.com` as in a crt-list file.",
    )
    crt_list: str | None = Field(
        default=None, description="Another crt-list of the same HAProxy (default: provider's)."
    )
    ssl_options: str | None = Field(
        default=None, description="crt-list SSL options for this line, e.g. `alpn h2,http/1.1`."
    )
    verify_endpoint: EndpointSettings | None = Field(
        default=None,
        description="After the commit, handshake here and require the new certificate; "
        "otherwise the previous one is committed back.",
    )


class _Listings:
    """The crt-list entries HAProxy holds, per (socket, crt-list), read once per
    process and kept up to date by our own add/del.

    Without it every deploy would read the whole crt-list (42 KB at 500
    certificates) several times: a bulk renewal would be quadratic.  Any
    refusal from HAProxy drops the cached listing, so the next use re-reads it.
    """

    def __init__(self) -> None:
        self._by_list: dict[tuple[str, str], dict[str, list[CrtListEntry]]] = {}

    def entries(self, runtime: HaproxyRuntime, crt_list: str, path: str) -> list[CrtListEntry]:
        key = (runtime.address, crt_list)
        listing = self._by_list.get(key)
        if listing is None:
            listing = {}
            for entry in runtime.crt_list_entries(crt_list):
                listing.setdefault(entry.path, []).append(entry)
            self._by_list[key] = listing
        return list(listing.get(path, ()))

    def added(self, runtime: HaproxyRuntime, crt_list: str, entry: CrtListEntry) -> None:
        listing = self._by_list.get((runtime.address, crt_list))
        if listing is not None:
            listing.setdefault(entry.path, []).append(entry)

    def removed(self, runtime: HaproxyRuntime, crt_list: str, entry: CrtListEntry) -> None:
        listing = self._by_list.get((runtime.address, crt_list))
        if listing is not None and entry in listing.get(entry.path, []):
            listing[entry.path].remove(entry)

    def forget(self, runtime: HaproxyRuntime, crt_list: str) -> None:
        self._by_list.pop((runtime.address, crt_list), None)


_LISTINGS = _Listings()
UNKNOWN_LINE = -1
"""Line number of an entry we added (HAProxy numbers it; we delete it by path)."""


@dataclass(frozen=True)
class _Snapshot:
    """What HAProxy served for one certificate path before a deploy (key inside: memory only)."""

    path: str
    crt_list: str
    pem: bytes | None
    known: bool
    entries: tuple[CrtListEntry, ...]
    crt_list_file: bytes | None


@dataclass(frozen=True)
class _Held:
    """What HAProxy's runtime holds for one path (``read``), or why it would not say."""

    serial: str | None = None
    entry: CrtListEntry | None = None
    refusal: str | None = None
    file_problems: tuple[str, ...] = ()
    """How the PEM file on disk differs from the one deploy wrote."""
    on_disk: bool = True
    """Whether the crt-list file on disk lists the path (what a restart serves)."""


class HaproxyTarget(Target):
    """Serves one certificate from a crt-list of one HAProxy."""

    type_name = "haproxy"
    provider_type = "haproxy"
    parallel_deploys = False
    """One at a time per HAProxy: its runtime API holds one ``set ssl cert``
    transaction at a time per socket (the listings cache is per socket too)."""
    config: HaproxyTargetConfig
    provider: HaproxyProviderConfig

    def deploy_lane(self) -> Hashable:
        """One lane per provider (one HAProxy): two HAProxies, on two hosts, at once."""
        return ("haproxy", self.config.provider)

    @property
    def per_certificate(self) -> bool:
        return True

    def compatibility_error(self, key_algorithm: str) -> str | None:
        return post_quantum_refusal(key_algorithm, self.type_name)

    def identity(self) -> str:
        if self.config.crt_list:
            return f"{self.config.provider}:{self._crt_list()}"
        return self.config.provider

    def validate(self, context: BindingContext) -> list[Problem]:
        problems = super().validate(context)
        if self.via_name() is not None and self.provider is not None:
            where = f"provider {self.config.provider!r}: "
            values = {"crt_dir": self.provider.crt_dir, "crt_list": self.provider.crt_list}
            if is_unix_socket(self.provider.socket):
                values["socket"] = self.provider.socket.removeprefix("unix@")
            for field, value in values.items():
                if not posixpath.isabs(value):
                    problems.append(
                        (
                            ("target", "provider"),
                            f"{where}{field} must be an absolute path on the host with via",
                        )
                    )
            if self.config.crt_list is not None and not posixpath.isabs(self.config.crt_list):
                problems.append(
                    (("target", "crt_list"), "must be an absolute path on the host with via")
                )
        return problems

    # -- paths and connection ---------------------------------------------------------
    def _path(self, value: str) -> str:
        if self.via is not None:
            return posixpath.normpath(value)  # on the host: absolute (validated)
        return str(config_path(self.root, value))

    def _crt_list(self) -> str:
        return self._path(self.config.crt_list or self.provider.crt_list)

    def key_directories(self) -> tuple[Path, ...]:
        if self.via is not None:
            return ()  # on the host: checked there before writing
        return (Path(self._path(self.provider.crt_dir)),)

    def _cert_path(self, name: str) -> str:
        return posixpath.join(self._path(self.provider.crt_dir), f"{name}.pem")

    def _runtime(self) -> HaproxyRuntime:
        timeout = parse_duration(self.provider.timeout).total_seconds()
        if self.via is not None:
            from reconciler.providers.ssh.haproxy import SshHaproxyRuntime

            return SshHaproxyRuntime(self.host.connection, self.provider.socket, timeout)  # type: ignore[attr-defined]
        return HaproxyRuntime(self.provider.socket, timeout)

    def _sni(self) -> tuple[str, ...]:
        return tuple(name.lower() for name in self.config.sni)

    def _options(self) -> str:
        return (self.config.ssl_options or "").strip().strip("[]").strip()

    # -- observe ----------------------------------------------------------------------
    def read(self, facts: Facts) -> _Held:
        """``show ssl cert`` and the crt-list entry HAProxy holds for the recorded path.

        A refusal from HAProxy (not a dead socket) is drift: the runtime no
        longer holds what certform put there."""
        path, crt_list = str(facts.get("path")), str(facts.get("crt_list"))
        runtime = self._runtime()
        try:
            info = runtime.show_cert(path)
            entries = memo(
                ("haproxy-crt-list", runtime.address, crt_list),
                lambda: runtime.crt_list_entries(crt_list),
            )
        except HaproxyUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except HaproxyError as exc:
            return _Held(refusal=str(exc))
        listed = [entry for entry in entries if entry.path == path]
        if info is None or not listed:
            where = "does not hold" if info is None else f"{crt_list} does not list"
            raise Missing(f"HAProxy {where} {path}")
        stamp: Stamp | None = facts.get("file")
        host = self.host
        try:
            file_problems = (
                host.stamp_problems([(path, path, stamp)], private=(path,))[0] if stamp else []
            )
            on_disk = path in _crt_list_file_paths(host, crt_list)
        except ProviderError as exc:
            from reconciler.providers.ssh.connection import SshUnreachable  # only hosts raise it

            if isinstance(exc, SshUnreachable):
                raise Unreachable(str(exc)) from None
            raise
        return _Held(
            serial=info.serial,
            entry=listed[0],
            file_problems=tuple(file_problems),
            on_disk=on_disk,
        )

    def prefetch(self, facts: Facts) -> None:
        if self.via is not None and facts.get("file") and facts.get("path"):
            self.host.want_stamps([str(facts["path"])])

    def compare(self, seen: _Held, facts: Facts) -> list[str]:
        if seen.refusal is not None or seen.entry is None:
            return [seen.refusal or "HAProxy refused to answer"]
        path, crt_list = str(facts.get("path")), str(facts.get("crt_list"))
        problems: list[str] = []
        if seen.serial != facts.get("serial"):
            problems.append(
                f"HAProxy serves serial {seen.serial} from {path}, expected {facts.get('serial')}"
            )
        if tuple(sorted(seen.entry.sni)) != tuple(sorted(facts.get("sni", ()))):
            problems.append(f"crt-list SNI filters are {' '.join(seen.entry.sni) or '(none)'}")
        problems.extend(f"{p} (a restart would serve something else)" for p in seen.file_problems)
        if not seen.on_disk:
            problems.append(f"{crt_list} on disk does not list {path} (lost on restart)")
        return problems

    # -- deploy -----------------------------------------------------------------------
    def deploy(
        self,
        material: CertificateMaterial,
        previous: Facts | None,
        snapshot: _Snapshot | None = None,
    ) -> Facts:
        """All or nothing: a refused command or a file that cannot be written puts
        back what was served before (runtime and files) before reporting."""
        before = snapshot if snapshot is not None else self.snapshot(material, previous)
        try:
            return self._deploy(material, previous)
        except HaproxyUnreachable:
            raise  # nothing was changed that could be put back through it
        except (HaproxyError, OSError) as exc:
            if isinstance(exc, OSError):
                message = f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}"
            else:
                message = str(exc)
            try:
                note = self.restore(before)
            except (ProviderError, OSError) as again:
                note = f"putting the previous state back failed too: {again}"
            raise ProviderError(f"{message}; {note}") from None

    def _deploy(self, material: CertificateMaterial, previous: Facts | None) -> Facts:
        runtime, host = self._runtime(), self.host
        path, crt_list = self._cert_path(material.name), self._crt_list()
        pem = material.fullchain_pem.encode() + material.private_key_pem
        directory, name = posixpath.split(path)
        problem = host.unsafe_key_directory(directory)
        if problem is not None:
            raise ProviderError(problem)
        host.remove_stale_temps(directory, (name,))
        if runtime.show_cert(path) is None:
            try:
                runtime.new_cert(path)
            except HaproxyError as exc:
                # An empty store left by a crash between `new` and `commit`: reuse it.
                if "already exists" not in str(exc):
                    raise
        runtime.replace_cert(path, pem.decode())
        self._list(runtime, crt_list, path)
        if previous and previous.get("crt_list") not in (None, crt_list):
            self._unlist(runtime, str(previous["crt_list"]), path)  # moved to another list
        stamp = host.write_files({path: (pem, KEY_MODE)})[path]
        _write_crt_list_file(host, crt_list, path, _line(path, self._options(), self._sni()))
        return {
            "path": path,
            "crt_list": crt_list,
            "sni": list(self._sni()),
            "serial": material.serial,
            "file": stamp,
        }

    def _list(self, runtime: HaproxyRuntime, crt_list: str, path: str) -> None:
        """Make ``path`` appear exactly once in ``crt_list`` with the wanted options/SNI."""
        entries = _LISTINGS.entries(runtime, crt_list, path)
        wanted_options, wanted_sni = self._options(), self._sni()
        if len(entries) == 1 and _matches(entries[0], wanted_options, wanted_sni):
            return
        _delete_entries(runtime, crt_list, entries)
        _add_entry(runtime, crt_list, path, wanted_options, wanted_sni)

    def _unlist(self, runtime: HaproxyRuntime, crt_list: str, path: str) -> None:
        try:
            entries = _LISTINGS.entries(runtime, crt_list, path)
        except HaproxyUnreachable:
            raise
        except HaproxyError:
            entries = []  # that crt-list is gone: nothing to remove from it
        _delete_entries(runtime, crt_list, entries)
        with contextlib.suppress(FileNotFoundError):
            _write_crt_list_file(self.host, crt_list, path, None)

    def verify_deployed(self, material: CertificateMaterial, facts: Facts) -> None:
        info = self._runtime().show_cert(str(facts["path"]))
        if info is None or info.serial != material.serial:
            served = info.serial if info else "nothing"
            raise ProviderError(
                f"HAProxy holds {served} for {facts['path']} after the commit, "
                f"expected serial {material.serial}"
            )

    # -- rollback ---------------------------------------------------------------------
    def snapshot(self, material: CertificateMaterial, previous: Facts | None) -> _Snapshot:
        runtime = self._runtime()
        path, crt_list = self._cert_path(material.name), self._crt_list()
        return _Snapshot(
            path=path,
            crt_list=crt_list,
            pem=self.host.read_if_present(path),
            known=runtime.show_cert(path) is not None,
            entries=tuple(_LISTINGS.entries(runtime, crt_list, path)),
            crt_list_file=self.host.read_if_present(crt_list),
        )

    def restore(self, snapshot: _Snapshot) -> str:
        """Runtime first (what clients see), then the files (what a restart sees)."""
        runtime = self._runtime()
        path, crt_list = snapshot.path, snapshot.crt_list
        current = _LISTINGS.entries(runtime, crt_list, path)
        if snapshot.known and snapshot.pem is not None:
            runtime.replace_cert(path, snapshot.pem.decode())
            if tuple(current) != snapshot.entries:
                _delete_entries(runtime, crt_list, current)
                for entry in snapshot.entries:
                    _add_entry(runtime, crt_list, path, entry.options, entry.sni)
            note = "previous certificate committed back in HAProxy"
        else:
            _delete_entries(runtime, crt_list, current)
            with contextlib.suppress(HaproxyError):
                runtime.del_cert(path)
            note = "new certificate taken out of HAProxy again"
        host = self.host
        try:
            if snapshot.pem is not None:
                host.write_files({path: (snapshot.pem, KEY_MODE)})
            else:
                host.unlink(path)
            if snapshot.crt_list_file is not None:
                mode = _mode_of(host, crt_list)
                host.write_files({crt_list: (snapshot.crt_list_file, mode)})
        except OSError as exc:
            note += f" (files not restored: {exc.strerror or exc})"
        return note

    # -- remove -----------------------------------------------------------------------
    def remove(self, facts: Facts) -> bool:
        path, crt_list = str(facts.get("path")), str(facts.get("crt_list"))
        runtime = self._runtime()
        self._unlist(runtime, crt_list, path)
        try:
            runtime.del_cert(path)
        except HaproxyUnreachable:
            raise
        except HaproxyError:
            pass  # already gone, or still listed in another crt-list (which then keeps it)
        host = self.host
        host.unlink(path)
        directory, name = posixpath.split(path)
        host.remove_stale_temps(directory, (name,))
        return True


def _add_entry(
    runtime: HaproxyRuntime, crt_list: str, path: str, options: str, sni: tuple[str, ...]
) -> None:
    try:
        runtime.add_crt_list(crt_list, path, options, sni)
    except HaproxyError:
        _LISTINGS.forget(runtime, crt_list)
        raise
    _LISTINGS.added(runtime, crt_list, CrtListEntry(path, options, sni, UNKNOWN_LINE))


def _delete_entries(runtime: HaproxyRuntime, crt_list: str, entries: list[CrtListEntry]) -> None:
    """Delete ``entries`` (of one path): by line when there are several, else by path."""
    for entry in sorted(entries, key=lambda e: e.line, reverse=True):
        ref = entry.ref if len(entries) > 1 and entry.line != UNKNOWN_LINE else entry.path
        try:
            runtime.del_crt_list(crt_list, ref)
        except HaproxyError:
            _LISTINGS.forget(runtime, crt_list)
            raise
        _LISTINGS.removed(runtime, crt_list, entry)


def _matches(entry: CrtListEntry, options: str, sni: tuple[str, ...]) -> bool:
    have = entry.options.strip().strip("[]").strip()
    return have == options and tuple(sorted(entry.sni)) == tuple(sorted(sni))


def _line(path: str, options: str, sni: tuple[str, ...]) -> str:
    parts = [path]
    if options:
        parts.append(f"[{options}]")
    parts.extend(sni)
    return " ".join(parts)


def _crt_list_file_paths(host: Host, crt_list: str) -> set[str]:
    def read() -> set[str]:
        data = host.read_if_present(crt_list) or b""
        return {line.split()[0] for line in data.decode().splitlines() if _is_entry(line)}

    return memo(("haproxy-crt-list-file", host.where(crt_list)), read)


def _is_entry(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _mode_of(host: Host, path: str) -> int:
    mode = host.file_mode(path)
    return 0o644 if mode is None else mode & 0o777


def _write_crt_list_file(host: Host, crt_list: str, path: str, line: str | None) -> None:
    """Replace ``path``'s line in the crt-list file (append if new; drop if ``line`` is None)."""
    data = host.read_if_present(crt_list)
    lines = data.decode().splitlines() if data else []
    kept = [entry for entry in lines if not (_is_entry(entry) and entry.split()[0] == path)]
    if line is not None and len(lines) == len(kept) + 1 and line in lines:
        return  # already there as wanted (a renewal): no rewrite, no fsync
    if line is not None:
        kept.append(line)
    if data is None and line is None:
        return
    text = ("\n".join(kept) + "\n").encode()
    host.write_files({crt_list: (text, _mode_of(host, crt_list))})
