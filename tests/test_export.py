"""``certform export``: PEM and PKCS#12 exports that OpenSSL 3.0 opens, and the refusals."""

from __future__ import annotations

import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.config.models import Certificate
from reconciler.engine.export import ExportError, read_passphrase, refusal
from reconciler.model.records import CertificateRecord
from tests.conftest import EXAMPLE, Workspace

PASSPHRASE = "Tr0ub4dor-export-passphrase"

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]


def exportable(*names: str) -> str:
    """The example config with ``exportable: true`` on the given certificates."""
    text = EXAMPLE
    for name, anchor in (("web", "    tags: {team: web}\n"), ("api", "    key: rsa-2048\n")):
        if name in names:
            text = text.replace(anchor, anchor + "    exportable: true\n")
    return text


@pytest.fixture
def applied(workspace: Workspace) -> Workspace:
    workspace.write(exportable("web"))
    workspace.ok("apply", "--auto-approve")
    (workspace.root / "pass.txt").write_text(PASSPHRASE + "\n")
    (workspace.root / "wrong.txt").write_text("not-the-passphrase\n")
    return workspace


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def audit_rows(ws: Workspace) -> list[tuple[str, str, str, str]]:
    return ws.query("SELECT command, address, result, detail FROM audit WHERE command = 'export'")


def state_bytes(ws: Workspace) -> bytes:
    """Everything the state holds: its files, or (PostgreSQL) every row of every table."""
    if ws.backend == "sqlite":
        return b"".join(p.read_bytes() for p in sorted(ws.state_db.parent.iterdir()) if p.is_file())
    tables = ("meta", "authorities", "certificates", "bindings", "history", "journal", "audit")
    return repr([sorted(map(repr, ws.query(f"SELECT * FROM {t}"))) for t in tables]).encode()


def assert_no_secret_leaked(ws: Workspace, *outputs: str) -> None:
    for text in outputs:
        assert PASSPHRASE not in text
        assert "PRIVATE KEY" not in text
    assert PASSPHRASE.encode() not in state_bytes(ws)


def key_matches(key_pem: str, cert_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


@pytest.mark.parametrize("name", ["web", "api"])  # ec-p256 and rsa-2048
def test_pem_export_opens_with_openssl_and_verifies(workspace: Workspace, name: str) -> None:
    ws = workspace
    ws.write(exportable(name))
    ws.ok("apply", "--auto-approve")
    (ws.root / "pass.txt").write_text(PASSPHRASE + "\n")
    result = ws.ok("export", name, "--passphrase-file", "pass.txt", "--out", "exp")
    out = ws.root / "exp"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{name}{suffix}" for suffix in (".crt", ".chain.pem", ".root.pem", ".key")
    )
    assert len(result.out.splitlines()) == 4
    assert f"exp/{name}.key (encrypted private key)" in result.out
    assert stat.S_IMODE((out / f"{name}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / f"{name}.crt").stat().st_mode) == 0o644

    key_file = str(out / f"{name}.key")
    assert (out / f"{name}.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    decrypted = openssl("pkcs8", "-in", key_file, "-passin", f"file:{ws.root / 'pass.txt'}")
    assert decrypted.returncode == 0, decrypted.stderr
    assert key_matches(decrypted.stdout, (out / f"{name}.crt").read_bytes())
    wrong = openssl("pkcs8", "-in", key_file, "-passin", "pass:not-the-passphrase")
    assert wrong.returncode != 0
    assert "PRIVATE KEY" not in wrong.stdout

    # PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC (cryptography's BestAvailableEncryption).
    parsed = openssl("asn1parse", "-in", key_file).stdout
    for expected in (":PBES2", ":PBKDF2", ":hmacWithSHA256", ":aes-256-cbc"):
        assert expected in parsed

    root, chain, leaf = (str(out / f"{name}{s}") for s in (".root.pem", ".chain.pem", ".crt"))
    verify = openssl("verify", "-CAfile", root, "-untrusted", chain, leaf)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    deployed = ws.root / "out" / name / "cert.pem"
    assert (out / f"{name}.crt").read_bytes() == deployed.read_bytes()

    assert_no_secret_leaked(ws, result.out, result.err)
    ((command, address, outcome, detail),) = audit_rows(ws)
    assert (command, address, outcome) == ("export", f"certificate.{name}", "ok")
    assert "format pem" in detail and str(out) in detail and "serial " in detail


def test_pkcs12_export_opens_with_openssl_3_without_legacy(applied: Workspace) -> None:
    ws = applied
    result = ws.ok(
        "export", "web", "--passphrase-file", "pass.txt", "--format", "pkcs12", "--out", "p12"
    )
    p12 = ws.root / "p12" / "web.p12"
    assert [p.name for p in p12.parent.iterdir()] == ["web.p12"]
    assert result.out.strip() == f"Wrote {Path('p12') / 'web.p12'} (PKCS#12 bundle)"
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600

    opened = openssl("pkcs12", "-in", str(p12), "-passin", f"file:{ws.root / 'pass.txt'}", "-nodes")
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.count("-----BEGIN CERTIFICATE-----") == 3  # leaf, issuing, root
    assert "-----BEGIN PRIVATE KEY-----" in opened.stdout
    key_pem = opened.stdout[opened.stdout.index("-----BEGIN PRIVATE KEY-----") :]
    leaf = (ws.root / "out" / "web" / "cert.pem").read_bytes()
    assert key_matches(key_pem, leaf)
    assert leaf.decode().strip() in opened.stdout

    info = openssl(
        "pkcs12", "-in", str(p12), "-passin", f"file:{ws.root / 'pass.txt'}", "-info", "-noout"
    )
    assert "PBES2, PBKDF2, AES-256-CBC, Iteration 600000, PRF hmacWithSHA256" in info.stderr
    assert "MAC: sha256" in info.stderr

    wrong = openssl("pkcs12", "-in", str(p12), "-passin", f"file:{ws.root / 'wrong.txt'}", "-nodes")
    assert wrong.returncode != 0
    assert "PRIVATE KEY" not in wrong.stdout

    assert_no_secret_leaked(ws, result.out, result.err)
    ((_, address, outcome, detail),) = audit_rows(ws)
    assert (address, outcome) == ("certificate.web", "ok")
    assert "format pkcs12" in detail


def test_non_exportable_certificate_is_refused_and_audited(applied: Workspace) -> None:
    ws = applied
    result = ws.run("export", "api", "--passphrase-file", "pass.txt", "--out", "exp")
    assert result.code == 1
    assert "certificate.api is not exportable" in result.err
    assert "exportable: true" in result.err
    assert not (ws.root / "exp").exists()
    ((_, address, outcome, detail),) = audit_rows(ws)
    assert (address, outcome) == ("certificate.api", "refused")
    assert "not exportable" in detail
    assert_no_secret_leaked(ws, result.out, result.err)


def test_revoked_certificate_is_refused(applied: Workspace) -> None:
    ws = applied
    ws.ok("revoke", "web", "--reason", "keyCompromise")
    result = ws.run("export", "web", "--passphrase-file", "pass.txt", "--out", "exp")
    assert result.code == 1
    assert "revoked" in result.err
    assert not (ws.root / "exp").exists()
    assert [row[2] for row in audit_rows(ws)] == ["refused"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the passphrase file"),
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\r\n", "is empty"),
        (b"seven77\n", "too short"),
        (b"two-lines-here\nsecond\n", "single line"),
    ],
)
def test_bad_passphrase_file_writes_nothing(
    applied: Workspace, content: bytes | None, message: str
) -> None:
    ws = applied
    if content is not None:
        (ws.root / "bad.txt").write_bytes(content)
    result = ws.run("export", "web", "--passphrase-file", "bad.txt", "--out", "exp")
    assert result.code == 1
    assert message in result.err
    assert not (ws.root / "exp").exists()
    assert audit_rows(ws) == []
    if content and content.strip():
        assert content.split(b"\n")[0].decode() not in result.text


@pytest.mark.sqlite_only
def test_unknown_certificate_and_no_state(applied: Workspace, workspace: Workspace) -> None:
    result = applied.run("export", "nope", "--passphrase-file", "pass.txt", "--out", "exp")
    assert result.code == 1
    assert "unknown certificate 'nope'" in result.err
    assert not (applied.root / "exp").exists()

    applied.state_db.unlink()
    empty = applied.run("export", "web", "--passphrase-file", "pass.txt")
    assert empty.code == 1
    assert "no state" in empty.err


def test_existing_files_are_never_overwritten(applied: Workspace) -> None:
    ws = applied
    out = ws.root / "exp"
    out.mkdir()
    (out / "web.key").write_text("keep me\n")
    result = ws.run("export", "web", "--passphrase-file", "pass.txt", "--out", "exp")
    assert result.code == 1
    assert "refusing to overwrite" in result.err and "web.key" in result.err
    assert (out / "web.key").read_text() == "keep me\n"
    assert [p.name for p in out.iterdir()] == ["web.key"]  # nothing else written either
    assert audit_rows(ws) == []


def test_default_out_is_the_current_directory(applied: Workspace) -> None:
    applied.ok("export", "web", "--passphrase-file", "pass.txt")
    assert (applied.root / "web.crt").is_file()
    assert stat.S_IMODE((applied.root / "web.key").stat().st_mode) == 0o600


# -- the pure parts -------------------------------------------------------------


def test_passphrase_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "p"
    for raw, expected in [
        (b"longpassphrase\r\n", b"longpassphrase"),
        (b"longpassphrase\n", b"longpassphrase"),
        (b"longpassphrase", b"longpassphrase"),
        (b"  spaced pass  \n", b"  spaced pass  "),
        ("pässwörtchen\n".encode(), "pässwörtchen".encode()),
    ]:
        path.write_bytes(raw)
        assert read_passphrase(path) == expected
    for bad in (b"longpassphrase\n\n", b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", b"sieben\n"):
        path.write_bytes(bad)
        with pytest.raises(ExportError) as caught:
            read_passphrase(path)
        assert "longpassphrase" not in str(caught.value)


def _record(**changes: object) -> CertificateRecord:
    base: dict[str, object] = {
        "name": "web",
        "spec": {},
        "serial": "01",
        "not_before": datetime(2025, 1, 1, tzinfo=UTC),
        "not_after": datetime(2026, 1, 1, tzinfo=UTC),
        "issuer_key_id": "k",
        "fingerprint": "f",
        "prevent_destroy": False,
        "tags": {},
        "has_key": True,
    }
    return CertificateRecord(**(base | changes))  # type: ignore[arg-type]


def test_refusal_reasons() -> None:
    spec = Certificate(names=["web.example.test"], issuer="issuing", exportable=True)
    closed = Certificate(names=["web.example.test"], issuer="issuing")
    assert refusal("web", spec, _record()) is None
    assert "exportable: true" in (refusal("web", closed, _record()) or "")
    assert "not declared" in (refusal("web", None, _record()) or "")
    acm = _record(has_key=False, external_id="arn:aws:acm:us-east-1:1:certificate/x")
    assert "ACM" in (refusal("web", spec, acm) or "")
    revoked = _record(revoked_at=datetime(2025, 6, 1, tzinfo=UTC))
    assert "revoked on 2025-06-01" in (refusal("web", spec, revoked) or "")


def test_passphrase_from_standard_input(applied: Workspace) -> None:
    ws = applied
    passphrase = (ws.root / "pass.txt").read_text().strip()
    result = ws.run(
        "export", "web", "--passphrase-file", "-", "--format", "pkcs12", "--out", "p12",
        stdin=passphrase + "\n",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert passphrase not in result.text
    p12 = ws.root / "p12" / "web.p12"
    opened = openssl("pkcs12", "-in", str(p12), "-passin", f"pass:{passphrase}", "-nokeys")
    assert opened.returncode == 0, opened.stderr
    empty = ws.run("export", "web", "--passphrase-file", "-", "--out", "p13", stdin="")
    assert empty.code == 1 and "standard input (the passphrase) is empty" in empty.err
    assert not (ws.root / "p13").exists()
