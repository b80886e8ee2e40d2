"""mnp's SubmitJob additions (the ``mnp`` object) through the real Service + Scheduler:
checks at submit, the array running limit over a job's life, singleton, the assignment's
output paths, script and Slurm environment, listJobs' extra fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import InvalidInput
from mnp.spec.protocol import Assignment
from tests.unit.helpers_core import HOSTILE, Head


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def bad_fields(h: Head, **body: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        h.submit(**body)
    return {e.path: e.message for e in err.value.errors}


def test_bad_extras_name_each_field(head: Head) -> None:
    errors = bad_fields(
        head,
        mnp={
            "arrayMaxRunning": 2,
            "stdout": "out-%j.txt",
            "stderr": "/tmp/e-%q-%",
            "workingDirectory": "rel",
            "dependencyMode": "ANY",
        },
    )
    assert set(errors) == {
        "mnp.arrayMaxRunning",
        "mnp.stdout",
        "mnp.stderr",
        "mnp.workingDirectory",
        "mnp.dependencyMode",
    }
    assert "absolute" in errors["mnp.stdout"]
    assert "%q" in errors["mnp.stderr"] and "%%" in errors["mnp.stderr"]
    assert "array" in errors["mnp.arrayMaxRunning"]


def test_unknown_extra_field_is_refused(head: Head) -> None:
    assert "mnp.colour" in bad_fields(head, mnp={"colour": "red"})


def test_after_types_need_a_job_id(head: Head) -> None:
    assert "dependsOn[0].jobId" in bad_fields(head, dependsOn=[{"type": "AFTER_ANY"}])


def start_all(h: Head) -> list[Assignment]:
    """Tick (an array needs three: expand, advance, place), then start what n1 got."""
    h.ticks(3)
    assignments, _ = h.poll("n1")
    for a in assignments:
        h.started("n1", a.attempt_id)
    return assignments


def test_array_limit_keeps_at_most_n_running_over_the_whole_run(head: Head) -> None:
    parent = head.submit("arr", arrayProperties={"size": 6}, mnp={"arrayMaxRunning": 2})
    done: list[str] = []
    while len(done) < 6:
        started = start_all(head)
        kids = head.api["listJobs"]({"arrayJobId": parent, "allStatuses": True})
        busy = [
            j for j in kids["jobSummaryList"] if j["status"] in ("RUNNABLE", "STARTING", "RUNNING")
        ]
        assert len(busy) <= 2
        held = [j for j in kids["jobSummaryList"] if j["status"] == "PENDING"]
        if held:
            assert head.describe(held[0]["jobId"])["statusReason"] == "JobArrayTaskLimit"
        assert started, "no progress"
        for a in started:
            head.exited("n1", a.attempt_id, 0)
            done.append(a.job_id)
    assert done == [f"{parent}:{i}" for i in range(6)]  # lowest indices first
    head.ticks(1)
    assert head.status(parent) == "SUCCEEDED"


def test_singleton_waits_for_the_earlier_job_of_the_same_name_and_user(head: Head) -> None:
    first = head.submit("solo", mnp={"user": "ann"})
    other_user = head.submit("solo", mnp={"user": "bob", "singleton": True})
    second = head.submit("solo", mnp={"user": "ann", "singleton": True})
    head.ticks(3)
    assert head.status(second) == "PENDING"
    assert head.status(other_user) != "PENDING"
    assignments, _ = head.poll("n1")
    first_attempt = next(a for a in assignments if a.job_id == first)
    head.started("n1", first_attempt.attempt_id)
    head.exited("n1", first_attempt.attempt_id, 3)  # failed: singleton goes on anyway
    head.ticks(2)
    assert head.status(second) in ("RUNNABLE", "STARTING")


def test_afternotok_runs_after_a_failure(head: Head) -> None:
    dep = head.submit("main")
    cleanup = head.submit("cleanup", dependsOn=[{"jobId": dep, "type": "AFTER_NOT_OK"}])
    (a,) = start_all(head)
    head.exited("n1", a.attempt_id, 1)
    head.ticks(2)
    assert head.status(cleanup) in ("RUNNABLE", "STARTING")


def test_afterstart_wakes_when_the_dependency_starts(head: Head) -> None:
    dep = head.submit("main")
    follower = head.submit("f", dependsOn=[{"jobId": dep, "type": "AFTER_START"}])
    head.ticks(2)
    assert head.status(follower) == "PENDING"
    (a,) = [x for x in start_all(head) if x.job_id == dep]
    head.ticks(2)
    assert head.status(follower) in ("RUNNABLE", "STARTING")
    assert head.status(dep) == "RUNNING"
    head.exited("n1", a.attempt_id, 0)


def test_assignment_carries_paths_script_and_slurm_variables(head: Head) -> None:
    name = "job"
    job_id = head.submit(
        name,
        arrayProperties={"size": 2},
        containerOverrides={
            "command": ["arg 1", HOSTILE],
            "environment": [{"name": "MNP_SLURM_ARRAY_TASK_IDS", "value": "3,7"}],
        },
        mnp={
            "user": "ann",
            "stdout": f"/out/{HOSTILE}/%x-%A_%a-%%-%u.out",
            "workingDirectory": f"/w/{HOSTILE}",
            "submitDir": "/submit",
            "script": "#!/bin/sh\necho hi\n",
            "ntasks": 3,
            "cpusPerTask": 2,
        },
    )
    assignments = start_all(head)
    by_index = {a.job_id: a for a in assignments}
    a = by_index[f"{job_id}:1"]
    # the first job of a fresh head is number 1; ids in file names are numbers (no ':')
    assert a.stdout_path == f"/out/{HOSTILE}/{name}-1_7-%-ann.out"
    assert a.stderr_path is None
    assert a.workdir == f"/w/{HOSTILE}"
    assert a.script == "#!/bin/sh\necho hi\n"
    assert a.command == ["arg 1", HOSTILE]
    env = a.environment
    assert env["SLURM_ARRAY_TASK_ID"] == "7"
    assert (env["SLURM_ARRAY_TASK_MIN"], env["SLURM_ARRAY_TASK_MAX"]) == ("3", "7")
    assert env["SLURM_ARRAY_JOB_ID"] == "1"
    assert env["SLURM_JOB_ID"] == "3"  # the task's own number: the array's + 1 + index
    assert env["AWS_BATCH_JOB_ID"] == f"{job_id}:1"
    assert env["SLURM_NTASKS"] == "3" and env["SLURM_CPUS_PER_TASK"] == "2"
    assert env["SLURM_SUBMIT_DIR"] == "/submit" and env["SLURM_JOB_USER"] == "ann"
    assert env["SLURM_JOB_NODELIST"] == "n1"
    listed = head.api["listJobs"]({"arrayJobId": job_id, "allStatuses": True})
    tasks = {j["arrayProperties"]["index"]: j["arrayProperties"]["taskId"] for j in listed[
        "jobSummaryList"]}  # fmt: skip
    assert tasks == {0: 3, 1: 7}  # squeue and sacct show <id>_3 and <id>_7


def test_list_jobs_with_children_and_extra_summary_fields(head: Head) -> None:
    parent = head.submit("arr", arrayProperties={"size": 2}, mnp={"user": "ann"})
    plain = head.submit("plain")
    start_all(head)
    every = head.api["listJobs"]({"allStatuses": True, "includeChildren": True})
    rows = {j["jobId"]: j for j in every["jobSummaryList"]}
    assert {parent, plain, f"{parent}:0", f"{parent}:1"} <= set(rows)
    child = rows[f"{parent}:1"]
    assert child["arrayJobId"] == parent and child["arrayProperties"]["index"] == 1
    assert child["user"] == "ann"
    assert rows[plain]["nodeIds"] == ["n1"]
    without = head.api["listJobs"]({"allStatuses": True})
    assert f"{parent}:0" not in {j["jobId"] for j in without["jobSummaryList"]}


def test_a_process_job_needs_a_command_or_a_script_at_submit(head: Head) -> None:
    head.definition("bare", command=[])
    errors = bad_fields(head, jobDefinition="bare")
    assert "neither a command nor an image" in errors["containerOverrides.command"]
    assert head.submit(jobDefinition="bare", containerOverrides={"command": ["true"]})
    assert head.submit(jobDefinition="bare", mnp={"script": "#!/bin/sh\ntrue\n"})
