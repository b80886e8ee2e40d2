"""Store costs that follow the work, not the history: a restart reads the unfinished jobs
(their specs and history) in three queries through a partial index; each ListJobs selection reads
through an index in its own order; the definition and share filters are columns (an older
store gains them when opened); LOST and STOPPED nodes are pruned after a retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mnp.service.logs import LogReader
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.jobs import Attempt, Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus, transition
from mnp.store.queries import JobQuery, job_query_sql
from mnp.store.sqlite import DEFAULT_NODE_RETENTION_HOURS, NODE_RETENTION_ENV, Store
from tests.unit.helpers_core import T0, make_job, make_spec

S = JobStatus
HOUR = 3600 * 1000
ARN = "arn:aws:batch:local:000000000000:job-definition/def:1"

OLD_JOBS = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, spec_id TEXT NOT NULL, parent_id TEXT, array_index INTEGER,
    queue TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_queue_created ON jobs (queue, created_at);
CREATE INDEX jobs_parent ON jobs (parent_id, array_index);
"""
"""The jobs table as the heads before definition and share columns wrote it."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "mnp.sqlite3")
    yield s
    s.close()


def fill(store: Store, finished: int, unfinished: int) -> list[str]:
    """``finished`` SUCCEEDED jobs and ``unfinished`` RUNNABLE ones, each with a history."""
    jobs = []
    for i in range(finished + unfinished):
        share = "teamA" if i % 2 else None
        job = make_job(f"j{i:05d}", created_at=T0 + i)
        job.spec.share_identifier = share
        transition(job, S.PENDING, T0 + i)
        transition(job, S.RUNNABLE, T0 + i + 1, "ready")
        if i < finished:
            transition(job, S.STARTING, T0 + i + 2)
            transition(job, S.RUNNING, T0 + i + 3)
            transition(job, S.SUCCEEDED, T0 + i + 4)
        jobs.append(job)
    with store.transaction():
        for j in jobs:
            store.save_spec(j.spec)
        store.save_jobs(jobs)
    return [j.job_id for j in jobs[finished:]]


def statements(store: Store) -> list[str]:
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    return seen


def plan(db: sqlite3.Connection, sql: str, args: list[object]) -> str:
    return " | ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))


# --- restart ----------------------------------------------------------------------------------
def test_restart_reads_unfinished_jobs_and_their_history_in_two_queries(store: Store) -> None:
    unfinished = fill(store, finished=200, unfinished=30)
    again = Store(store.path)
    try:
        seen = statements(again)
        jobs = again.load_active_jobs()
        again.db.set_trace_callback(None)
        assert [j.job_id for j in jobs] == unfinished
        assert [h.status for h in jobs[0].history] == [S.SUBMITTED, S.PENDING, S.RUNNABLE]
        assert jobs[0].history_saved == 3 and jobs[0].history[-1].reason == "ready"
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 2, selects  # the jobs (their history inside), their specs
        for sql in selects:
            if "FROM jobs" in sql:
                assert "jobs_unfinished" in plan(again.db, sql, []), sql
    finally:
        again.close()


def test_a_save_keeps_the_rows_place(store: Store) -> None:
    """An upsert, not a replace: the rowid (the listings' tie-break) stays the job's."""
    fill(store, finished=0, unfinished=3)
    before = dict(store.db.execute("SELECT job_id, rowid FROM jobs").fetchall())
    job = store.load_job("j00000")
    assert job is not None
    transition(job, S.STARTING, T0 + 9)
    with store.transaction():
        store.save_jobs([job])
    after = dict(store.db.execute("SELECT job_id, rowid FROM jobs").fetchall())
    assert after == before
    assert store.job_status("j00000") == S.STARTING


# --- listing ----------------------------------------------------------------------------------
QUERIES = {
    "default RUNNING": (JobQuery(queue="q", statuses=["RUNNING"]), "(queue=? AND status=?)"),
    "one status, deep page": (
        JobQuery(queue="q", statuses=["RUNNABLE"], after=(T0 + 50, 40)),
        "(queue=? AND status=? AND created_at<?)",
    ),
    "all statuses": (JobQuery(queue="q"), "jobs_top_created (queue=?)"),
    "name": (JobQuery(queue="q", name_exact="job"), "(queue=? AND <expr>=?)"),
    "definition revision": (
        JobQuery(queue="q", definition=ARN, definition_exact=True),
        "(queue=? AND definition_arn=?)",
    ),
    "share": (JobQuery(queue="q", share_identifier="teamA"), "(queue=? AND share_identifier=?)"),
    "created before": (
        JobQuery(queue="q", created_before=T0 + 5),
        "jobs_top_created (queue=? AND created_at<?)",
    ),
    "created after": (
        JobQuery(queue="q", created_after=T0 + 5),
        "jobs_top_created (queue=? AND created_at>?)",
    ),
    "array children": (
        JobQuery(parent_id="p", statuses=["RUNNABLE"], after=(3, 9)),
        "(parent_id=? AND status=? AND array_index>?)",
    ),
}
"""Each selection ListJobs makes and the index search it must be: every condition it has
an index for is a term of the search (so the rows read are the page's, not a queue's whole
history filtered), and the top-level listings leave array children out of the index."""


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_each_listing_reads_through_an_index_in_its_order(store: Store, name: str) -> None:
    """No scan, no sort of every match: a page costs its own rows."""
    query, search = QUERIES[name]
    sql, args = job_query_sql(query)
    how = plan(store.db, sql, args)
    assert search in how, how
    assert "SCAN jobs" not in how and "TEMP B-TREE" not in how and "job_specs" not in how, how


def test_filters_match_as_before(store: Store) -> None:
    fill(store, finished=4, unfinished=4)
    odd = {f"j{i:05d}" for i in range(1, 8, 2)}
    assert {j.job_id for j in store.query_jobs(JobQuery(share_identifier="teamA"))} == odd
    every = {f"j{i:05d}" for i in range(8)}
    for definition, exact in ((ARN, True), (ARN[:-1], False), (ARN[:-6], False)):
        got = store.query_jobs(JobQuery(definition=definition, definition_exact=exact))
        assert {j.job_id for j in got} == every, definition
    assert store.query_jobs(JobQuery(definition=ARN.upper()[:-1])) == []  # case-sensitive
    assert store.query_jobs(JobQuery(definition=ARN[:-1], definition_exact=True)) == []
    assert len(store.query_jobs(JobQuery(name_prefix="JO"))) == 8  # JOB_NAME: any case
    assert store.query_jobs(JobQuery(name_prefix="jo_")) == []  # no LIKE wildcards
    assert len(store.query_jobs(JobQuery(name_exact="JOB"))) == 8


# --- migration --------------------------------------------------------------------------------
def make_old(path: Path) -> None:
    """A store file as the committed heads wrote it: jobs without the two columns."""
    new = Store(path)
    spec = make_spec("s-share", name="shared")
    spec.share_identifier = "teamB"
    jobs = [make_job("plain", created_at=T0), make_job("shared", spec=spec, created_at=T0 + 1)]
    with new.transaction():
        for j in jobs:
            new.save_spec(j.spec)
        new.save_jobs(jobs)
    new.close()
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT job_id, spec_id, parent_id, array_index, queue, name, status, created_at, doc "
        "FROM jobs"
    ).fetchall()
    db.executescript("DROP TABLE jobs;" + OLD_JOBS)
    db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def parent_index_is_partial(store: Store) -> bool:
    """Whether the jobs' parent index holds only the rows its ``WHERE`` picks."""
    partial = {row[1]: row[4] for row in store.db.execute("PRAGMA index_list(jobs)")}
    return partial["jobs_parent"] == 1


def test_only_jobs_with_a_parent_are_in_the_parent_index(store: Store) -> None:
    fill(store, finished=3, unfinished=3)
    parent = make_job("arr", created_at=T0)
    parent.spec.array_size = 2
    children = [make_job(f"arr:{i}", spec=parent.spec, created_at=T0, parent_id="arr",
                         array_index=i) for i in range(2)]  # fmt: skip
    with store.transaction():
        store.save_spec(parent.spec)
        store.save_jobs([parent, *children])
    assert parent_index_is_partial(store)  # a top-level job costs it no page
    listed = store.query_jobs(JobQuery(parent_id="arr"))
    assert [j.job_id for j in listed] == ["arr:0", "arr:1"]
    sql, args = job_query_sql(JobQuery(parent_id="arr"))
    assert "jobs_parent" in plan(store.db, sql, args) or "jobs_children" in plan(
        store.db, sql, args)


def test_an_older_store_is_migrated_and_filters_on_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_old(path)
    store = Store(path)
    try:
        columns = {r[1] for r in store.db.execute("PRAGMA table_info(jobs)")}
        assert {"definition_arn", "share_identifier"} <= columns
        shared = store.query_jobs(JobQuery(share_identifier="teamB"))
        assert [j.job_id for j in shared] == ["shared"]
        got = store.query_jobs(JobQuery(definition=ARN, definition_exact=True))
        assert {j.job_id for j in got} == {"plain", "shared"}
        assert {j.job_id for j in store.load_active_jobs()} == {"plain", "shared"}
        job = store.load_job("plain")
        assert job is not None and job.spec.definition_arn == ARN
    finally:
        store.close()
    again = Store(path)  # and opens again without migrating twice
    try:
        assert len(again.query_jobs(JobQuery(share_identifier="teamB"))) == 1
        assert parent_index_is_partial(again)  # rebuilt, holding only jobs with a parent
    finally:
        again.close()


# --- nodes ------------------------------------------------------------------------------------
def node(node_id: str, status: NodeStatus, seen: int) -> Node:
    return Node(node_id, "ce", "127.0.0.9", Resources(1, 1, 0), status, launched_at=seen - 5,
                last_heartbeat_ms=seen)  # fmt: skip


def test_lost_and_stopped_nodes_are_pruned_after_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "mnp.sqlite3"
    store = Store(path)
    now = T0 + 100 * HOUR
    with store.transaction():
        store.save_node(node("live", NodeStatus.ACTIVE, now - 48 * HOUR))
        store.save_node(node("lost-old", NodeStatus.LOST, now - 25 * HOUR))
        store.save_node(node("stopped-old", NodeStatus.STOPPED, now - 30 * HOUR))
        store.save_node(node("lost-new", NodeStatus.LOST, now - 23 * HOUR))
        store.save_node(node("newest", NodeStatus.ACTIVE, now))
        store.save_node(Node("no-time", "ce", "127.0.0.9", Resources(1, 1, 0), NodeStatus.LOST))
    store.close()
    assert DEFAULT_NODE_RETENTION_HOURS == 24
    again = Store(path)  # no clock given: the newest stored sign of life is "now"
    try:
        kept = {n.node_id for n in again.load_nodes()}
        assert kept == {"live", "lost-new", "newest", "no-time"}
        assert again.prune_nodes(now + 2 * HOUR) == 1  # lost-new passes 24 h
    finally:
        again.close()


def test_the_retention_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mnp.sqlite3"
    store = Store(path)
    with store.transaction():
        store.save_node(node("lost", NodeStatus.LOST, T0))
        store.save_node(node("newest", NodeStatus.ACTIVE, T0 + 2 * HOUR))
    store.close()
    monkeypatch.setenv(NODE_RETENTION_ENV, "3")
    kept = Store(path)
    assert {n.node_id for n in kept.load_nodes()} == {"lost", "newest"}
    kept.close()
    monkeypatch.setenv(NODE_RETENTION_ENV, "1.5")
    pruned = Store(path)
    assert {n.node_id for n in pruned.load_nodes()} == {"newest"}
    pruned.close()
    monkeypatch.setenv(NODE_RETENTION_ENV, "soon")
    with pytest.raises(ValueError, match=NODE_RETENTION_ENV):
        Store(path)


# --- log streams ------------------------------------------------------------------------------
def with_attempt(job_id: str, placed: int, stopped: int | None) -> Job:
    job = make_job(job_id, S.RUNNING if stopped is None else S.SUCCEEDED, created_at=placed)
    job.attempts = [Attempt(1, "n1", "127.0.0.2", "ce", f"def/default/{job_id}", placed,
                            placed, stopped)]  # fmt: skip
    job.stopped_at = stopped
    return job


class Files:
    """Where the reader finds an attempt's output (none here), counting the look-ups."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.looked: list[str] = []

    def log_path(self, job_id: str, attempt: int, stream: str) -> Path:
        self.looked.append(job_id)
        return self.root / f"{job_id}.{attempt}.{stream}"


def stored_reader(store: Store, tmp_path: Path, jobs: list[Job]) -> tuple[LogReader, Files]:
    """``jobs`` saved (their specs too), and a reader of the store counting its look-ups."""
    with store.transaction():
        for j in jobs:
            store.save_spec(j.spec)
        store.save_jobs(jobs)
    files = Files(tmp_path)
    return LogReader(cast(Any, SimpleNamespace(store=store)), cast(Any, files)), files


def test_streams_by_last_event_page_off_an_index_and_look_only_at_open_ones(
    store: Store, tmp_path: Path
) -> None:
    """DescribeLogStreams orderBy=LastEventTime: the ended streams come in order of their
    end from the index, only the running attempts' files are looked at, and paging by key
    lists every stream once."""
    jobs = [with_attempt(f"e{i:03d}", T0 + i, T0 + 1000 + (i * 7) % 50) for i in range(50)]
    jobs += [with_attempt(f"r{i}", T0 + 2000 + i, None) for i in range(3)]
    reader, files = stored_reader(store, tmp_path, jobs)
    for descending in (True, False):
        seen: list[tuple[int, str]] = []
        past = None
        while True:
            page = reader.by_last_event(past=past, descending=descending, limit=7)
            seen += [key for key, _ in page]
            if len(page) < 7:
                break
            past = page[-1][0]
        assert len(seen) == 53 and len({name for _, name in seen}) == 53
        assert seen == sorted(seen, reverse=descending)
    assert set(files.looked) == {"r0", "r1", "r2"}
    sql_plan = plan(
        store.db,
        "SELECT name FROM log_streams s WHERE s.ended_at IS NOT NULL AND (s.ended_at, s.name) < "
        "(?, ?) ORDER BY s.ended_at DESC, s.name DESC LIMIT 5",
        [T0, "x"],
    )
    assert "log_streams_ended" in sql_plan and "TEMP B-TREE" not in sql_plan, sql_plan


def test_a_stream_ends_when_its_attempt_does(store: Store) -> None:
    job = with_attempt("j", T0, None)
    with store.transaction():
        store.save_spec(job.spec)
        store.save_jobs([job])
    assert [r.name for r in store.open_streams()] == ["def/default/j"]
    job.attempts[0].stopped_at = T0 + 9
    job.status = S.SUCCEEDED
    with store.transaction():
        store.save_jobs([job])
    assert store.open_streams() == []
    assert [k for k, _ in store.ended_streams()] == [(T0 + 9, "def/default/j")]


def test_an_older_stream_index_gains_its_end_times(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    new = Store(path)
    jobs = [with_attempt("done", T0, T0 + 5), with_attempt("running", T0, None)]
    with new.transaction():
        for j in jobs:
            new.save_spec(j.spec)
        new.save_jobs(jobs)
    new.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE log_streams; CREATE TABLE log_streams (name TEXT PRIMARY KEY, "
        "job_id TEXT NOT NULL, attempt INTEGER NOT NULL, created_at INTEGER NOT NULL);"
        "INSERT INTO log_streams VALUES ('def/default/done', 'done', 1, 1), "
        "('def/default/running', 'running', 1, 1);"
    )
    db.commit()
    db.close()
    old = Store(path)
    try:
        assert [r.name for r in old.open_streams()] == ["def/default/running"]
        assert [k for k, _ in old.ended_streams()] == [(T0 + 5, "def/default/done")]
    finally:
        old.close()


def test_a_running_head_forgets_old_lost_nodes_as_a_restart_would(tmp_path: Path) -> None:
    """LOST nodes past the retention go from memory and the store while the head runs (a
    look every ten minutes at most); a node that lives, or was lost lately, stays."""
    from tests.unit.helpers_core import Head

    h = Head.open(tmp_path / "home")
    try:
        h.basic(nodes=("old", "live"))
        h.clock.advance(60)  # both silent past lost_after: LOST
        h.poll("live")  # ... but "live" heartbeats
        h.ticks(1)
        assert h.state.nodes["old"].status == NodeStatus.LOST
        for _ in range(25):  # a day and an hour, "live" polling, ticks as the head makes them
            h.clock.advance(HOUR / 1000)
            h.poll("live")
            h.ticks(1)
        assert "old" not in h.state.nodes and "old" not in h.state.node_rt
        assert "old" not in {n.node_id for n in h.store.load_nodes()}
        assert "live" in h.state.nodes
        assert h.scheduler.retire_old_nodes(force=True) == []  # nothing more to forget
    finally:
        h.close()


def test_filter_log_events_in_a_time_window_opens_only_the_streams_that_ran_in_it(
    store: Store, tmp_path: Path
) -> None:
    """FilterLogEvents with startTime/endTime over a whole group: streams that ended before
    the window (less the clock allowance) or were placed after it are never opened."""
    from mnp.api.aws.logs_events import CLOCK_SKEW_MS, filter_log_events

    skew = CLOCK_SKEW_MS
    jobs = [
        with_attempt("before", T0, T0 + 10),  # ended long before the window
        with_attempt("early", T0, T0 + 10 * HOUR - skew // 2),  # ended just before: allowed
        with_attempt("inside", T0 + 10 * HOUR, T0 + 11 * HOUR),
        with_attempt("running", T0 + 5 * HOUR, None),  # placed before, not ended
        with_attempt("after", T0 + 20 * HOUR, T0 + 21 * HOUR),  # placed after the window
    ]
    reader, files = stored_reader(store, tmp_path, jobs)
    window = {"startTime": T0 + 10 * HOUR, "endTime": T0 + 12 * HOUR}
    answer = filter_log_events(reader, {"logGroupName": "/aws/batch/job", **window})
    assert answer["events"] == []  # no output files here
    assert sorted(set(files.looked)) == ["early", "inside", "running"]
    files.looked.clear()
    filter_log_events(reader, {"logGroupName": "/aws/batch/job"})  # no window: every stream
    assert sorted(set(files.looked)) == ["after", "before", "early", "inside", "running"]
