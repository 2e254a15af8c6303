"""Bad configurations for ``test_bad_input.py``, and how to check what certform said.

Every bad config is the product's own good example with one (or a few) edits.
The expected line of each problem is computed from a *marker*: a substring that
occurs on exactly one line of the bad text, so editing a case never leaves a
stale line number behind.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOOD = """\
authorities:
  root:
    type: private-root
    subject: {common_name: Example Root CA, organization: Example}
    key: ec-p384
    validity: 3650d
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Example Issuing CA}
    validity: 1825d
    path_length: 0
    name_constraints: {permitted: [example.test]}
certificates:
  web:
    names: [web.example.test, "*.web.example.test"]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
    tags: {team: web}
bindings:
  - certificate: web
    target: {type: files, directory: out/web}
"""

CONFIG = "certform.yaml"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_MASTER_KEY = base64.b64encode(bytes(range(100, 132))).decode()


# --- building cases -------------------------------------------------------------------


def derive(*edits: tuple[str, str], base: str = GOOD) -> str:
    """``base`` with each ``(old, new)`` applied; ``old`` must occur exactly once."""
    text = base
    for old, new in edits:
        count = text.count(old)
        assert count == 1, f"edit target {old!r} occurs {count} times"
        text = text.replace(old, new)
    return text


def line_of(text: str, marker: str) -> int:
    """1-based number of the only line of ``text`` containing ``marker``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(hits) == 1, f"marker {marker!r} is on lines {hits}, expected exactly one"
    return hits[0]


@dataclass(frozen=True)
class Expected:
    """One problem certform must report: where (file, marker line) and what."""

    marker: str
    field: str | None
    phrases: tuple[str, ...]
    file: str = CONFIG
    line_offset: int = 0


@dataclass(frozen=True)
class BadCase:
    """A bad configuration (one file or several) and the problems it must produce."""

    id: str
    files: Mapping[str, str]
    expected: tuple[Expected, ...]
    args: tuple[str, ...] = ("-c", CONFIG)
    problem_count: int | None = None

    @property
    def text(self) -> str:
        """The single config file's text (single-file cases only)."""
        assert list(self.files) == [CONFIG], self.id
        return self.files[CONFIG]

    def expected_line(self, expected: Expected) -> int:
        return line_of(self.files[expected.file], expected.marker) + expected.line_offset


def case(
    id: str,
    text: str,
    marker: str,
    field: str | None,
    *phrases: str,
    line_offset: int = 0,
    args: Sequence[str] = (),
) -> BadCase:
    """A single-file case with one expected problem."""
    expected = Expected(marker, field, tuple(phrases), line_offset=line_offset)
    return BadCase(id, {CONFIG: text}, (expected,), ("-c", CONFIG, *args))


def _acme(
    *,
    solvers: str = "      - dns01: {command: {present: [/bin/true], cleanup: [/bin/true]}}\n",
    contact: str = "mailto:ops@example.test",
    terms: str = "true",
    key: str = "ec-p256",
    issuer: str = "le",
) -> str:
    """GOOD with an ACME authority ``le`` issuing ``web``."""
    authority = (
        "  le:\n"
        "    type: acme\n"
        "    directory: https://acme.example.test/directory\n"
        f"    contact: [{contact}]\n"
        f"    terms_of_service_agreed: {terms}\n"
        "    solvers:\n" + solvers
    )
    return derive(
        ("certificates:\n", authority + "certificates:\n"),
        ("    issuer: issuing\n    key: ec-p256\n", f"    issuer: {issuer}\n    key: {key}\n"),
    )


def _yaml_syntax() -> BadCase:
    text = derive(("    issuer: issuing\n", "    issuer: issuing: oops\n"))
    return case(
        "yaml-syntax-error",
        text,
        "issuer: issuing: oops",
        None,
        "invalid YAML: mapping values are not allowed",
        "hint: quote a value that contains ': '",
    )


def _yaml_unclosed_flow() -> BadCase:
    # The parser notices the missing '}' on the next line and says where the mapping began.
    text = derive(("    tags: {team: web}\n", "    tags: {team: web\n"))
    started = line_of(text, "tags: {team: web")
    return case(
        "yaml-unclosed-flow-mapping",
        text,
        "tags: {team: web",
        None,
        "did not find expected ',' or '}'",
        f"started on line {started}",
        line_offset=1,
    )


def _duplicate_key() -> BadCase:
    text = derive(("    key: ec-p256\n", "    key: ec-p256\n    key: rsa-2048\n"))
    first = line_of(text, "key: ec-p256")
    return case(
        "duplicate-key",
        text,
        "key: rsa-2048",
        None,
        "duplicate key 'key'",
        f"first on line {first}",
    )


def _directory_duplicate() -> BadCase:
    second = "certificates:\n  web:\n    names: [other.example.test]\n    issuer: issuing\n"
    files = {"conf/a.yaml": GOOD, "conf/b.yaml": second}
    a_line = line_of(GOOD, "  web:")
    b_line = line_of(second, "  web:")
    expected = Expected(
        "  web:",
        "certificates.web",
        ("declared twice", f"a.yaml:{a_line}", f"b.yaml:{b_line}"),
        file="conf/b.yaml",
    )
    return BadCase("same-certificate-in-two-files", files, (expected,), ("-c", "conf"))


_CYCLE = """\
  ca-a:
    type: private-subordinate
    parent: ca-b
    subject: {common_name: CA A}
    path_length: 3
  ca-b:
    type: private-subordinate
    parent: ca-a
    subject: {common_name: CA B}
    path_length: 3
certificates:
"""

_UNDER_PATH_LENGTH_0 = """\
  leaf-ca:
    type: private-subordinate
    parent: issuing
    subject: {common_name: Leaf CA}
    validity: 365d
certificates:
"""


def _one_name(name: str) -> str:
    return derive(('names: [web.example.test, "*.web.example.test"]', f'names: ["{name}"]'))


def _second_binding(target: str) -> str:
    return GOOD + f"  - certificate: web\n    target: {target}\n"


VALIDATE_CASES: tuple[BadCase, ...] = (
    _yaml_syntax(),
    _yaml_unclosed_flow(),
    case(
        "top-level-not-a-mapping",
        "- just\n- a list\n",
        "- just",
        None,
        "the top level must be a mapping",
    ),
    case(
        "unknown-top-level-key",
        derive(("certificates:\n", "colour: blue\ncertificates:\n")),
        "colour: blue",
        "colour",
        "unknown key 'colour'",
        "expected one of:",
        "authorities",
        "bindings",
        "certificates",
    ),
    case(
        "unknown-certificate-key",
        derive(("    tags: {team: web}\n", "    tags: {team: web}\n    colour: blue\n")),
        "colour: blue",
        "certificates.web.colour",
        "unknown key 'colour'",
        "expected one of:",
        "issuer",
        "names",
        "renew_before",
        "validity",
    ),
    case(
        "unknown-subject-key-flow",
        derive(
            ("{common_name: Example Issuing CA}", "{common_name: Example Issuing CA, email: x}")
        ),
        "Example Issuing CA",
        "authorities.issuing.subject.email",
        "unknown key 'email'",
        "expected one of:",
        "common_name",
        "organization",
    ),
    case(
        "unknown-subject-key-block",
        derive(
            (
                "    subject: {common_name: Example Root CA, organization: Example}\n",
                "    subject:\n      common_name: Example Root CA\n"
                "      organization: Example\n      email: root@example.test\n",
            )
        ),
        "email: root@example.test",
        "authorities.root.subject.email",
        "unknown key 'email'",
        "expected one of:",
        "common_name",
    ),
    case(
        "unknown-target-key",
        derive(
            (
                "    target: {type: files, directory: out/web}\n",
                "    target:\n      type: files\n      directory: out/web\n      mode: '0644'\n",
            )
        ),
        "mode: '0644'",
        "bindings[0].target.mode",
        "unknown key 'mode'",
        "expected one of:",
        "directory",
        "type",
    ),
    case(
        "names-as-string",
        derive(('names: [web.example.test, "*.web.example.test"]', "names: web.example.test")),
        "names: web.example.test",
        "certificates.web.names",
        "valid list",
        "got str 'web.example.test'",
    ),
    case(
        "validity-as-number",
        derive(("validity: 90d", "validity: 90")),
        "validity: 90",
        "certificates.web.validity",
        "valid string",
        "got int 90",
    ),
    case(
        "bad-duration-unit",
        derive(("validity: 90d", "validity: 90x")),
        "validity: 90x",
        "certificates.web.validity",
        "invalid duration '90x'",
        "expected a number with a unit",
    ),
    case(
        "bad-renew-before",
        derive(("renew_before: 30d", "renew_before: 30%x")),
        "renew_before: 30%x",
        "certificates.web.renew_before",
        "invalid renew_before '30%x'",
        "such as 30d",
        "such as 33%",
    ),
    case(
        "wildcard-not-leftmost",
        derive(
            (
                'names: [web.example.test, "*.web.example.test"]',
                'names:\n      - web.example.test\n      - "a.*.example.test"',
            )
        ),
        "a.*.example.test",
        "certificates.web.names[1]",
        "wildcard is only allowed as the whole leftmost label",
    ),
    case(
        "partial-wildcard-label",
        _one_name("w*.example.test"),
        "w*.example.test",
        "certificates.web.names[0]",
        "wildcard is only allowed as the whole leftmost label",
    ),
    case(
        "dns-name-underscore",
        _one_name("bad_name.example.test"),
        "bad_name.example.test",
        "certificates.web.names[0]",
        "'bad_name'",
        "only letters, digits and '-'",
    ),
    case(
        "dns-name-leading-hyphen",
        _one_name("-a.example.test"),
        "-a.example.test",
        "certificates.web.names[0]",
        "'-a'",
        "must not start or end with '-'",
    ),
    case(
        "ipv4-out-of-range",
        _one_name("300.1.2.3"),
        "300.1.2.3",
        "certificates.web.names[0]",
        "nor is the name a valid IP address",
    ),
    case(
        "ipv6-garbage",
        _one_name("2001:db8::zz"),
        "2001:db8::zz",
        "certificates.web.names[0]",
        "IPv6",
        "not a valid one",
    ),
    case(
        "outside-name-constraints",
        derive(("names: [web.example.test, ", "names: [web.example.test, web.other.test, ")),
        "web.other.test",
        "certificates.web.names[1]",
        "'web.other.test' is not allowed by the name constraints of authority 'issuing'",
        "permitted: example.test",
    ),
    case(
        "renew-before-equals-validity",
        derive(("renew_before: 30d", "renew_before: 90d")),
        "renew_before: 90d",
        "certificates.web.renew_before",
        "must be shorter than the validity 90d",
    ),
    case(
        "renew-before-100-percent",
        derive(("renew_before: 30d", "renew_before: 100%")),
        "renew_before: 100%",
        "certificates.web.renew_before",
        "'100%'",
        "between 0% and 100%",
    ),
    case(
        "unknown-issuer",
        derive(("issuer: issuing", "issuer: nosuch")),
        "issuer: nosuch",
        "certificates.web.issuer",
        "unknown authority 'nosuch'",
        "expected one of: issuing, root",
    ),
    case(
        "unknown-parent",
        derive(("parent: root", "parent: nosuch")),
        "parent: nosuch",
        "authorities.issuing.parent",
        "unknown authority 'nosuch'",
        "expected one of: issuing, root",
    ),
    case(
        "parent-cycle",
        derive(("certificates:\n", _CYCLE)),
        "parent: ca-b",
        "authorities.ca-a.parent",
        "CA parent cycle: ca-a → ca-b → ca-a",
    ),
    case(
        "subordinate-under-path-length-0",
        derive(("certificates:\n", _UNDER_PATH_LENGTH_0)),
        "parent: issuing",
        "authorities.leaf-ca.parent",
        "'issuing' has path_length 0",
        "cannot sign a subordinate CA",
    ),
    case(
        "binding-unknown-certificate",
        derive(("- certificate: web", "- certificate: nosuch")),
        "certificate: nosuch",
        "bindings[0].certificate",
        "unknown certificate 'nosuch'",
        "expected one of: web",
    ),
    case(
        "duplicate-target-same-directory",
        _second_binding("{directory: out/web, type: files}"),
        "{directory: out/web, type: files}",
        "bindings[1].target",
        "same files target (out/web) as bindings[0]",
    ),
    case(
        "duplicate-target-spelled-differently",
        _second_binding("{type: files, directory: ./out/web/}"),
        "./out/web/",
        "bindings[1].target",
        "same files target (out/web) as bindings[0]",
    ),
    case(
        "unknown-target-type",
        derive(("{type: files, directory: out/web}", "{type: s3, directory: out/web}")),
        "type: s3",
        "bindings[0].target",
        "unknown type 's3'; expected one of: aws-alb-listener, aws-apigateway, aws-cloudfront, "
        "files, haproxy, nginx, tls-endpoint",
    ),
    case(
        "unknown-key-algorithm",
        derive(("key: ec-p256", "key: ec-p521")),
        "key: ec-p521",
        "certificates.web.key",
        "'ec-p256'",
        "'ed25519'",
    ),
    _duplicate_key(),
    _directory_duplicate(),
    case(
        "template-undefined-variable",
        derive(("directory: out/web}", 'directory: "out/{{ site }}"}')),
        "{{ site }}",
        "template",
        "undefined template variable",
        "'site' is undefined",
        "--var",
    ),
    case(
        "template-sandbox-escape",
        derive(("common_name: Example Root CA,", "common_name: \"{{ ''.__class__.__mro__ }}\",")),
        "__mro__",
        "template",
        "unsafe attribute",
        "sandbox",
    ),
    case(
        "template-syntax-error",
        derive(("    tags: {team: web}\n", "    tags: {team: web}\n{% if site %}\n")),
        "{% if site %}",
        "template",
        "template syntax error",
        "endif",
        args=("--var", "site=x"),
    ),
    case(
        "target-with-wrong-provider-type",
        derive(
            ("bindings:\n", "providers:\n  edge: {type: nginx}\nbindings:\n"),
            (
                "{type: files, directory: out/web}",
                "{type: haproxy, provider: edge, sni: [web.example.test]}",
            ),
        ),
        "type: haproxy",
        "bindings[0].target.provider",
        "provider 'edge' is of type nginx; haproxy needs haproxy",
    ),
    case(
        "haproxy-bad-sni-filter",
        derive(
            (
                "bindings:\n",
                "providers:\n  edge: {type: haproxy, socket: /run/h.sock, crt_dir: c, "
                "crt_list: l}\nbindings:\n",
            ),
            (
                "{type: files, directory: out/web}",
                '{type: haproxy, provider: edge, sni: ["web example"]}',
            ),
        ),
        "web example",
        "bindings[0].target.sni[0]",
        "'web example' is not an SNI filter",
    ),
    case(
        "nginx-snippet-template-missing",
        derive(
            ("bindings:\n", "providers:\n  web: {type: nginx}\nbindings:\n"),
            (
                "{type: files, directory: out/web}",
                "{type: nginx, provider: web, certificate_path: t/w.crt, key_path: t/w.key, "
                "snippet: {template: no-such.j2, path: t/w.conf}}",
            ),
        ),
        "no-such.j2",
        "bindings[0].target.snippet.template",
        "cannot read",
        "no-such.j2",
    ),
    case(
        "endpoint-ca-bundle-missing",
        derive(
            (
                "bindings:\n",
                "endpoints:\n  partner: {host: partner.example.net, ca_bundle: roots.pem}\n"
                "bindings:\n",
            )
        ),
        "ca_bundle: roots.pem",
        "endpoints.partner.ca_bundle",
        "cannot read",
        "roots.pem",
    ),
    case(
        "acme-wildcard-without-dns01",
        _acme(solvers="      - http01: {webroot: /var/www}\n"),
        '"*.web.example.test"',
        "certificates.web.names[1]",
        "'*.web.example.test' needs a dns-01 solver",
        "authorities.le.solvers",
    ),
    case(
        "acme-contact-not-mailto",
        _acme(contact="https://example.test/ops"),
        "contact: [https://example.test/ops]",
        "authorities.le.contact",
        "contact entries must be email addresses (mailto: optional)",
    ),
    case(
        "acme-terms-not-agreed",
        _acme(terms="false"),
        "terms_of_service_agreed: false",
        "authorities.le",
        "terms_of_service_agreed must be true",
        line_offset=-4,
    ),
    case(
        "acme-ed25519-key",
        _acme(key="ed25519"),
        "key: ed25519",
        "certificates.web.key",
        "ACME CAs issue certificates for",
        "not ed25519",
    ),
    case(
        "fallback-list-with-private-ca",
        _acme(issuer="[le, issuing]"),
        "issuer: [le, issuing]",
        "certificates.web.issuer[1]",
        "fallback issuer lists take ACME authorities only",
    ),
    case(
        "policy-domain-not-allowed",
        derive(("certificates:\n", "policy: {allowed_domains: [example.com]}\ncertificates:\n")),
        "names: [web.example.test",
        "certificates.web.names[0]",
        "'web.example.test' is outside policy.allowed_domains (example.com)",
    ),
    case(
        "policy-key-not-allowed",
        derive(("certificates:\n", "policy: {allowed_keys: [ec-p384]}\ncertificates:\n")),
        "    key: ec-p256",
        "certificates.web.key",
        "ec-p256 is not in policy.allowed_keys (ec-p384)",
    ),
    case(
        "policy-max-validity",
        derive(("certificates:\n", "policy: {max_validity: 30d}\ncertificates:\n")),
        "validity: 90d",
        "certificates.web.validity",
        "validity 90d exceeds policy.max_validity 30d",
    ),
)


def _several_shape_errors() -> BadCase:
    text = derive(
        ("{common_name: Example Issuing CA}", "{common_name: Example Issuing CA, email: x}"),
        ('names: [web.example.test, "*.web.example.test"]', "names: [bad_name.example.test]"),
        ("key: ec-p256", "key: ec-p521"),
        ("validity: 90d", "validity: 90x"),
        ("{type: files, directory: out/web}", "{type: files, directory: out/web, mode: x}"),
    )
    expected = (
        Expected("Example Issuing CA", "authorities.issuing.subject.email", ("unknown key",)),
        Expected("bad_name", "certificates.web.names[0]", ("'_'",)),
        Expected("ec-p521", "certificates.web.key", ("'ec-p256'",)),
        Expected("90x", "certificates.web.validity", ("invalid duration",)),
        Expected("mode: x", "bindings[0].target.mode", ("unknown key 'mode'",)),
    )
    return BadCase("several-shape-errors", {CONFIG: text}, expected, problem_count=5)


def _several_relation_errors() -> BadCase:
    text = derive(
        ("names: [web.example.test, ", "names: [web.other.test, "),
        ("renew_before: 30d", "renew_before: 90d"),
        ("validity: 1825d", "validity: 1825d\n    renew_before: 2000d"),
    )
    text += "  - certificate: nosuch\n    target: {type: files, directory: ./out/web/}\n"
    expected = (
        Expected("web.other.test", "certificates.web.names[0]", ("name constraints",)),
        Expected("renew_before: 90d", "certificates.web.renew_before", ("shorter than",)),
        Expected("renew_before: 2000d", "authorities.issuing.renew_before", ("shorter than",)),
        Expected("certificate: nosuch", "bindings[1].certificate", ("unknown certificate",)),
        Expected("./out/web/", "bindings[1].target", ("same files target",)),
    )
    return BadCase("several-relation-errors", {CONFIG: text}, expected, problem_count=5)


def _shape_and_relation_errors() -> BadCase:
    text = derive(("validity: 90d", "validity: 90x"), ("issuer: issuing", "issuer: nosuch"))
    expected = (
        Expected("90x", "certificates.web.validity", ("invalid duration",)),
        Expected("issuer: nosuch", "certificates.web.issuer", ("unknown authority 'nosuch'",)),
    )
    return BadCase("shape-and-relation-errors", {CONFIG: text}, expected, problem_count=2)


MULTI_CASES: tuple[BadCase, ...] = (
    _several_shape_errors(),
    _several_relation_errors(),
    _shape_and_relation_errors(),
)

#: Kinds of bad input re-run through ``apply`` against an applied state.
APPLY_CASE_IDS: tuple[str, ...] = (
    "yaml-syntax-error",
    "acme-wildcard-without-dns01",
    "haproxy-bad-sni-filter",
    "policy-domain-not-allowed",
    "unknown-target-key",
    "names-as-string",
    "bad-duration-unit",
    "wildcard-not-leftmost",
    "outside-name-constraints",
    "renew-before-equals-validity",
    "unknown-issuer",
    "parent-cycle",
    "binding-unknown-certificate",
    "duplicate-target-same-directory",
    "duplicate-target-spelled-differently",
    "duplicate-key",
    "template-undefined-variable",
    "template-sandbox-escape",
)


# --- running certform -----------------------------------------------------------------


def certform_env(master_key: str | None = MASTER_KEY) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CERTFORM_MASTER_KEY", None)
    if master_key is not None:
        env["CERTFORM_MASTER_KEY"] = master_key
    return env


def run_certform(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("certform")
    assert exe, "the certform console script is not installed (pip install -e .)"
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        env=dict(env) if env is not None else certform_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# --- checking what certform said ------------------------------------------------------

_ISSUE = re.compile(r"^\s+(?P<file>[^\s:][^:]*):(?P<line>\d+)(?::(?P<column>\d+))?: (?P<rest>.*)$")


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    rest: str


def reported_issues(stderr: str) -> list[Issue]:
    """The ``FILE:LINE: [FIELD:] message`` lines certform printed."""
    issues = []
    for text in stderr.splitlines():
        match = _ISSUE.match(text)
        if match:
            issues.append(Issue(match["file"], int(match["line"]), match["rest"]))
    return issues


def issue_matches(issue: Issue, case: BadCase, expected: Expected) -> bool:
    if Path(issue.file).name != Path(expected.file).name:
        return False
    if issue.line != case.expected_line(expected):
        return False
    message = issue.rest
    if expected.field is not None:
        if not message.startswith(f"{expected.field}: "):
            return False
        message = message[len(expected.field) + 2 :]
    return all(phrase in message for phrase in expected.phrases)


def assert_reports(result: subprocess.CompletedProcess[str], case: BadCase) -> None:
    """Exit code 1, no traceback, and every expected problem reported in one issue line."""
    context = (
        f"[{case.id}] exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert result.returncode == 1, context
    assert "Traceback" not in result.stderr, context
    assert "the configuration is invalid" in result.stderr, context
    issues = reported_issues(result.stderr)
    assert case.expected, f"[{case.id}] expects no problem, so it would check nothing"
    for expected in case.expected:
        where = f"{Path(expected.file).name}:{case.expected_line(expected)}"
        want = f"{where}: {expected.field or '<no field>'}: {' ... '.join(expected.phrases)}"
        assert any(issue_matches(i, case, expected) for i in issues), (
            f"missing issue {want}\n{context}"
        )
    if case.problem_count is not None:
        assert f"({case.problem_count} problem(s))" in result.stderr, context


# --- snapshots of everything apply could change ---------------------------------------


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, list[tuple[Any, ...]]]
    serial: str
    files: dict[str, tuple[bytes, int, int]] = field(repr=False)
    directories: tuple[str, ...]


def state_rows(db: Path) -> tuple[dict[str, list[tuple[Any, ...]]], str]:
    """Every row of every table but ``lock`` (sorted), and the meta serial."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "lock"
        ]
        tables = {
            name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in sorted(names)
        }
        (serial,) = conn.execute("SELECT value FROM meta WHERE key = 'serial'").fetchone()
    finally:
        conn.close()
    return tables, serial


def tree(root: Path) -> tuple[dict[str, tuple[bytes, int, int]], tuple[str, ...]]:
    """Bytes, mode and mtime of every file under ``root``, and its directories."""
    files: dict[str, tuple[bytes, int, int]] = {}
    directories: list[str] = []
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        relative = path.relative_to(root).as_posix()
        if path.is_dir():
            directories.append(f"{relative} {stat.st_mode:o}")
        else:
            files[relative] = (path.read_bytes(), stat.st_mode, stat.st_mtime_ns)
    return files, tuple(directories)


def snapshot(workdir: Path) -> Snapshot:
    tables, serial = state_rows(workdir / ".certform" / "state.db")
    files, directories = tree(workdir / "out")
    return Snapshot(tables, serial, files, directories)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
