"""The server examples (examples/acme-dns01, acme-http01, haproxy, nginx) applied as a
user would, against the real servers the suite starts: each directory is copied as
is and pointed at the lab only through the template variables its README documents
(``--var``) and the environment variables it names (the TSIG secret, the EAB key).

Checked: what clients see (the served certificate's serial and names in a real TLS
handshake, the certificate ``openssl verify`` accepts against Pebble's roots, the
wildcard name), the fallback issuer used when the first ACME directory does not
answer, and an empty plan afterwards (``plan --detailed-exitcode`` exits 0).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reconciler.providers.tls_probe import probe
from tests.acme_lab import (
    ChallTestSrv,
    PebbleLab,
    WebrootServer,
    b64url,
    challtestsrv_binary,
    pebble_binary,
)
from tests.aws_lab import free_port
from tests.bind_lab import BindLab, bind_binary
from tests.conftest import Result, Workspace
from tests.haproxy_lab import HaproxyLab, haproxy_binary, served_serial
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_self_signed

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copied(ws: Workspace, name: str) -> Path:
    """The example directory, copied to ``examples/NAME`` in the workspace (where its
    state and output go), so that commands read as the README's, run from the root."""
    target = ws.root / "examples" / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def run(ws: Workspace, name: str, command: str, variables: dict[str, str], *extra: str) -> Result:
    """``certform COMMAND -c examples/NAME --var k=v ...`` in the workspace."""
    flags = [f"--var={key}={value}" for key, value in variables.items()]
    return ws.run(command, "-c", f"examples/{name}", *flags, *extra)


def applied_cleanly(ws: Workspace, name: str, variables: dict[str, str]) -> Result:
    """validate, plan, apply, then a plan that finds nothing to do; the apply's result."""
    validated = run(ws, name, "validate", variables)
    assert validated.code == 0, validated.text
    planned = run(ws, name, "plan", variables)
    assert planned.code == 0, planned.text
    applied = run(ws, name, "apply", variables, "--auto-approve")
    assert applied.code == 0, applied.text
    again = run(ws, name, "plan", variables, "--detailed-exitcode")
    assert again.code == 0, again.text
    return applied


def pebble_roots(pebble: PebbleLab, path: Path) -> Path:
    """Pebble's issuing roots (regenerated at each start) as a PEM file."""
    path.write_bytes(b"".join(r.public_bytes(serialization.Encoding.PEM) for r in pebble.roots()))
    return path


def verified(out: Path, roots: Path) -> None:
    """``openssl verify`` accepts the certificate in ``out`` (files target) up to ``roots``."""
    argv = ["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(out / "chain.pem")]
    result = subprocess.run([*argv, str(out / "cert.pem")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def names_of(cert: x509.Certificate) -> list[str]:
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(extension.value.get_values_for_type(x509.DNSName))


def dns_names(pem: bytes) -> list[str]:
    return names_of(x509.load_pem_x509_certificate(pem))


# --------------------------------------------------------------------------- acme-dns01


@pytest.fixture
def bind(workspace: Workspace) -> Iterator[BindLab]:
    if pebble_binary() is None or bind_binary() is None:
        pytest.skip("pebble and bind9 are not installed (apt-get install pebble bind9)")
    lab = BindLab.start(workspace.root / "bind")
    yield lab
    lab.stop()


def test_acme_dns01_wildcard_from_the_fallback_then_the_primary_registers(
    workspace: Workspace, bind: BindLab
) -> None:
    ws = workspace
    hmac_key = b64url(b"\x05" * 32)
    primary = PebbleLab.start(ws.root / "primary", dns_server=bind.address)
    fallback = PebbleLab.start(
        ws.root / "fallback", dns_server=bind.address, eab_keys={"kid-1": hmac_key}
    )
    try:
        copied(ws, "acme-dns01")
        ws.env["TSIG_SECRET"] = bind.tsig_secret
        ws.env["ZEROSSL_EAB_HMAC"] = hmac_key
        variables = {
            "domain": "example.test",
            "contact": "ops@example.test",
            "acme_directory": f"https://127.0.0.1:{free_port()}/dir",  # nothing listens
            "acme_ca_bundle": primary.ca_bundle,
            "fallback_directory": fallback.directory_url,
            "fallback_ca_bundle": fallback.ca_bundle,
            "zerossl_eab_kid": "kid-1",
            "dns_server": "127.0.0.1",
            "dns_port": str(bind.port),
            "tsig_key_name": bind.tsig_key_name,
            "tsig_algorithm": bind.tsig_algorithm,
            "out_dir": "out/wildcard",
        }
        down = run(ws, "acme-dns01", "apply", variables, "--auto-approve")
        # letsencrypt's account registration failed, but the fallback issued
        # everything that needed it: exit 0 with a warning, retried next time.
        assert down.code == 0, down.text
        assert (
            "Warning: authority.letsencrypt failed, but a fallback issuer did everything "
            "that needed it; the next apply tries again." in down.out
        ), down.text
        assert "issued by zerossl after letsencrypt:" in down.out, down.text
        assert "letsencrypt: reading the directory" in down.out, down.text
        assert "unreachable (Connection refused)" in down.out, down.text
        out = ws.root / "examples/acme-dns01/out/wildcard"
        verified(out, pebble_roots(fallback, ws.root / "fallback-roots.pem"))
        issued = (out / "cert.pem").read_bytes()
        assert dns_names(issued) == ["*.example.test", "example.test"]
        assert bind.txt("_acme-challenge.example.test") == []  # every answer withdrawn
        for secret in (bind.tsig_secret, hmac_key):
            assert secret not in down.text

        # Let's Encrypt is back: its account is registered, the certificate the
        # fallback issued stays (zerossl is still listed), and nothing is left to do.
        variables["acme_directory"] = primary.directory_url
        back = applied_cleanly(ws, "acme-dns01", variables)
        assert "authority.letsencrypt: register done" in back.out, back.text
        assert "certificate.wildcard" not in back.out, back.text
        assert (out / "cert.pem").read_bytes() == issued
    finally:
        primary.stop()
        fallback.stop()


# --------------------------------------------------------------------------- acme-http01


def test_acme_http01_webroot(workspace: Workspace) -> None:
    if pebble_binary() is None or challtestsrv_binary() is None:
        pytest.skip("pebble is not installed (apt-get install pebble)")
    ws = workspace
    dns = ChallTestSrv.start(ws.root / "dns")  # every name resolves to 127.0.0.1
    pebble = PebbleLab.start(ws.root / "pebble", dns_server=dns.dns_address)
    webroot = copied(ws, "acme-http01") / "webroot"
    web = WebrootServer.start(webroot, pebble.http_port)  # the port-80 server, in the lab
    try:
        variables = {
            "domain": "example.test",
            "contact": "ops@example.test",
            "acme_directory": pebble.directory_url,
            "acme_ca_bundle": pebble.ca_bundle,
            "webroot": "webroot",
            "out_dir": "out",
        }
        applied = applied_cleanly(ws, "acme-http01", variables)
        assert applied.out.count("issued by letsencrypt") == 2, applied.text
        roots = pebble_roots(pebble, ws.root / "roots.pem")
        out = ws.root / "examples/acme-http01/out"
        for name, names in (
            ("www", ["example.test", "www.example.test"]),
            ("api", ["api.example.test"]),
        ):
            verified(out / name, roots)
            assert dns_names((out / name / "cert.pem").read_bytes()) == names
        fetched = [p for p in web.requests if p.startswith("/.well-known/acme-challenge/")]
        assert len(fetched) >= 3, web.requests  # Pebble fetched one file per name
        assert list((webroot / ".well-known" / "acme-challenge").iterdir()) == []  # withdrawn
    finally:
        web.stop()
        pebble.stop()
        dns.stop()


# --------------------------------------------------------------------------- nginx and HAProxy


def unverified_tls(port: int, server_name: str, alpn: list[str] | None = None) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:``port`` with SNI ``server_name``, the peer not
    verified (the tests compare what is served instead)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def https_get(port: int, server_name: str) -> tuple[x509.Certificate, str]:
    """One HTTPS request with SNI ``server_name``: the leaf served and the response head."""
    request = f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
    with unverified_tls(port, server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(request.encode())
        response = b""
        while chunk := tls.recv(4096):
            response += chunk
    assert der is not None
    return x509.load_der_x509_certificate(der), response.decode(errors="replace")


NGINX_NAMES = ("www", "api")


@pytest.fixture
def nginx(workspace: Workspace) -> Iterator[NginxLab]:
    """nginx serving the example's two names from self-signed placeholders, each server
    including the snippet certform renders: the state before the first apply."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    lab_dir = workspace.root / "nginx"
    servers = []
    for name in NGINX_NAMES:
        host = f"{name}.example.internal"
        cert, key = lab_dir / "tls" / f"{name}.crt", lab_dir / "tls" / f"{name}.key"
        write_self_signed(cert, key, host)
        servers.append(
            ServerSpec(host, cert, key, lab_dir / "snippets" / f"{name}-certificate.conf")
        )
    lab = NginxLab.start(lab_dir, servers)
    yield lab
    lab.stop()


def test_nginx_serves_both_names_with_the_rendered_snippet(
    workspace: Workspace, nginx: NginxLab
) -> None:
    ws = workspace
    placeholder = {n: https_get(nginx.port, f"{n}.example.internal")[0] for n in NGINX_NAMES}
    example = copied(ws, "nginx")
    variables = {
        "nginx_conf": str(nginx.conf),
        "tls_dir": str(nginx.prefix / "tls"),
        "snippets_dir": str(nginx.prefix / "snippets"),
        "https_port": str(nginx.port),
    }
    applied = applied_cleanly(ws, "nginx", variables)
    assert applied.out.count("bind done") == 2, applied.text
    for name in NGINX_NAMES:
        host = f"{name}.example.internal"
        served = probe("127.0.0.1", nginx.port, host)
        assert served.leaf.serial_number != placeholder[name].serial_number
        assert names_of(served.leaf) == [host]
        assert [c.subject.rfc4514_string() for c in served.chain] == [
            "CN=Example Internal Web CA,O=Example"
        ]
        served.leaf.verify_directly_issued_by(served.chain[0])
        written = (nginx.prefix / "tls" / f"{name}.crt").read_bytes()
        assert x509.load_pem_x509_certificates(written) == [served.leaf, *served.chain]
        header = f"x-certificate-serial: {format(served.leaf.serial_number, 'x')}\r\n"
        assert header in https_get(nginx.port, host)[1].lower()
    assert "PRIVATE KEY" not in applied.text

    # site.conf, pointed at the same files, is a configuration nginx accepts.
    site = (example / "site.conf").read_text().replace("/etc/nginx/", f"{nginx.prefix}/")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{free_port()} ssl;")
    (nginx.prefix / "site.conf").write_text(site)
    check = nginx.prefix / "check.conf"
    check.write_text(
        f'pid "{nginx.prefix}/check.pid";\nerror_log "{nginx.prefix}/logs/check.log";\n'
        f'events {{}}\nhttp {{ include "{nginx.prefix}/site.conf"; }}\n'
    )
    tested = subprocess.run(
        [nginx.binary, "-t", "-q", "-p", str(nginx.prefix), "-c", str(check)],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stderr


@pytest.fixture
def haproxy(workspace: Workspace) -> Iterator[HaproxyLab]:
    """HAProxy with a self-signed default certificate in its crt-list: the state
    before the first apply."""
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    lab = HaproxyLab.start(workspace.root / "haproxy")
    yield lab
    lab.stop()


def alpn(port: int, server_name: str) -> str | None:
    """The protocol HAProxy selects when offered h2 and http/1.1."""
    with unverified_tls(port, server_name, ["h2", "http/1.1"]) as tls:
        return tls.selected_alpn_protocol()


def test_haproxy_runtime_api_delivery_without_reload(
    workspace: Workspace, haproxy: HaproxyLab
) -> None:
    ws = workspace
    example = copied(ws, "haproxy")
    worker = haproxy.worker_pid()
    variables = {
        "haproxy_socket": haproxy.socket,
        "haproxy_dir": str(haproxy.directory),
        "https_port": str(haproxy.port),
    }
    applied = applied_cleanly(ws, "haproxy", variables)
    assert applied.out.count("bind done") == 2, applied.text
    shop = ["shop.example.internal", "www.shop.example.internal"]
    for name, sni, names, key_type in (
        ("shop", shop[0], shop, ec.EllipticCurvePublicKey),
        ("shop", shop[1], shop, ec.EllipticCurvePublicKey),
        ("legacy", "legacy.example.internal", ["legacy.example.internal"], rsa.RSAPublicKey),
    ):
        served = probe("127.0.0.1", haproxy.port, sni)
        assert names_of(served.leaf) == names
        assert isinstance(served.leaf.public_key(), key_type)
        assert [c.subject.rfc4514_string() for c in served.chain] == [
            "CN=Example Internal Edge CA,O=Example"
        ]
        on_disk = x509.load_pem_x509_certificates((haproxy.crt_dir / f"{name}.pem").read_bytes())
        assert on_disk[0] == served.leaf  # a restart would serve the same
    assert alpn(haproxy.port, "shop.example.internal") == "h2"
    assert alpn(haproxy.port, "legacy.example.internal") is None  # no ssl_options
    assert served_serial(haproxy.port, "other.example.internal") == haproxy.default_serial
    assert haproxy.worker_pid() == worker  # delivered through the runtime API, no reload
    assert "PRIVATE KEY" not in applied.text

    # haproxy.cfg, pointed at the same crt-list, is a configuration HAProxy accepts.
    cfg = (example / "haproxy.cfg").read_text()
    cfg = cfg.replace("/run/haproxy/admin.sock", f"{haproxy.directory}/check.sock")
    cfg = cfg.replace("/etc/haproxy/", f"{haproxy.directory}/")
    cfg = cfg.replace("bind :443 ", f"bind 127.0.0.1:{free_port()} ")
    checked_cfg = haproxy.directory / "example.cfg"
    checked_cfg.write_text(cfg)
    checked = subprocess.run(
        [haproxy.binary, "-c", "-q", "-f", str(checked_cfg)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
