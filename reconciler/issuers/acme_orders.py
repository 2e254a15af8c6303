"""ACME orders for one apply: in parallel, each with its own deadline, each
trying its issuers in order.

Keys are generated and journaled by the caller (main thread, before any order
is placed), so a crash mid-order reuses the key on the next run; this module
only talks to the CAs.  A certificate whose first issuer fails (unreachable,
rate limited, validation invalid, timeout) is tried at the next one in the
same apply, and the result says which issuer issued it and why the others did
not.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from reconciler.acme.client import AcmeAccount, AcmeIssued
from reconciler.errors import CertformError, ProviderError

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class OrderJob:
    address: str
    names: list[str]
    issuers: list[str]
    key_pem: bytes = field(repr=False)


@dataclass
class OrderOutcome:
    issued: AcmeIssued | None
    failures: list[str]

    @property
    def note(self) -> str:
        if self.issued is None:
            return ""
        if not self.failures:
            return f"issued by {self.issued.authority}"
        return f"issued by {self.issued.authority} after {'; '.join(self.failures)}"


def run_orders(
    jobs: list[OrderJob],
    accounts: dict[str, AcmeAccount],
    parallelism: int,
    report: Reporter,
) -> dict[str, OrderOutcome]:
    """Every job's outcome by address; never raises for a failed order."""
    if not jobs:
        return {}

    def run(job: OrderJob) -> OrderOutcome:
        failures: list[str] = []
        for issuer in job.issuers:
            account = accounts.get(issuer)
            if account is None:
                failures.append(f"{issuer}: no ACME account (its registration failed)")
                continue
            try:
                issued = account.issue(job.names, job.key_pem, report)
            except CertformError as exc:
                failures.append(str(exc) if str(exc).startswith(issuer) else f"{issuer}: {exc}")
                if len(job.issuers) > 1:
                    report(f"{job.address}: {failures[-1]}; trying the next issuer")
                continue
            except Exception as exc:  # a library surprise must not kill the other orders
                failures.append(f"{issuer}: unexpected {type(exc).__name__}")
                continue
            return OrderOutcome(issued, failures)
        return OrderOutcome(None, failures)

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(jobs)))) as pool:
        outcomes = list(pool.map(run, jobs))
    return {job.address: outcome for job, outcome in zip(jobs, outcomes, strict=True)}


def failure(outcome: OrderOutcome) -> ProviderError:
    return ProviderError("; ".join(outcome.failures) or "no issuer could issue")
