"""``mnp squeue`` / ``scancel`` / ``sacct`` and ``mnp mpirun -H`` against a running head node."""

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
ROW = "%i|%t|%R|%j|%D"


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("slurm-views") / "home", nodes=4, vcpus=2) as cluster:
        yield cluster


def mnp(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def squeue_rows(c: Cluster, *args: str) -> dict[str, list[str]]:
    """``{JOBID: [ST, NODELIST(REASON), NAME, NODES]}`` from ``squeue -h -o ROW``."""
    r = mnp(c, "squeue", "-h", "-o", ROW, *args)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines()]
    return {row[0]: row[1:] for row in rows}


CANCELLED = f"CANCELLED by {os.getuid()}"
"""sacct's State of a job this user cancelled (Slurm's ``CANCELLED by <uid>``)."""


def sacct_rows(c: Cluster, *args: str) -> dict[str, list[str]]:
    """``{JobID: [State, ExitCode, Elapsed, NodeList, JobName]}`` from ``sacct -P -n``."""
    fmt = "JobID,State,ExitCode,Elapsed,NodeList,JobName"
    r = mnp(c, "sacct", "-P", "-n", "-o", fmt, *args)
    assert r.returncode == 0, r.stderr
    return {row[0]: row[1:] for row in (line.split("|") for line in r.stdout.splitlines())}


def number(c: Cluster, job_id: str) -> str:
    """The job's Slurm id (squeue's JOBID, what scancel and sacct -j take)."""
    return str(c.client.describe(job_id)["jobNumber"])


def test_squeue_shows_running_pending_and_array_tasks_and_scancel_picks_them(c: Cluster) -> None:
    sleep = c.register("sv-sleep", ["sleep", "120"])
    runner_id = c.submit("sv-run", sleep)
    dependent_id = c.submit("sv-dep", sleep, dependsOn=[{"jobId": runner_id}])
    array_id = c.submit("sv-arr", sleep, arrayProperties={"size": 3})
    c.wait_status(runner_id, "RUNNING")
    for i in range(3):
        c.wait_status(f"{array_id}:{i}", "RUNNING")
    runner, dependent, array = (number(c, j) for j in (runner_id, dependent_id, array_id))
    assert all(x.isdigit() for x in (runner, dependent, array))

    rows = squeue_rows(c)
    node = c.client.describe(runner_id)["nodeId"]
    assert rows[runner] == ["R", node, "sv-run", "1"]
    assert rows[dependent] == ["PD", "(Dependency)", "sv-dep", "1"]
    for i in range(3):
        st, where, name, _ = rows[f"{array}_{i}"]
        assert (st, name) == ("R", "sv-arr") and re.fullmatch(r"local-\d+", where)
    assert array not in rows  # the parent stands behind its tasks, as in Slurm

    header, *_ = mnp(c, "squeue").stdout.splitlines()
    assert header.split() == ["JOBID", "PARTITION", "NAME", "USER", "ST", "TIME", "NODES",
                              "NODELIST(REASON)"]  # fmt: skip
    assert set(squeue_rows(c, "-j", f"{array}_1")) == {f"{array}_1"}
    assert set(squeue_rows(c, "-t", "PD")) >= {dependent} and runner not in squeue_rows(
        c, "-t", "PD"
    )

    r = mnp(c, "scancel", f"{array}_1")
    assert r.returncode == 0 and r.stdout == r.stderr == "", r.stderr
    c.wait_status(f"{array_id}:1", "FAILED")
    assert c.client.describe(f"{array_id}:0")["status"] == "RUNNING"
    assert c.client.describe(f"{array_id}:2")["status"] == "RUNNING"
    assert sacct_rows(c, "-j", f"{array}_1")[f"{array}_1"][:2] == [CANCELLED, "0:0"]

    r = mnp(c, "scancel", "-n", "sv-run")
    assert r.returncode == 0, r.stderr
    c.wait_status(runner_id, "FAILED")
    c.wait_status(dependent_id, "FAILED")  # its dependency can no longer succeed
    assert c.client.describe(f"{array_id}:0")["status"] == "RUNNING"
    acct = sacct_rows(c, "-j", f"{runner},{dependent}")
    assert acct[runner][:2] == [CANCELLED, "0:0"] and acct[runner][3] == node
    assert acct[dependent][:2] == [CANCELLED, "0:0"]
    assert acct[dependent][3] == "None assigned"

    r = mnp(c, "scancel", array)  # the whole array
    assert r.returncode == 0, r.stderr
    c.wait_status(array_id, "FAILED")
    assert not squeue_rows(c, "-n", "sv-arr")


def test_sacct_shows_finished_jobs_with_state_exit_code_and_elapsed(c: Cluster) -> None:
    ok_id = c.submit("sv-ok", c.register("sv-ok", ["sh", "-c", "sleep 1.2"]))
    bad_id = c.submit("sv-bad", c.register("sv-bad", ["sh", "-c", "exit 3"]))
    c.wait_status(ok_id, "SUCCEEDED")
    c.wait_status(bad_id, "FAILED")
    ok, bad = number(c, ok_id), number(c, bad_id)
    rows = sacct_rows(c, "--starttime", "now-1hour")
    state, code, elapsed, nodes, name = rows[ok]
    assert (state, code, name) == ("COMPLETED", "0:0", "sv-ok")
    assert re.fullmatch(r"00:00:0[1-9]", elapsed) and re.fullmatch(r"local-\d+", nodes)
    assert rows[bad][:2] == ["FAILED", "3:0"]
    assert set(sacct_rows(c, "-s", "F", "-j", f"{ok},{bad}")) == {bad}
    assert ok not in sacct_rows(c, "--starttime", "now+1hour")
    table = mnp(c, "sacct", "-j", ok).stdout.splitlines()
    assert table[0].split() == ["JobID", "JobName", "State", "ExitCode", "Elapsed", "NodeList"]
    assert set(table[1]) == {"-", " "} and table[2].split()[:4] == [ok, "sv-ok", "COMPLETED", "0:0"]


def test_scancel_refuses_unknown_and_finished_ids(c: Cluster) -> None:
    done = c.submit("sv-done", c.register("sv-true", ["true"]))
    c.wait_status(done, "SUCCEEDED")
    r = mnp(c, "scancel", "no-such-job", done)
    assert r.returncode == 1
    assert "scancel: error: Kill job error on job id no-such-job: Invalid job id specified" in (
        r.stderr
    )
    assert f"job id {done}: Job/step already completing or completed" in r.stderr
    assert mnp(c, "scancel").returncode == 2


def _have_mpich() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return (Path(sys.executable).parent / "mpiexec").exists()


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_mpirun_with_hosts_runs_nodes_times_slots_ranks(c: Cluster) -> None:
    r = mnp(c, "mpirun", "-H", "n1:2,n2:2", "--mpi", "mpich", "--", sys.executable,
            "examples/mpi_allreduce.py")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 nodes × 2 tasks from the hosts (n1, n2); mnp chooses the nodes itself" in r.stderr
    ranks = re.findall(r"^rank=(\d+) size=(\d+) node=(\S+)", r.stdout, re.M)
    assert sorted(int(rank) for rank, _, _ in ranks) == [0, 1, 2, 3]
    assert len({node for _, _, node in ranks}) == 2


def test_squeue_folds_tasks_held_by_the_array_limit(c: Cluster) -> None:
    sleep = c.register("sv-limit", ["sleep", "60"])
    array_id = c.submit("sv-lim", sleep, arrayProperties={"size": 4}, mnp={"arrayMaxRunning": 1})
    c.wait_status(f"{array_id}:0", "RUNNING")
    array = number(c, array_id)

    def folded() -> dict[str, list[str]] | None:
        rows = squeue_rows(c, "-n", "sv-lim")
        return rows if f"{array}_[1-3]" in rows else None

    rows = wait_for("the held tasks on one line", folded)
    assert rows[f"{array}_[1-3]"][:2] == ["PD", "(JobArrayTaskLimit)"]
    assert rows[f"{array}_0"][0] == "R"
    assert len(squeue_rows(c, "-r", "-n", "sv-lim")) == 4
    assert mnp(c, "scancel", array).returncode == 0
    c.wait_status(array_id, "FAILED")
