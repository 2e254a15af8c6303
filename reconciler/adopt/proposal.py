"""From what a scan found to YAML a user can paste: each certificate with its
key (matched by public key) and, where one was found, its chain, under an
``imported`` authority.

Every proposed entry has passed the very check ``validate`` makes
(``config/imported.load_imported``: the key matches, the chain verifies, not
expired), read through the same paths the YAML names, so pasting it gives a
valid configuration.  What cannot be proposed (a certificate without its key,
a key without its certificate, an encrypted key, an expired or superseded
certificate, DER files) is listed as comments with what to do about it.

No bindings are proposed: the natural one, a files target where the files
live, would make certform overwrite the very files it imports from (and
certbot's symlinks).  Where to deploy is the user's decision.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from reconciler.adopt.scan import FoundCertificate, FoundKey, ScanResult, public_key_der
from reconciler.config.imported import ImportedMaterial, ImportError_, load_imported
from reconciler.pki.builder import fingerprint_sha256


@dataclass
class Proposal:
    """The YAML document to paste and the comments around it."""

    document: dict[str, Any] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)

    def text(self) -> str:
        import yaml

        body = yaml.safe_dump(self.document, sort_keys=False) if self.document else ""
        comments = "".join(f"# {line}\n" for line in self.header)
        tail = "".join(f"# {line}\n" for line in self.footer)
        return comments + body + ("#\n" + tail if tail else "")


def shown(path: Path, root: Path) -> str:
    """A path as the config should name it: relative to the config's directory when
    it lies below it (the config resolves it there), else absolute."""
    absolute = Path(os.path.abspath(path))
    if absolute.is_relative_to(root):
        return absolute.relative_to(root).as_posix()
    return str(absolute)


def entry_name(first: str, taken: set[str]) -> str:
    """A config name for a certificate: ``*.example.com`` -> ``wildcard-example-com``."""
    base = re.sub(r"[^a-z0-9]+", "-", first.lower().replace("*", "wildcard")).strip("-")
    base = base or "certificate"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value).lower() for name in sans]


def _label(certificate: x509.Certificate) -> str:
    names = _names(certificate)
    shown_names = ", ".join(names) if names else certificate.subject.rfc4514_string()
    return f"{shown_names}; expires {certificate.not_valid_after_utc:%Y-%m-%d}"


@dataclass(frozen=True)
class _Candidate:
    copies: list[FoundCertificate]
    keys: list[FoundKey]

    @property
    def certificate(self) -> x509.Certificate:
        return self.copies[0].certificate


class _Builder:
    def __init__(
        self, found: ScanResult, root: Path, authority: str, taken: set[str], now: datetime
    ) -> None:
        self.found, self.root, self.authority, self.now = found, root, authority, now
        self.taken = set(taken)
        self.proposal = Proposal()
        self.chain_files = _chain_files(found.certificates)

    def note(self, line: str) -> None:
        self.proposal.footer.append(line)

    def path(self, place_path: Path) -> str:
        return shown(place_path, self.root)

    def build(self) -> Proposal:
        keys: dict[bytes, list[FoundKey]] = {}
        for key in self.found.keys:
            if key.public_key is not None:
                keys.setdefault(key.public_key, []).append(key)
        leaves: dict[str, list[FoundCertificate]] = {}
        for cert in self.found.certificates:
            if not cert.is_ca:
                leaves.setdefault(fingerprint_sha256(cert.certificate), []).append(cert)
        matched: set[bytes] = set()
        candidates: list[_Candidate] = []
        for copies in leaves.values():
            copies.sort(key=lambda c: c.place.preference())
            spki = public_key_der(copies[0].certificate.public_key())
            if spki not in keys:
                self._unmatched_certificate(copies[0])
                continue
            matched.add(spki)
            keys[spki].sort(key=lambda k: k.place.preference())
            candidate = _Candidate(copies, keys[spki])
            if candidate.certificate.not_valid_after_utc <= self.now:
                self.note(
                    f"expired, not proposed: {self.path(copies[0].place.path)} "
                    f"({_label(candidate.certificate)})"
                )
                continue
            candidates.append(candidate)
        entries = {}
        for candidate in _latest_per_names(candidates, self.note, self.path):
            entry = self._entry(candidate)
            if entry is not None:
                names = entry.get("names") or [candidate.certificate.subject.rfc4514_string()]
                entries[entry_name(names[0], self.taken)] = entry
        self._unmatched_keys(keys, matched)
        self.proposal.footer += self.found.notes
        self.proposal.header += [
            f"certform import --scan: {len(entries)} certificate(s) with their keys; paths "
            f"relative to {self.root} (the config's directory).",
            "Add bindings where certform should deploy them, not where these files live "
            "(it would overwrite what it imports from).",
        ]
        if entries:
            self.proposal.document = {
                "authorities": {self.authority: {"type": "imported"}},
                "certificates": entries,
            }
        return self.proposal

    # -- one certificate ---------------------------------------------------------------
    def _entry(self, candidate: _Candidate) -> dict[str, Any] | None:
        leaf = candidate.certificate
        first = self.path(candidate.copies[0].place.path)
        keys = [k for k in candidate.keys if k.place.pem]
        files = [c for c in candidate.copies if c.index == 0 and c.place.pem]
        if not keys or not files:
            der = next(
                p.path
                for p in ([c.place for c in candidate.copies] + [k.place for k in candidate.keys])
                if not p.pem
            )
            self.note(
                f"DER, not proposed: {self.path(der)} ({_label(leaf)}); the config reads "
                "PEM: convert it (openssl x509 -inform der / openssl pkey -inform der)"
            )
            return None
        files.sort(key=lambda c: (c.count != 1, c.place.preference()))
        key = self.path(keys[0].place.path)
        problem = ""
        for copy in files:
            chains: list[str | None] = [None]
            if copy.count == 1:
                chains = [*self._chains_for(leaf, copy.place.path.parent), None]
            for chain in chains:
                try:
                    material = load_imported(
                        self.root, self.path(copy.place.path), chain, key, None, None, self.now
                    )
                except ImportError_ as exc:
                    problem = str(exc)
                    continue
                return self._yaml(material, self.path(copy.place.path), chain, key)
        self.note(f"not proposed: {first} ({_label(leaf)}): {problem}")
        return None

    def _chains_for(self, leaf: x509.Certificate, folder: Path) -> list[str]:
        """Files of CA certificates holding the leaf's issuer, those beside it first."""
        holding = [
            (path, places)
            for path, places in self.chain_files.items()
            if any(c.certificate.subject == leaf.issuer for c in places)
        ]
        holding.sort(key=lambda item: (item[0].parent != folder, item[1][0].place.preference()))
        return [self.path(path) for path, _ in holding]

    def _yaml(
        self, material: ImportedMaterial, cert: str, chain: str | None, key: str
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"issuer": self.authority}
        if material.names:
            entry["names"] = material.names
        entry["certificate"] = cert
        if chain:
            entry["chain"] = chain
        elif not material.chain_pem and not material.root_pem:
            issuer = material.certificate.issuer.rfc4514_string()
            if material.certificate.issuer != material.certificate.subject:
                self.note(
                    f"{cert}: its issuer ({issuer}) was not found; add chain: FILE "
                    "for targets that serve the chain"
                )
        entry["private_key"] = key
        return entry

    # -- what is left over -------------------------------------------------------------
    def _unmatched_certificate(self, copy: FoundCertificate) -> None:
        encrypted = [
            k
            for k in self.found.keys
            if k.encrypted and k.place.path.parent == copy.place.path.parent
        ]
        hint = (
            f"; its key may be the encrypted {self.path(encrypted[0].place.path)}"
            if encrypted
            else ""
        )
        self.note(
            f"certificate without its key: {self.path(copy.place.path)} "
            f"({_label(copy.certificate)}){hint}"
        )

    def _unmatched_keys(self, keys: dict[bytes, list[FoundKey]], matched: set[bytes]) -> None:
        for spki, places in keys.items():
            if spki not in matched:
                place = min(places, key=lambda k: k.place.preference())
                self.note(
                    f"key without a certificate: {self.path(place.place.path)} ({place.algorithm})"
                )
        for key in self.found.keys:
            if key.encrypted:
                self.note(
                    f"encrypted key, not matched: {self.path(key.place.path)}: certform "
                    "imports unencrypted keys only (decrypt it with openssl pkey into a "
                    "file kept out of git, or pass it in private_key_env)"
                )


def _chain_files(found: Iterable[FoundCertificate]) -> dict[Path, list[FoundCertificate]]:
    """PEM files that hold only CA certificates: candidates for ``chain:``."""
    files: dict[Path, list[FoundCertificate]] = {}
    for cert in found:
        if cert.place.pem:
            files.setdefault(cert.place.path, []).append(cert)
    return {path: certs for path, certs in files.items() if all(c.is_ca for c in certs)}


def _latest_per_names(candidates: list[_Candidate], note: Any, path: Any) -> list[_Candidate]:
    """One certificate per set of names, the one valid longest (certbot's
    ``archive/`` keeps every earlier one); the others are listed as superseded."""
    latest: dict[tuple[str, ...], _Candidate] = {}
    for candidate in candidates:
        certificate = candidate.certificate
        names = tuple(sorted(_names(certificate))) or (fingerprint_sha256(certificate),)
        best = latest.get(names)
        if best is None:
            latest[names] = candidate
            continue
        later = certificate.not_valid_after_utc > best.certificate.not_valid_after_utc
        newer, older = (candidate, best) if later else (best, candidate)
        latest[names] = newer
        note(
            f"superseded by a later certificate for the same names, not proposed: "
            f"{path(older.copies[0].place.path)} ({_label(older.certificate)})"
        )
    return sorted(latest.values(), key=lambda c: c.copies[0].place.preference())


def propose(
    found: ScanResult,
    root: Path,
    authority: str = "imported",
    taken: set[str] | None = None,
    now: datetime | None = None,
) -> Proposal:
    """The proposal for a scan; paths relative to ``root`` (the config's directory)."""
    root = Path(os.path.abspath(root))
    return _Builder(found, root, authority, taken or set(), now or datetime.now(UTC)).build()
