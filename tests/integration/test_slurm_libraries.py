"""Libraries that drive Slurm through its commands (submitit, dask-jobqueue), unchanged, against
a real head with ``mnp slurm install-commands`` on ``PATH``: what a Slurm user gets by pointing
them at mnp.

The nodes are on loopback: dask's workers dial the scheduler in this process (on 127.0.0.1),
which a node in a network namespace cannot reach, and submitit's jobs read and write its folder
under this test's ``tmp_path``. Both libraries run the commands from this process, so ``PATH``
and ``MNP_HOME`` are set in ``os.environ`` for the test and restored after.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import submitit
from dask_jobqueue.slurm import SLURMCluster
from distributed import Client

from tests.integration.cluster import Cluster, wait_for
from tests.integration.slurmcmds import commands_dir, slurm_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from slurm_cluster(tmp_path_factory, "slurmlibs")


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return commands_dir(tmp_path_factory)


@pytest.fixture
def on_path(c: Cluster, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The installed commands first on this process's ``PATH``, the head found by ``MNP_HOME``."""
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    monkeypatch.setenv("MNP_HOME", str(c.home))
    monkeypatch.delenv("MNP_URL", raising=False)
    monkeypatch.delenv("MNP_TOKEN", raising=False)
    return c


def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def sleep_long() -> None:
    time.sleep(300)


def executor(folder: Path) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_mem="200M", cpus_per_task=1)
    return ex


def test_submitit_returns_a_result(on_path: Cluster, tmp_path: Path) -> None:
    job = executor(tmp_path / "submitit").submit(add, 2, 3)
    assert job.job_id.isdigit(), job.job_id
    assert job.result() == 5
    wait_for("sacct to show COMPLETED", lambda: job.state == "COMPLETED", timeout=30)


def test_submitit_map_array(on_path: Cluster, tmp_path: Path) -> None:
    jobs = executor(tmp_path / "submitit").map_array(square, [1, 2, 3])
    assert len(jobs) == 3
    array_id = jobs[0].job_id.split("_")[0]
    assert array_id.isdigit()
    assert [j.job_id for j in jobs] == [f"{array_id}_{i}" for i in range(3)]
    assert [j.result() for j in jobs] == [1, 4, 9]


def test_submitit_cancel_ends_a_running_job(on_path: Cluster, tmp_path: Path) -> None:
    job = executor(tmp_path / "submitit").submit(sleep_long)
    wait_for("the job to run", lambda: job.state == "RUNNING", timeout=60)
    job.cancel()
    wait_for("sacct to show CANCELLED", lambda: job.state.startswith("CANCELLED"), timeout=60)
    assert job.done()
    assert on_path.client.describe(job.job_id)["status"] == "FAILED"  # AWS's view of a cancel


def test_dask_jobqueue_sums_on_two_jobs_and_cancels_them_on_close(
    on_path: Cluster, tmp_path: Path
) -> None:
    cluster = SLURMCluster(
        cores=1,
        memory="1GB",
        processes=1,
        walltime="00:10:00",
        log_directory=str(tmp_path / "logs"),
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
        local_directory=str(tmp_path / "dask"),
    )
    try:
        cluster.scale(jobs=2)  # type: ignore[no-untyped-call]
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=120)
            futures = client.map(square, range(10))
            assert client.submit(sum, futures).result(timeout=60) == 285
            assert len(client.scheduler_info()["workers"]) == 2
            job_ids = [job.job_id for job in cluster.workers.values()]
    finally:
        cluster.close()
    assert len(job_ids) == 2 and all(j.isdigit() for j in job_ids), job_ids

    def states() -> list[str]:
        return [on_path.client.describe(j)["status"] for j in job_ids]

    wait_for("both jobs to end", lambda: all(s in ("SUCCEEDED", "FAILED") for s in states()),
             timeout=60)  # fmt: skip
    out = subprocess.run(
        ["sacct", "-j", ",".join(job_ids), "-P", "-n", "-X", "--format=JobID,State"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    rows = sorted(line.split("|") for line in out.splitlines())
    assert [r[0] for r in rows] == sorted(job_ids), out
    assert all(r[1].startswith("CANCELLED") for r in rows), out


class Resumable(submitit.helpers.Checkpointable):
    """Counts in a file until stopped; resubmitted by submitit at its time limit's signal."""

    def __call__(self, marker: str) -> str:
        path = Path(marker)
        path.write_text(path.read_text() + "run\n" if path.exists() else "run\n")
        if path.read_text().count("run") == 1:
            time.sleep(300)  # the first run is stopped by --signal and requeued
        return path.read_text()


def test_submitit_checkpoints_at_the_time_limit_signal(on_path: Cluster, tmp_path: Path) -> None:
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    ex.update_parameters(timeout_min=1, slurm_mem="200M", slurm_signal_delay_s=50)
    job = ex.submit(Resumable(), str(tmp_path / "marker"))  # type: ignore[no-untyped-call]
    # the signal comes 50 s before the limit: submitit's handler checkpoints, runs
    # `scontrol requeue`, and the job runs again under the same id from the checkpoint
    assert job.result() == "run\nrun\n"
    # submitit reads the result file the job writes before its process has exited
    detail = on_path.wait_status(job.job_id, "SUCCEEDED", "FAILED", timeout=60)
    assert detail["status"] == "SUCCEEDED"
    assert detail["attempts"][0]["statusReason"] == "Requeued: scontrol requeue"
    assert len(detail["attempts"]) == 2
