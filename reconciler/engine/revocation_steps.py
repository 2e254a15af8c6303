"""Apply steps around revocation: CRL publication (full CRL per CA key, and a
final CRL for a key being rotated out) and ``revoke_replaced`` (revoke the
superseded certificate once every binding serves its successor).

A mixin of ``Applier``: it uses the applier's store, plan, result and report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from reconciler.durations import parse_duration
from reconciler.engine.faults import fault_point
from reconciler.errors import CertformError
from reconciler.fsutil import PUBLIC_DIR_MODE, config_path, make_dirs, write_atomic
from reconciler.pki.crl import Revoked, build_crl, crl_files
from reconciler.plan.model import Change
from reconciler.providers.filestamp import stamp_of
from reconciler.providers.private_ca import SigningAuthority, crl_key_id
from reconciler.state.records import CertificateRecord, CrlRecord, RevocationRecord


class RevocationSteps:
    """CRL and superseded-certificate steps of an apply (mixed into ``Applier``)."""

    _replaced: dict[str, tuple[CertificateRecord, str]]
    _revoked_now: list[RevocationRecord]
    _replaced_revoked: bool
    store: Any
    recorded: Any
    plan: Any
    result: Any
    root: Path
    actor: str

    # -- revoke_replaced ------------------------------------------------------------------
    def _remember_replaced(self, change: Change) -> None:
        """Keep the certificate a renewal supersedes, to revoke it once nothing serves it."""
        after = change.after or {}
        if not after.get("revoke_replaced") or change.name in self._replaced:
            return
        record = self.recorded.certificates.get(change.name)
        if record is None or record.revoked_at is not None:
            return
        pem = self.store.material("certificate", change.name).certificate_pem
        self._replaced[change.name] = (record, pem)

    def _revoke_replaced(self) -> None:
        """Create-before-destroy: revoke a superseded certificate only after every one of
        its bindings was moved to the successor in this run."""
        self._replaced_revoked = True
        for name, (record, pem) in self._replaced.items():
            address = f"certificate.{name}"
            if address not in self.result.done:
                continue
            stuck = [
                c.address
                for c in self.plan.changes
                if c.kind == "binding"
                and (c.after or {}).get("certificate") == name
                and c.address not in self.result.done
            ]
            if stuck:
                self.report(
                    f"{address}: previous serial {record.serial[:16]}… kept, not revoked: "
                    f"{', '.join(stuck)} did not move to the new certificate"
                )
                continue
            issuer = record.spec.get("issued_by") or record.spec["issuer"]
            try:
                if record.spec.get("issuer_type") == "acme":
                    spec = (record.spec.get("acme") or {}).get(issuer, {})
                    self._acme_account(issuer, spec).revoke(pem, "superseded")
            except CertformError as exc:
                self.store.audit(self.actor, "apply", address, "revoke", "failed", str(exc))
                self.report(f"{address}: revoking the previous certificate FAILED: {exc}")
                continue
            now = datetime.now(UTC).replace(microsecond=0)
            with self.store.transaction() as writer:
                writer.mark_revoked(name, record.serial, now, "superseded", issuer)
                writer.audit(
                    self.actor, "apply", address, "revoke", "ok",
                    f"previous serial {record.serial} revoked (superseded)",
                )  # fmt: skip
            self._revoked_now.append(
                RevocationRecord(address, record.serial, issuer, now, "superseded")
            )
            self.report(f"{address}: previous serial {record.serial[:16]}… revoked (superseded)")

    # -- CRLs ---------------------------------------------------------------------------
    def _crl_publish(self, change: Change) -> str:
        """Sign the full CRL of one CA and publish DER + PEM atomically."""
        assert change.after is not None
        name = change.after["authority"]
        settings = change.after["crl"]
        entry = self._journal(change)
        authority = self._signing_authority(name)
        revoked, number, now = self._crl_contents(name)
        next_update = now + parse_duration(settings["validity"])
        crl = build_crl(authority.certificate, authority.key, revoked, number, now, next_update)
        files = self._write_crl(name, settings, authority, crl)
        fault_point(change.address, "acted")
        record = CrlRecord(name, number, now, next_update, len(revoked), files)
        with self.store.transaction(entry) as writer:
            writer.put_crl(record)
            self._audit(writer, change, f"CRL #{number}, {len(revoked)} revoked")
        return f" (CRL #{number}, {len(revoked)} revoked, next update {next_update:%Y-%m-%d})"

    def _crl_contents(self, name: str) -> tuple[list[Revoked], int, datetime]:
        """Everything ``name`` ever revoked (recorded and in this run), the next CRL
        number and this update's time."""
        revoked = [
            Revoked(r.serial, r.revoked_at, r.reason)
            for r in (*self.recorded.revocations, *self._revoked_now)
            if r.issuer == name
        ]
        previous = self.recorded.crls.get(name)
        number = (previous.number if previous else 0) + 1
        return revoked, number, datetime.now(UTC).replace(microsecond=0)

    def _write_crl(
        self,
        name: str,
        settings: dict,
        authority: SigningAuthority,
        crl: x509.CertificateRevocationList,
    ) -> dict[str, list[int | str]]:
        """DER + PEM, atomically; named per CA key when the URL has ``{key_id}``."""
        directory = config_path(self.root, settings["publish"]["directory"])
        make_dirs(directory, PUBLIC_DIR_MODE)  # CRLs are public: served as they are
        stem = name
        if "{key_id}" in settings["url"]:
            stem = f"{name}-{crl_key_id(authority.key_id)}"
        files = {}
        for file_name, data in zip((f"{stem}.crl", f"{stem}.crl.pem"), crl_files(crl), strict=True):
            write_atomic(directory / file_name, data, 0o644)
            files[file_name] = stamp_of(directory / file_name, data)
        return files

    def _final_crl(self, name: str, settings: dict) -> str:
        """Before a CA gets a new key: a last CRL for the old key, valid until the old
        CA certificate (and so everything it signed) expires, so relying parties
        can keep checking certificates that are still out there."""
        old = self._signing_authority(name)
        revoked, number, now = self._crl_contents(name)
        until = old.certificate.not_valid_after_utc
        crl = build_crl(old.certificate, old.key, revoked, number, now, until)
        files = self._write_crl(name, settings, old, crl)
        self._authorities.pop(name, None)
        where = ", ".join(files)
        return f"; final CRL #{number} of the old key published until {until:%Y-%m-%d} ({where})"
