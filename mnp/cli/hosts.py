"""``mnp hosts add|remove|list``: the user's own machines in an UNMANAGED environment (admins).

``add`` returns once the host is recorded; its bring-up runs on the head, and ``list`` shows
how it stands (``statusReason`` names a failure: ``HostKeyMismatch: …``, ``Unreachable: …``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnp.cli.state import State, json_option, pass_state, print_json


@click.group("hosts")
def hosts_group() -> None:
    """Manage the SSH hosts of UNMANAGED compute environments."""


@hosts_group.command("add")
@click.argument("compute_environment")
@click.argument("name")
@click.argument("address")
@click.option("--identity", "-i", required=True, type=click.Path(path_type=Path),
              help="The private key's path on the head node.")  # fmt: skip
@click.option("--host-key", help="The host's pinned public key ('ssh-ed25519 AAAA…').")
@click.option("--known-hosts", type=click.Path(path_type=Path),
              help="A known_hosts file with the host's key (not with --host-key).")  # fmt: skip
@click.option("--port", type=int, default=None, help="SSH port (22).")
@click.option("--user", default=None, help="Login (root).")
@click.option("--python", default=None, help="The host's Python ≥ 3.11 (python3).")
@click.option("--vcpus", type=int, default=None, help="vCPUs (default: nproc on the host).")
@click.option("--memory-mib", type=int, default=None, help="Memory (default: the host's).")
@click.option("--head-url", default=None,
              help="How the host reaches the head (default: a reverse SSH tunnel).")  # fmt: skip
@click.option("--proxy-command", default=None,
              help="OpenSSH ProxyCommand to reach the host (e.g. 'ssh -W %h:%p bastion').")
@json_option
@pass_state
def hosts_add(state: State, compute_environment: str, name: str, address: str,
              identity: Path, host_key: str | None, known_hosts: Path | None, port: int | None,
              user: str | None, python: str | None, vcpus: int | None,
              memory_mib: int | None, head_url: str | None, proxy_command: str | None,
              as_json: bool) -> None:  # fmt: skip
    """Add host NAME at ADDRESS to COMPUTE_ENVIRONMENT; the head brings it up."""
    body: dict[str, Any] = {
        "computeEnvironment": compute_environment, "name": name, "address": address,
        "identityFile": str(identity.expanduser().absolute()), "hostKey": host_key,
        "knownHostsFile": str(known_hosts.expanduser().absolute()) if known_hosts else None,
        "port": port, "user": user, "python": python, "vcpus": vcpus,
        "memoryMiB": memory_mib, "headUrl": head_url, "proxyCommand": proxy_command,
    }  # fmt: skip
    answer = state.client().call("addHost", {k: v for k, v in body.items() if v is not None})
    if as_json:
        print_json(answer)
    else:
        click.echo(f"added {name} ({address}) to {compute_environment}: {answer['host']['status']}")


@hosts_group.command("remove")
@click.argument("compute_environment")
@click.argument("name")
@click.option("--grace", type=int, default=600, show_default=True,
              help="Seconds running work may go on before it is stopped.")  # fmt: skip
@json_option
@pass_state
def hosts_remove(state: State, compute_environment: str, name: str, grace: int,
                 as_json: bool) -> None:  # fmt: skip
    """Drain host NAME, then stop its agent and forget it."""
    body = {"computeEnvironment": compute_environment, "name": name, "graceSeconds": grace}
    answer = state.client().call("removeHost", body)
    print_json(answer) if as_json else click.echo(f"draining {name}")


@hosts_group.command("list")
@click.argument("compute_environment", required=False)
@json_option
@pass_state
def hosts_list(state: State, compute_environment: str | None, as_json: bool) -> None:
    """List the hosts (of COMPUTE_ENVIRONMENT, or of all) and how each stands."""
    body = {"computeEnvironment": compute_environment} if compute_environment else {}
    hosts = state.client().call("listHosts", body)["hosts"]
    if as_json:
        print_json(hosts)
        return
    for h in hosts:
        reason = f"  {h['statusReason']}" if h.get("statusReason") else ""
        click.echo(f"{h['computeEnvironment']}/{h['name']}  {h['address']}:{h['port']}  "
                   f"{h['status']}{reason}")  # fmt: skip
