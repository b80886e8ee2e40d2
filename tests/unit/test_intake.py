"""The store's intake (mnp.store.intake): a submission is one durable row until the next write
of jobs puts it in the indexed tables, and no read, restart or failed write can tell."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import StorageError
from mnp.spec.ids import new_id
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus, transition
from mnp.store import intake
from mnp.store.queries import JobQuery
from mnp.store.sqlite import Store
from tests.unit.helpers_core import T0, make_job


def rows(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def take(store: Store, job_id: str, created_at: int = T0, **spec: Any) -> Job:
    job = make_job(job_id, created_at=created_at, queue="q", **spec)
    with store.transaction():
        store.intake(job)
    return job


def crash(store: Store) -> None:
    """Gone as a killed head goes: nothing settled on the way out."""
    store.db.close()


def test_a_submission_is_one_row_until_the_next_write_of_jobs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = take(store, "a")
    b = take(store, "b", created_at=T0 + 1, array_size=3)
    assert (a.spec.number, b.spec.number) == (1, 2)  # b's block: 2 (itself), 3, 4, 5
    assert (rows(store, "job_intake"), rows(store, "jobs"), rows(store, "job_specs")) == (2, 0, 0)
    transition(a, JobStatus.RUNNABLE, T0 + 5, None)
    with store.transaction():
        store.save_jobs([a])  # a's row as it is by then; b waits for the write that names it
    assert (rows(store, "job_intake"), rows(store, "jobs"), rows(store, "job_specs")) == (1, 1, 1)
    assert rows(store, "job_numbers") == 1
    assert store.job_status("a") == JobStatus.RUNNABLE
    assert store.job_status("b") == JobStatus.SUBMITTED  # a read settles b as submitted
    assert store.numbered_block(4) == (2, "b")
    assert not store.intake_pending
    store.close()


def test_a_write_of_other_jobs_leaves_the_intake_and_a_count_writes_nothing(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.db")
    running = make_job("r", queue="q")
    with store.transaction():
        store.save_jobs([running])
    new = take(store, "n", created_at=T0 + 1)
    transition(running, JobStatus.RUNNABLE, T0 + 2, None)
    with store.transaction():
        store.save_jobs([running])  # a node's report, say: n is not written as submitted
    assert rows(store, "job_intake") == 1
    assert store.count_jobs_by_status() == {"RUNNABLE": 1, "SUBMITTED": 1}
    assert store.count_jobs_by_queue_status() == {("q", "RUNNABLE"): 1, ("q", "SUBMITTED"): 1}
    assert rows(store, "job_intake") == 1 and rows(store, "jobs") == 1
    transition(new, JobStatus.RUNNABLE, T0 + 3, None)
    with store.transaction():
        store.save_jobs([new])  # the pass that takes it in: written once, as it is
    assert (rows(store, "job_intake"), rows(store, "jobs"), rows(store, "job_numbers")) == (0, 2, 1)
    assert store.count_jobs_by_status() == {"RUNNABLE": 2}
    store.close()


def test_a_rolled_back_write_of_an_intake_job_keeps_it_in_the_intake(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = take(store, "a")
    take(store, "b")
    transition(a, JobStatus.RUNNABLE, T0 + 5, None)
    with pytest.raises(StorageError), store.transaction():
        store.save_jobs([a])
        raise sqlite3.OperationalError("disk I/O error")
    assert rows(store, "job_intake") == 2 and rows(store, "jobs") == 0
    with store.transaction():
        store.save_jobs([a])  # the store still knows a's intake row: it goes now
    assert (rows(store, "job_intake"), rows(store, "jobs"), rows(store, "job_numbers")) == (1, 1, 1)
    store.close()


def test_every_read_sees_a_job_still_in_the_intake(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    take(store, "a")
    assert [j.job_id for j in store.query_jobs(JobQuery(queue="q"))] == ["a"]
    take(store, "b", created_at=T0 + 1)
    assert store.count_jobs_by_status() == {"SUBMITTED": 2}
    take(store, "c", created_at=T0 + 2)
    loaded = store.load_job("c")
    assert loaded is not None and loaded.spec.number == 3
    assert rows(store, "job_intake") == 0
    store.close()


def test_a_store_that_cannot_settle_still_reads_the_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s.db")
    take(store, "old")
    store.settle()
    take(store, "new", created_at=T0 + 1)

    def full(*_a: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_settle_rows", full)
    listed = store.query_jobs_keyed(JobQuery(queue="q"))
    assert [j.job_id for j, _ in listed] == ["new", "old"]  # newest first, as settled later
    assert listed[0][1][1] > listed[1][1][1]  # the intake row's place is after every job's
    assert store.job_status("new") == JobStatus.SUBMITTED
    assert store.count_jobs_by_queue_status() == {("q", "SUBMITTED"): 2}
    assert store.numbered_block(2) == (2, "new")
    store._specs.clear()  # the cache is bounded: the spec is read from the intake then
    assert store.spec("new").number == 2
    assert store.intake_pending
    monkeypatch.undo()
    store.close()


def test_a_killed_head_loses_no_submission_and_reuses_no_number(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = Store(path)
    take(first, "a", array_size=2)
    crash(first)
    again = Store(path)
    jobs = again.load_active_jobs()
    assert [(j.job_id, j.status, j.spec.number) for j in jobs] == [("a", JobStatus.SUBMITTED, 1)]
    assert jobs[0].history_saved == 1
    assert take(again, "b", created_at=T0 + 1).spec.number == 4  # past a's block (1, 2, 3)
    with again.transaction():
        again.save_jobs(jobs)  # the restarted head's pass takes a in
    assert (rows(again, "job_intake"), rows(again, "jobs")) == (1, 1)
    assert again.numbered_block(3) == (1, "a")
    crash(again)
    third = Store(path)  # opened without a restart's read: it knows b is in the intake
    assert third.count_jobs_by_status() == {"SUBMITTED": 2}
    b = third.load_job("b")
    assert b is not None and b.spec.number == 4
    assert (rows(third, "job_intake"), rows(third, "jobs")) == (0, 2)
    third.close()


def test_a_rolled_back_write_leaves_the_intake_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = take(store, "a")
    with pytest.raises(StorageError), store.transaction():
        store.intake(make_job("lost", queue="q"))
        store.save_jobs([])  # settles a and lost, then the write fails
        raise sqlite3.OperationalError("disk I/O error")
    assert store.intake_pending
    assert rows(store, "jobs") == 0 and rows(store, "job_intake") == 1
    assert store.load_job("lost") is None  # never there: its number is free again
    assert store.load_job("a") is not None
    assert take(store, "b").spec.number == 2
    assert a.spec.number == 1
    store.close()


def test_a_spec_saved_after_the_intake_is_the_one_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = take(store, "a")
    a.spec.tags = {"team": "x"}
    with store.transaction():
        store.save_spec(a.spec)
        store.save_jobs([a])
    store._specs.clear()
    assert store.spec("a").tags == {"team": "x"}
    store.close()


def test_a_clean_close_settles_the_intake(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    take(store, "a")
    store.close()
    store.close()  # again: nothing
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM job_intake").fetchone()[0] == 0
    assert db.execute("SELECT job_id, status FROM jobs").fetchall() == [("a", "SUBMITTED")]
    db.close()


def test_new_ids_are_uuids_that_grow_with_time() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 7 and u.variant == uuid.RFC_4122
    stamps = [int(i.replace("-", "")[:12], 16) for i in ids]
    assert stamps == sorted(stamps)
    assert len({i[14:] for i in ids}) == len(ids)  # the random part differs within a ms


def test_a_read_during_a_pass_commits_nothing_of_the_pass(tmp_path: Path) -> None:
    """A pass reads the store (a dependency's status, a node job not made yet) after it has
    changed jobs in memory and before its write: that read moves the intake's rows as they
    were submitted, runs no commit hook, and a crash then keeps nothing of the pass."""
    path = tmp_path / "s.db"
    store = Store(path)
    hooks: list[str] = []
    store.before_commit = lambda: hooks.append("before")
    store.after_commit = lambda: hooks.append("after")
    parent = take(store, "p", array_size=2)
    hooks.clear()
    transition(parent, JobStatus.PENDING, T0 + 5, None)  # the pass expands it, in memory
    assert store.job_status("elsewhere") is None  # a read in the middle of the pass
    assert hooks == [] and not store.intake_pending
    crash(store)
    again = Store(path)
    jobs = again.load_active_jobs()
    assert [(j.job_id, j.status) for j in jobs] == [("p", JobStatus.SUBMITTED)]  # expanded anew
    again.close()


def test_a_failed_settle_on_a_read_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s.db")
    failures: list[str] = []
    store.on_failure = lambda: failures.append("reload")  # the head would rebuild its memory
    take(store, "a")

    def broken() -> None:
        store.db.execute(intake.SETTLE_NUMBERS)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_settle_rows", broken)
    assert store.job_status("a") == JobStatus.SUBMITTED  # read through the intake
    assert failures == [] and store.intake_pending
    assert rows(store, "job_numbers") == 0  # the half-made move was rolled back
    monkeypatch.undo()
    store.settle()
    assert (rows(store, "job_intake"), rows(store, "jobs"), rows(store, "job_numbers")) == (0, 1, 1)
    store.close()
