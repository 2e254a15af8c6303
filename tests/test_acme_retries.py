"""The retry policy around every ACME call: badNonce as often as needed,
rateLimited and 5xx after Retry-After (or with backoff) within the deadline,
and a clear, classified error when the deadline does not allow another try.

Pebble cannot be made to rate-limit; these drive the policy with the ACME
problem documents a CA sends, and the real sleep replaced by a recorder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from acme import messages

from reconciler.acme import client as acme_client
from reconciler.acme.client import AcmeAccount, AcmeError, new_account_key_der


class _Net:
    """What ``_call`` reads of the network: the last status and Retry-After."""

    def __init__(self) -> None:
        self.last_status = 0
        self.last_retry_after: str | None = None


def _problem(code: str) -> messages.Error:
    return messages.Error(typ=f"urn:ietf:params:acme:error:{code}", detail=f"{code} detail")


def _failing(net: _Net, failures: list[tuple[str, int, str | None]]) -> Callable[[], str]:
    def action() -> str:
        if failures:
            code, status, retry_after = failures.pop(0)
            net.last_status, net.last_retry_after = status, retry_after
            raise _problem(code)
        net.last_status = 200
        return "ok"

    return action


@pytest.fixture
def account() -> AcmeAccount:
    return AcmeAccount(
        "le", {"directory": "https://ca.invalid/dir"}, Path("."), new_account_key_der()
    )


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(acme_client.time, "sleep", recorded.append)
    return recorded


def test_bad_nonce_is_retried_many_times(account: AcmeAccount, sleeps: list[float]) -> None:
    net = _Net()
    action = _failing(net, [("badNonce", 400, None)] * 5)
    assert account._call(net, "creating the order", action, time.monotonic() + 60) == "ok"
    assert sleeps == []


def test_rate_limited_waits_for_retry_after(account: AcmeAccount, sleeps: list[float]) -> None:
    net = _Net()
    action = _failing(net, [("rateLimited", 429, "3"), ("rateLimited", 429, "5")])
    assert account._call(net, "creating the order", action, time.monotonic() + 60) == "ok"
    assert sleeps == [3.0, 5.0]


def test_server_errors_back_off_exponentially(account: AcmeAccount, sleeps: list[float]) -> None:
    net = _Net()
    action = _failing(net, [("serverInternal", 500, None)] * 3)
    assert account._call(net, "finalizing", action, time.monotonic() + 60) == "ok"
    assert sleeps == [1.0, 2.0, 4.0]


def test_rate_limit_beyond_the_deadline_is_a_classified_error(
    account: AcmeAccount, sleeps: list[float]
) -> None:
    net = _Net()
    action = _failing(net, [("rateLimited", 429, "3600")])
    with pytest.raises(AcmeError) as caught:
        account._call(net, "creating the order", action, time.monotonic() + 30)
    assert caught.value.kind == "rate-limited"
    assert "le: creating the order: rateLimited: rateLimited detail" in str(caught.value)
    assert sleeps == []


def test_invalid_request_is_not_retried(account: AcmeAccount, sleeps: list[float]) -> None:
    net = _Net()
    action = _failing(net, [("rejectedIdentifier", 400, None)])
    with pytest.raises(AcmeError, match="rejectedIdentifier"):
        account._call(net, "creating the order", action, time.monotonic() + 60)
    assert sleeps == []


def test_connection_failure_is_unreachable(account: AcmeAccount) -> None:
    def action() -> str:
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")

    with pytest.raises(AcmeError) as caught:
        account._call(_Net(), "reading the directory", action, time.monotonic() + 60)
    assert caught.value.kind == "unreachable"
    assert "Connection refused" in str(caught.value)


def test_a_slow_answer_is_retried_then_unreachable(
    account: AcmeAccount, sleeps: list[float]
) -> None:
    calls = []

    def action() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise requests.exceptions.ReadTimeout("read timed out")
        return "ok"

    assert account._call(_Net(), "polling the order", action, time.monotonic() + 60) == "ok"
    assert sleeps == [1.0, 2.0]

    def never() -> str:
        raise requests.exceptions.ReadTimeout("read timed out")

    with pytest.raises(AcmeError) as caught:
        account._call(_Net(), "polling the order", never, time.monotonic() + 60)
    assert caught.value.kind == "unreachable" and "timed out" in str(caught.value)
