"""The agent's command line: ``python -m launcher.agent --head URL --node-id … --root DIR``
(or ``--head-file PATH``) → :class:`AgentOptions`; and the pure pieces of the agent's
messages built from them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from launcher.interfaces import interface_of
from mnp.spec.protocol import JOIN_TOKEN_ENV, Event, InstanceIdentity, Register

TOKEN_ENV = "MNP_AGENT_TOKEN"
"""Where the agent may find the head's token instead of ``--token`` (jobs never see it)."""
SECRET_FILE = "node.secret"
"""In the agent's root (mode 0600): the node's secret, so an agent restarted under the same
node id (and root) authenticates as that node again."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    head: str
    """Base URL of the head node, e.g. ``http://127.0.0.1:8750``."""
    node_id: str
    compute_environment: str
    address: str
    vcpus: int
    memory_mib: int
    gpus: int
    root: Path
    """Where workdirs (``jobs/…``) and ``agent.pid`` live."""
    token: str | None = None
    ssh_port: int | None = 0
    """Port of the node's SSH server for multi-node jobs (0: any free port; None: no SSH)."""
    head_file: Path | None = None
    """A file holding the head's current URL (one line), re-read whenever a call fails."""
    join_token: str | None = None
    """The one-time join token the head minted for this node (``$MNP_JOIN_TOKEN``), sent on
    registering until the node has its own secret."""
    netns: str | None = None
    """The node's network namespace (``mnp-<tag>-<node>``, :mod:`launcher.netns`): its SSH
    endpoint listens there, its attempts and SSH sessions run there; None: the machine's."""
    private_view: bool = False
    """Attempts get their own ``/tmp`` and the gang's ``ssh_config`` as the system one even
    without :attr:`netns` (a host's agent, where root: see :mod:`launcher.mountns`)."""
    ec2: bool = False
    """The node is an EC2 instance: its identity comes from the metadata service."""


def load_secret(root: Path) -> str | None:
    """The node secret saved in ``root`` by an earlier run (None if there is none)."""
    try:
        return (root / SECRET_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def save_secret(root: Path, secret: str) -> None:
    """Save the node's secret in ``root``, mode 0600, atomically (a crash leaves the old file
    or the new one, never half of one)."""
    tmp = root / f".{SECRET_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(secret + "\n")
    os.replace(tmp, root / SECRET_FILE)


def parse_args(argv: Sequence[str] | None = None) -> AgentOptions:
    """Command line → options; the token may also come from ``$MNP_AGENT_TOKEN``, the join
    token comes from ``$MNP_JOIN_TOKEN`` only (never the command line)."""
    p = argparse.ArgumentParser(prog="python -m launcher.agent", description="mnp node agent")
    p.add_argument("--head", help="head node base URL, e.g. http://127.0.0.1:8750")
    p.add_argument(
        "--head-file",
        type=Path,
        help="file holding the head's URL, re-read when the head stops answering "
        "(the local provider passes <home>/head.url); gives --head's default",
    )
    p.add_argument("--node-id", required=True)
    p.add_argument("--compute-environment", required=True)
    p.add_argument("--address", required=True, help="this node's address as the head sees it")
    p.add_argument("--vcpus", type=int, required=True)
    p.add_argument("--memory-mib", type=int, required=True)
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--root", type=Path, required=True, help="directory for workdirs and agent.pid")
    p.add_argument("--token", default=None, help=f"head token (default: ${TOKEN_ENV})")
    p.add_argument(
        "--ssh-port",
        type=int,
        default=0,
        help="port of the node's SSH server for multi-node jobs (0: any free port)",
    )
    p.add_argument("--no-ssh", action="store_true", help="serve no SSH (no multi-node jobs)")
    p.add_argument(
        "--ec2",
        action="store_true",
        help="on an EC2 instance: learn the instance from its metadata service (IMDSv2) and "
        "watch it for a Spot interruption notice",
    )
    p.add_argument(
        "--private-view",
        action="store_true",
        help="without a network namespace too, each attempt gets its own /tmp and its gang's "
        "ssh_config as the system one (a host's agent; applied only when running as root)",
    )
    p.add_argument(
        "--netns",
        default=None,
        help="the node's network namespace (under /run/netns): SSH and jobs run in it",
    )
    ns = p.parse_args(argv)
    head = ns.head
    if head is None and ns.head_file is not None:
        try:
            head = ns.head_file.read_text().strip()
        except OSError as exc:
            p.error(f"--head-file: cannot read {ns.head_file}: {exc.strerror}")
    if not head:
        p.error("--head: required (or --head-file naming a file that holds the URL)")
    return AgentOptions(
        head=head.rstrip("/"),
        node_id=ns.node_id,
        compute_environment=ns.compute_environment,
        address=ns.address,
        vcpus=ns.vcpus,
        memory_mib=ns.memory_mib,
        gpus=ns.gpus,
        root=ns.root,
        token=ns.token or os.environ.get(TOKEN_ENV) or None,
        ssh_port=None if ns.no_ssh else ns.ssh_port,
        head_file=ns.head_file,
        join_token=os.environ.get(JOIN_TOKEN_ENV, "").strip() or None,
        netns=ns.netns or None,
        private_view=ns.private_view,
        ec2=ns.ec2,
    )


def registration(
    o: AgentOptions,
    running: list[str],
    ssh_port: int | None,
    ssh_host_key: str | None,
    instance: InstanceIdentity | None = None,
) -> dict[str, object]:
    """The wire body of the agent's :class:`~mnp.spec.protocol.Register`."""
    return Register(
        node_id=o.node_id,
        compute_environment=o.compute_environment,
        address=o.address,
        vcpus=o.vcpus,
        memory_mib=o.memory_mib,
        gpus=o.gpus,
        pid=os.getpid(),
        running=running,
        ssh_port=ssh_port,
        ssh_host_key=ssh_host_key,
        interface=interface_of(o.address),
        instance=instance,
    ).to_wire()


def next_batch(outbox: list[tuple[int, Event]], max_bytes: int) -> tuple[int, list[Event]]:
    """The first queued events of one session (a report carries one epoch), their log text
    soft-capped at ``max_bytes`` (always at least one event). ``outbox`` must not be empty."""
    epoch, size, batch = outbox[0][0], 0, []
    for n, (of, event) in enumerate(outbox):
        size += len(event.data)
        if of != epoch or (size > max_bytes and n > 0):
            break
        batch.append(event)
    return epoch, batch
