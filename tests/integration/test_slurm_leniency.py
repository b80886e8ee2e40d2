"""Slurm's leniency end to end (issue 14): ``mnp sbatch`` in a subprocess against a real head
with 4 local nodes of 2 vCPUs. Unknown partitions and jobs that can never fit are refused at
submit in Slurm's words; a partition an admin makes with ``mnp queue create`` takes jobs;
Slurm's synonyms and getopt prefixes, any job name, exported bash functions and missing
output directories work as under Slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"^Submitted batch job (\S+)\n\Z")


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("leniency") / "home", nodes=4, vcpus=2) as cluster:
        yield cluster


def mnp(
    c: Cluster, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=full_env)  # fmt: skip


def run_job(c: Cluster, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Submit, wait for SUCCEEDED; the job's id."""
    r = mnp(c, cwd, "sbatch", *args, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    m = SUBMITTED.match(r.stdout)
    assert m is not None, r.stdout
    detail = c.wait_status(m.group(1), "SUCCEEDED", "FAILED", timeout=60)
    assert detail["status"] == "SUCCEEDED", detail
    return m.group(1)


def test_an_unknown_partition_is_refused_in_slurms_words(c: Cluster, tmp_path: Path) -> None:
    r = mnp(c, tmp_path, "sbatch", "-p", "parallel", "--wrap", "true")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("sbatch: error: invalid partition specified: parallel\n"
                        "sbatch: error: Batch job submission failed: Invalid partition name "
                        "specified\n")  # fmt: skip


def test_a_queue_an_admin_creates_is_a_partition(c: Cluster, tmp_path: Path) -> None:
    ces = json.loads(mnp(c, tmp_path, "ces", "--json").stdout)
    r = mnp(c, tmp_path, "queue", "create", "parallel", "--ce", ces[0]["computeEnvironmentName"],
            "--priority", "5")  # fmt: skip
    assert r.returncode == 0, r.stderr
    job = run_job(c, tmp_path, "-p", "parallel", "-o", "p.out", "--wrap",
                  "echo $SLURM_JOB_PARTITION")  # fmt: skip
    assert (tmp_path / "p.out").read_text() == "parallel\n", job
    assert mnp(c, tmp_path, "queue", "update", "parallel", "--state", "DISABLED").returncode == 0


def test_tasks_per_node_and_nodes_make_two_by_two(c: Cluster, tmp_path: Path) -> None:
    run_job(c, tmp_path, "--tasks-per-node", "2", "-N", "2", "-o", "shape.out", "--wrap",
            "echo $SLURM_NNODES $SLURM_NTASKS $SLURM_NTASKS_PER_NODE")  # fmt: skip
    assert (tmp_path / "shape.out").read_text() == "2 4 2\n"


def test_a_prefix_a_dotted_name_and_a_missing_output_directory(c: Cluster, tmp_path: Path) -> None:
    run_job(c, tmp_path, "--err", "errs/deep/e-%j.txt", "--output=logs/new/o.txt",
            "-J", "run.v2 été", "--wrap", "echo out; echo err >&2")  # fmt: skip
    assert (tmp_path / "logs" / "new" / "o.txt").read_text() == "out\n"
    (err,) = (tmp_path / "errs" / "deep").iterdir()
    assert err.read_text() == "err\n"


def test_an_exported_bash_function_is_usable_in_the_job(c: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "uses_module.sh"
    script.write_text("#!/bin/bash\n#SBATCH -o fn.out\nmodule load gcc\n")
    function = '() {  echo "module called with: $*"\n}'
    run_job(c, tmp_path, str(script), env={"BASH_FUNC_module%%": function})
    assert (tmp_path / "fn.out").read_text() == "module called with: load gcc\n"


def test_a_job_that_can_never_fit_is_refused_at_submit(c: Cluster, tmp_path: Path) -> None:
    r = mnp(c, tmp_path, "sbatch", "-N", "1", "-n", "3", "--wrap", "true")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines()[-1] == (
        "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    )
    assert "nodes have 2" in r.stderr
