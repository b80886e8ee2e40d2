"""``srun`` in batch jobs on a real head node with 2 local node agents (2 vCPUs each): a step of
an mpi4py program is one MPI world, programs are found in the working directory, a two-node
step runs a node-level script once per node, and a failing task fails the step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"^Submitted batch job (\S+)\n\Z")


def _have_mpich() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return (Path(sys.executable).parent / "mpiexec").exists()


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("srun") / "home", nodes=2, vcpus=2) as cluster:
        yield cluster


def run_script(c: Cluster, cwd: Path, text: str, out: str, timeout: float = 120) -> str:
    """Submit ``text`` with ``mnp sbatch`` from ``cwd``; the job's output once it succeeded."""
    (cwd / "job.sh").write_text(text)
    argv = [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, "sbatch", "job.sh"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    m = SUBMITTED.match(r.stdout)
    assert r.returncode == 0 and m is not None, r.stdout + r.stderr
    detail = c.wait_status(m.group(1), "SUCCEEDED", "FAILED", timeout=timeout)
    path = cwd / out
    wait_for(f"{path} to be written", path.exists)
    assert detail["status"] == "SUCCEEDED", (detail, path.read_text())
    return path.read_text()


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_a_one_node_step_of_an_mpi_program_is_one_world(c: Cluster, tmp_path: Path) -> None:
    code = (
        "import os; from mpi4py import MPI; w = MPI.COMM_WORLD; "
        "r = w.Get_rank(); line = 'rank %d %d %s' % (r, w.Get_size(), os.environ['SLURM_PROCID']); "
        "os.write(1, (line + chr(10)).encode())"
    )
    text = run_script(c, tmp_path, (
        "#!/bin/sh\n#SBATCH -n 4 -o out.txt\n"
        f"srun -n 4 {sys.executable} -c \"{code}\"\n"
    ), "out.txt")  # fmt: skip
    rows = sorted(line.split()[1:] for line in text.splitlines() if line.startswith("rank "))
    assert rows == [[str(i), "4", str(i)] for i in range(4)], text


def test_a_program_in_the_working_directory_is_found(c: Cluster, tmp_path: Path) -> None:
    (tmp_path / "hello-prog").write_text("#!/bin/sh\necho hello from $SLURM_PROCID\n")
    (tmp_path / "hello-prog").chmod(0o755)
    text = run_script(
        c, tmp_path, "#!/bin/sh\n#SBATCH -o out.txt\nsrun -n 1 hello-prog\n", "out.txt"
    )
    assert text.splitlines() == ["hello from 0"], text


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_a_two_node_step_runs_a_node_script_once_per_node(c: Cluster, tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text(
        'echo "node $SLURM_NODEID task $SLURM_PROCID of $SLURM_NTASKS on $MNP_NODE_ID '
        'per-node $SLURM_TASKS_PER_NODE"\n'
    )
    text = run_script(c, tmp_path, (
        "#!/bin/sh\n#SBATCH -N 2 --ntasks-per-node=2 -o out.txt\n"
        "srun -N 2 --ntasks-per-node 1 bash run.sh\n"
    ), "out.txt")  # fmt: skip
    rows = sorted(line.split() for line in text.splitlines() if line.startswith("node "))
    assert [(r[1], r[3], r[5], r[9]) for r in rows] == [
        ("0", "0", "2", "1(x2)"), ("1", "1", "2", "1(x2)")
    ], text  # fmt: skip
    assert rows[0][7] != rows[1][7]  # two nodes


def test_a_failing_task_fails_the_step(c: Cluster, tmp_path: Path) -> None:
    text = run_script(c, tmp_path, (
        "#!/bin/sh\n#SBATCH -n 2 -o out.txt\n"
        "srun sh -c 'exit $((SLURM_PROCID * 3))'\necho \"step exit $?\"\n"
        "srun -n 2 true\necho \"step exit $?\"\n"
    ), "out.txt")  # fmt: skip
    codes = [line for line in text.splitlines() if line.startswith("step exit")]
    assert codes[1] == "step exit 0" and codes[0] != "step exit 0", text


def test_sbatch_signal_reaches_the_tasks_before_the_time_limit(c: Cluster, tmp_path: Path) -> None:
    """``#SBATCH --signal=USR2@3`` with a 6 s limit: srun's task gets SIGUSR2 about 3 s
    before the limit (submitit's checkpoint-before-timeout), and may end cleanly then."""
    code = (
        "import signal, sys, time; t0 = time.monotonic(); "
        "signal.signal(signal.SIGUSR2, lambda *a: (print('got USR2 after %.1f s' % "
        "(time.monotonic() - t0), flush=True), sys.exit(0))); time.sleep(30)"
    )
    text = run_script(c, tmp_path, (
        "#!/bin/sh\n#SBATCH -o out.txt --time=0:06 --signal=USR2@3\n"
        f"srun -n 1 --mpi=none {sys.executable} -c \"{code}\"\n"
    ), "out.txt", timeout=60)  # fmt: skip
    m = re.search(r"got USR2 after ([0-9.]+) s", text)
    assert m is not None, text
    assert 1.0 <= float(m.group(1)) <= 4.5, text
