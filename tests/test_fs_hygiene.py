"""File-system hygiene (issue 10, item 7): temp files of a killed apply, directory
modes under any umask, OpenSSH-style refusal of secrets and key directories that
others can read or write, and no core dumps of the certform process."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, Result, Workspace, certform_argv

CRL_BLOCK = (
    "    crl: {publish: {directory: crl}, validity: 7d, url: 'http://crl.example.test/i.crl'}\n"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _run(ws: Workspace, *args: str, umask: int | None = None) -> Result:
    proc = subprocess.run(
        [*certform_argv(), *args],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
        umask=-1 if umask is None else umask,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


# -- temp files of a killed apply --------------------------------------------------


def test_temp_files_of_a_killed_apply_are_removed_by_the_next_apply(
    workspace: Workspace,
) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    web = ws.root / "out/web"
    (web / "cert.pem").unlink()  # the next apply redeploys web
    marker = ws.root / "paused"
    env = dict(
        ws.env,
        CERTFORM_TEST_PAUSE_AT="binding.files:out/web:journaled",
        CERTFORM_TEST_PAUSE_MARKER=str(marker),
    )
    proc = subprocess.Popen(
        [*certform_argv(), "apply", "--auto-approve"],
        cwd=ws.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    key = (web / "key.pem").read_bytes()
    # What write_atomic of the killed process leaves when the kill lands mid-write:
    killed_temp = web / f".key.pem.{proc.pid}-0123abcd.tmp"
    killed_temp.write_bytes(key)
    legacy_temp = web / ".key.pem.k3y9ab_z.tmp"  # mkstemp name of earlier versions
    legacy_temp.write_bytes(key)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # Not certform's, or a live writer's fresh temp: left alone.
    foreign = web / ".notes.txt.abcdefgh.tmp"
    foreign.write_text("mine\n")
    live = web / f".cert.pem.{os.getpid()}-89abcdef.tmp"
    live.write_text("being written\n")

    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert not killed_temp.exists() and not legacy_temp.exists()
    assert foreign.exists() and live.exists()
    assert (web / "cert.pem").exists()


def test_destroy_removes_every_file_even_with_a_temp_file_beside(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    web = ws.root / "out/web"
    stale = web / f".key.pem.{_dead_pid()}-0123abcd.tmp"
    stale.write_bytes((web / "key.pem").read_bytes())
    head, _ = EXAMPLE.split("  web:\n")
    rest = EXAMPLE.split("  api:\n")[1]
    without_web = (
        head
        + "  api:\n"
        + rest.replace("  - certificate: web\n    target: {type: files, directory: out/web}\n", "")
    )
    ws.write(without_web)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "certificate.web" in result.out
    assert not web.exists(), sorted(p.name for p in web.iterdir())


# -- directory modes under any umask ---------------------------------------------


def test_directories_certform_creates_ignore_the_umask(workspace: Workspace) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]
    ws.write(
        EXAMPLE.replace(
            "    name_constraints: {permitted: [example.test]}\n",
            "    name_constraints: {permitted: [example.test]}\n" + CRL_BLOCK,
        ).replace("directory: out/api", "directory: mine/api")
    )
    (ws.root / "mine").mkdir(mode=0o775)  # the user's own directory: left as it is
    os.chmod(ws.root / "mine", 0o775)
    result = _run(ws, "apply", "--auto-approve", umask=0)
    assert result.code == 0, result.text
    certform_dir = ws.root / ".certform"
    assert _mode(certform_dir) == 0o700
    for name in ("state.db", "master.key", "state.db.lock"):
        assert _mode(certform_dir / name) == 0o600, name
    assert _mode(ws.root / "out") == 0o750
    assert _mode(ws.root / "out/web") == 0o750
    assert _mode(ws.root / "mine/api") == 0o750
    assert _mode(ws.root / "mine") == 0o775
    assert _mode(ws.root / "crl") == 0o755  # public: served as they are
    assert _mode(ws.root / "out/web/key.pem") == 0o600


# -- secrets readable by others are refused ---------------------------------------


@pytest.mark.parametrize(
    ("name", "mode"), [("master.key", 0o644), ("state.db", 0o640)], ids=["master.key", "state.db"]
)
def test_secret_files_readable_by_others_are_refused(
    workspace: Workspace, name: str, mode: int
) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]  # master.key is generated and read from disk
    ws.ok("apply", "--auto-approve")
    secret = ws.root / ".certform" / name
    secret.chmod(mode)
    (ws.root / "out/web/cert.pem").unlink()  # something for apply to do
    before = _digest(ws.root)
    for command in (("plan",), ("apply", "--auto-approve"), ("show",)):
        result = ws.run(*command)
        assert result.code == 1, result.text
        assert f"permissions {mode:04o} for '{secret}' are too open" in result.err
        assert f"chmod 600 '{secret}'" in result.err
        assert "Traceback" not in result.text
    assert _digest(ws.root) == before
    secret.chmod(0o600)
    assert ws.ok("apply", "--auto-approve")


def test_explicit_master_key_file_readable_by_others_is_refused(workspace: Workspace) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]
    key_file = ws.root / "master.key"
    key_file.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    key_file.chmod(0o604)
    ws.write(EXAMPLE + "state: {master_key_file: master.key}\n")
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "permissions 0604" in result.err and "too open" in result.err
    assert not (ws.root / "out").exists()


# -- key directories others can write to ------------------------------------------


def _with_extra_binding(directory: str) -> str:
    return EXAMPLE + f"  - certificate: api\n    target: {{type: files, directory: {directory}}}\n"


@pytest.mark.parametrize("mode", [0o770, 0o1777], ids=["0770", "1777"])
def test_group_or_world_writable_key_directory_is_refused(workspace: Workspace, mode: int) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    shared = ws.root / "shared"
    shared.mkdir()
    shared.chmod(mode)
    ws.write(_with_extra_binding("shared"))
    before = _digest(ws.root)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "group- or world-writable" in result.err
    assert f"chmod go-w '{shared}'" in result.err
    assert "Nothing was changed" in result.err
    assert list(shared.iterdir()) == []
    assert _digest(ws.root) == before
    assert _mode(shared) == mode  # not "fixed" behind the user's back


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_key_directory_owned_by_another_user_is_refused(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    theirs = ws.root / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 12345, 12345)
    ws.write(_with_extra_binding("theirs"))
    before = _digest(ws.root)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "owned by uid 12345" in result.err and "chown" in result.err
    assert list(theirs.iterdir()) == []
    assert _digest(ws.root) == before


# -- no core dumps -----------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_certform_process_cannot_dump_core(workspace: Workspace) -> None:
    ws = workspace
    report = ws.root / "limits.txt"
    hook = f"cat /proc/$PPID/limits > '{report}'"
    ws.write(
        EXAMPLE.replace(
            "target: {type: files, directory: out/web}",
            f'target: {{type: files, directory: out/web, post_deploy: [sh, -c, "{hook}"]}}',
        )
    )
    ws.ok("apply", "--auto-approve")
    line = next(x for x in report.read_text().splitlines() if x.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", "0"], line  # soft and hard limits of certform itself


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")
def test_hardening_makes_the_process_not_dumpable() -> None:
    code = (
        "import resource\n"
        "from reconciler.hardening import disable_core_dumps, dumpable\n"
        "assert dumpable() == 1\n"
        "disable_core_dumps()\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), dumpable())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(0, 0) 0"


def test_no_wal_files_are_left_after_any_command(workspace: Workspace) -> None:
    """SQLite removes ``-wal`` and ``-shm`` when a state's last connection closes:
    certform leaves without the interpreter's teardown and with the cyclic collector
    off, so a connection a command never closed (a plan's) must still be closed."""
    ws = workspace  # SQLite: this module's workspaces use the default backend
    ws.ok("apply", "--auto-approve")
    for command in (["plan"], ["show"], ["check"], ["show", "certificate.web"], ["audit"]):
        ws.run(*command)
        left = sorted(p.name for p in (ws.root / ".certform").iterdir() if "-wal" in p.name
                      or "-shm" in p.name)  # fmt: skip
        assert left == [], (command, left)


SESSION_CALLS = """
import gc, sys
from pathlib import Path
from reconciler.session import Session
gc.disable()  # what frees an unclosed connection; a long-lived caller may never run it
root = Path(sys.argv[1])
session = Session(root / "certform.yaml")
calls = {
    "plan": session.plan,
    "show": session.show,
    "check": session.check,
    "state_list": session.state_list,
    "state_show": lambda: session.state_show("certificate.web"),
    "show_certificate": lambda: session.show_certificate("certificate.web"),
    "report": session.report,
}
for name, call in calls.items():
    call()
    left = sorted(p.name for p in (root / ".certform").iterdir() if "-wal" in p.name)
    print(name, left)
"""


def test_read_only_session_operations_close_the_state(workspace: Workspace) -> None:
    """In process (a service built on ``Session``), every read-only operation closes
    its state connection itself: SQLite's ``-wal`` file is gone after each one, with
    the cyclic collector that would otherwise free the connection off."""
    ws = workspace
    ws.ok("apply", "--auto-approve")
    out = subprocess.run(
        [sys.executable, "-c", SESSION_CALLS, str(ws.root)],
        capture_output=True, text=True, env=ws.env, cwd=ws.root, check=True,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert len(lines) == 7, out
    assert all(line.endswith(" []") for line in lines), out.stdout
