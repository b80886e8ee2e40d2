"""Multi-node parallel jobs on real local nodes: MPI over SSH, every-node mode, faults."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALLREDUCE = str(ROOT / "examples" / "mpi_allreduce.py")
OPENMPI_LIBMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
RANK_LINE = re.compile(r"rank=(\d+) size=(\d+) node=(\S+) ok=(\w+)")


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Cluster(tmp_path_factory.mktemp("mnp") / "home", nodes=4, vcpus=2) as c:
        yield c


def mnp_definition(
    c: Cluster,
    name: str,
    main: list[str],
    others: list[str] | None = None,
    nodes: int = 4,
    mpi: str = "none",
    tasks: int | None = None,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> str:
    environment = [{"name": k, "value": v} for k, v in (env or {}).items()]
    ranges: list[dict[str, Any]] = [
        {"targetNodes": "0", "container": {"command": main, "environment": environment}},
    ]
    if nodes > 1:
        container: dict[str, Any] = {"environment": environment}
        if others is not None:
            container["command"] = others
        ranges.append({"targetNodes": "1:", "container": container})
    settings: dict[str, Any] = {"mpi": mpi, "readyTimeoutSeconds": 20}
    if tasks is not None:
        settings["tasksPerNode"] = tasks
    body = {
        "jobDefinitionName": name,
        "type": "multinode",
        "nodeProperties": {
            "numNodes": nodes, "mainNode": 0, "nodeRangeProperties": ranges, "mnp": settings,
        },
        **extra,
    }  # fmt: skip
    return str(c.client.register_job_definition(body)["jobDefinitionArn"])


def settled(c: Cluster, job_id: str, nodes: int) -> list[dict[str, Any]]:
    """Every node job, once each has reached SUCCEEDED or FAILED."""

    def done() -> list[dict[str, Any]] | None:
        ds = c.client.describe_jobs([f"{job_id}#{i}" for i in range(nodes)])
        return ds if all(d["status"] in ("SUCCEEDED", "FAILED") for d in ds) else None

    return wait_for(f"the nodes of {job_id} to settle", done, timeout=30)


def check_ranks(output: str, ranks: int, nodes: int) -> None:
    found = RANK_LINE.findall(output)
    assert len(found) == ranks, output
    assert all(ok == "True" and int(size) == ranks for _, size, _, ok in found), output
    per_node = Counter(addr for _, _, addr, _ in found)
    assert len(per_node) == nodes, f"ranks did not spread over {nodes} nodes: {per_node}"
    assert set(per_node.values()) == {ranks // nodes}, per_node


@pytest.mark.parametrize("flavour", ["mpich", "openmpi"])
def test_mpi_allreduce_on_four_nodes(four: Cluster, flavour: str) -> None:
    c = four
    env = {"MPI4PY_LIBMPI": OPENMPI_LIBMPI, "MNP_MPI_FORWARD_ENV": "MPI4PY_LIBMPI"} \
        if flavour == "openmpi" else {}  # fmt: skip
    mnp_definition(
        c, f"allreduce-{flavour}", [sys.executable, ALLREDUCE], mpi=flavour, tasks=2, env=env
    )
    job = c.submit("allreduce", f"allreduce-{flavour}")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    out = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    check_ranks(out, ranks=8, nodes=4)
    assert "allreduce ok on 4 nodes" in out
    # main node first, then the others once it ran; all four nodes distinct
    nodes = settled(c, job, 4)
    assert len({n["nodeId"] for n in nodes}) == 4
    main_running = next(h["at"] for h in nodes[0]["history"] if h["status"] == "RUNNING")
    for child in nodes[1:]:
        started = next(h["at"] for h in child["history"] if h["status"] == "STARTING")
        assert started >= main_running
        assert child["nodeDetails"] == {
            "nodeIndex": child["nodeDetails"]["nodeIndex"],
            "isMainNode": False,
        }
    assert d["nodeProperties"]["numNodes"] == 4

    # the job's private key and wiring files are gone from every node with the attempt
    def wiring_gone() -> bool:
        return not list((c.home / "nodes").glob(f"*/jobs/{job}_*.*/.mnp"))

    wait_for("the wiring directories to be removed", wiring_gone)
    listed = c.client.call("listJobs", {"multiNodeJobId": job, "allStatuses": True})
    assert sorted(j["jobId"] for j in listed["jobSummaryList"]) == [f"{job}#{i}" for i in range(4)]


def test_every_node_environment(four: Cluster) -> None:
    c = four
    probe = ["sh", "-c", 'echo "idx=$AWS_BATCH_JOB_NODE_INDEX n=$AWS_BATCH_JOB_NUM_NODES '
             'main=$AWS_BATCH_JOB_MAIN_NODE_INDEX '
             'mainip=${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS-unset} '
             'master=$MASTER_ADDR:$MASTER_PORT world=$WORLD_SIZE rank=$NODE_RANK '
             'slurm=$SLURM_NNODES/$SLURM_NODEID/$SLURM_JOB_NODELIST nccl=$NCCL_SOCKET_IFNAME '
             'addr=$MNP_NODE_ADDRESS"']  # fmt: skip
    mnp_definition(c, "env-probe-mnp", probe, others=probe, nodes=3)
    job = c.submit("env", "env-probe-mnp")
    assert c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)["status"] == "SUCCEEDED"
    nodes = settled(c, job, 3)
    lines = [c.logs(f"{job}#{i}").strip() for i in range(3)]
    main_addr = nodes[0]["nodeAddress"]
    port = re.search(r"master=\S+:(\d+)", lines[0])
    assert port is not None
    for i, line in enumerate(lines):
        assert f"idx={i} n=3 main=0 " in line
        assert f"master={main_addr}:{port.group(1)} world=3 rank={i}" in line
        assert f"addr={nodes[i]['nodeAddress']}" in line
        iface = "lo" if main_addr.startswith("127.") else "eth0"  # loopback / namespace nodes
        assert f"nccl={iface}" in line and f"slurm=3/{i}/local-[" in line
        assert ("mainip=unset" in line) == (i == 0)
        if i:
            assert f"mainip={main_addr}" in line
    # another job at the same time never gets the same MASTER_PORT
    other = c.submit("env2", "env-probe-mnp")
    assert c.wait_status(other, "SUCCEEDED", "FAILED", timeout=60)["status"] == "SUCCEEDED"


def test_torch_gloo_all_reduce_every_node(four: Cluster) -> None:
    pytest.importorskip("torch")
    c = four
    cmd = [sys.executable, str(ROOT / "examples" / "torch_ddp.py")]
    mnp_definition(c, "ddp", cmd, others=cmd, nodes=2)
    job = c.submit("ddp", "ddp")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=120)
    assert d["status"] == "SUCCEEDED", (d, [c.logs(f"{job}#{i}") for i in range(2)])

    def outs() -> list[str] | None:  # a node's last output may still be on its way
        got = [c.logs(f"{job}#{i}") for i in range(2)]
        return got if all("ok=True" in o for o in got) else None

    wait_for("both nodes' ok=True in their logs", outs, timeout=20)


def test_two_gangs_compete_for_the_same_nodes_without_deadlock(four: Cluster) -> None:
    c = four
    mnp_definition(c, "hold3", ["sleep", "1"], nodes=3)
    a = c.submit("a", "hold3")
    b = c.submit("b", "hold3")
    da = c.wait_status(a, "SUCCEEDED", "FAILED", timeout=60)
    db = c.wait_status(b, "SUCCEEDED", "FAILED", timeout=60)
    assert da["status"] == db["status"] == "SUCCEEDED"
    # 3 + 3 nodes do not fit 4 at once: one ran after the other, never interleaved
    assert da["stoppedAt"] <= db["startedAt"] or db["stoppedAt"] <= da["startedAt"]


def test_gang_larger_than_any_environment_says_why(four: Cluster) -> None:
    c = four
    mnp_definition(c, "too-big", ["true"], nodes=6)
    job = c.submit("too-big", "too-big")

    def reason() -> str | None:
        d = c.client.describe(job)
        return d.get("statusReason") if d["status"] == "RUNNABLE" else None

    text = wait_for("a statusReason", reason)
    assert "needs 6 nodes" in text and text.startswith("MISCONFIGURATION")
    c.client.cancel(job, "too big")
    assert c.wait_status(job, "FAILED")["isCancelled"]


def test_rank_failure_fails_the_job_with_its_exit_code(four: Cluster) -> None:
    c = four
    script = (
        "import sys\nfrom mpi4py import MPI\nsys.exit(7 if MPI.COMM_WORLD.Get_rank() == 3 else 0)\n"
    )
    mnp_definition(
        c,
        "rank-dies",
        [sys.executable, "-c", script],
        mpi="mpich",
        tasks=1,
        timeout={"attemptDurationSeconds": 60},
    )
    job = c.submit("rank-dies", "rank-dies")
    t0 = time.monotonic()
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=45)
    assert d["status"] == "FAILED", d
    assert time.monotonic() - t0 < 30  # within seconds, not at the timeout
    settled(c, job, 4)


def test_child_that_never_starts_fails_the_attempt_with_a_reason(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "home", nodes=2, vcpus=2, lost_after=30)
    c.start()
    frozen: int | None = None
    try:
        mnp_definition(c, "waits", ["true"], nodes=2)
        # freeze one node agent: it stays registered but never starts its part
        victim = c.agent_pids()["local-2"]
        os.kill(victim, signal.SIGSTOP)
        frozen = victim
        body = c.client.call("describeJobDefinitions", {"jobDefinitionName": "waits"})
        assert body["jobDefinitions"]
        c.client.register_job_definition({
            "jobDefinitionName": "waits", "type": "multinode",
            "nodeProperties": {"numNodes": 2, "mainNode": 0, "mnp": {"readyTimeoutSeconds": 2},
                               "nodeRangeProperties": [
                                   {"targetNodes": "0", "container": {"command": ["true"]}},
                                   {"targetNodes": "1", "container": {}}]}})  # fmt: skip
        job = c.submit("waits", "waits")
        d = c.wait_status(job, "FAILED", "SUCCEEDED", timeout=30)
        assert d["status"] == "FAILED"
        assert "did not all start within 2 s" in c.logs(f"{job}#0")
        assert d["attempts"][0]["container"]["exitCode"] == 70
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        c.stop()


def test_lost_child_fails_the_attempt_and_the_retry_takes_a_fresh_gang(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "home", nodes=3, vcpus=2, lost_after=3)
    c.start()
    try:
        script = (
            '[ "$AWS_BATCH_JOB_ATTEMPT" = 1 ] && sleep 60; echo "attempt $AWS_BATCH_JOB_ATTEMPT"'
        )
        mnp_definition(c, "survivor", ["sh", "-c", script], nodes=2, retryStrategy={"attempts": 2})
        job = c.submit("survivor", "survivor")

        def child_running() -> str | None:
            d = c.client.describe(f"{job}#1")
            return d["nodeId"] if d["status"] == "RUNNING" else None

        child_node = wait_for("the child node to run", child_running)
        c.wait_status(job, "RUNNING")
        os.kill(c.agent_pids()[child_node], signal.SIGKILL)
        t0 = time.monotonic()
        d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
        assert d["status"] == "SUCCEEDED", d
        first = d["attempts"][0]
        assert child_node in first["statusReason"] and "lost" in first["statusReason"].lower()
        assert len(d["attempts"]) == 2
        assert time.monotonic() - t0 < 40
        assert "attempt 2" in c.logs(f"{job}#0").splitlines()
        nodes = settled(c, job, 2)
        assert nodes[1]["nodeId"] != child_node  # the retry ran on a fresh gang
    finally:
        c.stop()


def test_rank_exiting_without_finalize_fails_within_seconds(four: Cluster) -> None:
    """MPICH's mpiexec hangs when a rank exits without MPI_Finalize; mnp notices its proxy
    ended on that node and stops the job long before the timeout."""
    c = four
    script = (
        "import os\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\n"
        "if c.Get_rank() == 3:\n    os._exit(7)\nc.Barrier()\n"
    )
    mnp_definition(
        c,
        "no-finalize",
        [sys.executable, "-c", script],
        mpi="mpich",
        tasks=1,
        timeout={"attemptDurationSeconds": 300},
    )
    job = c.submit("no-finalize", "no-finalize")
    c.wait_status(job, "RUNNING", "FAILED", timeout=30)
    t0 = time.monotonic()
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "FAILED"
    assert time.monotonic() - t0 < 45
    assert "hung" in d["statusReason"] and "ended" in d["statusReason"]
    settled(c, job, 4)


def test_users_own_mpiexec_finds_the_hostfile_in_place(four: Cluster) -> None:
    """mpi: none: mnp builds nothing; a bare ``mpiexec -n 8`` reads the hostfile, launcher and
    ssh_config from the variables every node gets (HYDRA_HOST_FILE, HYDRA_LAUNCHER_EXTRA_ARGS)."""
    c = four
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    mnp_definition(c, "own-mpiexec", [mpiexec, "-n", "8", sys.executable, ALLREDUCE], tasks=2)
    job = c.submit("own", "own-mpiexec")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    out = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    check_ranks(out, ranks=8, nodes=4)


def test_timeout_covers_the_whole_mnp_job(four: Cluster) -> None:
    c = four
    mnp_definition(
        c,
        "mnp-slow",
        ["sleep", "60"],
        nodes=3,
        retryStrategy={"attempts": 3},
        timeout={"attemptDurationSeconds": 2},
    )
    job = c.submit("slow", "mnp-slow")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
    assert d["status"] == "FAILED"
    assert "timeout" in d["statusReason"].lower()
    assert len(d["attempts"]) == 1  # never retried
    nodes = settled(c, job, 3)
    assert all(n["status"] == "FAILED" for n in nodes)


def test_a_script_may_run_mpiexec_several_times(four: Cluster) -> None:
    """Each launch's proxies end together, so consecutive launches are not taken for a hang
    (the cluster's hang allowance is 3 s; the pause between launches is longer)."""
    c = four
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    script = f"set -e; for i in 1 2 3; do {mpiexec} -n 8 true; sleep 4; done; echo three launches"
    mnp_definition(c, "many-launches", ["sh", "-c", script], tasks=2)
    job = c.submit("many", "many-launches")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert d["status"] == "SUCCEEDED", (d, c.logs(f"{job}#0"))
    assert "three launches" in c.logs(f"{job}#0")
