"""The Python API and its examples against a real head node with local nodes: each example end
to end (through :func:`mnp.submit` or ``mnp submit --follow``), streamed output labelled per job,
child and node, and :class:`mnp.JobFailed` naming a failed job."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnp.cli.demo import mpi_available
from mnp.client.dsl import Job, MpiJob
from mnp.client.jobspec import load_jobspec
from mnp.client.run import JobFailed, Run, submit
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEADLINE = 120.0


def run_example(c: Cluster, name: str, shared: Path) -> tuple[dict[str, str], str]:
    """Submit ``examples/<name>.py``'s specs with the API; (final statuses, streamed output)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNP_SHARED", str(shared))
        specs = load_jobspec(EXAMPLES / f"{name}.py").specs
    out = io.StringIO()
    statuses = submit(specs, c.client).wait(out=out, timeout=DEADLINE)
    return statuses, out.getvalue()


def mnp_follow(c: Cluster, path: Path, shared: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url,
         "submit", str(path), "--follow"],
        capture_output=True, text=True, timeout=DEADLINE + 30, cwd=ROOT,
        env={**os.environ, "MNP_SHARED": str(shared)},
    )  # fmt: skip


def test_monte_carlo_estimates_pi(shared_cluster: Cluster, tmp_path: Path) -> None:
    statuses, output = run_example(shared_cluster, "monte_carlo", tmp_path)
    assert statuses == {"pi-estimate": "SUCCEEDED", "pi-reduce": "SUCCEEDED"}
    for i in range(4):
        assert re.search(rf"^pi-estimate\[{i}\]: part {i}: \d+ of 200000 inside$", output, re.M)
    found = re.search(r"^pi-reduce: pi ≈ (\d\.\d+) from 800000 samples in 4 parts$", output, re.M)
    assert found, output
    assert abs(float(found.group(1)) - math.pi) < 0.02
    assert (tmp_path / "monte_carlo" / "pi.json").is_file()


def test_genomics_chain_writes_every_sample(shared_cluster: Cluster, tmp_path: Path) -> None:
    statuses, output = run_example(shared_cluster, "genomics", tmp_path)
    assert statuses == {"align": "SUCCEEDED", "call": "SUCCEEDED", "annotate": "SUCCEEDED"}
    for i in range(4):
        sample = tmp_path / "genomics" / f"sample-{i}"
        for name in ("reads.fastq", "aligned.tsv", "variants.vcf", "annotated.tsv"):
            assert (sample / name).is_file(), f"{sample / name} missing"
        assert (sample / "annotated.tsv").read_text().startswith("POS\tREF\tALT\tGENE\n")
        for step in ("align", "call", "annotate"):
            assert re.search(rf"^{step}\[{i}\]: sample {i}: ", output, re.M), output


def test_sweep_through_mnp_submit_follow(shared_cluster: Cluster, tmp_path: Path) -> None:
    r = mnp_follow(shared_cluster, EXAMPLES / "sweep.py", tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(6):
        assert re.search(rf"^sweep\[{i}\]: lr=\S+ momentum=\S+ loss=\S+$", r.stdout, re.M)
    assert re.search(r"^mnp: sweep \S+ SUCCEEDED$", r.stderr, re.M)


@pytest.mark.skipif(mpi_available() is not None, reason=f"MPI: {mpi_available()}")
def test_mpi_job_shows_every_rank(shared_cluster: Cluster, tmp_path: Path) -> None:
    statuses, output = run_example(shared_cluster, "mpi_job", tmp_path)
    assert statuses == {"mpi-allreduce": "SUCCEEDED"}
    ranks = re.findall(r"^mpi-allreduce: rank=(\d) size=4 node=\S+ ok=True$", output, re.M)
    assert sorted(ranks) == ["0", "1", "2", "3"], output
    assert "mpi-allreduce: allreduce ok on 2 nodes\n" in output


@pytest.mark.skipif(mpi_available() is not None, reason=f"MPI: {mpi_available()}")
def test_pipeline_job_array_mpi_report(shared_cluster: Cluster, tmp_path: Path) -> None:
    r = mnp_follow(shared_cluster, EXAMPLES / "pipeline_api.py", tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    lines = r.stdout.splitlines()
    assert any(ln.startswith("prepare: wrote ") for ln in lines)
    assert {ln.split(":")[0] for ln in lines if ln.startswith("simulate[")} == {
        f"simulate[{i}]" for i in range(4)
    }
    assert "report: total of 4 simulations = 30" in lines  # it read every child's file
    assert "allreduce: allreduce ok on 2 nodes" in lines


def test_a_failed_job_is_named_with_its_exit_code(shared_cluster: Cluster, tmp_path: Path) -> None:
    c = shared_cluster
    boom = Job("api-boom", ["bash", "-c", "echo about to fail; echo oops >&2; exit 3"])
    after = Job("api-after-boom", ["echo", "never"], depends_on=[boom])
    fine = Job("api-fine", ["echo", "fine here"])
    run = submit([after, fine], c.client)
    out = io.StringIO()
    with pytest.raises(JobFailed) as exc:
        run.wait(out=out, timeout=DEADLINE)
    assert exc.value.statuses == {
        "api-boom": "FAILED", "api-fine": "SUCCEEDED", "api-after-boom": "FAILED",
    }  # fmt: skip
    boom_failure = exc.value.failures[0]
    assert (boom_failure.name, boom_failure.exit_code) == ("api-boom", 3)
    assert str(exc.value).startswith("2 jobs failed: api-boom (")
    assert "api-after-boom" in str(exc.value)
    text = out.getvalue()
    assert "api-boom: about to fail\n" in text and "api-boom: oops\n" in text
    assert "api-fine: fine here\n" in text
    assert "never" not in text

    # The same through a job-spec file and `mnp submit --follow`: exit status 1, named.
    spec = tmp_path / "failing.py"
    spec.write_text(textwrap.dedent("""
        from mnp import ArrayJob
        JOBS = [ArrayJob("api-half", ["bash", "-c", "echo child $AWS_BATCH_JOB_ARRAY_INDEX; "
                                      "[ $AWS_BATCH_JOB_ARRAY_INDEX != 1 ]"], size=2)]
    """))  # fmt: skip
    r = mnp_follow(c, spec, tmp_path)
    assert r.returncode == 1
    assert "api-half[0]: child 0" in r.stdout and "api-half[1]: child 1" in r.stdout
    assert "error: 1 job failed: api-half (" in r.stderr
    assert "1 of 2 children failed: [1]" in r.stderr and "(exit code 1)" in r.stderr


def test_run_follows_jobs_submitted_otherwise_and_cancels(shared_cluster: Cluster) -> None:
    c = shared_cluster
    defn = {"jobDefinitionName": "api-plain", "type": "container",
            "containerProperties": {"command": ["bash", "-c", "echo plain; sleep 60"]}}  # fmt: skip
    c.client.register_job_definition(defn)
    job_id = c.client.submit(
        {"jobName": "api-plain", "jobQueue": "default", "jobDefinition": "api-plain"}
    )
    run = Run(c.client, {"plain": job_id})
    with pytest.raises(TimeoutError, match="plain"):
        run.wait(out=io.StringIO(), timeout=1.0)
    run.cancel("done with it")
    with pytest.raises(JobFailed, match="plain"):
        run.wait(out=io.StringIO(), timeout=30)


def test_every_node_job_streams_each_node(shared_cluster: Cluster) -> None:
    say = "echo node $AWS_BATCH_JOB_NODE_INDEX of $AWS_BATCH_JOB_NUM_NODES"
    job = MpiJob("api-every", ["bash", "-c", say], nodes=2, every_node=True)
    out = io.StringIO()
    assert submit(job, shared_cluster.client).wait(out=out, timeout=DEADLINE) == {
        "api-every": "SUCCEEDED"
    }
    assert sorted(out.getvalue().splitlines()) == [
        "api-every#1: node 1 of 2",
        "api-every: node 0 of 2",
    ]
