"""Race two real ``certform`` processes many times, cheaply.

Importing certform costs ~0.4 s of CPU per process; forty fresh interpreters
would make a 20-race test slow.  This launcher imports ``reconciler.cli_app`` once,
then for every race forks two children that run ``main()`` with the same argv
at the same instant (both wait on one pipe that the parent closes), each in its
own process with its own pid, file descriptors and locks: the same race as two
``certform apply`` started together from a shell.

Usage: python race_lab.py RESULT.json ARGV_JSON DIR [DIR ...]
Writes, per directory, the exit codes and outputs of the two runs.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def _child(directory: Path, argv: list[str], index: int, gate: int) -> None:
    """Run certform's main() in ``directory``; never returns."""
    code = 1
    try:
        out = os.open(directory.parent / f"{directory.name}.{index}.out", os.O_WRONLY | os.O_CREAT)
        err = os.open(directory.parent / f"{directory.name}.{index}.err", os.O_WRONLY | os.O_CREAT)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(directory)
        os.read(gate, 1)  # returns when the parent closes the pipe: both start at once
        from reconciler.cli import main

        sys.argv = ["certform", *argv]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def race(directory: Path, argv: list[str]) -> dict[str, object]:
    """Two children running ``argv`` in ``directory`` at once."""
    gate_read, gate_write = os.pipe()
    pids = []
    for index in (0, 1):
        pid = os.fork()
        if pid == 0:
            os.close(gate_write)
            _child(directory, argv, index, gate_read)
        pids.append(pid)
    os.close(gate_read)
    os.close(gate_write)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    outputs = [
        (directory.parent / f"{directory.name}.{i}.out").read_text()
        + (directory.parent / f"{directory.name}.{i}.err").read_text()
        for i in (0, 1)
    ]
    return {"directory": str(directory), "codes": codes, "outputs": outputs}


def main() -> None:
    result_path, argv = Path(sys.argv[1]), json.loads(sys.argv[2])
    import reconciler.cli_app  # noqa: F401  (imported once, before the forks)

    results = [race(Path(d), argv) for d in sys.argv[3:]]
    result_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
