"""``certform import --from-aws``: the YAML that declares every ACM certificate of
a region and the bindings already serving it, plus the ``import --acm-arn``
commands that record them without re-issuing anything.

Certificates ACM issued go under an ``aws-acm`` authority (names and key as ACM
holds them).  Certificates imported into ACM by hand need their certificate
and key files, which only the user has: they are proposed as commented-out
YAML to complete, so that what is pasted validates as is.  Private
certificates (AWS Private CA) and certificates not issued are listed, not
proposed.
"""

from __future__ import annotations

from typing import Any

import yaml

from reconciler.adopt.aws_inventory import AcmCertificate, Inventory
from reconciler.adopt.proposal import Proposal, entry_name


def _commented(document: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(document, sort_keys=False).splitlines()


def propose_from_aws(
    inventory: Inventory,
    region: str,
    provider: str,
    provider_block: dict[str, Any] | None,
    taken: set[str],
    authority: str = "acm",
) -> Proposal:
    """The proposal; ``provider_block`` is the providers entry to add (None when the
    configuration already has ``provider`` for this region)."""
    proposal = Proposal()
    names: dict[str, str] = {}
    certificates: dict[str, Any] = {}
    commands: list[str] = []
    leftovers: list[str] = []
    for certificate in inventory.certificates:
        why = _not_proposed(certificate)
        if why:
            leftovers.append(f"{certificate.arn} ({', '.join(certificate.names)}): {why}")
            continue
        name = entry_name(certificate.names[0] if certificate.names else "certificate", taken)
        names[certificate.arn] = name
        if certificate.kind == "IMPORTED":
            leftovers += _imported_block(certificate, name, inventory, provider, region)
            continue
        certificates[name] = {
            "issuer": authority,
            "names": certificate.names,
            "key": certificate.key,
        }
        commands.append(f"certform import certificate.{name} --acm-arn {certificate.arn}")
    bindings = [
        {"certificate": names[usage.arn], "target": usage.target}
        for usage in inventory.usages
        if usage.arn in names and names[usage.arn] in certificates
    ]
    used = {usage.arn for usage in inventory.usages}
    for certificate in inventory.certificates:
        if certificate.arn in names and certificate.arn not in used:
            leftovers.append(
                f"certificate.{names[certificate.arn]}: not in use anywhere "
                "certform looked (listeners, distributions, API Gateway domains)"
            )
    issued = sum(1 for c in inventory.certificates if c.kind != "IMPORTED")
    proposal.header.append(
        f"certform import --from-aws --region {region}: {len(inventory.certificates)} ACM "
        f"certificate(s) ({issued} issued by ACM), {len(inventory.usages)} place(s) using them"
    )
    if certificates:
        document: dict[str, Any] = {}
        if provider_block:
            document["providers"] = provider_block
        document["authorities"] = {
            authority: {"type": "aws-acm", "provider": provider, "region": region}
        }
        document["certificates"] = certificates
        if bindings:
            document["bindings"] = bindings
        proposal.document = document
    if commands:
        proposal.footer += [
            "Then record them (nothing is re-issued, nothing is redeployed):",
            *(f"  {command}" for command in commands),
        ]
    proposal.footer += leftovers + inventory.notes
    return proposal


def _not_proposed(certificate: AcmCertificate) -> str | None:
    if certificate.status != "ISSUED":
        return f"{certificate.status}, not issued: not proposed"
    if certificate.kind == "PRIVATE":
        return (
            "a private certificate from AWS Private CA: not proposed (declare it under an "
            "aws-acm authority with certificate_authority_arn, and let apply request it)"
        )
    if certificate.key is None:
        return "a key algorithm certform cannot declare: not proposed"
    return None


def _imported_block(
    certificate: AcmCertificate, name: str, inventory: Inventory, provider: str, region: str
) -> list[str]:
    """A certificate imported into ACM by hand, as YAML to complete and uncomment."""
    entry = {
        "issuer": "imported",
        "names": certificate.names,
        "certificate": f"certs/{name}.pem",
        "private_key": f"certs/{name}.key",
    }
    document: dict[str, Any] = {"certificates": {name: entry}}
    bindings = [
        {"certificate": name, "target": u.target}
        for u in inventory.usages
        if u.arn == certificate.arn
    ]
    if bindings:
        document["bindings"] = bindings
    return [
        f"{certificate.arn} was imported into ACM by hand: put its certificate and key in "
        f"the files below, declare an imported authority (imported: {{type: imported}}), "
        f"uncomment, then: certform import certificate.{name} --acm-arn {certificate.arn} "
        f"--key certs/{name}.key",
        *(f"  {line}" for line in _commented(document)),
    ]
