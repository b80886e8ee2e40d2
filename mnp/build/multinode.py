"""What each node of a multi-node parallel job attempt gets: environment, files, SSH trust.

Pure: the attempt's key pair comes in from :func:`mnp.scheduler.sshkeys.generate_job_key`.
Paths are written with :data:`~mnp.spec.protocol.WIRING_PLACEHOLDER`; each node's agent puts its
own wiring directory in its place.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TypeVar

from mnp.build import mpi, ssh
from mnp.slurm.hostlist import compress
from mnp.spec.environments import Node
from mnp.spec.jobs import Job
from mnp.spec.protocol import PYTHON_PLACEHOLDER, WIRING_PLACEHOLDER, Wiring

W = WIRING_PLACEHOLDER
T = TypeVar("T")
PORT_BASE = 29500
PORT_SPAN = 2000


@dataclass(frozen=True, slots=True)
class GangNode:
    index: int
    node: Node

    @property
    def alias(self) -> str:
        return self.node.node_id


def master_port(job_id: str, taken: set[int]) -> int:
    """A port derived from the job id, moved on past ports other running jobs hold."""
    first = PORT_BASE + zlib.crc32(job_id.encode()) % PORT_SPAN
    for step in range(PORT_SPAN):
        port = PORT_BASE + (first - PORT_BASE + step) % PORT_SPAN
        if port not in taken:
            return port
    port = PORT_BASE + PORT_SPAN  # every port of the span is in use: go past it
    while port in taken and port < 65535:
        port += 1
    return port


def node_environment(
    parent: Job, gang: list[GangNode], index: int, port: int, iface: str | None
) -> dict[str, str]:
    """The variables one node of the gang sees (over its job environment)."""
    spec = parent.spec.nodes
    assert spec is not None
    n = spec.num_nodes
    main = gang[spec.main_node].node
    tasks = spec.tasks_per_node
    slots = tasks or 1
    aliases = [g.alias for g in main_first(gang, spec.main_node)]
    # ranks count from the main node (torch's rank 0 hosts the store at MASTER_ADDR)
    rank = main_first(list(range(n)), spec.main_node).index(index)
    env = {
        "AWS_BATCH_JOB_NODE_INDEX": str(index),
        "AWS_BATCH_JOB_NUM_NODES": str(n),
        "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(spec.main_node),
        "MASTER_ADDR": main.address,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(n * slots),
        "NODE_RANK": str(rank),
        "GROUP_RANK": str(rank),
        "NNODES": str(n),
        "MNP_MAIN_ADDR": main.address,
        "MNP_WIRING_DIR": W,
        "MNP_NODE_ALIASES": " ".join(aliases),
        "MNP_NODE_INDEX": str(index),
        "MNP_MAIN_NODE_INDEX": str(spec.main_node),
        "MNP_NUM_NODES": str(n),
        "MNP_TASKS_PER_NODE": str(tasks or int(main.capacity.vcpus)),
        "MNP_HOSTFILE": f"{W}/hostfile",
        "MNP_SSH_CONFIG": f"{W}/ssh_config",
        "SLURM_JOB_NODELIST": compress(aliases),
        "SLURM_NNODES": str(n),
        "SLURM_JOB_NUM_NODES": str(n),
        "SLURM_NODEID": str(rank),
        "SLURMD_NODENAME": gang[index].alias,
        "SLURM_NTASKS": str(n * slots),
        "SLURM_NTASKS_PER_NODE": str(slots),
    }
    if tasks is None:
        env["RANK"] = str(rank)
        env["LOCAL_RANK"] = "0"
        env["LOCAL_WORLD_SIZE"] = "1"
    else:
        env["LOCAL_WORLD_SIZE"] = str(tasks)
    if index != spec.main_node:
        env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = main.address
    if iface:
        env["MNP_MPI_IFACE"] = iface
        env["NCCL_SOCKET_IFNAME"] = iface
        env["GLOO_SOCKET_IFNAME"] = iface
    env.update(mpi_environment(iface))
    return env


def mpi_environment(iface: str | None) -> dict[str, str]:
    """Point Open MPI, MPICH and Intel MPI at the job's hostfiles and ssh_config at once (their
    variables do not overlap), so a plain ``mpirun -np N cmd`` on the main node just works."""
    env: dict[str, str] = {}
    for flavour in ("intelmpi", "mpich", "openmpi"):
        env.update(
            mpi.mpi_environment(
                flavour, W, f"{W}/ssh_config", f"{W}/{mpi.FLAVOURS[flavour].hostfile_name}", iface
            )
        )
    return env


def main_first(items: list[T], main_index: int) -> list[T]:
    """The main node's item first, then the others in index order (hostfiles, alias lists)."""
    return [items[main_index], *items[:main_index], *items[main_index + 1 :]]


def wiring_files(
    gang: list[GangNode], slots: list[int], private_key: str, main_index: int
) -> dict[str, str]:
    """Every node's wiring directory: key, ssh_config, known_hosts, hostfiles, wrapper (the
    same on each node, so ``ssh <peer>`` works from any node of the gang to any other)."""
    ssh_nodes = [
        ssh.SshNode(g.alias, g.node.address, g.node.ssh_port or 22, g.node.ssh_host_key or "")
        for g in gang
    ]
    ordered = main_first(list(zip(gang, slots, strict=True)), main_index)
    hosts = [(g.alias, s) for g, s in ordered]
    files = {
        "id_ed25519": private_key,
        "ssh_config": ssh.ssh_config(ssh_nodes, f"{W}/id_ed25519", f"{W}/known_hosts"),
        "known_hosts": ssh.known_hosts(ssh_nodes),
        "hostfile": "".join(f"{alias}\n" for alias, _ in hosts),
        "ssh-wrapper": mpi.ssh_wrapper(f"{W}/ssh_config"),
    }
    for flavour in mpi.FLAVOURS.values():
        files[flavour.hostfile_name] = mpi.hostfile(flavour.name, hosts)
    return files


def main_command(parent: Job, command: list[str]) -> list[str]:
    """The main node runs its command through ``launcher.wire``: it waits until the head node
    has seen every other node start, then runs the command, or builds ``mpiexec`` around it."""
    spec = parent.spec.nodes
    assert spec is not None
    argv = [
        PYTHON_PLACEHOLDER, "-m", "launcher.wire", "--mpi", spec.mpi,
        "--ready-timeout", f"{spec.ready_timeout_seconds:g}", "--ready-file", f"{W}/ready",
    ]  # fmt: skip
    # The ready file already means every node started, and a node's agent lets the job's key
    # in before it reports that; probing each over SSH again would add ~0.1 s to every launch.
    argv.append("--no-probe")
    return [*argv, "--", *command]


def build_wiring(
    gang: list[GangNode],
    index: int,
    main_index: int,
    public_key: str,
    files: dict[str, str],
    ssh_environment: dict[str, str],
    hold: bool,
) -> Wiring:
    return Wiring(
        authorized_key=public_key,
        files=files,
        ssh_environment=ssh_environment,
        hold=hold,
    )
