"""Integer job numbers beside the UUIDs: allocation (durable, monotonic, never reused),
resolution on every door, the job's Slurm variables and file names, and the Slurm views."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.errors import StorageError
from mnp.slurm.views import job_row, matches_id
from tests.unit.helpers_core import Head
from tests.unit.test_aws_batch_wire import Wire, make_wire


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def number(h: Head, ref: str) -> int:
    return int(h.describe(ref)["jobNumber"])


def test_numbers_start_at_one_and_an_array_takes_one_per_task(head: Head) -> None:
    a = head.submit("a")
    arr = head.submit("arr", arrayProperties={"size": 3})
    b = head.submit("b")
    assert [number(head, a), number(head, arr), number(head, b)] == [1, 2, 6]
    head.ticks(2)
    children = head.api["listJobs"]({"arrayJobId": arr, "allStatuses": True})["jobSummaryList"]
    assert sorted((c["jobNumber"], c["arrayJobNumber"]) for c in children) == [
        (3, 2), (4, 2), (5, 2)
    ]  # fmt: skip


def test_numbers_survive_a_restart_and_are_never_reused(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    first = h.submit("a")
    h.store.close()  # no orderly shutdown: what was committed is all there is
    h2 = Head.open(tmp_path / "home")
    try:
        second = h2.submit("b")
        assert (number(h2, first), number(h2, second)) == (1, 2)
        assert h2.describe("1")["jobId"] == first
    finally:
        h2.close()


def test_after_a_restart_numbers_go_on_past_the_newest_arrays_tasks(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    h.submit("a")
    h.submit("arr", arrayProperties={"size": 3})  # 2, and 3..5 for its tasks
    h.store.close()
    h2 = Head.open(tmp_path / "home")
    try:
        assert number(h2, h2.submit("b")) == 6
    finally:
        h2.close()


def test_an_older_stores_counter_is_where_numbers_go_on(tmp_path: Path) -> None:
    """Heads before the blocks said where they end kept the next number in a meta row."""
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    h.submit("a")
    h.close()
    db = sqlite3.connect(str(tmp_path / "home" / "mnp.sqlite3"))
    db.executescript("""
        ALTER TABLE job_numbers DROP COLUMN last;
        INSERT INTO meta VALUES ('next_job_number', '12');
    """)  # fmt: skip
    db.close()
    h2 = Head.open(tmp_path / "home")
    try:
        assert number(h2, h2.submit("b")) == 12  # the old counter, past the old blocks
    finally:
        h2.close()
    h3 = Head.open(tmp_path / "home")
    try:
        assert number(h3, h3.submit("c")) == 13  # then the blocks' own ends
    finally:
        h3.close()


def test_a_rolled_back_submission_leaves_no_number_taken(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    head.submit("a")

    def full(*_a: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(head.store, "intake", full)
        with pytest.raises(StorageError):
            head.submit("lost")
    ok = head.submit("b")
    assert number(head, ok) == 2
    assert head.store.numbered_block(2) == (2, ok)


def test_many_submissions_get_distinct_increasing_numbers(head: Head) -> None:
    ids = []
    for i in range(40):
        ids.append(head.submit(f"j{i}"))
        if i % 7 == 0:
            head.ticks(1)  # scheduling in between changes nothing
    assert [number(head, j) for j in ids] == list(range(1, 41))


def test_every_native_operation_takes_numbers(head: Head) -> None:
    plain = head.submit("plain")
    arr = head.submit(
        "arr",
        arrayProperties={"size": 2},
        containerOverrides={
            "environment": [{"name": "MNP_SLURM_ARRAY_TASK_IDS", "value": "3,7"}]
        },
    )  # numbers 2 (array), 3 and 4 (its tasks 3 and 7)
    head.ticks(2)
    api = head.api
    refs = ["1", "2_7", "2:0", "3", "99"]
    got = [j["jobId"] for j in api["describeJobs"]({"jobs": refs})["jobs"]]
    assert got == [plain, f"{arr}:1", f"{arr}:0", f"{arr}:0"]  # 99: unknown, left out
    assert api["describeJobs"]({"jobs": ["2_1"]})["jobs"] == []  # no task id 1
    listed = api["listJobs"]({"arrayJobId": "2", "allStatuses": True})["jobSummaryList"]
    assert len(listed) == 2
    dep = head.submit("dep", dependsOn=[{"jobId": "1"}])
    assert head.describe(dep)["dependsOn"] == [{"jobId": plain}]
    api["cancelJob"]({"jobId": "2_3", "reason": "r"})
    assert head.status(f"{arr}:0") == "FAILED"
    api["terminateJob"]({"jobId": "1", "reason": "r"})
    head.ticks(2)
    assert head.describe(plain)["isTerminated"] is True
    assert api["cancelJob"]({"jobId": "12345", "reason": "r"}) == {}  # as for an unknown UUID


def test_the_aws_wire_answers_uuids_and_takes_numbers(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    wire: Wire = make_wire(h)
    try:
        job = wire("SubmitJob", jobName="j", jobQueue="q", jobDefinition="def")
        raw = wire.http.post("/v1/submitjob", json={
            "jobName": "k", "jobQueue": "q", "jobDefinition": "def"}).json()  # fmt: skip
        assert "jobNumber" not in raw
        (d,) = wire("DescribeJobs", jobs=["1"])["jobs"]
        assert d["jobId"] == job["jobId"]
        raw_d = wire.http.post("/v1/describejobs", json={"jobs": ["1"]}).json()["jobs"][0]
        assert "jobNumber" not in raw_d
        wire("CancelJob", jobId="2", reason="r")
        assert h.status(raw["jobId"]) == "FAILED"
        wire("TerminateJob", jobId="1", reason="r")
        assert h.describe(job["jobId"])["isTerminated"] is True
    finally:
        wire.http.close()
        h.close()


def test_slurm_variables_and_file_names_are_numbers(head: Head) -> None:
    head.submit("plain", mnp={"stdout": "/o/%x-%j-%A-%a.out"})
    a = head.run_next("n1")
    assert a.environment["SLURM_JOB_ID"] == "1"
    assert "SLURM_ARRAY_JOB_ID" not in a.environment
    assert a.stdout_path == "/o/plain-1-1-.out"


def test_slurm_views_show_numbers() -> None:
    parent = {"jobId": "u", "jobNumber": 7, "arrayProperties": {"size": 2}, "status": "RUNNING"}
    child = {
        "jobId": "u:1", "jobNumber": 9, "arrayJobNumber": 7, "arrayJobId": "u",
        "arrayProperties": {"index": 1, "size": 2}, "status": "RUNNING",
    }  # fmt: skip
    old = {"jobId": "v", "status": "RUNNING"}  # stored before heads numbered jobs
    p, c, o = (job_row(s, 0) for s in (parent, child, old))
    assert (p.job_id, p.raw_id, p.mnp_id) == ("7", "7", "u")
    assert (c.job_id, c.raw_id, c.array_job_id, c.mnp_id) == ("7_1", "9", "7", "u:1")
    assert (o.job_id, o.raw_id) == ("v", "v")
    assert matches_id(c, ["7"]) and matches_id(c, ["7_1"]) and matches_id(c, ["9"])
    assert matches_id(c, ["u:1"]) and not matches_id(c, ["8"])
