"""squeue / scancel / sacct commands over a fake head: paging, filters, what scancel picks."""

from __future__ import annotations

import getpass
from typing import Any, cast

import pytest
from click.testing import CliRunner

from mnp.cli.sacct import in_window, sacct_command
from mnp.cli.squeue import scancel_command, squeue_command
from mnp.client.client import Client

JSON = dict[str, Any]
ME = getpass.getuser()
ARR = "aaaaaaaa-0000-4000-8000-000000000000"


def job(job_id: str, status: str, name: str = "j", user: str = ME, **extra: Any) -> JSON:
    return {"jobId": job_id, "jobName": name, "status": status, "jobQueueName": "default",
            "createdAt": 1000, "user": user, **extra}  # fmt: skip


def task(i: int, status: str) -> JSON:
    return job(f"{ARR}:{i}", status, "sweep", arrayJobId=ARR,
               arrayProperties={"index": i, "size": 3})  # fmt: skip


JOBS = [
    job("run-1", "RUNNING", "train", nodeIds=["local-1"], startedAt=500),
    job("pend-1", "PENDING", "post"),
    job("other-1", "RUNNING", "train", user="bob", nodeIds=["local-2"], startedAt=500),
    job(ARR, "PENDING", "sweep", arrayProperties={"size": 3, "statusSummary": {}}),
    task(0, "RUNNING"),
    task(1, "RUNNABLE"),
    task(2, "RUNNABLE"),
    job("done-1", "SUCCEEDED", "old", startedAt=100, stoppedAt=200, container={"exitCode": 0}),
]


class FakeClient:
    """listJobs pages of 2 (statuses filtered as the head does), describeJobs, terminate."""

    def __init__(self, jobs: list[JSON]) -> None:
        self.jobs = jobs
        self.calls: list[JSON] = []
        self.terminated: list[tuple[str, str]] = []

    def call(self, operation: str, body: JSON) -> JSON:
        assert operation == "listJobs" and body["allStatuses"] and body["includeChildren"]
        self.calls.append(body)
        hits = [j for j in self.jobs if body.get("jobStatus") in (None, j["status"])]
        start = int(body.get("nextToken") or 0)
        out: JSON = {"jobSummaryList": hits[start : start + 2]}
        if start + 2 < len(hits):
            out["nextToken"] = str(start + 2)
        return out

    def describe_jobs(self, ids: list[str]) -> list[JSON]:
        return [j for j in self.jobs if j["jobId"] in ids]

    def list_jobs(self, array_job_id: str | None = None, **_: Any) -> list[JSON]:
        return [j for j in self.jobs if j.get("arrayJobId") == array_job_id]

    def terminate(self, job_id: str, reason: str) -> None:
        self.terminated.append((job_id, reason))


class FakeState:
    def __init__(self, client: FakeClient) -> None:
        self._client = client

    def client(self) -> Client:
        return cast(Client, self._client)


def invoke(command: Any, *args: str) -> tuple[FakeClient, Any]:
    fake = FakeClient(JOBS)
    result = CliRunner().invoke(command, list(args), obj=FakeState(fake))
    return fake, result


def test_squeue_pages_each_active_status_and_hides_the_array_job() -> None:
    fake, result = invoke(squeue_command, "-h", "-o", "%i %t %R")
    assert result.exit_code == 0, result.output
    assert sorted(c["jobStatus"] for c in fake.calls if "nextToken" not in c) == [
        "PENDING", "RUNNABLE", "RUNNING", "STARTING", "SUBMITTED",
    ]  # fmt: skip
    assert result.stdout.splitlines() == [  # same partition and age: by id
        f"{ARR}_[1-2] PD (Resources)",
        "pend-1 PD (Dependency)",
        f"{ARR}_0 R (None)",
        "other-1 R local-2",
        "run-1 R local-1",
    ]


def test_squeue_filters() -> None:
    _, result = invoke(squeue_command, "-h", "-o", "%i", "-u", "bob")
    assert result.stdout == "other-1\n"
    _, result = invoke(squeue_command, "-h", "-o", "%i", "-t", "R", "-n", "train,sweep")
    assert result.stdout.split() == [f"{ARR}_0", "other-1", "run-1"]
    _, result = invoke(squeue_command, "-h", "-o", "%i", "-j", "done-1")
    assert result.stdout == "done-1\n"  # -j alone: any state
    _, result = invoke(squeue_command, "-h", "-r", "-o", "%i", "-j", ARR)
    assert result.stdout.split() == [f"{ARR}_1", f"{ARR}_2", f"{ARR}_0"]
    _, result = invoke(squeue_command, "-t", "XX")
    assert result.exit_code == 2 and "invalid job state specified: XX" in result.output


def test_scancel_ids_tasks_and_errors() -> None:
    fake, result = invoke(scancel_command, "run-1", f"{ARR}_[1-2]")
    assert result.exit_code == 0 and result.output == ""
    reason = "Cancelled by user (scancel)"
    assert fake.terminated == [("run-1", reason), (f"{ARR}:1", reason), (f"{ARR}:2", reason)]
    fake, result = invoke(scancel_command, "nope", "done-1", "pend-1")
    assert result.exit_code == 1
    assert "job id nope: Invalid job id specified" in result.stderr
    assert "job id done-1: Job/step already completing or completed" in result.stderr
    assert fake.terminated == [("pend-1", reason)]
    _, result = invoke(scancel_command)
    assert result.exit_code == 2 and "No job identification provided" in result.output


@pytest.mark.parametrize(
    ("args", "targets"),
    [
        (["-n", "train"], ["run-1"]),  # only mine
        (["-n", "train", "-u", "bob"], ["other-1"]),
        (["-n", "sweep"], [ARR]),  # the whole array, not each task
        (["-n", "sweep", "-t", "PD"], [f"{ARR}:1", f"{ARR}:2"]),  # a state: tasks one by one
        (["-t", "R"], ["run-1", f"{ARR}:0"]),
        (["-n", "train", "run-1", "other-1"], ["run-1"]),
        (["-n", "old"], []),  # ended jobs are not active
    ],
)
def test_scancel_filters(args: list[str], targets: list[str]) -> None:
    fake, result = invoke(scancel_command, *args)
    assert result.exit_code == 0, result.output
    assert [t for t, _ in fake.terminated] == targets


def test_sacct_with_ids_lists_every_state() -> None:
    _, result = invoke(
        sacct_command, "-P", "-n", "-o", "jobid,state,exitcode", "-j", "done-1,run-1"
    )
    assert result.stdout.splitlines() == ["done-1|COMPLETED|0:0", "run-1|RUNNING|0:0"]


def test_in_window() -> None:
    ended = {"createdAt": 100, "stoppedAt": 500}
    running = {"createdAt": 100}
    assert in_window(ended, 400, None, 1000) and not in_window(ended, 600, None, 1000)
    assert in_window(running, 600, None, 1000) and not in_window(running, 1001, None, 1000)
    assert in_window(ended, None, 100, 1000) and not in_window(ended, None, 99, 1000)


SPARSE = "bbbbbbbb-0000-4000-8000-000000000000"


def test_sparse_task_ids_are_shown_and_cancelled_by_their_slurm_id() -> None:
    """``--array=1,3,5``: the children (indices 0..2) show and cancel as _1, _3, _5."""
    kids = [
        job(f"{SPARSE}:{i}", "RUNNING", "sparse", arrayJobId=SPARSE,
            arrayProperties={"index": i, "size": 3, "taskId": 2 * i + 1}, nodeIds=["local-1"])
        for i in range(3)
    ]  # fmt: skip
    fake = FakeClient([job(SPARSE, "PENDING", "sparse", arrayProperties={"size": 3}), *kids])
    shown = CliRunner().invoke(squeue_command, ["-h", "-o", "%i"], obj=FakeState(fake))
    assert shown.output.split() == [f"{SPARSE}_{t}" for t in (1, 3, 5)]
    done = CliRunner().invoke(scancel_command, [f"{SPARSE}_3"], obj=FakeState(fake))
    assert done.exit_code == 0, done.output
    assert [j for j, _ in fake.terminated] == [f"{SPARSE}:1"]
    missing = CliRunner().invoke(scancel_command, [f"{SPARSE}_2"], obj=FakeState(fake))
    assert missing.exit_code == 1 and "Invalid job id" in missing.output
