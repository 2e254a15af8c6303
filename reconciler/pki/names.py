"""Names that go into certificates: validation and RFC 5280 name constraints.

Config validation uses ``dns_name_error`` to tell users exactly what is wrong with
a name before anything is issued, and the planner uses ``name_permitted`` to
refuse names a CA's constraints would make unverifiable.  Both must agree with
what ``builder`` puts into certificates and with what verifiers (OpenSSL,
cryptography) accept.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

_LDH_LABEL = re.compile(r"[a-z0-9-]+", re.IGNORECASE)
_EXAMPLE = "e.g. 'www.example.test'"


def is_ip_address(name: str) -> bool:
    """True for an IPv4 or IPv6 literal that can go into an iPAddress SAN."""
    return _parse_ip(name) is not None


# Lowercase LDH labels, optional leading wildcard, last label starting with a letter
# (so never an IP address nor all digits).  Anything else takes the slow path.
_COMMON_HOSTNAME = re.compile(
    r"(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


def dns_name_error(name: str) -> str | None:
    """None when ``name`` can be a certificate name, else what is wrong and what is expected."""
    if not name:
        return "name is empty"
    if _COMMON_HOSTNAME.fullmatch(name) and len(name) <= MAX_NAME_LENGTH and "xn--" not in name:
        return None  # the everyday case, decided by one regex (plans check 10,000s of names)
    if is_ip_address(name):
        return None
    return _shape_error(name) or _labels_error(name.split("."))


def name_permitted(name: str, permitted: Sequence[str], excluded: Sequence[str]) -> bool:
    """RFC 5280 name-constraint check of one certificate name.

    Constraints are dNSName strings (``example.test`` covers the domain and its
    subdomains; a permitted ``.example.test`` only the subdomains) or CIDR strings,
    and only apply to names of their own type.  With no permitted constraint of
    the name's type the name is permitted; an excluded match always wins.  An
    excluded ``.example.test`` also excludes ``example.test``, because that is what
    the certificate can encode (see ``_excluded_by``).  A wildcard name is permitted
    when its non-wildcard suffix is, and excluded when any name it could stand for
    is excluded, so a wildcard never smuggles in an excluded host.
    """
    return name_checker(permitted, excluded)(name)


def name_checker(permitted: Sequence[str], excluded: Sequence[str]) -> Callable[[str], bool]:
    """``name_permitted`` under fixed constraints, for many names: the DNS constraints
    are sorted out of the CIDRs once, not once per name (validate checks 10,000s)."""
    dns_permitted, dns_excluded = _dns_constraints(permitted), _dns_constraints(excluded)

    def permitted_name(name: str) -> bool:
        ip = _parse_ip(name)
        if ip is not None:
            return _ip_permitted(ip, permitted, excluded)
        lowered = name.lower()
        if dns_permitted and not any(_in_subtree(lowered, base) for base in dns_permitted):
            return False
        return not any(_excluded_by(lowered, base) for base in dns_excluded)

    return permitted_name


def constraint_error(constraint: str) -> str | None:
    """None when ``constraint`` is a usable name constraint, else what is wrong.

    A constraint is a CIDR (``10.0.0.0/8``) or a domain, optionally with a leading
    dot; unlike a certificate name it may be a single label (``test``) but never a
    wildcard.
    """
    if "/" in constraint:
        return None if parse_cidr(constraint) else f"{constraint!r} is not a valid CIDR network"
    if is_ip_address(constraint):
        return f"an IP constraint is a CIDR network, e.g. '{constraint}/32' for one IPv4 address"
    domain = constraint.removeprefix(".")
    if not domain:
        return "constraint is empty"
    if "*" in domain:
        return "name constraints cannot contain wildcards; 'example.test' already covers subdomains"
    labels = domain.split(".")
    if "" in labels:
        return "constraint has an empty label (doubled or trailing dot)"
    errors = (_label_error(label) for label in labels)
    return _shape_error(domain) or next((e for e in errors if e), None)


def parse_cidr(constraint: str) -> IPNetwork | None:
    """The network of an IP constraint such as ``10.0.0.0/8``; None for DNS constraints."""
    if "/" not in constraint:
        return None
    try:
        return ipaddress.ip_network(constraint, strict=False)
    except ValueError:
        return None


def _parse_ip(name: str) -> IPAddress | None:
    # Zone ids ("fe80::1%eth0") are host-local and cannot be encoded in a certificate.
    if "%" in name:
        return None
    if ":" not in name and not name.replace(".", "").isdigit():
        return None  # not IPv6, and IPv4 is digits and dots only: skip the parser
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _shape_error(name: str) -> str | None:
    """Whole-name problems, checked first because they make label errors confusing."""
    if any(ch.isspace() for ch in name):
        return "name contains whitespace"
    if not name.isascii():
        return "name contains non-ASCII characters; write internationalised names in the xn-- form"
    if name.startswith("[") and name.endswith("]"):
        return "IPv6 addresses are written without brackets, e.g. '2001:db8::1'"
    if ":" in name and "%" in name:
        return "IPv6 zone ids ('%...') cannot go into a certificate; drop the '%' suffix"
    if ":" in name:
        return "':' only appears in IPv6 addresses, and this is not a valid one"
    if name.endswith("."):
        return f"name must not end with a dot; write it without the trailing dot, {_EXAMPLE}"
    if len(name) > MAX_NAME_LENGTH:
        return f"name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    return None


def _labels_error(labels: list[str]) -> str | None:
    if any(label == "" for label in labels):
        return f"name has an empty label (leading or doubled dot); expected {_EXAMPLE}"
    error = _wildcard_error(labels)
    if error:
        return error
    if len(labels) < 2:
        return f"name must be fully qualified (contain at least one dot), {_EXAMPLE}"
    host_labels = labels[1:] if labels[0] == "*" else labels
    for label in host_labels:
        error = _label_error(label)
        if error:
            return error
    if host_labels[-1].isdigit():
        return "the last label must not be all digits (nor is the name a valid IP address)"
    return None


def _wildcard_error(labels: list[str]) -> str | None:
    if not any("*" in label for label in labels):
        return None
    if labels[0] != "*" or any("*" in label for label in labels[1:]):
        return "a wildcard is only allowed as the whole leftmost label, e.g. '*.example.test'"
    if len(labels) < 3:
        return "wildcard must be followed by at least two labels, e.g. '*.example.test'"
    return None


def _label_error(label: str) -> str | None:
    if len(label) > MAX_LABEL_LENGTH:
        return f"label {label[:20]!r}... is {len(label)} characters; at most {MAX_LABEL_LENGTH}"
    if "_" in label:
        return f"label {label!r} contains '_'; only letters, digits and '-' are allowed"
    if not _LDH_LABEL.fullmatch(label):
        return f"label {label!r} has invalid characters; only letters, digits and '-' are allowed"
    if label.startswith("-") or label.endswith("-"):
        return f"label {label!r} must not start or end with '-'"
    if label.lower().startswith("xn--") and not _is_punycode(label[4:]):
        return f"label {label!r} is not valid punycode"
    return None


def _is_punycode(encoded: str) -> bool:
    try:
        decoded = encoded.encode("ascii").decode("punycode")
    except UnicodeError:
        return False
    return bool(decoded)


def _ip_permitted(ip: IPAddress, permitted: Sequence[str], excluded: Sequence[str]) -> bool:
    def networks(constraints: Sequence[str]) -> list[IPNetwork]:
        return [net for c in constraints if (net := parse_cidr(c)) is not None]

    def covers(net: IPNetwork) -> bool:
        return net.version == ip.version and ip in net

    allowed = networks(permitted)
    if allowed and not any(covers(net) for net in allowed):
        return False
    return not any(covers(net) for net in networks(excluded))


def _excluded_by(name: str, base: str) -> bool:
    """Excluded-subtree test, erring on the side of exclusion.

    Certificates cannot carry the leading-dot form (``builder`` strips the dot, as
    RFC 5280 dNSName syntax requires), so an excluded ``.example.test`` ends up
    excluding ``example.test`` itself too; judge by what the certificate will say.
    """
    stripped = base.removeprefix(".")
    return _in_subtree(name, stripped) or _wildcard_reaches(name, stripped)


def _dns_constraints(constraints: Sequence[str]) -> list[str]:
    return [c.lower() for c in constraints if parse_cidr(c) is None]


def _in_subtree(name: str, base: str) -> bool:
    """RFC 5280 dNSName matching, with the common leading-dot "subdomains only" form.

    A wildcard name is matched literally, i.e. as a subdomain of its suffix, which
    is exactly how OpenSSL and cryptography judge it.
    """
    if base in ("", "."):
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _wildcard_reaches(name: str, base: str) -> bool:
    """True when wildcard ``name`` could stand for the host ``base`` (``*.x`` vs ``a.x``)."""
    return name.startswith("*.") and base.partition(".")[2] == name[2:]
