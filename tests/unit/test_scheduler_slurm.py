"""mnp's dependency conditions (afterany/afternotok/after), ANY mode, singleton and the
array running limit, as ``reconcile`` decides them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from mnp.scheduler.reconcile import Action, Advance, HoldForLimit, Snapshot, reconcile
from mnp.spec.definitions import Dependency, JobExtras
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import make_job, make_spec
from tests.unit.test_scheduler import snapshot

S = JobStatus


def waiting(*deps: tuple[str, str | None], mode: str = "ALL", after: Sequence[str] = ()) -> Job:
    extras = JobExtras(dependency_mode=mode, singleton_after=tuple(after))
    spec = make_spec("w", depends_on=[Dependency(i, t) for i, t in deps])
    spec.extras = extras
    return make_job("w", S.PENDING, spec=spec)


def verdict(job: Job, status: Mapping[str, JobStatus | None]) -> list[Action]:
    return [a for a in reconcile(snapshot(pending=[job], deps=status)) if a.job_id == "w"]


RUN = [Advance("w", S.RUNNABLE)]
WAIT: list[Action] = []


def failed(reason: str) -> list[Action]:
    return [Advance("w", S.FAILED, reason)]


CASES = [
    # (dependency type, dependency status, expected)
    (None, S.SUCCEEDED, RUN),
    (None, S.RUNNING, WAIT),
    (None, S.FAILED, failed("DEPENDENCY:FAILED - dependency a failed")),
    ("AFTER_OK", S.SUCCEEDED, RUN),
    ("AFTER_ANY", S.SUCCEEDED, RUN),
    ("AFTER_ANY", S.FAILED, RUN),
    ("AFTER_ANY", S.RUNNING, WAIT),
    ("AFTER_NOT_OK", S.FAILED, RUN),
    ("AFTER_NOT_OK", S.RUNNING, WAIT),
    (
        "AFTER_NOT_OK",
        S.SUCCEEDED,
        failed("DEPENDENCY:SUCCEEDED - dependency a succeeded (this job runs after a failure)"),
    ),
    ("AFTER_START", S.RUNNABLE, WAIT),
    ("AFTER_START", S.STARTING, WAIT),
    ("AFTER_START", S.RUNNING, RUN),
    ("AFTER_START", S.SUCCEEDED, RUN),
    ("AFTER_START", S.FAILED, RUN),
]


@pytest.mark.parametrize(("kind", "status", "expected"), CASES)
def test_dependency_condition(kind: str | None, status: JobStatus, expected: list[Action]) -> None:
    assert verdict(waiting(("a", kind)), {"a": status}) == expected


def test_unknown_dependency_fails_the_job() -> None:
    assert verdict(waiting(("a", "AFTER_ANY")), {"a": None}) == failed(
        "DEPENDENCY:NOT_FOUND - dependency a does not exist"
    )


def test_all_mode_fails_on_the_first_that_never_can_hold_even_while_others_wait() -> None:
    job = waiting(("a", None), ("b", "AFTER_NOT_OK"))
    got = verdict(job, {"a": S.RUNNING, "b": S.SUCCEEDED})
    assert [a.status for a in got if isinstance(a, Advance)] == [S.FAILED]


def test_any_mode_runs_once_one_holds() -> None:
    job = waiting(("a", None), ("b", None), mode="ANY")
    assert verdict(job, {"a": S.RUNNING, "b": S.SUCCEEDED}) == RUN


def test_any_mode_waits_while_one_still_can_hold() -> None:
    job = waiting(("a", None), ("b", None), mode="ANY")
    assert verdict(job, {"a": S.FAILED, "b": S.RUNNING}) == WAIT


def test_any_mode_fails_when_none_can_hold() -> None:
    job = waiting(("a", None), ("b", "AFTER_NOT_OK"), mode="ANY")
    got = verdict(job, {"a": S.FAILED, "b": S.SUCCEEDED})
    assert len(got) == 1 and isinstance(got[0], Advance) and got[0].status == S.FAILED
    assert got[0].reason is not None and "dependency a failed" in got[0].reason


def test_singleton_waits_for_earlier_jobs_to_end_whatever_the_mode() -> None:
    job = waiting(after=["old"])
    assert verdict(job, {"old": S.RUNNING}) == WAIT
    assert verdict(job, {"old": S.FAILED}) == RUN
    assert verdict(job, {"old": None}) == RUN  # gone from the store: not in the way
    any_job = waiting(("a", None), mode="ANY", after=["old"])
    assert verdict(any_job, {"a": S.SUCCEEDED, "old": S.RUNNING}) == WAIT


# --- the array running limit ------------------------------------------------------------------


def children(n: int, limit: int) -> list[Job]:
    spec = make_spec("P", array_size=n)
    spec.extras = JobExtras(array_max_running=limit)
    return [
        make_job(f"P:{i}", S.PENDING, spec=spec, parent_id="P", array_index=i) for i in range(n)
    ]


def limited(pending: list[Job], room: int) -> Snapshot:
    snap = snapshot(pending=pending)
    snap.array_room = {"P": room}
    return snap


def test_limit_advances_only_as_many_children_as_there_is_room() -> None:
    actions = reconcile(limited(children(5, 2), room=2))
    assert [a.job_id for a in actions if isinstance(a, Advance)] == ["P:0", "P:1"]
    assert [a for a in actions if isinstance(a, HoldForLimit)] == [
        HoldForLimit(f"P:{i}", "P") for i in (2, 3, 4)
    ]


def test_limit_full_holds_every_child() -> None:
    actions = reconcile(limited(children(3, 2), room=0))
    assert all(isinstance(a, HoldForLimit) for a in actions) and len(actions) == 3


def test_children_waiting_on_dependencies_are_not_held() -> None:
    kids = children(2, 1)
    for k in kids:
        k.spec.depends_on = [Dependency("x")]
    snap = limited(kids, room=1)
    snap.dependency_status = {"x": S.RUNNING}
    assert reconcile(snap) == []
