"""The job state machine: the transition table is the only way a status changes."""

from __future__ import annotations

import pytest

from mnp.spec.states import (
    TRANSITIONS,
    HistoryEntry,
    IllegalTransition,
    JobStatus,
    transition,
)
from tests.unit.helpers_core import T0, make_job

S = JobStatus
LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted((a, b) for a in JobStatus for b in JobStatus if b not in TRANSITIONS[a])


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


def test_the_edges_aws_batch_documents_are_present() -> None:
    expected = {
        (S.SUBMITTED, S.PENDING),
        (S.SUBMITTED, S.RUNNABLE),
        (S.PENDING, S.RUNNABLE),
        (S.PENDING, S.FAILED),
        (S.RUNNABLE, S.STARTING),
        (S.RUNNABLE, S.FAILED),
        (S.STARTING, S.RUNNING),
        (S.STARTING, S.FAILED),
        (S.RUNNING, S.RUNNABLE),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
    }
    assert expected <= set(LEGAL)


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=lambda s: str(s))
def test_legal_edge_is_applied_and_recorded(current: JobStatus, target: JobStatus) -> None:
    job = make_job("j-1", current, status_reason="before")
    reason = f"moving; $x 'q' \"qq\"\n{current}->{target}"
    transition(job, target, T0 + 5, reason)
    assert job.status == target
    assert job.status_reason == reason
    assert job.history[-1] == HistoryEntry(target, T0 + 5, reason)
    assert len(job.history) == 2


def test_no_reason_keeps_the_previous_status_reason() -> None:
    job = make_job("j-1", S.RUNNABLE, status_reason="waiting")
    transition(job, S.STARTING, T0 + 1)
    assert job.status_reason == "waiting"
    assert job.history[-1] == HistoryEntry(S.STARTING, T0 + 1, None)


def test_history_accumulates_in_order() -> None:
    job = make_job("j-1", S.SUBMITTED)
    path = [S.RUNNABLE, S.STARTING, S.RUNNING, S.RUNNABLE, S.STARTING, S.RUNNING, S.SUCCEEDED]
    for i, target in enumerate(path, start=1):
        transition(job, target, T0 + i, f"step {i}")
    assert [h.status for h in job.history] == [S.SUBMITTED, *path]
    assert [h.at for h in job.history] == [T0 + i for i in range(len(path) + 1)]


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: str(s))
def test_illegal_edge_raises_and_changes_nothing(current: JobStatus, target: JobStatus) -> None:
    job = make_job("j-1", current, status_reason="unchanged")
    history = list(job.history)
    with pytest.raises(IllegalTransition) as err:
        transition(job, target, T0 + 5, "nope")
    assert (err.value.job_id, err.value.current, err.value.target) == ("j-1", current, target)
    assert f"{current} -> {target}" in str(err.value)
    assert job.status == current
    assert job.status_reason == "unchanged"
    assert job.history == history


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.SUCCEEDED, S.RUNNING),
        (S.RUNNABLE, S.RUNNING),
        (S.SUBMITTED, S.STARTING),
        (S.PENDING, S.STARTING),
        (S.FAILED, S.RUNNABLE),
        (S.RUNNING, S.STARTING),
        (S.RUNNING, S.RUNNING),
    ],
)
def test_named_illegal_edges(current: JobStatus, target: JobStatus) -> None:
    assert (current, target) in ILLEGAL


@pytest.mark.parametrize("status", list(JobStatus))
def test_terminal_states_have_no_exits(status: JobStatus) -> None:
    assert status.terminal == (status in (S.SUCCEEDED, S.FAILED))
    if status.terminal:
        assert TRANSITIONS[status] == frozenset()
    else:
        assert TRANSITIONS[status], f"{status} is not terminal but has no exits"


def test_array_parent_can_go_from_pending_to_succeeded() -> None:
    job = make_job("parent", S.PENDING, array_size=3)
    transition(job, S.SUCCEEDED, T0 + 1, "All child jobs succeeded")
    assert job.status == S.SUCCEEDED


def test_status_names_are_the_wire_names() -> None:
    assert [s.value for s in JobStatus] == [
        "SUBMITTED",
        "PENDING",
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
    ]
