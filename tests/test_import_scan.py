"""`certform import --scan DIR` and `import -c` through the real CLI: trees as
found on servers (certbot's live/ symlinks into archive/, an nginx tls/ directory
with an orphan key, an encrypted key, DER files, a 2 MB file, a directory symlink
loop), YAML that validates when saved beside the quickstart config, every
leftover listed as a comment, and never a byte of key material printed."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from tests.adoption_trees import Authority, letsencrypt, nginx
from tests.conftest import Workspace

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "certform.yaml"


def _quickstart_dir(ws: Workspace) -> Path:
    """A directory config holding the quickstart: a scan's output saved beside it is
    merged into it (that is what pasting means here)."""
    conf = ws.root / "conf"
    conf.mkdir()
    shutil.copy(QUICKSTART, conf / "certform.yaml")
    return conf


def _key_bodies(*paths: Path) -> list[str]:
    """Fragments of each key's encoding, to prove none is ever printed."""
    bodies = []
    for path in paths:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            lines = data.decode().strip().splitlines()
            bodies += [line for line in lines[1:-1] if len(line) > 20]
        else:
            bodies.append(base64.b64encode(data)[:40].decode())
    return bodies


def test_scan_of_letsencrypt_live_follows_its_symlinks_and_validates(workspace: Workspace) -> None:
    ws = workspace
    ca = Authority()
    tree = letsencrypt(ws.root, ca)
    conf = _quickstart_dir(ws)
    live = tree / "live" / "example.test"

    # DIR is relative to the config's directory, like every path import takes.
    result = ws.ok("import", "--scan", "../letsencrypt/live", "-c", "conf")
    proposal = yaml.safe_load(result.out)
    assert proposal["authorities"] == {"imported": {"type": "imported"}}
    entry = proposal["certificates"]["example-test"]
    # The live/ links (stable across renewals), as absolute paths: they are outside conf/.
    assert entry == {
        "issuer": "imported",
        "names": ["example.test", "www.example.test"],
        "certificate": str(live / "cert.pem"),
        "chain": str(live / "chain.pem"),
        "private_key": str(live / "privkey.pem"),
    }
    assert "PRIVATE KEY" not in result.text
    for fragment in _key_bodies(*(tree / "archive" / "example.test").glob("privkey*.pem")):
        assert fragment not in result.text

    (conf / "adopted.yaml").write_text(result.out)
    validated = ws.run("validate", "-c", "conf")
    assert validated.code == 0, validated.text
    with (conf / "adopted.yaml").open("a") as handle:
        handle.write(
            "bindings:\n  - certificate: example-test\n"
            "    target: {type: files, directory: out/example}\n"
        )
    ws.ok("apply", "-c", "conf", "--auto-approve")
    deployed = (conf / "out" / "example" / "cert.pem").read_text()
    assert deployed == (tree / "archive" / "example.test" / "cert2.pem").read_text()
    assert ws.run("plan", "-c", "conf", "--detailed-exitcode").code == 0


def test_scan_of_a_whole_letsencrypt_tree_prefers_live_and_lists_superseded(
    workspace: Workspace,
) -> None:
    ws = workspace
    letsencrypt(ws.root, Authority())
    result = ws.ok("import", "--scan", "letsencrypt")
    proposal = yaml.safe_load(result.out)
    assert list(proposal["certificates"]) == ["example-test"]
    entry = proposal["certificates"]["example-test"]
    assert entry["certificate"] == "letsencrypt/live/example.test/cert.pem"
    assert entry["private_key"] == "letsencrypt/live/example.test/privkey.pem"
    assert (
        "# superseded by a later certificate for the same names, not proposed: "
        "letsencrypt/archive/example.test/cert1.pem (example.test, www.example.test; expires"
    ) in result.out


def test_scan_of_an_nginx_directory_lists_what_it_cannot_adopt(workspace: Workspace) -> None:
    ws = workspace
    tls = nginx(ws.root, Authority())
    conf = _quickstart_dir(ws)
    result = ws.ok("import", "--scan", str(tls), "-c", "conf")
    proposal = yaml.safe_load(result.out)
    assert proposal["certificates"] == {
        "site-example-test": {
            "issuer": "imported",
            "names": ["site.example.test"],
            "certificate": str(tls / "site.crt"),  # holds its chain: no chain file needed
            "private_key": str(tls / "site.key"),
        }
    }
    out = result.out
    assert f"# key without a certificate: {tls}/orphan.key (rsa-2048)" in out
    assert (
        f"# certificate without its key: {tls}/api.crt (api.example.test; expires"
    ) in out and f"its key may be the encrypted {tls}/api.key" in out
    assert f"# encrypted key, not matched: {tls}/api.key: certform imports unencrypted" in out
    assert f"# DER, not proposed: {tls}/der.crt (der.example.test" in out
    assert f"# {tls}/big.bin: larger than 1 MB, skipped" in out
    assert "loop" not in out  # the directory symlink was not entered
    assert "PRIVATE KEY" not in result.text
    for fragment in _key_bodies(*tls.glob("*.key")):
        assert fragment not in result.text

    (conf / "adopted.yaml").write_text(out)
    validated = ws.run("validate", "-c", "conf")
    assert validated.code == 0, validated.text


def test_a_scan_avoids_names_the_config_already_uses(workspace: Workspace) -> None:
    ws = workspace
    tls = nginx(ws.root, Authority())
    ws.write(
        ws.config.read_text()
        .replace("  api:\n", "  site-example-test:\n", 1)
        .replace("certificate: api\n", "certificate: site-example-test\n")
    )
    proposal = yaml.safe_load(ws.ok("import", "--scan", str(tls)).out)
    assert list(proposal["certificates"]) == ["site-example-test-2"]


def test_import_reads_paths_relative_to_the_config(workspace: Workspace) -> None:
    ws = workspace
    conf = ws.root / "conf"
    (conf / "certs").mkdir(parents=True)
    ca = Authority()
    cert, key = ca.leaf(["web.example.test"])
    (conf / "certs" / "web.crt").write_text(cert)
    (conf / "certs" / "web.key").write_bytes(key)
    (conf / "certs" / "chain.pem").write_text(ca.chain_pem)
    shutil.copy(ws.config, conf / "certform.yaml")

    args = ("--cert", "certs/web.crt", "--key", "certs/web.key", "--chain", "certs/chain.pem")
    result = ws.ok("import", "ext", *args, "-c", "conf/certform.yaml")
    snippet = yaml.safe_load(result.out.split("\n", 1)[1])
    assert snippet["certificates"]["ext"]["certificate"] == "certs/web.crt"
    base = yaml.safe_load((conf / "certform.yaml").read_text())
    base["authorities"].update(snippet["authorities"])
    base["certificates"].update(snippet["certificates"])
    (conf / "certform.yaml").write_text(yaml.safe_dump(base))
    assert ws.run("validate", "-c", "conf/certform.yaml").code == 0

    # Without -c the same paths are read from the current directory's config: not there.
    missing = ws.run("import", "ext", *args)
    assert missing.code == 1
    assert f"Error: cannot read {ws.root}/certs/web.crt: No such file or directory" in missing.err


def test_import_refuses_mixed_or_missing_forms(workspace: Workspace) -> None:
    ws = workspace
    cases = {
        ("import", "--scan", ".", "--cert", "x.pem"): "import --scan does not take --cert",
        ("import", "--scan", "nowhere"): f"--scan nowhere: not a directory (under {ws.root})",
        ("import", "--from-aws"): "import --from-aws needs --region",
        ("import", "--from-aws", "--region", "mars"): "--region 'mars' is not an AWS region",
        ("import", "--acm-arn", "arn:aws:acm:eu-west-1:1:certificate/x"): (
            "import --acm-arn needs the certificate's address"
        ),
        ("import", "web", "--acm-arn", "nope"): "--acm-arn 'nope' is not an ACM certificate ARN",
        ("import", "web"): "import needs NAME --cert F --key F, --scan DIR",
    }
    for args, message in cases.items():
        result = ws.run(*args)
        assert result.code == 1 and message in result.err, (args, result.text)
        assert "Traceback" not in result.err
    assert not ws.state_exists()


def test_scan_reads_encrypted_and_der_keys_without_printing_them(tmp_path: Path) -> None:
    """In-process: what the scan keeps of a key is its public half, nothing else."""
    from reconciler.adopt.scan import scan

    tls = nginx(tmp_path, Authority())
    found = scan(tls)
    by_name = {key.place.path.name: key for key in found.keys}
    assert by_name["api.key"].encrypted and by_name["api.key"].public_key is None
    der = serialization.load_der_private_key((tls / "der.key").read_bytes(), None)
    assert by_name["der.key"].public_key == der.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert not any(hasattr(key, "private_key") for key in found.keys)
