"""Slurm's commands inside jobs on the default local nodes (their own network namespaces when
the head runs as root), reaching the head through the node agent's relay with the job's own
token; and hold, release and requeue from the command line."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for
from tests.integration.slurmcmds import commands_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("injobs") / "home", nodes=2, vcpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return commands_dir(tmp_path_factory)


def slurm(c: Cluster, bin_dir: Path, cwd: Path, *argv: str) -> str:
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "MNP_HOME": str(c.home)}
    for name in ("MNP_URL", "MNP_TOKEN", "PYTHONPATH"):
        env.pop(name, None)
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


def state(c: Cluster, bin_dir: Path, cwd: Path, job: str) -> str:
    return slurm(c, bin_dir, cwd, "squeue", "-j", job, "-h", "-o", "%T %r").strip()


def ended(c: Cluster, job: str) -> bool:
    return c.client.describe(job)["status"] in ("SUCCEEDED", "FAILED")


def test_a_job_runs_squeue_and_sacct_on_itself_with_no_set_up(
    c: Cluster, bin_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.sh").write_text(
        "#!/bin/bash\n#SBATCH -o job.out\n"
        'echo "state=$(squeue -j "$SLURM_JOB_ID" -h -o %T)"\n'
        'echo "acct=$(sacct -j "$SLURM_JOB_ID" -P -n -X --format=JobID,State)"\n'
    )
    job = slurm(c, bin_dir, tmp_path, "sbatch", "--parsable", "job.sh").strip()
    wait_for("the job to end", lambda: ended(c, job), timeout=60)
    text = (tmp_path / "job.out").read_text()
    assert "state=RUNNING\n" in text and f"acct={job}|RUNNING\n" in text, text


def test_sbatch_hold_then_release_and_scontrol_hold_of_a_pending_job(
    c: Cluster, bin_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "quick.sh").write_text("#!/bin/bash\ntrue\n")
    held = slurm(c, bin_dir, tmp_path, "sbatch", "-H", "--parsable", "quick.sh").strip()
    wait_for("the job to be held", lambda: state(c, bin_dir, tmp_path, held).startswith(
        "PENDING JobHeldUser"), timeout=30)  # fmt: skip
    record = slurm(c, bin_dir, tmp_path, "scontrol", "show", "job", held, "-o")
    assert "JobState=PENDING" in record and "Reason=JobHeldUser" in record, record
    slurm(c, bin_dir, tmp_path, "scontrol", "release", held)
    wait_for("the released job to end", lambda: ended(c, held),
             timeout=60)  # fmt: skip
    assert c.client.describe(held)["status"] == "SUCCEEDED"
    # a job behind a dependency is held, released, and then waits for the dependency only
    (tmp_path / "slow.sh").write_text("#!/bin/bash\nsleep 5\n")
    first = slurm(c, bin_dir, tmp_path, "sbatch", "--parsable", "slow.sh").strip()
    after = slurm(c, bin_dir, tmp_path, "sbatch", "--parsable", "-d", f"afterok:{first}",
                  "quick.sh").strip()  # fmt: skip
    slurm(c, bin_dir, tmp_path, "scontrol", "hold", after)
    assert state(c, bin_dir, tmp_path, after).startswith("PENDING JobHeldUser")
    slurm(c, bin_dir, tmp_path, "scontrol", "release", after)
    wait_for("both jobs to end", lambda: ended(c, after), timeout=60)
    assert c.client.describe(after)["status"] == "SUCCEEDED"


def test_scontrol_requeue_runs_a_job_again_under_the_same_id(
    c: Cluster, bin_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    (tmp_path / "twice.sh").write_text(
        f"#!/bin/bash\necho run >> {marker}\n"
        f'if [ "$(wc -l < {marker})" -lt 2 ]; then scontrol requeue "$SLURM_JOB_ID"; sleep 60; fi\n'
    )
    job = slurm(c, bin_dir, tmp_path, "sbatch", "--parsable", "twice.sh").strip()
    wait_for("the job to end", lambda: ended(c, job), timeout=90)
    detail = c.client.describe(job)
    assert detail["status"] == "SUCCEEDED" and marker.read_text() == "run\nrun\n"
    assert [a["statusReason"] for a in detail["attempts"]][:1] == ["Requeued: scontrol requeue"]
    restarts = slurm(c, bin_dir, tmp_path, "scontrol", "show", "job", job, "-o")
    assert "Restarts=1" in restarts, restarts
