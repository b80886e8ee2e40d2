"""Slurm views (``mnp.slurm.views``, ``columns``, ``times``): states, reasons, rows, formats.

Golden files in ``tests/unit/golden/slurm_views/`` hold whole squeue/sacct outputs for one
fixed set of summaries (``MNP_UPDATE_GOLDEN=1`` rewrites them after an intended change).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mnp.slurm.columns import (
    SACCT_DEFAULT,
    SQUEUE_DEFAULT,
    parse_sacct_format,
    parse_squeue_format,
    render_sacct,
    render_squeue,
)
from mnp.slurm.times import parse_slurm_time, sacct_elapsed, squeue_time, timestamp
from mnp.slurm.views import (
    SlurmState,
    collapse_pending,
    display_id,
    exit_code_text,
    job_row,
    matches_id,
    parse_states,
    pending_reason,
    slurm_state,
    squeue_order,
    to_mnp_id,
    visible,
)
from tests.unit import goldens

JSON = dict[str, Any]
NOW = 1_800_000_000_000
A = "0b7e4c1a-8d7f-4f57-9a53-2c1b0e6f4d21"
B = "5d1c2b3a-0000-4000-8000-000000000002"


def summary(job_id: str, status: str, **extra: Any) -> JSON:
    return {"jobId": job_id, "jobName": "job", "status": status, "jobQueueName": "default",
            "createdAt": NOW - 600_000, "user": "alice", **extra}  # fmt: skip


def child(parent: str, index: int, status: str, **extra: Any) -> JSON:
    return summary(f"{parent}:{index}", status, arrayJobId=parent,
                   arrayProperties={"index": index, "size": 4}, jobName="arr", **extra)  # fmt: skip


TIMEOUT = "Job attempt duration exceeded timeout"


@pytest.mark.parametrize(
    ("status", "reason", "extra", "state"),
    [
        ("SUBMITTED", None, {}, SlurmState.PENDING),
        ("PENDING", None, {}, SlurmState.PENDING),
        ("RUNNABLE", None, {}, SlurmState.PENDING),
        ("STARTING", None, {}, SlurmState.CONFIGURING),
        ("RUNNING", None, {}, SlurmState.RUNNING),
        ("RUNNING", "Cancelled by user (scancel)", {}, SlurmState.COMPLETING),
        ("RUNNING", "anything", {"isTerminated": True}, SlurmState.COMPLETING),
        ("SUCCEEDED", "Essential container in task exited", {}, SlurmState.COMPLETED),
        ("FAILED", "Essential container in task exited", {}, SlurmState.FAILED),
        ("FAILED", TIMEOUT, {}, SlurmState.TIMEOUT),
        ("FAILED", "Cancelled by user (scancel)", {}, SlurmState.CANCELLED),
        ("FAILED", "Terminated by user", {}, SlurmState.CANCELLED),
        ("FAILED", "whatever the aws client said", {"isCancelled": True}, SlurmState.CANCELLED),
        ("FAILED", "Terminated, but flags say no", {"isTerminated": False}, SlurmState.FAILED),
        ("FAILED", "DEPENDENCY:FAILED - dependency x failed", {}, SlurmState.CANCELLED),
        ("FAILED", "Host lost: node local-2 (127.0.0.3) silent", {}, SlurmState.NODE_FAIL),
    ],
)
def test_state_mapping(status: str, reason: str | None, extra: JSON, state: SlurmState) -> None:
    assert slurm_state(summary("j", status, statusReason=reason, **extra)) is state


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        ("SUBMITTED", None, "None"),
        ("PENDING", None, "Dependency"),
        ("PENDING", "JobArrayTaskLimit", "JobArrayTaskLimit"),
        ("RUNNABLE", None, "Resources"),
        ("RUNNABLE", "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - needs 9 nodes", "BadConstraints"),
        ("FAILED", "DEPENDENCY:FAILED - dependency x failed", "DependencyNeverSatisfied"),
        ("FAILED", TIMEOUT, "TimeLimit"),
        ("FAILED", "Essential container in task exited", "NonZeroExitCode"),
        ("FAILED", "Cancelled by user", "None"),
        ("SUCCEEDED", None, "None"),
    ],
)
def test_pending_reasons(status: str, reason: str | None, code: str) -> None:
    assert pending_reason(summary("j", status, statusReason=reason)) == code


@pytest.mark.parametrize(
    ("code", "state", "text"),
    [
        (None, SlurmState.CANCELLED, "0:0"),
        (0, SlurmState.COMPLETED, "0:0"),
        (3, SlurmState.FAILED, "3:0"),
        (143, SlurmState.FAILED, "143:0"),
        (143, SlurmState.CANCELLED, "0:15"),
        (137, SlurmState.TIMEOUT, "0:9"),
        (255, SlurmState.CANCELLED, "255:0"),
    ],
)
def test_exit_codes(code: int | None, state: SlurmState, text: str) -> None:
    s = summary("j", "FAILED", container={} if code is None else {"exitCode": code})
    assert exit_code_text(s, state) == text


def test_parse_states() -> None:
    assert parse_states("pd,R") == {SlurmState.PENDING, SlurmState.RUNNING}
    assert parse_states("completed,CA") == {SlurmState.COMPLETED, SlurmState.CANCELLED}
    assert parse_states("all") == frozenset(SlurmState)
    with pytest.raises(ValueError, match="invalid job state specified: XX"):
        parse_states("R,xx")


def test_ids() -> None:
    c = child(A, 3, "RUNNING")
    assert display_id(c) == f"{A}_3"
    assert display_id(summary(B, "RUNNING")) == B
    assert to_mnp_id(f"{A}_3") == f"{A}:3"
    assert to_mnp_id("run_x") == "run_x"
    assert to_mnp_id(A) == A
    row = job_row(c, NOW)
    assert matches_id(row, [f"{A}_3"]) and matches_id(row, [A]) and matches_id(row, [f"{A}:3"])
    assert not matches_id(row, [f"{A}_2", B])


def test_visible_hides_node_jobs_and_parents_with_children() -> None:
    parent = summary(A, "PENDING", arrayProperties={"size": 4, "statusSummary": {}})
    lone = summary(B, "PENDING", arrayProperties={"size": 4, "statusSummary": {}})
    node = summary(f"{B}#1", "RUNNING", nodeProperties={"numNodes": 2, "nodeIndex": 1})
    kids = [child(A, i, "PENDING") for i in range(2)]
    assert [s["jobId"] for s in visible([parent, lone, node, *kids])] == [
        B, f"{A}:0", f"{A}:1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "squeue", "sacct"),
    [
        (0, "0:00", "00:00:00"),
        (5, "0:05", "00:00:05"),
        (65, "1:05", "00:01:05"),
        (3600, "1:00:00", "01:00:00"),
        (86399, "23:59:59", "23:59:59"),
        (90061, "1-01:01:01", "1-01:01:01"),
        (-3, "0:00", "00:00:00"),
    ],
)
def test_durations(seconds: int, squeue: str, sacct: str) -> None:
    assert (squeue_time(seconds), sacct_elapsed(seconds)) == (squeue, sacct)


TZ = timezone(timedelta(hours=2))
CLOCK = datetime(2026, 11, 28, 18, 30, 15, tzinfo=TZ)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=TZ)),
        ("2026-11-01T08:05", datetime(2026, 11, 1, 8, 5, tzinfo=TZ)),
        ("2026-11-01T08:05:09", datetime(2026, 11, 1, 8, 5, 9, tzinfo=TZ)),
        ("09:10", datetime(2026, 11, 28, 9, 10, tzinfo=TZ)),
        ("09:10:11", datetime(2026, 11, 28, 9, 10, 11, tzinfo=TZ)),
        ("11/02", datetime(2026, 11, 2, tzinfo=TZ)),
        ("11/02/25", datetime(2025, 11, 2, tzinfo=TZ)),
        ("1102", datetime(2026, 11, 2, tzinfo=TZ)),
        ("now", CLOCK),
        ("now-1hour", CLOCK - timedelta(hours=1)),
        ("now-90", CLOCK - timedelta(seconds=90)),
        ("now+2days", CLOCK + timedelta(days=2)),
        ("NOW-3minutes", CLOCK - timedelta(minutes=3)),
        ("today", datetime(2026, 11, 28, tzinfo=TZ)),
        ("midnight", datetime(2026, 11, 28, tzinfo=TZ)),
        ("noon", datetime(2026, 11, 28, 12, tzinfo=TZ)),
    ],
)
def test_parse_slurm_time(text: str, expect: datetime) -> None:
    assert parse_slurm_time(text, CLOCK) == expect


@pytest.mark.parametrize("bad", ["yesterday-ish", "2026-13-01", "25:00", "now-1fortnight", ""])
def test_parse_slurm_time_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_slurm_time(bad, CLOCK)


def test_timestamp() -> None:
    assert timestamp(None, UTC) == "Unknown"
    assert timestamp(1_800_000_000_000, UTC) == "2027-01-15T08:00:00"


# -- whole outputs -----------------------------------------------------------------------------

RUNNING_ID = "11111111-1111-4111-8111-111111111111"
DEPENDENT_ID = "22222222-2222-4222-8222-222222222222"
MNP_ID = "33333333-3333-4333-8333-333333333333"
DONE_ID = "44444444-4444-4444-8444-444444444444"


def cluster_summaries() -> list[JSON]:
    started = NOW - 3_725_000  # 1:02:05 ago
    return [
        summary(RUNNING_ID, "RUNNING", jobName="train-a-very-long-name", startedAt=started,
                nodeId="local-2", nodeIds=["local-2"]),
        summary(DEPENDENT_ID, "PENDING", jobName="post", user="bob"),
        summary(MNP_ID, "RUNNING", jobName="mpi", startedAt=NOW - 42_000,
                nodeProperties={"numNodes": 3}, nodeIds=["local-1", "local-3", "local-4"],
                jobQueueName="gpu"),
        summary(f"{MNP_ID}#1", "RUNNING", nodeProperties={"numNodes": 3, "nodeIndex": 1}),
        summary(A, "PENDING", jobName="arr", arrayProperties={"size": 4, "statusSummary": {}}),
        child(A, 0, "RUNNING", startedAt=NOW - 5_000, nodeIds=["local-1"]),
        child(A, 1, "PENDING", statusReason="JobArrayTaskLimit"),
        child(A, 2, "PENDING", statusReason="JobArrayTaskLimit"),
        child(A, 3, "PENDING", statusReason="JobArrayTaskLimit"),
        summary(B, "RUNNABLE", jobName="waits"),
        summary(DONE_ID, "SUCCEEDED", startedAt=NOW - 70_000, stoppedAt=NOW - 10_000,
                nodeIds=["local-1"], container={"exitCode": 0}),
        summary("55555555-5555-4555-8555-555555555555", "FAILED", jobName="killed",
                statusReason="Cancelled by user (scancel)", startedAt=NOW - 20_000,
                stoppedAt=NOW - 19_000, nodeIds=["local-2"], container={"exitCode": 143}),
        summary("66666666-6666-4666-8666-666666666666", "FAILED", jobName="slow",
                statusReason=TIMEOUT, startedAt=NOW - 200_000, stoppedAt=NOW - 100_000,
                nodeIds=["local-3"], container={"exitCode": 137}),
    ]  # fmt: skip


def rows(collapse: bool = True, ended: bool = False) -> list[Any]:
    out = [job_row(s, NOW) for s in visible(cluster_summaries())]
    out = [r for r in out if ended or not r.state.ended]
    out.sort(key=squeue_order)
    return collapse_pending(out) if collapse else out


def test_squeue_default_format() -> None:
    goldens.check("slurm_views", "squeue_default.txt", render_squeue(rows(), SQUEUE_DEFAULT))


def test_squeue_one_line_per_task_and_custom_format() -> None:
    fmt = "%-40i|%5P|%-10j|%u|%T|%M|%D|%N|%r|%F|%K|%%"
    text = render_squeue(rows(collapse=False), fmt, header=False)
    goldens.check("slurm_views", "squeue_custom.txt", text)


def test_squeue_format_errors() -> None:
    assert [s.field for s in parse_squeue_format("%.18i %R")] == ["i", "", "R"]
    with pytest.raises(ValueError, match="unknown field %!"):
        parse_squeue_format("%i %!")
    with pytest.raises(ValueError, match="at the end"):
        parse_squeue_format("%i %")


def test_sacct_default_columns() -> None:
    text = render_sacct(rows(ended=True), SACCT_DEFAULT, tz=UTC)
    goldens.check("slurm_views", "sacct_default.txt", text)


def test_sacct_parsable_and_widths() -> None:
    fmt = "jobid,JobName%4,state,exitcode,elapsed,ElapsedRaw,nnodes,start,end,partition,user"
    text = render_sacct(rows(collapse=False, ended=True), fmt, parsable="|2", tz=UTC)
    goldens.check("slurm_views", "sacct_parsable2.txt", text)
    train = [r for r in rows() if r.name.startswith("train")]
    text = render_sacct(train, "JobName%4,State", parsable="|", header=False)
    assert text == "train-a-very-long-name|RUNNING|\n"
    assert render_sacct(train, "JobName%4,State", header=False) == "tra+    RUNNING \n"


def test_sacct_format_errors() -> None:
    assert [(f.name, w) for f, w in parse_sacct_format("jobname%30,STATE")] == [
        ("JobName", 30), ("State", 10),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="invalid field requested: 'Bogus'"):
        parse_sacct_format("JobID,Bogus")
    with pytest.raises(ValueError, match="positive number"):
        parse_sacct_format("JobID%x")
