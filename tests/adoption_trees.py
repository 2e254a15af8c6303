"""Directory trees as found on servers, for ``certform import --scan`` tests: a
certbot ``/etc/letsencrypt`` (``live/`` symlinks into ``archive/``, two
renewals) and an nginx ``tls/`` directory with a key whose certificate is
missing, an encrypted key, DER files and a file too large to be a certificate."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_to_pem,
)
from reconciler.pki.keys import generate_private_key, private_key_to_pem

NOW = datetime.now(UTC) - timedelta(minutes=1)


class Authority:
    """A root and an intermediate signing leaves, like a public CA."""

    def __init__(self) -> None:
        self.root_key = generate_private_key("ec-p256")
        self.root = build_ca_certificate(
            public_key=self.root_key.public_key(),
            subject=Subject("Test Root X1"),
            issuer_cert=None,
            issuer_key=self.root_key,
            not_before=NOW,
            not_after=NOW + timedelta(days=3650),
            path_length=1,
        )
        self.key = generate_private_key("ec-p256")
        self.intermediate = build_ca_certificate(
            public_key=self.key.public_key(),
            subject=Subject("Test Intermediate E1"),
            issuer_cert=self.root,
            issuer_key=self.root_key,
            not_before=NOW,
            not_after=NOW + timedelta(days=1825),
            path_length=0,
        )

    def leaf(
        self, names: list[str], days: int = 90, algorithm: str = "ec-p256", ago: int = 0
    ) -> tuple[str, bytes]:
        """(certificate PEM, key PEM) for ``names``."""
        key = generate_private_key(algorithm)
        start = NOW - timedelta(days=ago)
        cert = build_leaf_certificate(
            public_key=key.public_key(),
            names=names,
            issuer_cert=self.intermediate,
            issuer_key=self.key,
            not_before=start,
            not_after=start + timedelta(days=days),
        )
        return certificate_to_pem(cert), private_key_to_pem(key)

    @property
    def chain_pem(self) -> str:
        return certificate_to_pem(self.intermediate)


def letsencrypt(base: Path, ca: Authority, domain: str = "example.test") -> Path:
    """``base/letsencrypt`` with one lineage renewed once: ``archive/DOMAIN/*1.pem``
    (older, still valid) and ``*2.pem``, ``live/DOMAIN/*.pem`` linking to the latter."""
    root = base / "letsencrypt"
    archive, live = root / "archive" / domain, root / "live" / domain
    archive.mkdir(parents=True)
    live.mkdir(parents=True)
    for n, ago in ((1, 60), (2, 0)):
        cert, key = ca.leaf([domain, f"www.{domain}"], ago=ago)
        (archive / f"cert{n}.pem").write_text(cert)
        (archive / f"chain{n}.pem").write_text(ca.chain_pem)
        (archive / f"fullchain{n}.pem").write_text(cert + ca.chain_pem)
        (archive / f"privkey{n}.pem").write_bytes(key)
    for name in ("cert", "chain", "fullchain", "privkey"):
        os.symlink(f"../../archive/{domain}/{name}2.pem", live / f"{name}.pem")
    (live / "README").write_text("This directory contains your keys and certificates.\n")
    (root / "live" / "README").write_text("Do not move these files.\n")
    return root


def nginx(base: Path, ca: Authority) -> Path:
    """``base/nginx/tls``: site.crt+site.key (a pair), orphan.key (its certificate is
    missing), api.crt with api.key encrypted, der.crt+der.key (DER), big.bin (2 MB),
    and a directory symlink back to the top (never followed)."""
    tls = base / "nginx" / "tls"
    tls.mkdir(parents=True)
    cert, key = ca.leaf(["site.example.test"])
    (tls / "site.crt").write_text(cert + ca.chain_pem)
    (tls / "site.key").write_bytes(key)
    _, orphan = ca.leaf(["gone.example.test"], algorithm="rsa-2048")
    (tls / "orphan.key").write_bytes(orphan)
    cert, key = ca.leaf(["api.example.test"])
    private = serialization.load_pem_private_key(key, None)
    encrypted = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )
    (tls / "api.crt").write_text(cert)
    (tls / "api.key").write_bytes(encrypted)
    cert, key = ca.leaf(["der.example.test"])
    from cryptography import x509

    (tls / "der.crt").write_bytes(
        x509.load_pem_x509_certificate(cert.encode()).public_bytes(serialization.Encoding.DER)
    )
    (tls / "der.key").write_bytes(
        serialization.load_pem_private_key(key, None).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tls / "big.bin").write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (2 << 20))
    os.symlink("..", tls / "loop")
    return tls
