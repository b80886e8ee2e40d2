"""Durable truth (issue 11): a write the store cannot make changes nothing in memory and is
told to the caller; nothing reaches a node before it is on disk, so no attempt id goes out
twice; a tick that raises loses none of its wake-ups.

The full disk is real: a small tmpfs mounted as the head's home and filled (root only)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.api.aws.batch import error_for
from mnp.api.native import error_response
from mnp.errors import StorageError
from mnp.scheduler.loop import Scheduler
from tests.tmpfs_support import tmpfs
from tests.unit.helpers_core import Head


def fill(folder: Path) -> Path:
    """Write one file in ``folder`` until its file system is full; returns the file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def work_on_full_disk(head: Head, rounds: int = 3) -> set[str]:
    """Tick and poll node ``n1`` ``rounds`` times as the head loop would, each failed write
    answered as the HTTP layer does (an error, the loop goes on); returns the attempt ids the
    node was sent."""
    sent: set[str] = set()

    def poll() -> None:
        sent.update(a.attempt_id for a in head.poll()[0])

    for _ in range(rounds):
        for step in (head.scheduler.tick, poll):
            try:
                step()
            except (StorageError, sqlite3.Error):
                pass
    return sent


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards whatever happens."""
    with tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


@pytest.fixture
def full_head(small_disk: Path) -> Iterator[tuple[Head, str, Path]]:
    """A head on the small disk with one node and one SUBMITTED job, then the disk filled."""
    head = Head.open(small_disk / "home")
    head.basic()
    job_id = head.submit("first")
    filler = fill(small_disk)
    try:
        yield head, job_id, filler
    finally:
        head.store.close()


def test_a_tick_on_a_full_disk_changes_nothing_and_sends_nothing(
    full_head: tuple[Head, str, Path],
) -> None:
    head, job_id, filler = full_head
    with pytest.raises(StorageError, match="could not save"):
        head.scheduler.tick()
    assert work_on_full_disk(head) == set()
    # memory is what the store holds: the job was never placed, nothing went to the node
    assert head.status(job_id) == "SUBMITTED"
    assert not head.state.dirty
    filler.unlink()
    assignment = head.run_next("n1")
    assert assignment.attempt_id == f"{job_id}/1"
    assert head.status(job_id) == "RUNNING"


def test_a_submission_on_a_full_disk_is_refused_and_leaves_no_job(
    full_head: tuple[Head, str, Path],
) -> None:
    head, first, filler = full_head
    with pytest.raises(StorageError):
        head.submit("second")
    with pytest.raises(StorageError):  # a change made in memory before the write is undone
        head.api["updateJobQueue"]({"jobQueue": "q", "priority": 7})
    listed = head.api["listJobs"]({"jobQueue": "q", "jobStatus": "SUBMITTED"})["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [first]
    assert head.state.queues["q"].priority == 1
    filler.unlink()
    second = head.submit("second")
    assert head.status(second) == "SUBMITTED"


def test_no_attempt_id_goes_out_twice_across_a_crash_before_its_commit(
    full_head: tuple[Head, str, Path],
) -> None:
    """The attempt is made in the tick and its commit fails; the head then dies (its memory is
    abandoned) and a new one opens the store. Whatever the node was sent before the crash must
    not be sent again as a different run."""
    head, job_id, filler = full_head
    sent_before = work_on_full_disk(head)
    head.store.close()  # the crash: nothing more of this head reaches the store
    filler.unlink()
    again = Head.open(head.home, head.clock)
    try:
        again.node("n1")
        sent_after = {again.run_next("n1").attempt_id}
        assert sent_after == {f"{job_id}/1"}
        assert not sent_before & sent_after, "an attempt id was reused after the crash"
    finally:
        again.store.close()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_tick_that_raises_keeps_its_dependency_wake_ups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Job ``b`` waits for ``a``; ``a`` succeeds, which wakes ``b``; the tick that would make
    ``b`` RUNNABLE raises (before or after applying its actions). It changes nothing and the
    next tick still sees ``b``."""
    head = Head.open(tmp_path / "home")
    head.basic()
    a = head.submit("a")
    b = head.submit("b", dependsOn=[{"jobId": a}])
    head.exited("n1", head.run_next("n1").attempt_id, 0)
    assert head.status(a) == "SUCCEEDED"
    assert head.status(b) == "PENDING"

    real_apply = Scheduler.apply
    faults: list[list[Any]] = []

    def apply_failing_once(self: Scheduler, actions: list[Any]) -> set[str]:
        if faults:
            return real_apply(self, actions)
        faults.append(actions)
        if when == "after":
            real_apply(self, actions)
        raise RuntimeError("injected fault in a reconcile action")

    monkeypatch.setattr(Scheduler, "apply", apply_failing_once)
    with pytest.raises(RuntimeError, match="injected"):
        head.scheduler.tick()
    assert head.status(b) == "PENDING"  # the failed tick left nothing behind
    assert head.run_next("n1").job_id == b


def test_both_doors_answer_a_storage_failure_as_a_retryable_server_error() -> None:
    e = StorageError(OSError(errno.ENOSPC, "database or disk is full"))
    native = error_response(e)
    aws = error_for(e, "req-1")
    assert (native.status_code, aws.status_code) == (503, 500)  # AWS's ServerException: 500
    for resp in (native, aws):
        assert b'"__type":"ServerException"' in resp.body
        assert b"could not save" in resp.body
    assert native.headers["Retry-After"] == "1"
    assert aws.headers["x-amzn-RequestId"] == "req-1"

