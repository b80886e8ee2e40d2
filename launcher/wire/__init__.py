"""The main node's MPI launcher for a multi-node parallel (MNP) job.

``python -m launcher.wire [--mpi auto|openmpi|mpich|intelmpi|none] [--mpiexec PATH] [--np N]
[--iface IF] [-x NAME]... [--ready-timeout S] [--dry-run] -- command...``

Runs on the main node. It waits until every other node of the job answers
``ssh -F <ssh_config> <alias> true``, then replaces itself (``execve``) with ``mpirun``/
``mpiexec`` starting ``command`` on all nodes, so the job's exit code is MPI's. With
``--mpi none`` it execs ``command`` as it is once the nodes are ready. ``--dry-run`` prints
the launch argv, one argument per line, and neither waits nor launches.

Environment contract (set by the head node on the main node):

``MNP_WIRING_DIR`` (required unless ``--mpi none`` on one node)
    Absolute directory holding ``ssh_config``, ``known_hosts``, ``id_ed25519``,
    ``hostfile.openmpi``, ``hostfile.mpich`` and ``ssh-wrapper`` (hostfiles list the node
    aliases, main first, with the tasks per node as slots).
``MNP_NODE_ALIASES`` (required)
    Space-separated ssh aliases of the job's nodes, main node first (``node0 node1 …``).
``MNP_NUM_NODES`` (optional)
    Number of nodes; when set it must equal the number of aliases.
``MNP_NODE_INDEX``, ``MNP_MAIN_NODE_INDEX`` (optional)
    This node's index and the main node's (default ``AWS_BATCH_JOB_MAIN_NODE_INDEX``, else
    0); when both are known they must be equal: MPI is started by the main node only.
``MNP_TASKS_PER_NODE`` (optional, default 1)
    Ranks per node; ranks default to nodes × tasks per node.
``MNP_MPI_IFACE`` (optional)
    Network interface (or Open MPI list/CIDR) MPI traffic is pinned to; ``--iface`` wins.
``MNP_MPI_FORWARD_ENV`` (optional)
    Names (space- or comma-separated) of variables forwarded to every rank, with ``-x``.

A command name without ``/`` is resolved on this node's ``PATH`` first, because remote
nodes start ranks with their own, non-interactive ``PATH``.

Exit codes of the launcher itself (after the exec, the code is MPI's): 64 bad arguments or
environment, 69 no usable ``mpiexec``, 70 nodes not ready before ``--ready-timeout``,
127 the command (``--mpi none``) cannot be executed.

Only the standard library and the plain-data parts of ``mnp`` are imported.
"""

from __future__ import annotations

from launcher.wire.launch import (
    build_argv,
    launcher_candidates,
    plain_alias,
    resolve_launcher,
    version_text,
)
from launcher.wire.main import main, run, wait_for_file
from launcher.wire.options import (
    DEFAULT_READY_TIMEOUT,
    ENV_BATCH_MAIN_NODE_INDEX,
    ENV_FORWARD,
    ENV_IFACE,
    ENV_MAIN_NODE_INDEX,
    ENV_NODE_ALIASES,
    ENV_NODE_INDEX,
    ENV_NUM_NODES,
    ENV_TASKS_PER_NODE,
    ENV_WIRING_DIR,
    EXIT_CANNOT_EXEC,
    EXIT_NOT_READY,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FIRST_BACKOFF,
    MAX_BACKOFF,
    MIN_PROBE_TIMEOUT,
    MPI_CHOICES,
    PROBE_TIMEOUT,
    VERSION_TIMEOUT,
    Layout,
    Options,
    WireError,
    layout_from_env,
    parse_args,
)
from launcher.wire.ready import Probe, ssh_probe, wait_until_ready

__all__ = [
    "DEFAULT_READY_TIMEOUT",
    "ENV_BATCH_MAIN_NODE_INDEX",
    "ENV_FORWARD",
    "ENV_IFACE",
    "ENV_MAIN_NODE_INDEX",
    "ENV_NODE_ALIASES",
    "ENV_NODE_INDEX",
    "ENV_NUM_NODES",
    "ENV_TASKS_PER_NODE",
    "ENV_WIRING_DIR",
    "EXIT_CANNOT_EXEC",
    "EXIT_NOT_READY",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "FIRST_BACKOFF",
    "MAX_BACKOFF",
    "MIN_PROBE_TIMEOUT",
    "MPI_CHOICES",
    "PROBE_TIMEOUT",
    "VERSION_TIMEOUT",
    "Layout",
    "Options",
    "Probe",
    "WireError",
    "build_argv",
    "launcher_candidates",
    "layout_from_env",
    "main",
    "parse_args",
    "plain_alias",
    "resolve_launcher",
    "run",
    "ssh_probe",
    "version_text",
    "wait_for_file",
    "wait_until_ready",
]
