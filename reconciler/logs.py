"""certform's log: the standard ``logging`` module, one hierarchy, on stderr.

Every module logs to ``logging.getLogger(__name__)``: the ``reconciler.*``
hierarchy (``reconciler.acme.dns01``, ``reconciler.session``...).  ``configure``
gives that hierarchy one handler on stderr at the level ``-q`` / ``-v`` / ``-vv``
or ``CERTFORM_LOG`` asks for (default: warnings).

Only certform's own loggers follow ``-v``: libraries stay at warnings, because
some log what they send at debug level (botocore logs request bodies, which for
``ImportCertificate`` hold a private key).  And a filter on the handler replaces
anything shaped like a private key PEM, and the master key's value, before a
record is written: a secret that reached a log call by mistake still stays out.
"""

from __future__ import annotations

import logging
import os
import re
import sys

ROOT_LOGGER = "reconciler"
LEVEL_ENV = "CERTFORM_LOG"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PRIVATE_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_SECRET_ENV = ("CERTFORM_MASTER_KEY",)
REDACTED = "[redacted]"


def level_for(quiet: bool, verbose: int, environ: dict[str, str] | None = None) -> int:
    """``-q`` errors only, ``-v`` info, ``-vv`` debug; else ``CERTFORM_LOG``; else warnings."""
    if quiet:
        return logging.ERROR
    if verbose:
        return logging.DEBUG if verbose > 1 else logging.INFO
    wanted = (environ if environ is not None else os.environ).get(LEVEL_ENV, "")
    return LEVELS.get(wanted.strip().lower(), logging.WARNING)


def unknown_level(environ: dict[str, str] | None = None) -> str | None:
    """A ``CERTFORM_LOG`` value that names no level, to warn about."""
    wanted = (environ if environ is not None else os.environ).get(LEVEL_ENV, "").strip()
    return wanted if wanted and wanted.lower() not in LEVELS else None


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr`` (a progress bar may redirect it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class RedactSecrets(logging.Filter):
    """Replaces private key PEMs and the master key in the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact(text: str) -> str:
    text = _PRIVATE_PEM.sub(REDACTED, text)
    for name in _SECRET_ENV:
        secret = os.environ.get(name, "").strip()
        if len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    return text


def configure(level: int) -> logging.Logger:
    """One stderr handler on the ``reconciler`` hierarchy at ``level`` (idempotent)."""
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, _Stderr):
            logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RedactSecrets())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
