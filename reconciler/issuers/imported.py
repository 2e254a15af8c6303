"""The ``imported`` issuer: certificates someone else issued, read from files.

certform never signs or renews them: it records the certificate and its key,
deploys them like any other, re-imports when the file changes and warns a
month before they expire.  Only the files' paths travel in plans, never the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from reconciler.errors import PlanError
from reconciler.issuers.base import ApplyAccess, Issuance, Issuer, Prepared, leaf_record
from reconciler.model.material import IssuedMaterial
from reconciler.pki.keys import private_key_to_der
from reconciler.plan.model import Change
from reconciler.plan.specs import CertificateSpec
from reconciler.policy.reissue import IMPORTED_CERTIFICATE_CHECKS
from reconciler.policy.rules import Policy


@dataclass(frozen=True, eq=False)
class ImportedLeafSpec(CertificateSpec):
    issuer_type = "imported"
    fingerprint: str = ""
    import_files: Mapping[str, str | None] = field(default_factory=dict, metadata={"key": "import"})
    """Paths of the certificate, chain and key files (or the key's environment variable)."""


class ImportedIssuer(Issuer):
    types = ("imported",)
    certificate_spec_class = ImportedLeafSpec
    certificate_checks = IMPORTED_CERTIFICATE_CHECKS
    renews = False

    # -- config ---------------------------------------------------------------------
    def certificate_spec(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> ImportedLeafSpec:
        """From the file (checked by validate); only paths go into plans."""
        from reconciler.config.imported import load_cached

        material = load_cached(root, certificate)
        return ImportedLeafSpec.parse(
            {
                "names": material.names,
                "issuer": certificate.primary_issuer,
                "key": material.key_algorithm,
                "usages": list(certificate.usages),
                "issuer_type": ImportedLeafSpec.issuer_type,
                "fingerprint": material.fingerprint,
                "import": {
                    "certificate": certificate.certificate,
                    "chain": certificate.chain,
                    "private_key": certificate.private_key_file,
                    "private_key_env": certificate.private_key_env,
                },
            }
        )

    def renew_before(self, certificate: Any, config: Any) -> str | None:
        return None  # never renewed here

    def policy_violations(self, spec: CertificateSpec, policy: Policy) -> list[str]:
        return []  # certform does not sign it

    # -- apply ----------------------------------------------------------------------
    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        """Read the files again (the plan holds only their paths); refuse if the
        certificate changed since the plan was made."""
        from reconciler.config.imported import ImportError_, load_imported

        spec = change.after
        assert isinstance(spec, ImportedLeafSpec)
        files = spec.import_files
        try:
            material = load_imported(
                ctx.root,
                str(files["certificate"]),
                files.get("chain"),
                files.get("private_key"),
                files.get("private_key_env"),
            )
        except ImportError_ as exc:
            raise PlanError(f"cannot import certificate.{change.name}: {exc}") from None
        if material.fingerprint != spec.fingerprint:
            raise PlanError(
                f"{files['certificate']} changed since the plan was made; run plan again"
            )
        key = serialization.load_pem_private_key(material.key_pem, None)
        return Prepared(private_key_to_der(key), material)  # type: ignore[arg-type]

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        spec = change.after
        assert isinstance(spec, ImportedLeafSpec)
        material = prepared.data
        record = leaf_record(change, spec.recorded(), material.certificate, "imported")
        return Issuance(
            record,
            IssuedMaterial(material.certificate_pem, material.chain_pem, material.root_pem),
            prepared.key_der,
            material.key_pem,
            f"imported serial {material.serial}",
            f" (imported serial {material.serial[:16]}…, expires {record.not_after:%Y-%m-%d})",
        )
