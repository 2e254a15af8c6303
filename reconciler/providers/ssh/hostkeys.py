"""Strict host-key checking: what to say when a host's key is not the one known, and
``certform ssh-keyscan``.

Keys are only ever trusted from the configured known_hosts file.  When the
server presents another key (or the file has none for it) the error shows the
presented key's SHA256 fingerprint and the line to add — after checking the
fingerprint out of band, never blindly.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from reconciler.fsutil import config_path
from reconciler.providers.ssh import loop
from reconciler.providers.ssh.config import SshProviderConfig

KEY_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")
"""The host key types ``ssh-keyscan`` asks a server for, one connection each."""


@dataclass(frozen=True)
class ScannedKey:
    algorithm: str
    fingerprint: str
    """``SHA256:...``, as ``ssh-keygen -lf`` prints it."""
    line: str
    """The known_hosts line: ``[host]:port algorithm base64``."""


def host_pattern(host: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def scanned(config: SshProviderConfig, key: asyncssh.SSHKey) -> ScannedKey:
    parts = key.export_public_key("openssh").decode().split()
    return ScannedKey(
        parts[0],
        key.get_fingerprint("sha256"),
        f"{host_pattern(config.host, config.port)} {parts[0]} {parts[1]}",
    )


async def _server_key(
    config: SshProviderConfig, timeout: float, algorithms: tuple[str, ...] | None = None
) -> asyncssh.SSHKey | None:
    return await asyncssh.get_server_host_key(
        config.host,
        config.port,
        config=None,
        server_host_key_algs=list(algorithms) if algorithms else (),
        options=asyncssh.SSHClientConnectionOptions(connect_timeout=timeout),
    )


def scan(config: SshProviderConfig, timeout: float) -> list[ScannedKey]:
    """The host keys the server presents, one per algorithm it has (not trusted:
    for the user to verify and append).  Raises OSError / asyncssh.Error when the
    host cannot be reached."""
    found: list[ScannedKey] = []
    last: Exception | None = None
    for algorithm in KEY_ALGORITHMS:
        try:
            key = loop.call(_server_key(config, timeout, (algorithm,)), timeout + 5)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            last = exc
            continue
        if key is not None:
            found.append(scanned(config, key))
    if not found and last is not None:
        raise last
    return found


def presented_key(config: SshProviderConfig, timeout: float) -> ScannedKey | None:
    """The key the server presents by default (None when it cannot be fetched)."""
    with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
        key = loop.call(_server_key(config, timeout), timeout + 5)
        if key is not None:
            return scanned(config, key)
    return None


def has_entry(config: SshProviderConfig, root: Path) -> bool:
    """True when known_hosts holds any key for this host (so a mismatch is a *changed* key)."""
    path = config_path(root, config.known_hosts)
    try:
        known = asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError):
        return False
    trusted, ca_keys, *_ = known.match(config.host, "", config.port)
    return bool(trusted or ca_keys)


def mismatch_message(config: SshProviderConfig, root: Path, timeout: float) -> str:
    """The error for a host whose key known_hosts does not vouch for."""
    changed = has_entry(config, root)
    key = presented_key(config, timeout)
    what = "CHANGED (possible man-in-the-middle)" if changed else "not in known_hosts"
    shown = f"{key.algorithm} {key.fingerprint}" if key else "(could not be fetched)"
    return (
        f"host key of {host_pattern(config.host, config.port)} is {what}: the server presents "
        f"{shown}; verify that fingerprint out of band, then run: "
        f"ssh-keyscan -p {config.port} {config.host} >> {config.known_hosts}"
        + (" (after removing the old line)" if changed else "")
    )
