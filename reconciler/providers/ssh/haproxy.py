"""The HAProxy runtime API of an ``haproxy`` provider that says ``via: NAME``, reached
through the run's one SSH connection to that host.

Each runtime API command is one stream through the connection (no new SSH
login): to the stats socket's path (``direct-streamlocal``, OpenSSH's
``AllowStreamLocalForwarding``, on by default) or to its ``host:port`` as the
host resolves it (``direct-tcpip``, ``AllowTcpForwarding``).  sshd opens the
socket as the login user, so that user needs access to it (``stats socket ...
mode 660 group haproxy`` and the user in that group).  The protocol, its
parsing and its error texts are ``HaproxyRuntime``'s; only the transport
differs.
"""

from __future__ import annotations

from reconciler.providers.haproxy_runtime import HaproxyRuntime, HaproxyUnreachable
from reconciler.providers.ssh.connection import SshConnection, SshUnreachable


class SshHaproxyRuntime(HaproxyRuntime):
    """``HaproxyRuntime`` whose connections go through an SSH connection."""

    def __init__(self, connection: SshConnection, address: str, timeout: float = 5.0) -> None:
        super().__init__(address, timeout)
        self.connection = connection
        self.address = f"{connection.name}:{address}"
        """Names the host: messages say where, and per-socket caches keep hosts apart."""

    def _exchange(self, request: bytes, until: bytes | None) -> bytes:
        try:
            return self.connection.exchange(self._target, request, self.timeout, until)
        except SshUnreachable as exc:
            raise HaproxyUnreachable(
                f"cannot reach HAProxy runtime API at {self.address}: {exc}"
            ) from None
