"""Post-quantum private PKI: ML-DSA (FIPS 204) CAs and leaves issued through the
real CLI.  The system OpenSSL 3.0 cannot verify ML-DSA, so chains are checked
with cryptography's ``verify_directly_issued_by`` and the signature OIDs."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import SignatureAlgorithmOID

from tests.conftest import Workspace

ML_DSA_OIDS = {
    "ml-dsa-44": "2.16.840.1.101.3.4.3.17",
    "ml-dsa-65": "2.16.840.1.101.3.4.3.18",
    "ml-dsa-87": "2.16.840.1.101.3.4.3.19",
}

CONFIG = """\
authorities:
  root:
    type: private-root
    subject: {common_name: PQ Root}
    key: ml-dsa-87
    validity: 3650d
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: PQ Issuing}
    key: ml-dsa-65
    validity: 1825d
    path_length: 0
certificates:
  svc:
    names: [svc.internal.test]
    issuer: issuing
    key: ml-dsa-44
    validity: 30d
  classic:
    names: [classic.internal.test]
    issuer: issuing
    key: ec-p256
    validity: 30d
bindings:
  - {certificate: svc, target: {type: files, directory: out/svc}}
  - {certificate: classic, target: {type: files, directory: out/classic}}
"""


def _load(path: object) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())  # type: ignore[attr-defined]


def test_ml_dsa_chain_issued_and_verified(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    workspace.ok("apply", "--auto-approve")
    for name, leaf_key in (("svc", "ml-dsa-44"), ("classic", "ec-p256")):
        out = workspace.root / "out" / name
        (leaf,) = _load(out / "cert.pem")
        (issuing,) = _load(out / "chain.pem")
        (root,) = _load(out / "ca.pem")
        # Signed by ML-DSA-65 (issuing) and ML-DSA-87 (root), whatever the leaf's key.
        assert leaf.signature_algorithm_oid.dotted_string == ML_DSA_OIDS["ml-dsa-65"]
        assert issuing.signature_algorithm_oid.dotted_string == ML_DSA_OIDS["ml-dsa-87"]
        assert root.signature_algorithm_oid == SignatureAlgorithmOID.ML_DSA_87
        leaf.verify_directly_issued_by(issuing)
        issuing.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
        key = serialization.load_pem_private_key((out / "key.pem").read_bytes(), None)
        if leaf_key == "ml-dsa-44":
            assert isinstance(key, mldsa.MLDSA44PrivateKey)
            assert isinstance(leaf.public_key(), mldsa.MLDSA44PublicKey)
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and not usage.key_encipherment
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    # A leaf signed by another CA does not verify (the check can fail).
    other = _load(workspace.root / "out/classic/cert.pem")[0]
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError
        other.verify_directly_issued_by(_load(workspace.root / "out/svc/cert.pem")[0])


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (
            "providers:\n  aws: {type: aws, region: eu-west-1}\n",
            "load balancer listeners cannot serve ml-dsa-44 certificates",
        ),
        (
            "providers:\n  edge: {type: haproxy, socket: /run/h.sock, crt_dir: c, crt_list: l}\n",
            "cannot load ML-DSA keys",
        ),
    ],
)
def test_ml_dsa_refused_where_it_cannot_be_served(
    workspace: Workspace, extra: str, phrase: str
) -> None:
    target = (
        "{type: aws-alb-listener, provider: aws, load_balancer: lb}"
        if "aws" in extra
        else "{type: haproxy, provider: edge}"
    )
    text = CONFIG.replace("bindings:\n", extra + "bindings:\n") + (
        f"  - {{certificate: svc, target: {target}}}\n"
    )
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1
    assert phrase in result.err, result.err


def test_ml_dsa_refused_for_acme(workspace: Workspace) -> None:
    text = CONFIG.replace(
        "certificates:\n",
        "  le:\n    type: acme\n    directory: https://acme.example.test/dir\n"
        "    contact: [mailto:ops@example.test]\n    terms_of_service_agreed: true\n"
        "    solvers:\n      - http01: {webroot: www}\n"
        "certificates:\n  pq:\n    names: [pq.example.test]\n    issuer: le\n"
        "    key: ml-dsa-65\n",
    )
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1
    assert "ACME CAs issue certificates for" in result.err and "not ml-dsa-65" in result.err
