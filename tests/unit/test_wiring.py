"""What each node of an MNP attempt gets (mnp.build.multinode): node lists, ports, environment,
files.

Golden files live in ``tests/unit/golden/wiring/``; ``MNP_UPDATE_GOLDEN=1 pytest …`` rewrites
them (review the diff before committing).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from mnp.build.multinode import (
    PORT_BASE,
    PORT_SPAN,
    GangNode,
    build_wiring,
    main_command,
    main_first,
    master_port,
    node_environment,
    wiring_files,
)
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.noderanges import NodeSpec
from mnp.spec.protocol import PYTHON_PLACEHOLDER, WIRING_PLACEHOLDER
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import JobStatus
from tests.unit import goldens
from tests.unit.helpers_core import HOSTILE, make_job

GOLDEN = Path(__file__).parent / "golden" / "wiring"
W = WIRING_PLACEHOLDER
ALL_PORTS = range(PORT_BASE, PORT_BASE + PORT_SPAN)

HOST_KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMkBwLcDSfqk3YL6uRsiMgyMMBv4aft4iHgNOT6BHNGT mnp-node",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAB/ag6z9Ek8qg9Fy/wZ5qKjKO14AA3zf/Ats03/s7ZN",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd6Qg2z/5i4tJWuZqSJrx7rIqHA6zMZ37Iapx3qKXHF",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCCaNkZAN7ovu+WfMCMXI8CC+fRZl8l+cmRsO4iDDdG",
]
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
)


def assert_golden(name: str, text: str) -> None:
    goldens.check("wiring", name, text)


def gang_of(
    n: int = 4, prefix: str = "gpu-", vcpus: float = 8, ports: list[int] | None = None
) -> list[GangNode]:
    ports = ports or [40001, 22, 40003, 40004][:n] + [40100 + i for i in range(max(0, n - 4))]
    return [
        GangNode(
            i,
            Node(
                f"{prefix}{i + 1}",
                "ce",
                f"10.0.0.{11 + i}",
                Resources(vcpus, 16384, 0),
                NodeStatus.ACTIVE,
                ssh_port=ports[i],
                ssh_host_key=HOST_KEYS[i % len(HOST_KEYS)],
            ),
        )
        for i in range(n)
    ]


def mnp_parent(
    n: int = 4,
    main: int = 0,
    commands: list[list[str]] | None = None,
    tasks: int | None = None,
    mpi: str = "none",
    ready_timeout: float = 60.0,
) -> Job:
    commands = commands or [["main"] if i == main else [] for i in range(n)]
    job = make_job("job-1", JobStatus.RUNNING)
    job.spec.nodes = NodeSpec(
        num_nodes=n,
        main_node=main,
        containers=[ContainerSpec(list(c), {}, Resources(1, 0, 0)) for c in commands],
        mpi=mpi,
        tasks_per_node=tasks,
        ready_timeout_seconds=ready_timeout,
    )
    return job


# --- master_port ------------------------------------------------------------------------------


def test_master_port_is_derived_from_the_job_id() -> None:
    ports = {job_id: master_port(job_id, set()) for job_id in ("a", "b", "job-1", "x" * 64)}
    for job_id, port in ports.items():
        assert port == PORT_BASE + zlib.crc32(job_id.encode()) % PORT_SPAN
        assert port in ALL_PORTS
        assert master_port(job_id, set()) == port, "same id, same port"
    assert len(set(ports.values())) > 1


def _next(port: int) -> int:
    return PORT_BASE + (port - PORT_BASE + 1) % PORT_SPAN


def test_master_port_moves_past_taken_ports() -> None:
    first = master_port("job-1", set())
    assert master_port("job-1", {_next(_next(first))}) == first, "other ports do not matter"
    assert master_port("job-1", {first}) == _next(first)
    assert master_port("job-1", {first, _next(first)}) == _next(_next(first))


def test_master_port_wraps_to_the_start_of_the_span() -> None:
    last = PORT_BASE + PORT_SPAN - 1
    job_id = next(f"job-{i}" for i in range(100_000) if master_port(f"job-{i}", set()) == last)
    assert master_port(job_id, {last}) == PORT_BASE
    assert master_port(job_id, {last, PORT_BASE}) == PORT_BASE + 1


class _Spinning(Exception):
    pass


class _CountingSet(set[int]):
    """A set that gives up after too many membership checks (instead of hanging the test)."""

    def __init__(self, items: range, limit: int) -> None:
        super().__init__(items)
        self.calls = 0
        self.limit = limit

    def __contains__(self, item: object) -> bool:
        self.calls += 1
        if self.calls > self.limit:
            raise _Spinning(f"{self.calls} membership checks")
        return super().__contains__(item)


def test_master_port_terminates_when_every_port_is_taken() -> None:
    taken = _CountingSet(ALL_PORTS, limit=10 * PORT_SPAN)
    try:
        port = master_port("job-1", taken)
    except ValueError:
        return  # refusing is fine
    assert port not in ALL_PORTS


# --- node_environment -------------------------------------------------------------------------


@pytest.mark.parametrize("main", [0, 2])
def test_main_node_address_variable_only_on_non_main_nodes(main: int) -> None:
    parent, gang = mnp_parent(main=main), gang_of()
    for i in range(4):
        env = node_environment(parent, gang, i, 29999, None)
        if i == main:
            assert "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS" not in env
        else:
            assert env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == f"10.0.0.{11 + main}"


def test_node_environment_every_node_one_process_each() -> None:
    parent, gang = mnp_parent(), gang_of()
    envs = [node_environment(parent, gang, i, 29876, None) for i in range(4)]
    for i, env in enumerate(envs):
        assert {k: env[k] for k in SHARED} == {
            "AWS_BATCH_JOB_NUM_NODES": "4",
            "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0",
            "MASTER_ADDR": "10.0.0.11",
            "MASTER_PORT": "29876",
            "WORLD_SIZE": "4",
            "NNODES": "4",
            "MNP_MAIN_ADDR": "10.0.0.11",
            "MNP_WIRING_DIR": W,
            "MNP_NODE_ALIASES": "gpu-1 gpu-2 gpu-3 gpu-4",
            "MNP_MAIN_NODE_INDEX": "0",
            "MNP_NUM_NODES": "4",
            "MNP_TASKS_PER_NODE": "8",
            "MNP_HOSTFILE": f"{W}/hostfile",
            "MNP_SSH_CONFIG": f"{W}/ssh_config",
            "SLURM_JOB_NODELIST": "gpu-[1-4]",
            "SLURM_NNODES": "4",
            "SLURM_JOB_NUM_NODES": "4",
            "SLURM_NTASKS": "4",
            "SLURM_NTASKS_PER_NODE": "1",
        }
        assert {k: env[k] for k in PER_NODE} == {
            "AWS_BATCH_JOB_NODE_INDEX": str(i),
            "NODE_RANK": str(i),
            "GROUP_RANK": str(i),
            "RANK": str(i),
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
            "MNP_NODE_INDEX": str(i),
            "SLURM_NODEID": str(i),
            "SLURMD_NODENAME": f"gpu-{i + 1}",
        }
        assert not {"MNP_MPI_IFACE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"} & set(env)


SHARED = (
    "AWS_BATCH_JOB_NUM_NODES",
    "AWS_BATCH_JOB_MAIN_NODE_INDEX",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "NNODES",
    "MNP_MAIN_ADDR",
    "MNP_WIRING_DIR",
    "MNP_NODE_ALIASES",
    "MNP_MAIN_NODE_INDEX",
    "MNP_NUM_NODES",
    "MNP_TASKS_PER_NODE",
    "MNP_HOSTFILE",
    "MNP_SSH_CONFIG",
    "SLURM_JOB_NODELIST",
    "SLURM_NNODES",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
)
PER_NODE = (
    "AWS_BATCH_JOB_NODE_INDEX",
    "NODE_RANK",
    "GROUP_RANK",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MNP_NODE_INDEX",
    "SLURM_NODEID",
    "SLURMD_NODENAME",
)


def test_node_environment_with_tasks_per_node() -> None:
    parent, gang = mnp_parent(n=3, tasks=4), gang_of(3)
    env = node_environment(parent, gang, 1, 30000, None)
    assert env["WORLD_SIZE"] == env["SLURM_NTASKS"] == "12"
    assert env["SLURM_NTASKS_PER_NODE"] == env["MNP_TASKS_PER_NODE"] == "4"
    assert env["LOCAL_WORLD_SIZE"] == "4"
    assert "RANK" not in env and "LOCAL_RANK" not in env, "set per process by the launcher"
    assert env["NODE_RANK"] == "1"


def test_aliases_and_master_are_main_first_when_main_node_is_not_zero() -> None:
    parent, gang = mnp_parent(main=2), gang_of()
    for i in range(4):
        env = node_environment(parent, gang, i, 29500, None)
        assert env["MNP_NODE_ALIASES"] == "gpu-3 gpu-1 gpu-2 gpu-4"
        assert env["MASTER_ADDR"] == env["MNP_MAIN_ADDR"] == "10.0.0.13"
        assert env["AWS_BATCH_JOB_MAIN_NODE_INDEX"] == env["MNP_MAIN_NODE_INDEX"] == "2"
        assert env["SLURM_JOB_NODELIST"] == "gpu-[1-4]"
        assert env["AWS_BATCH_JOB_NODE_INDEX"] == str(i)


def test_the_main_node_is_rank_zero_when_main_node_is_not_zero() -> None:
    parent, gang = mnp_parent(main=2), gang_of()
    envs = [node_environment(parent, gang, i, 29500, None) for i in range(4)]
    assert envs[2]["NODE_RANK"] == envs[2]["RANK"] == "0"
    assert sorted(e["NODE_RANK"] for e in envs) == ["0", "1", "2", "3"]


def test_node_environment_pins_the_interface_when_given() -> None:
    parent, gang = mnp_parent(n=2), gang_of(2)
    env = node_environment(parent, gang, 1, 29500, "lo")
    assert env["MNP_MPI_IFACE"] == env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "lo"


def test_node_environment_points_every_mpi_at_the_wiring_directory() -> None:
    parent, gang = mnp_parent(n=2), gang_of(2)
    env = node_environment(parent, gang, 0, 29500, None)
    mpi_values = [v for k, v in env.items() if k.startswith(("OMPI_", "HYDRA_", "I_MPI_"))]
    assert mpi_values, "Open MPI / hydra variables are set"
    assert any(f"{W}/hostfile.openmpi" in v for v in mpi_values)
    assert any(f"{W}/hostfile.mpich" in v for v in mpi_values)
    assert any(f"{W}/ssh_config" in v for v in mpi_values)


def test_main_first_keeps_the_others_in_index_order() -> None:
    assert main_first(["a", "b", "c", "d"], 0) == ["a", "b", "c", "d"]
    assert main_first(["a", "b", "c", "d"], 2) == ["c", "a", "b", "d"]
    assert main_first(["a", "b", "c", "d"], 3) == ["d", "a", "b", "c"]


# --- wiring_files -----------------------------------------------------------------------------

GOLDEN_FILES = ("ssh_config", "known_hosts", "hostfile", "hostfile.openmpi", "hostfile.mpich")


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    """A fixed 4-node gang, main node 1, with different slots per node."""
    return wiring_files(gang_of(), [2, 4, 8, 1], PRIVATE_KEY, 1)


def test_wiring_files_are_the_expected_set(files: dict[str, str]) -> None:
    assert sorted(files) == sorted([*GOLDEN_FILES, "id_ed25519", "ssh-wrapper"])
    assert files["id_ed25519"] == PRIVATE_KEY


@pytest.mark.parametrize("name", [*GOLDEN_FILES, "ssh-wrapper"])
def test_wiring_files_golden(files: dict[str, str], name: str) -> None:
    assert_golden(name, files[name])


def test_hostfiles_list_the_main_node_first_with_its_slots(files: dict[str, str]) -> None:
    assert files["hostfile"] == "gpu-2\ngpu-1\ngpu-3\ngpu-4\n"
    assert files["hostfile.openmpi"].splitlines() == [
        "gpu-2 slots=4",
        "gpu-1 slots=2",
        "gpu-3 slots=8",
        "gpu-4 slots=1",
    ]
    assert files["hostfile.mpich"].splitlines() == ["gpu-2:4", "gpu-1:2", "gpu-3:8", "gpu-4:1"]


def test_ssh_files_name_every_node_with_its_port_and_key(files: dict[str, str]) -> None:
    config = files["ssh_config"]
    for i, port in enumerate([40001, 22, 40003, 40004]):
        addr = f"10.0.0.{11 + i}"  # `ssh gpu-N` and a bare `ssh <address>` alike
        assert f"Host gpu-{i + 1} {addr}\n    HostName {addr}\n    Port {port}\n" in config
    assert f'IdentityFile "{W}/id_ed25519"' in config
    assert f'UserKnownHostsFile "{W}/known_hosts"' in config
    lines = files["known_hosts"].splitlines()
    assert lines[1] == "10.0.0.12 " + HOST_KEYS[1], "port 22 is written bare"
    assert lines[0] == "[10.0.0.11]:40001 " + HOST_KEYS[0].rsplit(" ", 1)[0], "comment dropped"


def test_wiring_files_refuse_a_node_without_a_host_key() -> None:
    gang = gang_of(2)
    gang[1].node.ssh_host_key = None
    with pytest.raises(ValueError, match=r"nodes\[1\]\.host_key"):
        wiring_files(gang, [1, 1], PRIVATE_KEY, 0)


def test_build_wiring_gives_files_to_every_node() -> None:
    gang = gang_of(2)
    env = {"A": HOSTILE}
    main = build_wiring(gang, 0, 0, "ssh-ed25519 AAAA k", {"f": "x"}, env, hold=False)
    child = build_wiring(gang, 1, 0, "ssh-ed25519 AAAA k", {"f": "x"}, env, hold=True)
    assert (main.files, main.hold, main.authorized_key) == ({"f": "x"}, False, "ssh-ed25519 AAAA k")
    assert (child.files, child.hold, child.ssh_environment) == ({"f": "x"}, True, {"A": HOSTILE})


# --- main_command -----------------------------------------------------------------------------


def test_main_command_in_mpirun_mode() -> None:
    parent = mnp_parent(n=3, mpi="openmpi", ready_timeout=2.5)
    assert main_command(parent, ["python", "app.py"]) == [
        PYTHON_PLACEHOLDER,
        "-m",
        "launcher.wire",
        "--mpi",
        "openmpi",
        "--ready-timeout",
        "2.5",
        "--ready-file",
        f"{W}/ready",
        "--no-probe",
        "--",
        "python",
        "app.py",
    ]


@pytest.mark.parametrize(
    "commands",
    [
        [["child"], ["main"], []],  # every-node mode
        [["main"], [], []],  # only the main node runs a command (mpirun mode)
        [["main"]],  # a single-node gang
    ],
)
def test_main_command_waits_for_the_ready_file_without_ssh_probes(
    commands: list[list[str]],
) -> None:
    """The ready file means every node started (its agent let the key in first), so the
    launcher does not probe each node over SSH again."""
    parent = mnp_parent(n=len(commands), main=1 if len(commands) > 1 else 0, commands=commands)
    argv = main_command(parent, ["main"])
    assert argv.count("--no-probe") == 1
    assert argv.index("--no-probe") < argv.index("--")
    assert argv[argv.index("--ready-file") + 1] == f"{W}/ready"
    assert argv[argv.index("--ready-timeout") + 1] == "60"
    assert argv[-2:] == ["--", "main"]


def test_main_command_passes_a_hostile_command_unchanged() -> None:
    parent = mnp_parent(n=2)
    command = [HOSTILE, "--", "", "$HOME"]
    argv = main_command(parent, command)
    assert argv[argv.index("--") + 1 :] == command
