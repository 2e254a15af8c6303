"""One error root for certform, with the few subclasses callers act on.

The CLI turns any ``CertformError`` into a message on stderr and exit code 1;
anything else is a bug and keeps its traceback.  Messages must never contain
secret material: callers pass addresses and paths, never key bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


class CertformError(Exception):
    """Root of every error certform reports to a user."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the configuration, located for the user."""

    file: str
    line: int | None
    field: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.line and self.column:
            where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(CertformError):
    """The configuration is invalid; carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class StateError(CertformError):
    """The state store is unreadable, foreign, corrupted or from a newer version."""


class StateLockedError(StateError):
    """Another certform process holds the state lock."""


class MasterKeyError(StateError):
    """The master key is missing, malformed or not the one the state was sealed with."""


class PlanError(CertformError):
    """A saved plan cannot be applied (stale, foreign or damaged)."""


class ProviderError(CertformError):
    """A target or issuer failed while doing its part of a change."""


class DeployedButFailed(ProviderError):
    """The deploy changed the target (the files are written) but a later part of it
    failed (the post_deploy command).  The step fails, yet what is deployed is
    recorded, marked unfinished: the next plan says what failed instead of
    calling the files it finds drift, and the next apply finishes it."""

    def __init__(self, message: str, facts: dict[str, object], unfinished: str) -> None:
        super().__init__(message)
        self.facts = facts
        self.unfinished = unfinished


class UsageError(CertformError):
    """An option or argument the session cannot act on; nothing was changed."""


class AwaitingApproval(CertformError):
    """A step asked someone else to act (ACM emailed the domain owner for approval):
    it is neither done nor failed.  Apply reports it as waiting and ends without
    error; the next plan shows the step again until the approval arrived."""
