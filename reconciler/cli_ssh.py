"""``certform ssh-keyscan NAME``: the known_hosts line(s) of an ``ssh`` provider's host.

The keys are fetched without being trusted and printed with their SHA256
fingerprints, for the user to check out of band (on the host: ``ssh-keygen -lf
/etc/ssh/ssh_host_ed25519_key.pub``) before appending them to known_hosts.
stdout is known_hosts syntax (fingerprints as comments), so ``>> known_hosts``
works once the fingerprint is verified.
"""

from __future__ import annotations

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import err
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    """Add ``ssh-keyscan`` to the main application."""
    app.command("ssh-keyscan")(ssh_keyscan)


def ssh_keyscan(
    name: str = typer.Argument(..., help="The ssh provider entry whose host to scan."),
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Print the known_hosts line(s) of ssh provider NAME's host with their SHA256
    fingerprints.  Nothing is trusted or written: verify the fingerprints out of
    band, then append the lines to the provider's known_hosts file."""
    from reconciler.config.validate import load_models
    from reconciler.errors import ProviderError, UsageError
    from reconciler.providers.ssh.config import SshProviderConfig
    from reconciler.session import variables_from
    from reconciler.suggest import expected_one_of

    models, _ = load_models(config, variables_from(var or (), var_file or ()))
    provider = models.providers.get(name)
    if not isinstance(provider, SshProviderConfig):
        ssh = {k: v for k, v in models.providers.items() if isinstance(v, SshProviderConfig)}
        raise UsageError(f"no ssh provider {name!r}; {expected_one_of(name, ssh)}")
    from reconciler.durations import parse_duration
    from reconciler.providers.ssh.hostkeys import scan

    timeout = parse_duration(provider.timeout).total_seconds()
    try:
        keys = scan(provider, timeout)
    except Exception as exc:  # OSError, asyncssh.Error, TimeoutError: the host is not there
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ProviderError(
            f"ssh {name}: cannot reach {provider.host}:{provider.port}: {reason or 'timed out'}"
        ) from None
    for key in keys:
        typer.echo(f"# {key.algorithm} {key.fingerprint}")
        typer.echo(key.line)
    err(
        f"Verify these fingerprints out of band (on the host: ssh-keygen -lf "
        f"/etc/ssh/ssh_host_*_key.pub) before appending the lines to {provider.known_hosts}: "
        f"certform ssh-keyscan {name} >> {provider.known_hosts}"
    )
