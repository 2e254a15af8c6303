"""The examples under examples/, copied into a test's workspace as a user would copy
them: every file as is, the test changing only what the example parametrises."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import Workspace

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copy_example(ws: Workspace, name: str) -> Path:
    """examples/NAME copied over the workspace root (its certform.yaml replacing the
    workspace's); returns the example's source directory."""
    source = EXAMPLES / name
    shutil.copytree(source, ws.root, dirs_exist_ok=True)
    return source
