"""Bad input to revoke and export is refused with a clear error before the state
is opened: every file of the state stays byte-for-byte the same."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import EXAMPLE, Workspace


def _state_digest(workspace: Workspace) -> dict[str, str]:
    directory = workspace.state_db.parent
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("revoke", "web", "--reason", "stolen"), "unknown revocation reason 'stolen'"),
        (("export", "web", "--passphrase-file", "empty.txt"), "empty"),
        (("export", "web", "--passphrase-file", "missing.txt"), "missing.txt"),
        (("export", "web", "--passphrase-file", "pass.txt", "--format", "jks"), "'jks'"),
    ],
)
def test_refused_before_the_state_is_touched(
    workspace: Workspace, args: tuple[str, ...], phrase: str
) -> None:
    workspace.write(
        EXAMPLE.replace("    tags: {team: web}\n", "    tags: {team: web}\n    exportable: true\n")
    )
    workspace.ok("apply", "--auto-approve")
    (workspace.root / "empty.txt").write_text("")
    (workspace.root / "pass.txt").write_text("correct horse battery staple\n")
    before = _state_digest(workspace)
    result = workspace.run(*args)
    assert result.code == 1, result.text
    assert phrase in result.err, result.err
    assert "Traceback" not in result.err
    assert _state_digest(workspace) == before
