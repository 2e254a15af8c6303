"""The no-change plan's read path, made cheaper, still gives the general code's answers:
the state read a chunk at a time refuses an edited row wherever it is, the JSON scanner
decodes as ``json.loads`` does, target configs built from a template equal
``model_construct``'s, the spec-only re-issue checks skipped on equal specs could not
have found anything, and refresh still announces every remote read before any, while
observing local bindings at once, in the recorded order."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from reconciler.config.types import StrictModel
from reconciler.errors import StateError
from reconciler.issuers.aws_pca import PCA_CERTIFICATE_CHECKS
from reconciler.issuers.registry import issuer_named, issuer_types
from reconciler.model.desired import DesiredBinding, DesiredState
from reconciler.model.observed import Facts
from reconciler.model.records import BindingRecord, RecordedState, decode_json
from reconciler.policy.reissue import (
    ACM_CERTIFICATE_CHECKS,
    ACME_CERTIFICATE_CHECKS,
    AUTHORITY_CHECKS,
    CERTIFICATE_CHECKS,
    IMPORTED_CERTIFICATE_CHECKS,
    SPEC_CHECKS,
    Check,
    IssuedFacts,
    ReissueInput,
    evaluate,
)
from reconciler.providers import batch, catalog
from reconciler.providers.base import Target
from reconciler.providers.files import FilesTargetConfig
from reconciler.state import row_auth
from reconciler.state.row_auth import RowAuthenticator
from reconciler.state.sql_store import SqlStateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WHEN = "2026-01-01T00:00:00+00:00"


# -- state read, a chunk at a time -------------------------------------------------------
def _bindings_table(auth: RowAuthenticator, count: int, path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    columns = row_auth.TABLES["bindings"].columns
    conn.execute(f"CREATE TABLE bindings ({', '.join(columns)}, mac TEXT)")
    rows = []
    for i in range(count):
        row = (f"binding.files:out/{i}", f"c{i}", "{}", f"{i:04x}", '{"files": {}}', WHEN)
        rows.append((*row, auth.seal("bindings", row)))
    conn.executemany(f"INSERT INTO bindings VALUES ({', '.join('?' * 7)})", rows)
    return conn


def test_chunked_read_yields_every_row_in_order(tmp_path: Path) -> None:
    auth = RowAuthenticator(bytes(range(32)))
    conn = _bindings_table(auth, 700, tmp_path / "state.db")
    chunks = list(SqlStateStore._checked_chunks(conn, auth, {"bindings"}, "bindings"))
    assert len(chunks) > 2  # more than one chunk, so the later ones are exercised
    names = [row[0] for chunk in chunks for row in chunk]
    assert names == [f"binding.files:out/{i}" for i in range(700)]


@pytest.mark.parametrize("edited", [0, 300, 699])
def test_chunked_read_refuses_an_edited_row_in_any_chunk(edited: int, tmp_path: Path) -> None:
    auth = RowAuthenticator(bytes(range(32)))
    conn = _bindings_table(auth, 700, tmp_path / "state.db")
    conn.execute("UPDATE bindings SET serial = 'ffff' WHERE certificate = ?", (f"c{edited}",))
    address = f"binding.files:out/{edited}"
    with pytest.raises(StateError, match=rf"state tampered: {address} \(serial\)") as refused:
        for _ in SqlStateStore._checked_chunks(conn, auth, {"bindings"}, "bindings"):
            pass
    # The refused read left no statement open (its traceback, still held here, keeps
    # the reader's frame): another connection can write at once.
    assert refused.traceback
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=0)
    other.execute("DELETE FROM bindings")
    other.close()


# -- JSON columns --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"files": {"cert.pem": [741, 1795972786911025880, "ab"]}}',
        '{"a": [1, 2.5, null, true, "\\u00e9"]}',
        " {}",
        "{} ",
        "{}x",
        "",
        "nul",
        "[1, 2]",
        '"text"',
        "NaN",
    ],
)
def test_scanned_json_is_what_loads_gives(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as raised:
            decode_json(text)
        assert str(raised.value) == str(exc)
        return
    value = decode_json(text)
    assert value == expected or (value != value and expected != expected)  # NaN
    assert type(value) is type(expected)


# -- target configs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        {"type": "files", "directory": "out/a"},
        {"directory": "out/a", "post_deploy_timeout": "60s", "type": "files"},
        {"type": "files", "directory": "out/a", "post_deploy": ["x"], "pass_env": ["HOME"]},
        {"type": "files", "directory": "out/a", "not_a_field": 1},
        {"type": "files"},
    ],
)
def test_templated_target_configs_equal_model_construct(values: dict[str, Any]) -> None:
    for _ in range(2):  # the second one from the remembered template
        expected = FilesTargetConfig.model_construct(**values)
        built = catalog._construct(FilesTargetConfig, dict(values))
        assert built.__dict__ == expected.__dict__
        assert list(built.__dict__) == list(expected.__dict__)
        assert built.model_fields_set == expected.model_fields_set
        assert built == expected and repr(built) == repr(expected)
    one = catalog._construct(FilesTargetConfig, dict(values))
    other = catalog._construct(FilesTargetConfig, dict(values))
    assert one.__dict__ is not other.__dict__
    assert one.model_fields_set is not other.model_fields_set


# -- re-issue checks -----------------------------------------------------------------------
CHECK_SETS: list[tuple[Check, ...]] = [
    CERTIFICATE_CHECKS,
    ACM_CERTIFICATE_CHECKS,
    ACME_CERTIFICATE_CHECKS,
    IMPORTED_CERTIFICATE_CHECKS,
    AUTHORITY_CHECKS,
    PCA_CERTIFICATE_CHECKS,
    *(issuer_named(name).certificate_checks for name in issuer_types()),
]
SPECS: list[dict[str, Any]] = [
    {"names": ["a.test"], "issuer": "ca", "key": "ec-p256", "validity": "90d", "usages": []},
    {"names": ["a.test", "b.test"], "issuers": ["le", "zs"], "issued_by": "old", "key": "rsa"},
    {"type": "private-root", "subject": {"common_name": "R"}, "validity": "10y", "key": "ec"},
    {"fingerprint": "ab", "issuer": "imported"},
    {},
]


def _inputs(spec: dict[str, Any]) -> list[ReissueInput]:
    """Equal issued and desired specs, under every other condition a check reads."""
    inputs = []
    for days, revoked, has_key, rekeyed, key_id in [
        (1, None, True, False, "k1"),
        (80, None, True, False, "k1"),
        (100, None, True, False, "k1"),
        (1, T0, False, True, "k2"),
    ]:
        issued = IssuedFacts(dict(spec), T0, T0 + timedelta(days=90), "k1", has_key, revoked, "0a")
        now = T0 + timedelta(days=days)
        inputs.append(ReissueInput(dict(spec), "30d", issued, key_id, rekeyed, now))
    return inputs


@pytest.mark.parametrize("spec", SPECS)
def test_spec_checks_find_nothing_on_equal_specs(spec: dict[str, Any]) -> None:
    for check in SPEC_CHECKS:
        for data in _inputs(spec):
            assert check(data) is None, check.__name__


@pytest.mark.parametrize("spec", SPECS)
def test_evaluate_on_equal_specs_is_every_check_run(spec: dict[str, Any]) -> None:
    for checks in CHECK_SETS:
        for data in _inputs(spec):
            everything = [v for check in checks if (v := check(data)) is not None]
            assert evaluate(checks, data) == everything


# -- refresh -------------------------------------------------------------------------------
class ProbeConfig(StrictModel):
    type: Literal["probe"] = "probe"
    place: str
    remote: bool = False


class ProbeTarget(Target):
    """Local, or on a host (``via``) when its config says ``remote``; logs its calls."""

    type_name = "probe"
    calls: list[tuple[str, str]] = []

    def __init__(self, config: ProbeConfig, root: Path, *rest: Any) -> None:
        super().__init__(config, root)
        self.place = config.place
        if config.remote:
            self.via = ("host", None)  # type: ignore[assignment]

    def identity(self) -> str:
        return self.place

    def prefetch(self, facts: Facts) -> None:
        batch.want("host", self.place, self._fetch_many)
        self.calls.append(("prefetch", self.place))

    def _fetch_many(self, items: list[str]) -> dict[str, Any]:
        self.calls.append(("fetch", ",".join(items)))
        return {item: "stamped" for item in items}

    def read(self, facts: Facts) -> list[str]:
        self.calls.append(("read", self.place))
        return [] if facts["serial"] == "0a" else ["changed"]

    def compare(self, seen: list[str], facts: Facts) -> list[str]:
        return seen

    def deploy(self, material: Any, previous: Any = None, snapshot: Any = None) -> Facts:
        raise NotImplementedError

    def remove(self, facts: Facts) -> bool:
        raise NotImplementedError


@pytest.mark.parametrize("fork_at", [10**9, 1], ids=["inline", "half-in-a-forked-child"])
def test_refresh_prefetches_remote_reads_and_observes_in_recorded_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fork_at: int
) -> None:
    """The same with the second half observed by a forked child (``FORK_AT``): its
    local binding there (l2), its remote one (r2) handed back to this process."""
    from reconciler.engine import refresh as refresh_module
    from reconciler.engine.refresh import refresh

    monkeypatch.setattr(refresh_module, "FORK_AT", fork_at)
    monkeypatch.setitem(catalog.TARGETS, "probe", (ProbeConfig, ProbeTarget))
    monkeypatch.setattr(ProbeTarget, "calls", [])
    places = [("l1", False, "0a"), ("r1", True, "0a"), ("l2", False, "0b"), ("r2", True, "0b")]
    bindings, records = [], {}
    for place, remote, serial in places:
        target = {"type": "probe", "place": place, "remote": remote}
        address = f"binding.probe:{place}"
        bindings.append(DesiredBinding(address, "web", target))
        facts = json.dumps({"serial": serial})
        records[address] = BindingRecord(address, "web", target, serial, facts, T0)
    desired = DesiredState((), (), tuple(bindings))
    recorded = RecordedState("lineage", 1, bindings=records)

    observed = refresh(desired, recorded, tmp_path)

    assert list(observed) == [f"binding.probe:{p}" for p, _, _ in places]
    assert [observed[f"binding.probe:{p}"].status for p, _, _ in places] == [
        "in_sync",
        "in_sync",
        "drifted",
        "drifted",
    ]
    calls = ProbeTarget.calls
    assert [c for c in calls if c[0] == "prefetch"] == [("prefetch", "r1"), ("prefetch", "r2")]
    fetched = calls.index(("fetch", "r1,r2"))
    assert calls.index(("prefetch", "r2")) < fetched
    assert calls.index(("read", "r1")) > fetched and calls.index(("read", "r2")) > fetched
