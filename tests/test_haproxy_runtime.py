"""The HAProxy runtime API client against a real HAProxy (see tests/haproxy_lab.py).

Every check that matters is observed from outside: what a TLS client with a
given SNI is served, not only what the runtime API says.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_to_pem,
)
from reconciler.pki.keys import PrivateKey, generate_private_key, private_key_to_pem
from reconciler.providers.haproxy_runtime import (
    CrtListEntry,
    HaproxyError,
    HaproxyRuntime,
    HaproxyUnreachable,
)
from tests.aws_lab import free_port
from tests.haproxy_lab import HaproxyLab, running_haproxy, served_serial

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey
    pem: str  # leaf + intermediate + key, as HAProxy wants it

    @property
    def serial(self) -> str:
        return format(self.cert.serial_number, "x")

    def key_lines(self) -> list[str]:
        """Body lines of the private key PEM: none may ever appear in an error."""
        text = private_key_to_pem(self.key).decode()
        return [line for line in text.splitlines() if line and not line.startswith("-----")]


class LabCA:
    """A root and an intermediate; issues leaves the way certform does."""

    def __init__(self) -> None:
        self.root_key = generate_private_key("ec-p256")
        self.root = build_ca_certificate(
            public_key=self.root_key.public_key(),
            subject=Subject("HAProxy Lab Root", organization="certform tests"),
            issuer_cert=None,
            issuer_key=self.root_key,
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=365),
            path_length=1,
        )
        self.key = generate_private_key("ec-p256")
        self.cert = build_ca_certificate(
            public_key=self.key.public_key(),
            subject=Subject("HAProxy Lab Issuing"),
            issuer_cert=self.root,
            issuer_key=self.root_key,
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=365),
            path_length=0,
        )

    def issue(self, *names: str, days: int = 30, key: PrivateKey | None = None) -> Issued:
        key = key or generate_private_key("ec-p256")
        cert = build_leaf_certificate(
            public_key=key.public_key(),
            names=names,
            issuer_cert=self.cert,
            issuer_key=self.key,
            not_before=NOW - timedelta(hours=1),
            not_after=NOW + timedelta(days=days, seconds=17),
        )
        pem = certificate_to_pem(cert) + certificate_to_pem(self.cert)
        return Issued(cert, key, pem + private_key_to_pem(key).decode())


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[HaproxyLab]:
    yield from running_haproxy(tmp_path)


@pytest.fixture
def api(lab: HaproxyLab) -> HaproxyRuntime:
    return lab.runtime()


def install(api: HaproxyRuntime, lab: HaproxyLab, name: str, issued: Issued, sni: str) -> str:
    """New certificate attached to the lab's crt-list for ``sni``; its path."""
    path = str(lab.crt_dir / f"{name}.pem")
    api.new_cert(path)
    api.replace_cert(path, issued.pem)
    api.add_crt_list(str(lab.crt_list), path, "alpn h2,http/1.1", [sni])
    return path


def test_new_certificate_with_sni_filter_is_served(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    issued = ca.issue("a.test")
    path = install(api, lab, "a", issued, "a.test")

    assert served_serial(lab.port, "a.test") == issued.serial
    assert served_serial(lab.port, "other.test") == lab.default_serial
    assert path in api.cert_paths()
    assert api.crt_list_entries(str(lab.crt_list)) == [
        CrtListEntry(str(lab.crt_dir / "default.pem"), "", (), 1),
        CrtListEntry(path, "alpn h2,http/1.1", ("a.test",), 2),
    ]


def test_renew_in_place_serves_the_new_serial(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    path = install(api, lab, "a", ca.issue("a.test"), "a.test")
    renewed = ca.issue("a.test")

    api.replace_cert(path, renewed.pem)

    assert served_serial(lab.port, "a.test") == renewed.serial
    info = api.show_cert(path)
    assert info is not None and info.serial == renewed.serial
    assert api.pending_transaction() is None


def test_show_cert_matches_what_cryptography_reads(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    issued = ca.issue("b.test", "www.b.test", days=45)
    path = str(lab.crt_dir / "b.pem")
    api.new_cert(path)
    assert api.show_cert(path) is None  # an empty store serves nothing
    api.replace_cert(path, issued.pem)

    info = api.show_cert(path)

    assert info is not None
    assert info.serial == issued.serial
    assert info.not_after == issued.cert.not_valid_after_utc
    assert info.not_before == issued.cert.not_valid_before_utc
    assert info.sans == ("b.test", "www.b.test")
    assert info.subject == "/CN=b.test"
    assert info.issuer == "/CN=HAProxy Lab Issuing"
    assert info.sha1_fingerprint == issued.cert.fingerprint(hashes.SHA1()).hex()
    assert info.status == "Unused"
    api.add_crt_list(str(lab.crt_list), path, sni=["b.test"])
    assert api.show_cert(path).status == "Used"  # type: ignore[union-attr]


def test_serial_with_leading_zero_nibble_has_no_leading_zero(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    key = generate_private_key("ec-p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "z.test")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(0x0123456789ABCDEF)  # HAProxy prints 0123456789ABCDEF
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    path = str(lab.crt_dir / "z.pem")
    api.new_cert(path)
    api.replace_cert(path, certificate_to_pem(cert) + private_key_to_pem(key).decode())

    info = api.show_cert(path)

    assert info is not None and info.serial == "123456789abcdef" == format(cert.serial_number, "x")


def test_mismatched_key_is_refused_aborted_and_old_cert_kept(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    old = ca.issue("a.test")
    path = install(api, lab, "a", old, "a.test")
    new = ca.issue("a.test")
    wrong_key = generate_private_key("ec-p256")
    bad_pem = certificate_to_pem(new.cert) + private_key_to_pem(wrong_key).decode()

    with pytest.raises(HaproxyError) as caught:
        api.replace_cert(path, bad_pem)

    assert "inconsistencies between private key and certificate" in str(caught.value)
    assert caught.value.command == f"commit ssl cert {path}"
    assert api.pending_transaction() is None  # aborted
    assert served_serial(lab.port, "a.test") == old.serial
    assert_no_key_material(str(caught.value) + caught.value.reply, bad_pem)


def test_removal_falls_back_to_the_default_certificate(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    path = install(api, lab, "a", ca.issue("a.test"), "a.test")

    api.del_crt_list(str(lab.crt_list), path)
    api.del_cert(path)

    assert served_serial(lab.port, "a.test") == lab.default_serial
    assert api.show_cert(path) is None
    assert path not in api.cert_paths()
    assert [e.path for e in api.crt_list_entries(str(lab.crt_list))] == [
        str(lab.crt_dir / "default.pem")
    ]


def test_a_used_certificate_cannot_be_deleted(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    path = install(api, lab, "a", ca.issue("a.test"), "a.test")

    with pytest.raises(HaproxyError, match="in use, can't be deleted"):
        api.del_cert(path)
    with pytest.raises(HaproxyError, match="used as default certificate"):
        api.del_crt_list(str(lab.crt_list), str(lab.crt_dir / "default.pem"))
    assert served_serial(lab.port, "a.test") != lab.default_serial


def test_duplicate_crt_list_lines_are_removed_by_line_reference(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    path = install(api, lab, "a", ca.issue("a.test"), "a.test")
    api.add_crt_list(str(lab.crt_list), path, sni=["a2.test"])

    with pytest.raises(HaproxyError, match="several entries"):
        api.del_crt_list(str(lab.crt_list), path)
    second = api.crt_list_entries(str(lab.crt_list))[-1]
    api.del_crt_list(str(lab.crt_list), second.ref)

    assert second.sni == ("a2.test",)
    assert served_serial(lab.port, "a2.test") == lab.default_serial
    assert served_serial(lab.port, "a.test") != lab.default_serial


def test_refusals_carry_haproxy_text(lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA) -> None:
    issued = ca.issue("a.test")
    unknown = str(lab.crt_dir / "unknown.pem")
    default = str(lab.crt_dir / "default.pem")
    empty = str(lab.crt_dir / "empty.pem")
    api.new_cert(empty)
    unlisted = str(lab.crt_dir / "unlisted.pem")
    api.new_cert(unlisted)
    api.replace_cert(unlisted, issued.pem)
    cases = [
        (lambda: api.new_cert(default), "already exists"),
        (lambda: api.set_cert(unknown, issued.pem), "not referenced by the configuration"),
        (lambda: api.commit_cert(default), "No ongoing transaction"),
        (lambda: api.abort_cert(default), "No ongoing transaction"),
        (lambda: api.del_cert(unknown), "doesn't exist"),
        (lambda: api.add_crt_list(str(lab.crt_list), unknown), "does not exist"),
        (lambda: api.add_crt_list("/no/such/list", default), "crt-list '/no/such/list'"),
        (lambda: api.del_crt_list(str(lab.crt_list), unknown), "does not exist"),
        (lambda: api.del_crt_list(str(lab.crt_list), empty), "is empty"),
        (lambda: api.del_crt_list(str(lab.crt_list), unlisted), "can't be found in crt-list"),
        (lambda: api.crt_list_entries("/no/such/list"), "didn't find the specified filename"),
        (lambda: api.call("no such command"), "Unknown command"),
    ]
    for call, text in cases:
        with pytest.raises(HaproxyError, match=text) as caught:
            call()
        assert not isinstance(caught.value, HaproxyUnreachable)
        assert_no_key_material(str(caught.value), issued.pem)
    assert api.show_cert(unknown) is None


def test_unparseable_payload_is_refused_without_echoing_the_key(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    issued = ca.issue("a.test")
    path = install(api, lab, "a", issued, "a.test")
    key_only = private_key_to_pem(issued.key).decode()
    garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"

    for pem in (garbage + key_only, key_only):
        with pytest.raises(HaproxyError) as caught:
            api.replace_cert(path, pem)
        assert "unable to load certificate" in str(caught.value)
        assert_no_key_material(str(caught.value) + caught.value.reply, pem)
    assert api.pending_transaction() is None
    assert served_serial(lab.port, "a.test") == issued.serial


def test_payload_larger_than_haproxy_buffer_is_an_error(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    """HAProxy answers nothing at all to a request over tune.bufsize (16 KB)."""
    old = ca.issue("a.test")
    path = install(api, lab, "a", old, "a.test")
    new = ca.issue("a.test")
    intermediate = certificate_to_pem(ca.cert)
    huge = new.pem.replace(intermediate, intermediate * 30)  # about 20 KB

    with pytest.raises(HaproxyError, match=r"without answering 'set ssl cert .*tune\.bufsize"):
        api.replace_cert(path, huge)

    assert api.pending_transaction() is None
    assert served_serial(lab.port, "a.test") == old.serial


def test_another_open_transaction_is_never_overwritten(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    first = ca.issue("a.test")
    second = ca.issue("b.test")
    a_path = install(api, lab, "a", first, "a.test")
    b_path = install(api, lab, "b", second, "b.test")
    pending = ca.issue("b.test")
    api.set_cert(b_path, pending.pem)  # someone else's transaction, left open

    with pytest.raises(HaproxyError, match=f"open certificate transaction for {b_path}"):
        api.replace_cert(a_path, ca.issue("a.test").pem)

    assert api.pending_transaction() == b_path
    api.commit_cert(b_path)
    assert served_serial(lab.port, "b.test") == pending.serial  # not a.test's payload
    assert served_serial(lab.port, "a.test") == first.serial


def test_address_forms(lab: HaproxyLab) -> None:
    default = str(lab.crt_dir / "default.pem")
    for address in (lab.socket, f"unix@{lab.socket}", lab.tcp_address, f"ipv4@{lab.tcp_address}"):
        assert default in HaproxyRuntime(address).cert_paths(), address


def test_reload_restores_the_files_and_drops_runtime_changes(
    lab: HaproxyLab, api: HaproxyRuntime, ca: LabCA
) -> None:
    path = install(api, lab, "a", ca.issue("a.test"), "a.test")

    lab.reload()

    assert path not in api.cert_paths()
    assert served_serial(lab.port, "a.test") == lab.default_serial


def test_missing_socket_is_unreachable_naming_the_path(tmp_path: Path) -> None:
    address = str(tmp_path / "missing.sock")

    with pytest.raises(HaproxyUnreachable) as caught:
        HaproxyRuntime(address).cert_paths()

    assert address in str(caught.value)
    assert "No such file or directory" in str(caught.value)


def test_refused_tcp_port_is_unreachable() -> None:
    address = f"127.0.0.1:{free_port()}"

    with pytest.raises(HaproxyUnreachable, match=rf"{address}: Connection refused"):
        HaproxyRuntime(address).show_cert("/etc/x.pem")


def test_socket_without_permission_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "closed.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        path.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(HaproxyUnreachable, match=rf"{path}: Permission denied"):
                HaproxyRuntime(str(path)).cert_paths()
            return
        # root ignores file modes: try it from a child that dropped to nobody.
        assert _as_nobody(lambda: HaproxyRuntime(str(path)).cert_paths()).endswith(
            f"{path}: Permission denied"
        )


def _as_nobody(call: Callable[[], object]) -> str:
    """Run ``call`` in a forked child with uid/gid 65534; the text of what it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        message = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            call()
        except Exception as exc:
            message = str(exc)
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        text = reader.read().decode()
    os.waitpid(pid, 0)
    return text


def test_silent_server_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()  # accepts into the backlog, never answers

        with pytest.raises(HaproxyUnreachable, match=rf"{path}: no answer within 0.2 s"):
            HaproxyRuntime(path, timeout=0.2).cert_paths()


def test_key_material_is_redacted_even_if_haproxy_echoes_it(tmp_path: Path, ca: LabCA) -> None:
    """A hypothetical HAProxy that echoes the payload in its error must not leak the key."""
    path = str(tmp_path / "echo.sock")
    issued = ca.issue("a.test")
    with _EchoingServer(path), pytest.raises(HaproxyError) as caught:
        HaproxyRuntime(path).set_cert("/etc/haproxy/a.pem", issued.pem)

    assert "bad payload" in str(caught.value)
    assert_no_key_material(str(caught.value) + caught.value.reply, issued.pem)


def test_arguments_that_would_split_the_command_are_rejected(api: HaproxyRuntime) -> None:
    for bad in ("/etc/a b.pem", "/etc/a.pem; del ssl cert /x", "/etc/a.pem\nshow info", ""):
        with pytest.raises(ValueError):
            api.show_cert(bad)
    with pytest.raises(ValueError, match="empty line"):
        api.execute("set ssl cert /x.pem", "-----BEGIN X-----\n\nshow info\n")


def assert_no_key_material(text: str, pem: str) -> None:
    assert "PRIVATE KEY" not in text
    body = [line for line in pem.splitlines() if len(line) >= 16 and not line.startswith("-----")]
    assert "PRIVATE KEY" in pem and body, "no key material to look for"
    for line in body:
        assert line not in text


class _EchoingServer:
    """A fake runtime API: lists no certificate, and refuses anything else by echoing it."""

    def __init__(self, path: str) -> None:
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # closed by __exit__
            with connection:
                request = b""
                while chunk := connection.recv(65536):
                    request += chunk
                if request.endswith(b"show ssl cert\n"):
                    connection.sendall(b"\n# filename\n\n")
                else:
                    connection.sendall(b"\n[3]: bad payload:\n" + request + b"\n\n")

    def __enter__(self) -> _EchoingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(timeout=5)
