"""A per-user cache of parsed configuration files, so that parsing YAML is paid once
per file content rather than on every plan.

Parsing is the largest part of loading a big configuration (PyYAML building its
events is most of it) and a scheduled drift job parses the same text every time.
The cache maps the SHA-256 of a file's *rendered* text (after templating: the
variables and ``env()`` reads are in it) to its parsed data, as JSON.  Only the
data is cached: the line index that error messages need is rebuilt by parsing
again, and only when a message needs a line (``LazyLineIndex``), which a valid
configuration never does.

Trust: an entry decides what certform deploys and runs, so each one carries an
HMAC-SHA-256 under a random key that only the user can read (``key`` in the
cache directory, 0600, in a 0700 directory the user owns).  Anyone who could
forge an entry could also rewrite that user's shell start-up files.  An entry
that does not verify, does not decode, or a directory with loose permissions is
ignored (and never written to): the file is parsed as if there were no cache.
Data that JSON cannot carry exactly (non-string keys, dates) is never cached.

``CERTFORM_CACHE=off`` turns it off; ``CERTFORM_CACHE_DIR`` moves it (default
``$XDG_CACHE_HOME/certform`` or ``~/.cache/certform``).  At most
``MAX_ENTRIES`` files are kept (oldest removed first).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler import __version__

MAX_ENTRIES = 32
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_FORMAT = f"certform-parse-cache 2 {__version__}".encode()
_KEY_BYTES = 32


def cached_parse(
    text: str, parse: Callable[[str], tuple[Any, Any]], text_digest: bytes | None = None
) -> tuple[Any, Any]:
    """``parse(text)`` -> (data, index), or the cached data of the same text with a
    ``LazyLineIndex`` that parses only if a line is asked for.  ``text_digest``: the
    text's SHA-256, when the caller has it already (the loader hashes every file)."""
    directory = cache_directory()
    if directory is None:
        return parse(text)
    key = cache_key(directory)
    if key is None:
        return parse(text)
    if text_digest is None:
        text_digest = text_sha256(text)
    digest = hashlib.sha256(_FORMAT + b"\0" + text_digest).hexdigest()
    entry = directory / f"{digest}.json"
    data = read_entry(entry, key)
    if data is not None:
        return data, LazyLineIndex(text, parse)
    data, index = parse(text)
    write_entry(directory, entry, key, data)
    return data, index


def text_sha256(text: str) -> bytes:
    """The SHA-256 of a configuration text (what entries are named by)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class LazyLineIndex:
    """A ``LineIndex`` built on first use, by parsing the text again (its own copy
    of the data: lookups go by path, so the copy answers for the cached data)."""

    def __init__(self, text: str, parse: Callable[[str], tuple[Any, Any]]) -> None:
        self._text = text
        self._parse = parse
        self._index: Any = None

    def line_of(self, path: Sequence[Any]) -> int | None:
        if self._index is None:
            self._index = self._parse(self._text)[1]
        return self._index.line_of(path)  # type: ignore[no-any-return]


def cache_directory() -> Path | None:
    """The cache directory if the cache is on and the directory is private to this
    user (created 0700 when missing); None otherwise."""
    if os.environ.get("CERTFORM_CACHE", "").lower() in ("off", "0", "no", "false"):
        return None
    configured = os.environ.get("CERTFORM_CACHE_DIR")
    if configured:
        directory = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = Path(base) / "certform"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return None
    return directory


def cache_key(directory: Path) -> bytes | None:
    """This user's cache key, made on first use (0600, exclusive create)."""
    path = directory / "key"
    with contextlib.suppress(FileExistsError, OSError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(descriptor, os.urandom(_KEY_BYTES))
        finally:
            os.close(descriptor)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
        key = os.read(descriptor, _KEY_BYTES + 1)
    finally:
        os.close(descriptor)
    return key if len(key) == _KEY_BYTES else None


def _mac(key: bytes, name: str, body: bytes) -> str:
    """Bound to the entry's name (the text's hash): an entry renamed to stand for
    another text does not verify."""
    return hmac.digest(key, name.encode() + b"\0" + body, "sha256").hex()


def read_entry(entry: Path, key: bytes) -> Any:
    try:
        with entry.open("rb") as file:
            raw = file.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    mac, _, body = raw.partition(b"\n")
    if len(raw) > MAX_ENTRY_BYTES or not hmac.compare_digest(
        mac, _mac(key, entry.name, body).encode()
    ):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def write_entry(directory: Path, entry: Path, key: bytes, data: Any) -> None:
    """Store ``data`` if JSON carries it exactly; never fails the command."""
    try:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > MAX_ENTRY_BYTES or json.loads(body) != data:
            return
    except (TypeError, ValueError, RecursionError):
        return
    temp = directory / f".{entry.name}.{os.getpid()}.tmp"
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(_mac(key, entry.name, body).encode() + b"\n" + body)
        os.replace(temp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return
    _evict(directory)


def _evict(directory: Path) -> None:
    """Keep the newest ``MAX_ENTRIES`` entries."""
    with contextlib.suppress(OSError):
        entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[MAX_ENTRIES:]:
            old.unlink()
