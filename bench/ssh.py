"""SSH delivery benchmark: N ``files`` bindings spread over H hosts reached over SSH.

    python bench/ssh.py                    # N = 500 over 5 hosts
    python bench/ssh.py --count 100        # quick run
    python bench/ssh.py --smoke            # every phase once at N = 12 (CI)

H "hosts" are H OpenSSH servers (``tests/ssh_lab.py``: ``sshd -D -e`` on 127.0.0.1,
each on its own free port with its own host key, client key and known_hosts), all on
this machine, started here and stopped on exit and on SIGTERM.  In a temp directory,
a config with the root and issuing CA of ``bench/plan_apply.py``, H ``ssh`` providers
``h0``... and N certificates ``c0000``... (ec-p256, 90d), binding ``i`` a ``files``
target ``via: h{i % H}`` in its own directory on that host.  Through the real CLI, in
child processes:

* ``apply --auto-approve`` from an empty state (issue N, write 5 files per binding over
  SFTP); every binding's files must be there afterwards, the key 0600;
* ``plan --detailed-exitcode`` with nothing to do (must exit 0), with ``CERTFORM_LOG=
  debug``: the transport logs every remote command and connection it makes, so the
  plan's commands per host are counted.  It must make one connection and ONE remote
  command per host (the batched stamp of all that host's files), whatever N is:
  O(hosts) round trips, not O(bindings);
* a renewal of all N (``key: ec-p384`` forces re-issuance), applied with ``--force``
  (``policy.change_limit`` refuses replacing more than 30% of the certificates
  otherwise); every binding must then hold the new certificate;
* ``plan --detailed-exitcode`` again: must exit 0.

Any phase that fails ends the script with a non-zero exit.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# As bench/haproxy.py: bench/ off sys.path (bench/acme.py would shadow ``acme``), the
# repository root on (bench.plan_apply, tests.ssh_lab).
_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))

from bench.haproxy import BenchError, Run, check, run_cli  # noqa: E402
from bench.plan_apply import PKI_HEADER, certform_command  # noqa: E402
from tests.ssh_lab import SshLab, provider_yaml, sshd_binary  # noqa: E402

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
SMOKE_N = 12  # above policy.change_limit's minimum_certificates (10), as the other benches
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "ca.pem", "key.pem")
RUN_LINE = re.compile(r"ssh (h\d+) \([^)]*\): run ")
CONNECT_LINE = re.compile(r"ssh (h\d+) \([^)]*\): connected")
STAMP_LINE = re.compile(r"ssh (h\d+) \([^)]*\): stamped (\d+) files in one command")


def per_host(run: Run, pattern: re.Pattern[str]) -> Counter[str]:
    """How many of ``run``'s debug lines matching ``pattern`` name each host."""
    return Counter(match.group(1) for match in pattern.finditer(run.output))


def cert_name(i: int) -> str:
    return f"c{i:04d}"


def write_config(workdir: Path, labs: list[SshLab], n: int, key: str) -> Path:
    """``certform.yaml``: H ssh providers, N certificates, binding i on host i % H."""
    lines = [*PKI_HEADER[:-1], "providers:"]
    for index, lab in enumerate(labs):
        lines.append(provider_yaml(lab, f"h{index}").rstrip("\n"))
    lines += ["", "certificates:"]
    for i in range(n):
        name = cert_name(i)
        lines += [
            f"  {name}:",
            f"    names: [{name}.bench.test]",
            "    issuer: issuing",
            f"    key: {key}",
            "    validity: 90d",
            "    renew_before: 30d",
        ]
    lines += ["", "bindings:"]
    for i in range(n):
        host = i % len(labs)
        directory = workdir / "remote" / f"h{host}" / cert_name(i)
        lines += [
            f"  - certificate: {cert_name(i)}",
            f"    target: {{type: files, via: h{host}, directory: {directory}}}",
        ]
    path = workdir / "certform.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def deployed_serials(workdir: Path, n: int, hosts: int) -> dict[str, bytes]:
    """Each binding's cert.pem (checked: all five files there, the key 0600)."""
    found = {}
    for i in range(n):
        directory = workdir / "remote" / f"h{i % hosts}" / cert_name(i)
        missing = [name for name in FILES if not (directory / name).is_file()]
        check(not missing, f"{directory}: {missing} not deployed")
        mode = (directory / "key.pem").stat().st_mode & 0o777
        check(mode == 0o600, f"{directory}/key.pem has mode {mode:o}")
        temps = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
        check(not temps, f"{directory}: temp files left: {temps}")
        found[cert_name(i)] = (directory / "cert.pem").read_bytes()
    return found


def figure(label: str, run: Run, extra: str = "") -> None:
    print(
        f"{label} {run.what} {run.seconds:.2f} s, cli CPU {run.cpu:.2f} s "
        f"({run.summary}, exit {run.returncode}){extra}",
        flush=True,
    )


def bench(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> None:
    n, hosts = args.count, args.hosts
    label = f"[N={n}, hosts={hosts}]"
    labs: list[SshLab] = []
    try:
        started = time.perf_counter()
        for index in range(hosts):
            labs.append(SshLab.start(workdir / "sshd" / f"h{index}"))
        print(f"{label} {hosts} sshd started in {time.perf_counter() - started:.2f} s", flush=True)
        write_config(workdir, labs, n, "ec-p256")
        cli = certform_command()

        apply = run_cli([*cli, "apply", "--auto-approve"], workdir, env, "apply")
        figure(label, apply)
        check(apply.returncode == 0, "apply failed", apply)
        check(apply.summary == f"{n + 2} to issue, {n} to bind", "apply summary", apply)
        before = deployed_serials(workdir, n, hosts)

        debug = dict(env, CERTFORM_LOG="debug")
        plan = run_cli([*cli, "plan", "--detailed-exitcode"], workdir, debug, "no-change plan")
        commands, connects = per_host(plan, RUN_LINE), per_host(plan, CONNECT_LINE)
        stamped = {host: int(count) for host, count in STAMP_LINE.findall(plan.output)}
        names = [f"h{index}" for index in range(hosts)]
        counted = " ".join(f"{h}={commands[h]}" for h in names)
        figure(
            label,
            plan,
            f", remote commands per host: {counted} (total {sum(commands.values())}), "
            f"connections {sum(connects.values())}",
        )
        print(
            "  files stamped per host: "
            + " ".join(f"{h}={stamped.get(h, 0)}" for h in names)
            + f" (5 per binding, {n} bindings)",
            flush=True,
        )
        check(plan.returncode == 0, "the no-change plan found changes", plan)
        # O(hosts), not O(bindings): one connection and one command per host, whatever N.
        check(
            all(commands[h] == 1 for h in names) and sum(commands.values()) == hosts,
            f"the no-change plan made {dict(commands)} remote commands, expected 1 per host",
            plan,
        )
        check(all(connects[h] == 1 for h in names), f"connections {dict(connects)}", plan)
        check(sum(stamped.values()) == 5 * n, f"stamped {stamped}", plan)

        write_config(workdir, labs, n, "ec-p384")
        renew = run_cli(
            [*cli, "apply", "--auto-approve", "--force"], workdir, env, "renewal of all"
        )
        figure(label, renew)
        check(renew.returncode == 0, "the renewal failed", renew)
        check(renew.summary == f"{n} to replace, {n} to rebind", "renewal summary", renew)
        after = deployed_serials(workdir, n, hosts)
        same = [name for name in after if after[name] == before[name]]
        check(not same, f"not renewed on their hosts: {same[:5]}")
        print(f"  ok  {n}/{n} bindings hold the renewed certificate", flush=True)

        again = run_cli([*cli, "plan", "--detailed-exitcode"], workdir, env, "plan after renewal")
        figure(label, again)
        check(again.returncode == 0, "the plan after the renewal found changes", again)
    finally:
        for lab in labs:
            lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="Bindings (N).")
    parser.add_argument("--hosts", type=int, default=5, help="sshd servers (H).")
    parser.add_argument("--keep", action="store_true", help="Keep the temp directory.")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"Every phase once at N = {SMOKE_N}: checks that the benchmark still runs.",
    )
    args = parser.parse_args()
    if args.smoke:
        args.count = SMOKE_N
    if sshd_binary() is None:
        sys.exit("bench: sshd is not installed (apt-get install openssh-server)")
    env = dict(os.environ)
    env[MASTER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    env.pop("NO_COLOR", None)
    workdir = Path(tempfile.mkdtemp(prefix="certform-bench-ssh-"))
    # As plan_apply.py: children import from .pyc files in a private prefix.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    run_cli([*certform_command(), "--version"], workdir, env, "warm")
    # SIGTERM (e.g. a timeout) unwinds through the finally block that stops the sshd.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"workdir {workdir}", flush=True)
    try:
        bench(args, env, workdir)
    except BenchError as exc:
        sys.exit(f"bench: {exc}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
