"""certform leaves without tearing the interpreter down (``cli._leave``), and that
changes nothing a caller sees: the exit status, every byte of output through a
pipe, the ``atexit`` handlers, and a thread that is still running (which then
gets Python's own exit, so it can finish)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import Workspace

REPOSITORY = Path(__file__).resolve().parent.parent


def _certform_in(script: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (setup code) then certform's entry point with ``argv``."""
    code = textwrap.dedent(script) + textwrap.dedent(
        f"""
        import sys
        sys.argv = ["certform", *{list(argv)!r}]
        from reconciler.cli import main
        main()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_atexit_handlers_run_and_the_status_is_kept(workspace: Workspace) -> None:
    script = """
        import atexit, sys
        atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
    """
    valid = _certform_in(script, "validate", cwd=workspace.root)
    assert valid.returncode == 0, valid.stderr
    assert "Configuration is valid" in valid.stdout
    assert valid.stderr.endswith("atexit ran\n")
    workspace.write("certificates: [not, a, mapping]\n")
    invalid = _certform_in(script, "validate", cwd=workspace.root)
    assert invalid.returncode == 1
    assert "certificates" in invalid.stderr and invalid.stderr.endswith("atexit ran\n")


def test_detailed_exit_codes_survive(workspace: Workspace) -> None:
    assert workspace.run("plan", "--detailed-exitcode").code == 2
    workspace.ok("apply", "--auto-approve")
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_large_output_through_a_pipe_is_complete(tmp_path: Path) -> None:
    result = _certform_in("", "schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert len(result.stdout) > 50_000 and "properties" in schema


def test_a_running_thread_gets_pythons_own_exit(tmp_path: Path) -> None:
    script = """
        import sys, threading, time
        def late():
            time.sleep(0.5)
            sys.stdout.write("thread finished\\n")
        threading.Thread(target=late).start()
    """
    result = _certform_in(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("thread finished\n")


def test_a_profiler_still_gets_its_results(tmp_path: Path) -> None:
    """``python -m cProfile`` writes its statistics after the program returns: with
    a profiler (or a tracer such as coverage) attached, certform exits as Python does."""
    stats = tmp_path / "plan.prof"
    code = "import sys; sys.argv = ['certform', '--help']; from reconciler.cli import main; main()"
    script = tmp_path / "run_certform.py"
    script.write_text(code + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(stats), str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Usage" in result.stdout, result.stderr
    assert stats.stat().st_size > 0
