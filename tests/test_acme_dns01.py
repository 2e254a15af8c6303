"""dns-01 record writers against a real BIND 9 taking TSIG-signed RFC 2136 updates."""

from __future__ import annotations

import base64
import logging
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.acme.dns01 import (
    CommandWriter,
    DnsChallengeError,
    DnsChallengeWriter,
    Rfc2136Writer,
    challenge_name,
    parse_server,
)
from reconciler.errors import ProviderError
from tests.bind_lab import BindLab, bind_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bind_binary() is None, reason="named (BIND 9) is not installed: apt-get install bind9"
    ),
]

RECORDS = {
    "example.test": [
        "_acme-challenge.delegated CNAME delegated.validation.test.",
        "_acme-challenge.chain CNAME hop1.validation.test.",
        "_acme-challenge.loop CNAME loop-a",
        "loop-a CNAME loop-b",
        "loop-b CNAME _acme-challenge.loop",
        "_acme-challenge.elsewhere CNAME x.not-served.invalid.",
    ],
    "validation.test": [
        "hop1 CNAME hop2",
        "hop2 CNAME final.validation.test.",
    ],
}
VALUE_A = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
VALUE_B = "LPsGQHjW8xF8ZJv2mGW3lsf0uJZ4rNm0R8hUp5CqvNs"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[BindLab]:
    bind = BindLab.start(tmp_path / "bind", records=RECORDS)
    try:
        yield bind
    finally:
        bind.stop()


def writer_for(lab: BindLab, **overrides: object) -> Rfc2136Writer:
    options: dict[str, object] = {
        "tsig_key_name": lab.tsig_key_name,
        "tsig_algorithm": lab.tsig_algorithm,
        "tsig_secret": lab.tsig_secret,
        "timeout": 2.0,
    }
    options.update(overrides)
    return Rfc2136Writer("127.0.0.1", lab.port, **options)  # type: ignore[arg-type]


def test_present_wait_and_cleanup(lab: BindLab) -> None:
    writer = writer_for(lab)
    assert isinstance(writer, DnsChallengeWriter)
    record = writer.record_name("www.example.test")
    assert record == "_acme-challenge.www.example.test"

    writer.present(record, VALUE_A)
    writer.wait_visible(record, VALUE_A, timeout=2.0)
    assert lab.txt(record) == [VALUE_A]

    writer.cleanup(record, VALUE_A)
    assert lab.txt(record) == []


def test_wildcard_and_apex_values_coexist_and_cleanup_removes_one(lab: BindLab) -> None:
    writer = writer_for(lab, zone="example.test")
    record = writer.record_name("*.example.test")
    assert record == writer.record_name("example.test") == "_acme-challenge.example.test"

    writer.present(record, VALUE_A)
    writer.present(record, VALUE_B)
    writer.present(record, VALUE_B)  # idempotent: still one copy
    writer.wait_visible(record, VALUE_A, timeout=2.0)
    writer.wait_visible(record, VALUE_B, timeout=2.0)
    assert lab.txt(record) == sorted([VALUE_A, VALUE_B])

    writer.cleanup(record, VALUE_A)
    assert lab.txt(record) == [VALUE_B]
    writer.cleanup(record, VALUE_B)
    assert lab.txt(record) == []


def test_concurrent_presents_at_one_name_all_land(lab: BindLab) -> None:
    writer = writer_for(lab)
    record = writer.record_name("busy.example.test")
    values = [f"value-{i}" for i in range(8)]
    errors: list[BaseException] = []

    def present(value: str) -> None:
        try:
            writer.present(record, value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=present, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert lab.txt(record) == sorted(values)


def test_cname_delegation_writes_at_the_target_in_the_other_zone(lab: BindLab) -> None:
    writer = writer_for(lab, zone="example.test")  # the target is outside: found by SOA
    record = writer.record_name("delegated.example.test")
    assert record == "delegated.validation.test"

    writer.present(record, VALUE_A)
    writer.wait_visible(record, VALUE_A, timeout=2.0)
    assert lab.txt("delegated.validation.test") == [VALUE_A]
    assert lab.txt("_acme-challenge.delegated.example.test") == []  # still just the CNAME

    writer.cleanup(record, VALUE_A)
    assert lab.txt("delegated.validation.test") == []


def test_cname_chain_is_followed_to_its_end(lab: BindLab) -> None:
    writer = writer_for(lab)
    assert writer.record_name("*.chain.example.test") == "final.validation.test"


def test_cname_loop_is_an_error(lab: BindLab) -> None:
    writer = writer_for(lab)
    with pytest.raises(DnsChallengeError, match="CNAME loop") as caught:
        writer.record_name("loop.example.test")
    assert "_acme-challenge.loop.example.test" in str(caught.value)


def test_cname_into_a_zone_the_server_does_not_serve(lab: BindLab) -> None:
    writer = writer_for(lab)
    record = writer.record_name("elsewhere.example.test")
    assert record == "x.not-served.invalid"
    with pytest.raises(DnsChallengeError, match="zone not found") as caught:
        writer.present(record, VALUE_A)
    assert lab.address in str(caught.value)
    assert "x.not-served.invalid" in str(caught.value)


def test_writing_beside_a_cname_is_refused_not_silently_dropped(lab: BindLab) -> None:
    writer = writer_for(lab)
    with pytest.raises(DnsChallengeError, match="a CNAME exists"):
        writer.present("_acme-challenge.delegated.example.test", VALUE_A)


@pytest.mark.parametrize("wrong", ["secret", "key name"])
def test_wrong_tsig_credentials_are_reported_and_nothing_is_written(
    lab: BindLab, wrong: str
) -> None:
    bad_secret = base64.b64encode(b"\x01" * 32).decode()
    override = {"tsig_secret": bad_secret} if wrong == "secret" else {"tsig_key_name": "nobody"}
    writer = writer_for(lab, **override)
    record = "_acme-challenge.www.example.test"
    with pytest.raises(DnsChallengeError) as caught:
        writer.present(record, VALUE_A)
    message = str(caught.value)
    assert "refused the TSIG-signed update" in message
    assert lab.address in message and "zone example.test" in message and record in message
    assert "\n" not in message
    assert lab.tsig_secret not in message and bad_secret not in message
    assert lab.txt(record) == []
    assert isinstance(caught.value, ProviderError)


def test_a_configured_zone_the_server_does_not_serve(lab: BindLab) -> None:
    writer = writer_for(lab, zone="nothere.test")
    with pytest.raises(DnsChallengeError, match="NOTAUTH: it does not serve this zone") as caught:
        writer.present("_acme-challenge.www.nothere.test", VALUE_A)
    assert "zone nothere.test" in str(caught.value)


def test_stopped_server_fails_quickly(lab: BindLab) -> None:
    writer = writer_for(lab, timeout=0.5)
    lab.stop()
    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match=r"refused|unreachable|timeout") as caught:
        writer.present("_acme-challenge.www.example.test", VALUE_A)
    assert time.monotonic() - started < 1.5
    assert lab.address in str(caught.value)

    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match="not visible"):
        writer.wait_visible("_acme-challenge.www.example.test", VALUE_A, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_stopped_server_fails_quickly_with_an_explicit_zone(lab: BindLab) -> None:
    writer = writer_for(lab, zone="example.test", timeout=0.5)
    lab.stop()
    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match="unreachable") as caught:
        writer.cleanup("_acme-challenge.www.example.test", VALUE_A)
    assert time.monotonic() - started < 1.5
    assert "zone example.test" in str(caught.value)


def test_wait_visible_times_out_saying_what_was_seen(lab: BindLab) -> None:
    writer = writer_for(lab)
    record = "_acme-challenge.www.example.test"
    writer.present(record, VALUE_B)
    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match=r"not visible after 0\.3 s") as caught:
        writer.wait_visible(record, VALUE_A, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    message = str(caught.value)
    assert VALUE_B in message and lab.address in message and record in message


def test_cleanup_of_a_value_that_is_not_there_succeeds(lab: BindLab) -> None:
    writer = writer_for(lab)
    record = "_acme-challenge.www.example.test"
    writer.cleanup(record, VALUE_A)  # nothing at that name at all
    writer.present(record, VALUE_B)
    writer.cleanup(record, VALUE_A)  # another value there: it stays
    writer.cleanup(record, VALUE_B)
    writer.cleanup(record, VALUE_B)  # twice
    assert lab.txt(record) == []


def test_the_secret_never_shows(lab: BindLab, caplog: pytest.LogCaptureFixture) -> None:
    writer = writer_for(lab)
    with caplog.at_level(logging.DEBUG):
        writer.present("_acme-challenge.www.example.test", VALUE_A)
        writer.cleanup("_acme-challenge.www.example.test", VALUE_A)
    assert caplog.records and lab.tsig_secret not in caplog.text
    assert lab.tsig_secret not in repr(writer)
    assert lab.tsig_secret not in repr(vars(writer))
    assert lab.tsig_secret not in str(vars(writer))
    assert lab.tsig_key_name in repr(writer)
    assert lab.tsig_secret not in repr(lab)

    not_base64 = "not base64 at all!!"
    with pytest.raises(DnsChallengeError, match="not valid base64") as caught:
        writer_for(lab, tsig_secret=not_base64)
    assert not_base64 not in str(caught.value)

    with pytest.raises(DnsChallengeError, match="unsupported TSIG algorithm") as caught:
        writer_for(lab, tsig_algorithm="hmac-sha3")
    assert lab.tsig_secret not in str(caught.value)


def test_other_tsig_algorithm_mismatch_is_a_tsig_error(lab: BindLab) -> None:
    writer = writer_for(lab, tsig_algorithm="hmac-sha512")
    with pytest.raises(DnsChallengeError, match="TSIG"):
        writer.present("_acme-challenge.www.example.test", VALUE_A)


def test_check_servers_are_polled_too(lab: BindLab, tmp_path: Path) -> None:
    other = BindLab.start(tmp_path / "secondary", records=RECORDS)
    try:
        writer = writer_for(lab, check_servers=[other.address])
        record = "_acme-challenge.www.example.test"
        writer.present(record, VALUE_A)
        with pytest.raises(DnsChallengeError, match="not visible") as caught:
            writer.wait_visible(record, VALUE_A, timeout=0.2)
        assert caught.value.server == other.address  # the primary already has it
        assert f"last seen at {other.address}: no TXT record" in str(caught.value)
    finally:
        other.stop()


# --- CommandWriter ----------------------------------------------------------------------


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_command_writer_runs_hooks_with_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "calls.txt"
    hook = script(
        tmp_path / "hook.sh",
        f'echo "$1 $CERTFORM_ACME_DOMAIN $CERTFORM_ACME_RECORD $CERTFORM_ACME_VALUE" >> {out}\n',
    )
    writer = CommandWriter([hook, "add"], [hook, "del"], timeout=5.0)
    assert isinstance(writer, DnsChallengeWriter)
    record = writer.record_name("*.www.example.test")
    assert record == "_acme-challenge.www.example.test"

    writer.present(record, VALUE_A)
    writer.wait_visible(record, VALUE_A, timeout=0.1)  # no check_server: returns at once
    writer.cleanup(record, VALUE_A)
    assert out.read_text().splitlines() == [
        f"add www.example.test _acme-challenge.www.example.test {VALUE_A}",
        f"del www.example.test _acme-challenge.www.example.test {VALUE_A}",
    ]


def test_command_writer_reports_failure_with_stderr(tmp_path: Path) -> None:
    hook = script(
        tmp_path / "fail.sh", 'echo noise\necho "first" >&2\necho "API said no" >&2\nexit 3\n'
    )
    writer = CommandWriter([hook], [hook], timeout=5.0)
    with pytest.raises(DnsChallengeError) as caught:
        writer.present("_acme-challenge.example.test", VALUE_A)
    message = str(caught.value)
    assert "present hook" in message and "exited with code 3" in message
    assert "API said no" in message and "noise" not in message
    assert "_acme-challenge.example.test" in message
    assert "\n" not in message


def test_command_writer_timeout_kills_the_hook(tmp_path: Path) -> None:
    hook = script(tmp_path / "slow.sh", "sleep 30 &\nsleep 30\n")
    writer = CommandWriter([hook], [hook], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match=r"timed out after 0\.3 s"):
        writer.cleanup("_acme-challenge.example.test", VALUE_A)
    assert time.monotonic() - started < 3


def test_command_writer_missing_program(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    writer = CommandWriter([missing], [missing], timeout=1.0)
    with pytest.raises(DnsChallengeError, match="cannot run the present hook"):
        writer.present("_acme-challenge.example.test", VALUE_A)


def test_command_writer_polls_its_check_server(lab: BindLab, tmp_path: Path) -> None:
    hook = script(tmp_path / "noop.sh", "exit 0\n")
    writer = CommandWriter([hook], [hook], timeout=5.0, check_server=lab.address)
    record = writer.record_name("www.example.test")
    with pytest.raises(DnsChallengeError, match="not visible") as caught:
        writer.wait_visible(record, VALUE_A, timeout=0.2)
    assert lab.address in str(caught.value)

    writer_for(lab).present(record, VALUE_A)  # as the hook's DNS API would
    writer.wait_visible(record, VALUE_A, timeout=2.0)


def test_name_helpers() -> None:
    assert challenge_name("*.Example.TEST.") == "_acme-challenge.example.test"
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("ns1.example.test") == ("ns1.example.test", 53)
    assert parse_server("[::1]:5300") == ("::1", 5300)
    assert parse_server("::1") == ("::1", 53)
    with pytest.raises(DnsChallengeError):
        parse_server("host:port")
