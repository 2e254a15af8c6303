"""A real OpenSSH server for tests: ``sshd -D -e`` on 127.0.0.1 with its own host key,
its own ``AuthorizedKeysFile`` holding a client key made for the lab, no PAM.

The "remote host" is this machine reached through sshd, so a test can look at
what SSH delivery wrote with plain file reads.  ``known_hosts`` holds the lab's
host key line, ``known_hosts_line`` says what it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.aws_lab import free_port

SSHD = "/usr/sbin/sshd"
_START_TIMEOUT = 10.0


def sshd_binary() -> str | None:
    """Path of sshd (Debian's openssh-server), or None."""
    if os.access(SSHD, os.X_OK):
        return SSHD
    return shutil.which("sshd")


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class SshLab:
    """A running sshd; ``start`` makes one, ``stop`` ends it."""

    directory: Path
    port: int
    binary: str
    process: subprocess.Popen[bytes] | None = None
    user: str = field(default_factory=lambda: os.environ.get("USER") or "root")

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def known_hosts_line(self) -> str:
        algorithm, key = (self.directory / "host_key.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {algorithm} {key}"

    @classmethod
    def start(cls, directory: Path) -> SshLab:
        binary = sshd_binary()
        if binary is None:
            raise RuntimeError("sshd is not installed (apt-get install openssh-server)")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        import pwd

        lab = cls(directory, free_port(), binary, user=pwd.getpwuid(os.geteuid()).pw_name)
        keygen(directory / "host_key", "lab host")
        keygen(lab.client_key, "lab client")
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        lab.known_hosts.write_text(lab.known_hosts_line + "\n")
        lab._write_config()
        lab.resume()
        return lab

    def _write_config(self) -> None:
        d = self.directory
        (d / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {d / 'host_key'}",
                    f"PidFile {d / 'sshd.pid'}",
                    f"AuthorizedKeysFile {d / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowAgentForwarding no",
                    "Subsystem sftp internal-sftp",
                    "MaxSessions 100",
                    "MaxStartups 100",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def resume(self) -> None:
        """Start sshd (again, after ``kill``) on the same port and wait until it answers."""
        log = (self.directory / "sshd.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [self.binary, "-D", "-e", "-f", str(self.directory / "sshd_config")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.settimeout(1)
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer on {self.port}:\n{self.log()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL sshd and every session it started (the host "goes down")."""
        if self.process is None or self.process.poll() is not None:
            return
        doomed = [self.process.pid, *_descendants(self.process.pid)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def running_lab(factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    """A module fixture's body: one sshd for the module (skips without sshd)."""
    if sshd_binary() is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    started = SshLab.start(factory.mktemp("sshd"))
    yield started
    started.stop()


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (sshd's per-connection children leave its group)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def provider_yaml(
    lab: SshLab, name: str = "web1", known_hosts: Path | None = None, identity_env: str = ""
) -> str:
    """The ``providers:`` entry (one flow mapping line) reaching ``lab``: the client key
    as a file, or named by ``identity_env`` (the variable must hold its text)."""
    hosts = known_hosts or lab.known_hosts
    identity = (
        f"identity_env: {identity_env}" if identity_env else f"identity_file: {lab.client_key}"
    )
    return (
        f"  {name}: {{type: ssh, host: 127.0.0.1, port: {lab.port}, user: {lab.user}, "
        f"{identity}, known_hosts: {hosts}, timeout: 5s}}\n"
    )
