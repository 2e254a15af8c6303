"""A per-user cache of validated configurations, so that a scheduled plan of an
unchanged configuration skips re-validating what it validated last time.

Over 10,000 certificates, validation (the pydantic pass, the relation checks,
resolving the desired state) is the largest part of a no-change plan.  Its
result is a pure function of the parsed configuration, the directory it lives
in and certform's own code, plus the few outside inputs a check reads
(``config/inputs.py``).  So an entry is keyed by:

* the entry format and certform's code (size and mtime of every module of the
  package, and the pydantic version),
* the configuration (``RenderedConfig.digest``: each file's path and rendered
  text) and its root,

and holds the desired state as JSON, the sections besides certificates and
bindings (so that a hit parses no YAML), the secret variable names, and a stamp of
every outside input: ``lstat`` and ``stat`` (mode, owner, size, mtime, inode) of
each file, and a keyed hash of each environment variable (never its value).  A
hit needs every stamp to match now.  Results that depend on the time (imported
certificates must not be expired) are never stored, nor is a failed validation:
an invalid configuration is always validated in full and reported.

Trust is the parse cache's (``parse_cache``): the same private directory, the
same per-user key, entries that do not verify are ignored.  ``CERTFORM_CACHE=off``
turns both off.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reconciler import __version__
from reconciler.config.inputs import InputRecorder
from reconciler.config.parse_cache import cache_directory, cache_key, read_entry, write_entry
from reconciler.model.desired import (
    DesiredAuthority,
    DesiredBinding,
    DesiredCertificate,
    DesiredState,
)

_FORMAT = "certform-validated-cache 2"
_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CachedValidation:
    desired: DesiredState
    secret_names: frozenset[str]
    moves: tuple[tuple[str, str], ...]
    settings: dict[str, Any]
    """The configuration's data without ``validate.SETTINGS_ONLY_SKIPS``."""


def lookup(root: Path, digest: str) -> CachedValidation | None:
    """The cached result of validating the configuration with this digest in
    ``root``, if every outside input is as it was."""
    place = _entry(root, digest)
    if place is None:
        return None
    entry, key = place
    data = read_entry(entry, key)
    if not isinstance(data, dict):
        return None
    try:
        if data["inputs"] != _stamps(data["inputs"]["files"], data["inputs"]["environment"], key):
            return None
        moves = tuple((old, new) for old, new in data["moves"])
        names = frozenset(data["secret_names"])
        return CachedValidation(_decode(data["desired"]), names, moves, dict(data["settings"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # not an entry this code wrote: validate in full


def store(
    root: Path,
    digest: str,
    inputs: InputRecorder,
    desired: DesiredState,
    secret_names: Iterable[str],
    moves: Iterable[tuple[str, str]],
    settings: dict[str, Any],
) -> None:
    """Remember a successful validation (never one that depends on the time)."""
    if inputs.volatile:
        return
    place = _entry(root, digest)
    if place is None:
        return
    entry, key = place
    stamps = _stamps(sorted(inputs.files), sorted(inputs.environment), key)
    data = {
        "inputs": stamps,
        "secret_names": sorted(secret_names),
        "moves": [list(move) for move in moves],
        "settings": settings,
        "desired": _encode(desired),
    }
    write_entry(entry.parent, entry, key, data)


def _entry(root: Path, digest: str) -> tuple[Path, bytes] | None:
    directory = cache_directory()
    key = None if directory is None else cache_key(directory)
    if directory is None or key is None:
        return None
    name = hashlib.sha256(
        "\0".join((_FORMAT, _code_stamp(), os.fspath(root), digest)).encode(
            "utf-8", "surrogatepass"
        )
    ).hexdigest()
    return directory / f"validated-{name}.json", key


@cache
def _code_stamp() -> str:
    """What identifies the code that validated: a changed module (an upgrade, an
    edit in a development checkout) is a different code stamp."""
    import pydantic

    digest = hashlib.sha256(f"{__version__} {pydantic.VERSION}".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(_PACKAGE)} {info.st_size} {info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _stamps(files: Iterable[str], environment: Iterable[str], key: bytes) -> dict[str, Any]:
    return {
        "files": {path: _file_stamp(path) for path in files},
        "environment": {name: _env_stamp(name, key) for name in environment},
    }


def _file_stamp(path: str) -> list[int] | None:
    try:
        link, target = os.lstat(path), os.stat(path)
    except OSError:
        return None  # absent (or unreachable): a stamp of its own
    return [
        *(link.st_mode, link.st_uid, link.st_size, link.st_mtime_ns, link.st_ino),
        *(target.st_mode, target.st_uid, target.st_size, target.st_mtime_ns, target.st_ino),
    ]


def _env_stamp(name: str, key: bytes) -> str | None:
    """A keyed hash: the variable may hold a private key, which no cache file holds."""
    value = os.environ.get(name)
    if value is None:
        return None
    return hmac.digest(key, name.encode() + b"\0" + value.encode(), "sha256").hex()


# -- the desired state as JSON ---------------------------------------------------------
def _encode(desired: DesiredState) -> dict[str, list[list[Any]]]:
    return {
        "authorities": [
            [a.name, a.spec.to_json(), a.renew_before, a.prevent_destroy]
            for a in desired.authorities
        ],
        "certificates": [
            [c.name, c.spec.to_json(), c.renew_before, c.prevent_destroy, dict(c.tags)]
            for c in desired.certificates
        ],
        "bindings": [
            [b.address, b.certificate, b.target, b.acm_region, b.watch_only]
            for b in desired.bindings
        ],
    }


def _decode(data: dict[str, list[list[Any]]]) -> DesiredState:
    """Specs are parsed back into the classes the issuer registry names, as a saved
    plan's are (the class looked up once per ``issuer_type``, not per certificate)."""
    from reconciler.issuers.registry import (
        CERTIFICATE_TYPE_KEY,
        authority_spec,
        certificate_issuer,
    )

    classes: dict[Any, Any] = {}
    certificates = []
    for name, spec, renew_before, prevent_destroy, tags in data["certificates"]:
        kind = spec.get(CERTIFICATE_TYPE_KEY)
        parse = classes.get(kind)
        if parse is None:
            parse = classes[kind] = certificate_issuer(spec).certificate_spec_class.parse
        certificates.append(
            DesiredCertificate(name, parse(spec), renew_before, prevent_destroy, tags)
        )
    return DesiredState(
        authorities=tuple(
            DesiredAuthority(name, authority_spec(spec), renew_before, prevent_destroy)
            for name, spec, renew_before, prevent_destroy in data["authorities"]
        ),
        certificates=tuple(certificates),
        bindings=tuple(DesiredBinding(*fields) for fields in data["bindings"]),
    )
