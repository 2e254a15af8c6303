"""``certform init`` and ``certform graph``: a configuration to start from, and the
CA -> certificate -> binding graph of one, for people rather than for apply.

The starter applies as is (a private root, an issuing CA constrained to
example.test, one certificate written to files) and carries the schema modeline,
with the schema written beside it, so an editor completes and checks it at once.
The graph is read from the validated configuration alone: no state, no network.
"""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.errors import UsageError
from reconciler.fsutil import create_exclusive

STARTER = """\
# yaml-language-server: $schema=certform.schema.json
#
# A private CA and one certificate written as PEM files under ./out/www.
#   certform plan                  # what would change
#   certform apply                 # make it so (asks for yes)
# Then add certificates, authorities (acme, aws-acm, aws-pca, ...) and bindings
# (files, nginx, haproxy, AWS targets): see the README.

authorities:
  root:
    type: private-root
    subject: {common_name: Example Root CA, organization: Example}
    key: ec-p384
    validity: 3650d
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Example Issuing CA, organization: Example}
    validity: 1825d
    path_length: 0
    name_constraints: {permitted: [example.test]}

certificates:
  www:
    names: [www.example.test]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d

bindings:
  - certificate: www
    target: {type: files, directory: out/www}
"""


def write_starter(directory: Path) -> list[Path]:
    """Write ``certform.yaml`` (never over an existing one) and its schema; the files."""
    from reconciler.schema import write_schema

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "certform.yaml"
    try:
        create_exclusive(config, STARTER.encode(), 0o644)
    except FileExistsError:
        raise UsageError(f"{config} exists already; nothing was written") from None
    schema = directory / "certform.schema.json"
    write_schema(schema)
    return [config, schema]


def dot_graph(validated: object) -> str:
    """The configuration as Graphviz dot: authorities (boxes) sign authorities and
    certificates (ellipses), certificates are bound to targets (notes)."""
    desired = validated.desired  # type: ignore[attr-defined]
    lines = ["digraph certform {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for authority in desired.authorities:
        lines.append(f"  {_id(authority.address)} [shape=box, label={_id(authority.address)}];")
        if authority.parent:
            lines.append(f"  {_id('authority.' + authority.parent)} -> {_id(authority.address)};")
    for certificate in desired.certificates:
        lines.append(f"  {_id(certificate.address)} [shape=ellipse];")
        lines.append(f"  {_id('authority.' + certificate.issuer)} -> {_id(certificate.address)};")
    for binding in desired.bindings:
        lines.append(f"  {_id(binding.address)} [shape=note];")
        lines.append(f"  {_id('certificate.' + binding.certificate)} -> {_id(binding.address)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _id(text: str) -> str:
    """A dot ID: a double-quoted string, quotes and backslashes escaped."""
    return json.dumps(text)
