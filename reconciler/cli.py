"""The ``certform`` entry point (``reconciler.cli:main``): the command line itself is
``cli_app.py``.

This module imports nothing but the version, so that ``certform --version`` (the
first thing a scheduled job or an install check runs) answers without loading
typer and click, which cost more than the interpreter's own start-up.  Every
other command line, and ``--version`` with any other argument, goes to the typer
application unchanged.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """Print the version without typer when that is all that was asked; otherwise run
    the command line (``cli_app.main``: error mapping and exit codes)."""
    if sys.argv[1:] == ["--version"]:
        from reconciler import __version__

        if sys.stdout is not None:  # as typer.echo: no stream, nothing written
            sys.stdout.write(f"certform {__version__}\n")  # what typer's --version prints
            sys.stdout.flush()
        sys.exit(0)
    import gc

    gc.disable()  # as cli_app.main does, before its imports too (they allocate a lot)
    from reconciler.cli_app import main as run_app  # typer and the commands: see above

    try:
        run_app()
    except SystemExit as done:
        _leave(done)


def _leave(done: SystemExit) -> None:
    """Exit with ``done``'s status without tearing the interpreter down.

    After a 10,000-certificate plan, freeing every object one by one at exit costs
    about 0.1 s, and nothing certform owns needs it: files and the state are
    written and closed by then, and what Python itself must still do is done
    here (flush stdout and stderr, run the ``atexit`` handlers: logging, temp
    directories).  Anything unusual takes Python's own exit: a message as the
    status, a stream that cannot be flushed (a closed pipe), a thread still
    running, or a profiler or tracer (``python -m cProfile``, coverage) that
    writes its results once the program has returned."""
    import atexit
    import os
    import threading

    code = done.code
    if not (code is None or isinstance(code, int)) or threading.active_count() > 1:
        raise done
    if sys.getprofile() is not None or sys.gettrace() is not None:
        raise done
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        raise done from None
    atexit._run_exitfuncs()
    os._exit((code or 0) & 0xFF)


def __getattr__(name: str) -> Any:
    """``reconciler.cli.app`` (the typer application), imported on first use."""
    if name == "app":
        from reconciler.cli_app import app  # typer is imported only when asked for

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
