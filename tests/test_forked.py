"""Work done in a forked copy of certform (``reconciler/forked.py``): what comes back,
what a failure looks like, and a large plan's refresh split with such a copy.

The refresh tests use real files deployed by the CLI: a tampered file and a removed
directory in each half are found whichever process looked at them, in the
recorded order, and a child that dies leaves the work to this process."""

from __future__ import annotations

import os
import sys

import pytest

from reconciler import forked
from reconciler.engine import refresh as refresh_module
from reconciler.forked import ForkedFailure, fork_call
from tests.conftest import Workspace
from tests.test_crash_recovery import config

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="forking is used on Linux only"
)


def test_the_result_comes_back_from_another_process() -> None:
    call = fork_call(lambda: (os.getpid(), {"a": [1, 2]}))
    assert call is not None
    pid, value = call.result()
    assert pid != os.getpid() and value == {"a": [1, 2]}


def test_an_error_in_the_child_comes_back_with_its_traceback() -> None:
    def broken() -> None:
        raise ValueError("no such thing")

    call = fork_call(broken)
    assert call is not None
    with pytest.raises(ForkedFailure) as failure:
        call.result()
    assert not failure.value.died
    assert "ValueError: no such thing" in str(failure.value)


def test_a_child_that_dies_is_told_apart() -> None:
    call = fork_call(lambda: os._exit(3))
    assert call is not None
    with pytest.raises(ForkedFailure) as failure:
        call.result()
    assert failure.value.died and "status 3" in str(failure.value)


COUNT = 8


@pytest.fixture
def deployed(workspace: Workspace) -> Workspace:
    """Eight bindings deployed, then one file edited and one directory removed in
    each half of them."""
    workspace.write(config(COUNT))
    workspace.ok("apply", "--auto-approve")
    for edited in (1, 6):
        (workspace.root / f"out/c{edited}/cert.pem").write_text("not the certificate\n")
    for removed in (2, 5):
        for path in (workspace.root / f"out/c{removed}").iterdir():
            path.unlink()
        (workspace.root / f"out/c{removed}").rmdir()
    return workspace


def _refresh(ws: Workspace) -> dict[str, tuple[str, tuple[str, ...]]]:
    from reconciler.config.validate import load_and_validate

    with ws.opened_store() as store:
        recorded = store.read()
    validated = load_and_validate(ws.config, {})
    observed = refresh_module.refresh(validated.desired, recorded, validated.root)
    return {a: (o.status, o.details) for a, o in observed.items() if a.startswith("binding.")}


@pytest.fixture
def alone(deployed: Workspace, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple]:  # type: ignore[type-arg]
    """What one process observes (no child at any size); afterwards the split starts
    at two bindings."""
    monkeypatch.setenv("CERTFORM_MASTER_KEY", deployed.env["CERTFORM_MASTER_KEY"])
    monkeypatch.setattr(refresh_module, "FORK_AT", 10**9)
    observed = _refresh(deployed)
    monkeypatch.setattr(refresh_module, "FORK_AT", 2)
    return observed


def test_refresh_split_with_a_child_sees_what_one_process_sees(
    deployed: Workspace,
    alone: dict[str, tuple],
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    forks = []
    real_fork_call = forked.fork_call
    monkeypatch.setattr(refresh_module, "fork_call", lambda f: forks.append(f) or real_fork_call(f))
    split = _refresh(deployed)

    assert len(forks) == 1, "the second half was not given to a child"
    assert list(split.items()) == list(alone.items())  # the same, in the same order
    status = {address.rsplit("/", 1)[1]: seen[0] for address, seen in split.items()}
    assert status == {
        "c0": "in_sync", "c1": "drifted", "c2": "missing", "c3": "in_sync",
        "c4": "in_sync", "c5": "missing", "c6": "drifted", "c7": "in_sync",
    }  # fmt: skip


def test_refresh_does_the_childs_half_itself_when_the_child_dies(
    deployed: Workspace,
    alone: dict[str, tuple],
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    monkeypatch.setattr(refresh_module, "fork_call", lambda f: fork_call(lambda: os._exit(9)))
    assert _refresh(deployed) == alone
