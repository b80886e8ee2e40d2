"""Slurm's commands on PATH (``mnp slurm install-commands``) against a real head node, as a
library that shells out to them would run them, and from inside a batch job.

The nodes are on loopback here (jobs on namespace nodes: ``test_slurm_in_jobs``). A job is
given the head's URL and its own token by its node's agent; the script below is also given
``MNP_HOME`` by name, which a client uses only when those are unset.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for
from tests.integration.slurmcmds import commands_dir, slurm_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from slurm_cluster(tmp_path_factory, "slurmcmds")


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return commands_dir(tmp_path_factory)


def slurm(c: Cluster, bin_dir: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` found on PATH as a library runs it: only the installed commands and the system's;
    the head found through ``MNP_HOME``."""
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "MNP_HOME": str(c.home)}
    env.pop("MNP_URL", None)
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    return r.stdout


def sacct(c: Cluster, bin_dir: Path, cwd: Path, job: str, fields: str) -> str:
    """``sacct -j JOB -P -n -X --format=FIELDS``, as submitit reads a job's state."""
    return ok(slurm(c, bin_dir, cwd, "sacct", "-j", job, "-P", "-n", "-X", f"--format={fields}"))


def test_commands_on_path_drive_a_job_from_submit_to_cancel(
    c: Cluster, bin_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "long.sh").write_text("#!/bin/bash\n#SBATCH -J long.run\nsleep 300\n")
    out = ok(slurm(c, bin_dir, tmp_path, "sbatch", "long.sh"))
    m = re.fullmatch(r"Submitted batch job (\d+)\n", out)
    assert m is not None, out
    job = m.group(1)
    wait_for(
        "squeue to show the job RUNNING",
        lambda: (
            ok(slurm(c, bin_dir, tmp_path, "squeue", "-j", job, "-h", "-o", "%i %T"))
            == f"{job} RUNNING\n"
        ),
    )
    record = ok(slurm(c, bin_dir, tmp_path, "scontrol", "show", "job", job, "-o"))
    assert record.count("\n") == 1
    fields = dict(p.split("=", 1) for p in record.split())
    assert (fields["JobId"], fields["JobName"], fields["JobState"]) == (job, "long.run", "RUNNING")
    assert re.fullmatch(r"local-[12]", fields["NodeList"]), fields
    multi = ok(slurm(c, bin_dir, tmp_path, "scontrol", "show", "job", job))
    assert multi.startswith(f"JobId={job} JobName=long.run\n   UserId=") and multi.endswith("\n\n")
    info = ok(slurm(c, bin_dir, tmp_path, "sinfo", "-h", "-o", "%P %a %D %c %m"))
    assert "default* up 2 2 2048\n" in info or "default* up 1 2 2048\n" in info, info
    table = ok(slurm(c, bin_dir, tmp_path, "sinfo"))
    assert table.startswith("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n"), table
    assert re.search(r"^default\*\s+up\s+infinite\s+1\s+(mix|alloc) local-[12]$", table, re.M)
    # what does not apply is warned about, never exit 2 (squeue -o "%a %q", sacct MaxRSS)
    r = slurm(c, bin_dir, tmp_path, "squeue", "--clusters=x", "-j", job, "-h", "-o", "%i|%a|%q")
    assert ok(r) == f"{job}|N/A|N/A\n" and "--clusters is ignored" in r.stderr, r.stderr
    r = slurm(c, bin_dir, tmp_path, "sacct", "-j", job, "-P", "-n", "-X",
              "--format=JobID,MaxRSS,State")  # fmt: skip
    assert ok(r) == f"{job}||RUNNING\n" and "MaxRSS has no value" in r.stderr, r.stderr
    r = slurm(c, bin_dir, tmp_path, "scancel", "--signal=USR1", job)  # refused: no cancel
    assert r.returncode == 1 and "not signal it" in r.stderr, r.stderr
    r = slurm(c, bin_dir, tmp_path, "scancel", "--clusters=x", job)
    assert ok(r) == "" and "--clusters is ignored" in r.stderr, r.stderr
    wait_for(
        "sacct to show the job CANCELLED",
        lambda: sacct(c, bin_dir, tmp_path, job, "JobID,State").startswith(f"{job}|CANCELLED"),
        timeout=60,
    )
    r = slurm(c, bin_dir, tmp_path, "scontrol", "show", "job", "987654")
    assert r.returncode == 1 and "Invalid job id specified" in r.stderr


def test_a_batch_script_calls_scontrol_and_squeue(
    c: Cluster, bin_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.sh").write_text(
        "#!/bin/bash\n#SBATCH -o job.out\n"
        'echo "hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | tr "\\n" " ")"\n'
        'echo "state=$(squeue -j "$SLURM_JOB_ID" -h -o %T)"\n'
        'echo "srun=$(command -v srun) scontrol=$(command -v scontrol)"\n'
    )
    out = ok(slurm(c, bin_dir, tmp_path, "sbatch", "--parsable",
                   f"--export=ALL,MNP_HOME={c.home}", "job.sh"))  # fmt: skip
    job = out.strip()
    assert job.isdigit(), out
    wait_for(
        "the job to complete",
        lambda: sacct(c, bin_dir, tmp_path, job, "State") in ("COMPLETED\n", "FAILED\n"),
        timeout=60,
    )
    text = (tmp_path / "job.out").read_text()
    assert re.search(r"^hosts=local-[12] $", text, re.M), text
    assert "state=RUNNING\n" in text, text
    # the job's own commands (beside its srun), not the ones on the submitter's PATH
    assert re.search(r"^srun=(/\S+)/srun scontrol=\1/scontrol$", text, re.M), text
    assert str(bin_dir) not in text, text
