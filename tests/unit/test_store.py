"""SQLite persistence: round trips, incremental history, queries, reopening the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.spec.definitions import Dependency, EvaluateOnExit, JobDefinition, RetryStrategy
from mnp.spec.environments import ComputeEnvironment, JobQueue, Node, NodeStatus, State
from mnp.spec.jobs import Attempt, Job
from mnp.spec.resources import Resources
from mnp.spec.states import HistoryEntry, JobStatus, transition
from mnp.store.queries import JobQuery
from mnp.store.sqlite import Store
from mnp.store.streams import StreamRef
from tests.unit.helpers_core import HOSTILE, T0, make_job, make_spec

S = JobStatus


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    weird = tmp_path / "dir with spaces; 'quotes' $HOME"
    weird.mkdir()
    return weird / "mnp.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def reopen(store: Store) -> Store:
    """A second Store on the same file: what a restarted head node sees."""
    return Store(store.path)


def full_spec(spec_id: str = "spec-full", array_size: int | None = None) -> Job:
    spec = make_spec(
        spec_id,
        name="full-job",
        command=["sh", "-c", HOSTILE],
        environment={"KEY": HOSTILE, "EMPTY": ""},
        resources=Resources(2.5, 1024, 1),
        depends_on=[Dependency("dep-1"), Dependency(None, "SEQUENTIAL")],
        retry=RetryStrategy(3, (EvaluateOnExit("RETRY", on_exit_code="1*"),)),
        timeout_seconds=120,
        array_size=array_size,
    )
    spec.parameters = {"p": HOSTILE}
    spec.tags = {"team": "a b"}
    return make_job(spec_id, S.SUBMITTED, spec=spec)


def ran_job(job_id: str = "ran") -> Job:
    """A job with two attempts and a full history (retried once, then succeeded)."""
    job = make_job(job_id, S.SUBMITTED, resources=Resources(1, 64, 0))
    steps = [S.RUNNABLE, S.STARTING, S.RUNNING, S.RUNNABLE, S.STARTING, S.RUNNING, S.SUCCEEDED]
    for i, st in enumerate(steps, start=1):
        transition(job, st, T0 + i, None if st != S.RUNNABLE else f"retry {i}")
    job.attempts = [
        Attempt(
            1,
            "n1",
            "127.0.0.2",
            "ce",
            "def/default/a",
            T0 + 2,
            T0 + 3,
            T0 + 4,
            1,
            None,
            "Essential container in task exited",
        ),
        Attempt(
            2,
            "n2",
            "127.0.0.3",
            "ce",
            "def/default/b",
            T0 + 5,
            T0 + 6,
            T0 + 7,
            0,
            None,
            "Essential container in task exited",
        ),
    ]
    job.started_at = T0 + 3
    job.stopped_at = T0 + 7
    return job


def save(store: Store, *jobs: Job) -> None:
    with store.transaction():
        for j in jobs:
            store.save_spec(j.spec)
        store.save_jobs(jobs)


def assert_same_job(loaded: Job | None, original: Job, history: bool = True) -> None:
    assert loaded is not None
    for f in (
        "job_id",
        "spec",
        "status",
        "created_at",
        "parent_id",
        "array_index",
        "status_reason",
        "started_at",
        "stopped_at",
        "attempts",
        "is_cancelled",
        "is_terminated",
        "status_summary",
        "summary_updated_at",
    ):
        assert getattr(loaded, f) == getattr(original, f), f
    if history:
        assert loaded.history == original.history
        assert loaded.history_saved == len(original.history)


# --- definitions, queues, environments, nodes -------------------------------------------------


def test_definitions_round_trip(store: Store) -> None:
    defs = [
        JobDefinition("a", 1, "INACTIVE", {"type": "container", "x": HOSTILE}),
        JobDefinition("a", 2, "ACTIVE", {"type": "container", "nested": {"k": [1, 2]}}),
        JobDefinition("b", 1, "ACTIVE", {}),
    ]
    for d in reversed(defs):
        store.save_definition(d)
    assert store.load_definitions() == defs
    defs[1].status = "INACTIVE"
    store.save_definition(defs[1])
    assert reopen(store).load_definitions() == defs


def test_queues_round_trip_and_delete(store: Store) -> None:
    q1 = JobQueue("q1", 5, State.ENABLED, [(2, "b"), (1, "a")], T0, {"k": HOSTILE})
    q2 = JobQueue("q2", 1, State.DISABLED, [(1, "a")], T0 + 1)
    store.save_queue(q1)
    store.save_queue(q2)
    assert sorted(store.load_queues(), key=lambda q: q.name) == [q1, q2]
    assert q1.ce_names == ["a", "b"]
    store.delete_queue("q2")
    assert reopen(store).load_queues() == [q1]


def test_compute_environments_round_trip_and_delete(store: Store) -> None:
    ce = ComputeEnvironment(
        "ce",
        "MANAGED",
        State.DISABLED,
        "local",
        3,
        Resources(4, 8192, 1),
        T0,
        {"computeResources": {"maxvCpus": 16}},
        "127.0.1.2",
        7,
    )
    other = ComputeEnvironment("u", "UNMANAGED", State.ENABLED, "local", 0, Resources(), T0)
    store.save_ce(ce)
    store.save_ce(other)
    assert sorted(reopen(store).load_ces(), key=lambda c: c.name) == [ce, other]
    store.delete_ce("u")
    assert store.load_ces() == [ce]


def test_nodes_round_trip(store: Store) -> None:
    n = Node(
        "ce-1",
        "ce",
        "127.0.0.2",
        Resources(4, 4096, 0),
        NodeStatus.ACTIVE,
        1,
        4242,
        T0,
        T0 + 5,
        last_heartbeat_ms=T0 + 9,
    )
    lost = Node("ce-2", "ce", "127.0.0.3", Resources(2.5, 100, 2), NodeStatus.LOST)
    store.save_node(n)
    store.save_node(lost)
    loaded = {x.node_id: x for x in reopen(store).load_nodes()}
    assert loaded["ce-2"] == lost
    assert loaded["ce-1"].last_heartbeat_ms == 0, "heartbeats are not persisted"
    loaded["ce-1"].last_heartbeat_ms = n.last_heartbeat_ms
    assert loaded["ce-1"] == n


def test_meta(store: Store) -> None:
    assert store.get_meta("k") is None
    store.set_meta("k", HOSTILE)
    store.set_meta("k", HOSTILE + "!")
    assert reopen(store).get_meta("k") == HOSTILE + "!"


# --- specs and jobs ---------------------------------------------------------------------------


def test_spec_round_trip_through_a_new_store(store: Store) -> None:
    job = full_spec(array_size=4)
    save(store, job)
    fresh = reopen(store)
    assert fresh.spec(job.spec.spec_id) == job.spec
    with pytest.raises(KeyError):
        fresh.spec("missing")


def test_job_round_trip_with_attempts_and_history(store: Store) -> None:
    job = ran_job()
    job.is_terminated = True
    save(store, job)
    assert job.history_saved == len(job.history)
    assert_same_job(store.load_job("ran"), job)
    assert_same_job(reopen(store).load_job("ran"), job)
    assert store.load_job("missing") is None
    assert store.job_status("ran") == S.SUCCEEDED
    assert store.job_status("missing") is None


def test_array_parent_and_children_round_trip(store: Store) -> None:
    parent = full_spec("arr", array_size=2)
    transition(parent, S.PENDING, T0 + 1)
    parent.status_summary = {s.value: 0 for s in JobStatus} | {"PENDING": 2}
    parent.summary_updated_at = T0 + 1
    children = [
        make_job(f"arr:{i}", S.PENDING, spec=parent.spec, parent_id="arr", array_index=i)
        for i in range(2)
    ]
    children[1].is_cancelled = True
    save(store, parent, *children)
    fresh = reopen(store)
    assert_same_job(fresh.load_job("arr"), parent)
    for c in children:
        assert_same_job(fresh.load_job(c.job_id), c)


def test_history_is_saved_with_the_job_each_entry_once(store: Store) -> None:
    job = make_job("j", S.SUBMITTED)
    save(store, job)
    assert job.history_saved == 1
    transition(job, S.RUNNABLE, T0 + 1, "ready; $x")
    with store.transaction():
        store.save_jobs([job])
    with store.transaction():
        store.save_jobs([job])  # nothing new: nothing duplicated
    transition(job, S.STARTING, T0 + 2)
    transition(job, S.RUNNING, T0 + 3)
    with store.transaction():
        store.save_jobs([job])
    assert job.history_saved == 4
    expected = [
        HistoryEntry(S.SUBMITTED, T0, None),
        HistoryEntry(S.RUNNABLE, T0 + 1, "ready; $x"),
        HistoryEntry(S.STARTING, T0 + 2, None),
        HistoryEntry(S.RUNNING, T0 + 3, None),
    ]
    for source in (store, reopen(store)):
        loaded = source.load_job("j")
        assert loaded is not None and loaded.history == expected
    assert store.db.execute("SELECT count(*) FROM job_history").fetchone() == (0,)


def test_an_older_heads_history_rows_still_load_and_move_into_the_job(store: Store) -> None:
    """Heads before the history went into the job's document kept a row per entry."""
    job = make_job("old", S.RUNNABLE)
    save(store, job)
    doc = json.loads(store.db.execute("SELECT doc FROM jobs WHERE job_id = 'old'").fetchone()[0])
    del doc["history"]
    with store.transaction():
        store.db.execute("UPDATE jobs SET doc = ? WHERE job_id = 'old'", (json.dumps(doc),))
        store.db.executemany("INSERT INTO job_history VALUES ('old', ?, ?, ?)",
                             [(T0, "SUBMITTED", None), (T0 + 1, "RUNNABLE", "ready")])
    again = reopen(store)
    expected = [HistoryEntry(S.SUBMITTED, T0, None), HistoryEntry(S.RUNNABLE, T0 + 1, "ready")]
    (active,) = again.load_active_jobs()
    assert active.history == expected
    loaded = again.load_job("old")
    assert loaded is not None and loaded.history == expected
    transition(active, S.STARTING, T0 + 2)
    with again.transaction():
        again.save_jobs([active])  # the whole history now goes with the job
    again.db.execute("DELETE FROM job_history")
    moved = reopen(again).load_job("old")
    assert moved is not None
    assert moved.history == [*expected, HistoryEntry(S.STARTING, T0 + 2, None)]


def test_a_rolled_back_transaction_writes_nothing(store: Store) -> None:
    job = make_job("j")
    with pytest.raises(RuntimeError), store.transaction():
        store.save_spec(job.spec)
        store.save_jobs([job])
        raise RuntimeError("boom")
    assert store.job_status("j") is None
    assert store.history("j") == []


def test_load_active_jobs_excludes_terminal(store: Store) -> None:
    jobs = [make_job(f"j-{s.value}", s, created_at=T0 + i) for i, s in enumerate(JobStatus)]
    save(store, *jobs)
    active = reopen(store).load_active_jobs()
    assert [j.job_id for j in active] == [
        "j-SUBMITTED",
        "j-PENDING",
        "j-RUNNABLE",
        "j-STARTING",
        "j-RUNNING",
    ]
    assert all(j.history for j in active)
    assert store.count_jobs_by_status() == {s.value: 1 for s in JobStatus}


def test_load_active_jobs_orders_children_by_index(store: Store) -> None:
    parent = make_job("p", S.PENDING, array_size=3)
    kids = [
        make_job(
            f"p:{i}", S.PENDING, spec=parent.spec, parent_id="p", array_index=i, created_at=T0 + 1
        )
        for i in (2, 0, 1)
    ]
    save(store, parent, *kids)
    assert [j.job_id for j in store.load_active_jobs()] == ["p", "p:0", "p:1", "p:2"]


# --- queries ----------------------------------------------------------------------------------


@pytest.fixture
def queried(store: Store) -> Store:
    """Jobs in two queues, an array with children, names with LIKE metacharacters."""
    rows: list[Job] = [
        make_job("a1", S.RUNNING, name="alpha", queue="q1", created_at=T0 + 1),
        make_job("a2", S.SUCCEEDED, name="Alpha-2", queue="q1", created_at=T0 + 2),
        make_job("pct", S.RUNNING, name="50%off", queue="q1", created_at=T0 + 3),
        make_job("pct2", S.RUNNING, name="50xoff", queue="q1", created_at=T0 + 4),
        make_job("und", S.FAILED, name="a_b", queue="q2", created_at=T0 + 5),
        make_job("und2", S.FAILED, name="axb", queue="q2", created_at=T0 + 6),
        make_job("bs", S.RUNNABLE, name="back\\slash", queue="q2", created_at=T0 + 7),
    ]
    parent = make_job("arr", S.PENDING, name="arr", queue="q2", created_at=T0 + 8, array_size=3)
    kids = [
        make_job(
            f"arr:{i}",
            S.RUNNING if i else S.SUCCEEDED,
            spec=parent.spec,
            parent_id="arr",
            array_index=i,
            created_at=T0 + 9,
        )
        for i in (2, 0, 1)
    ]
    save(store, *rows, parent, *kids)
    return store


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


QUERIES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "top level, newest first",
        {},
        ["arr", "bs", "und2", "und", "pct2", "pct", "a2", "a1"],
    ),
    ("oldest first", {"newest_first": False, "limit": 3}, ["a1", "a2", "pct"]),
    ("by queue", {"queue": "q1"}, ["pct2", "pct", "a2", "a1"]),
    ("by status", {"statuses": ["RUNNING"]}, ["pct2", "pct", "a1"]),
    ("by statuses", {"statuses": ["FAILED", "RUNNABLE"]}, ["bs", "und2", "und"]),
    ("queue and status", {"queue": "q2", "statuses": ["FAILED"]}, ["und2", "und"]),
    ("children of a parent, by index", {"parent_id": "arr"}, ["arr:0", "arr:1", "arr:2"]),
    (
        "children by status",
        {"parent_id": "arr", "statuses": ["RUNNING"]},
        ["arr:1", "arr:2"],
    ),
    ("name prefix, case-insensitive", {"name_prefix": "ALPHA"}, ["a2", "a1"]),
    ("name prefix with % is literal", {"name_prefix": "50%"}, ["pct"]),
    ("name prefix with _ is literal", {"name_prefix": "a_"}, ["und"]),
    ("name prefix with backslash", {"name_prefix": "back\\"}, ["bs"]),
    ("exact name, case-insensitive", {"name_exact": "ALPHA"}, ["a1"]),
    ("created before", {"created_before": T0 + 3}, ["a2", "a1"]),
    ("created after", {"created_after": T0 + 6}, ["arr", "bs"]),
    ("created between", {"created_after": T0 + 1, "created_before": T0 + 4}, ["pct", "a2"]),
    ("page 1", {"limit": 3}, ["arr", "bs", "und2"]),
    ("page 2", {"limit": 3, "offset": 3}, ["und", "pct2", "pct"]),
    ("page 3", {"limit": 3, "offset": 6}, ["a2", "a1"]),
    ("past the end", {"limit": 3, "offset": 9}, []),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [(q, e) for _, q, e in QUERIES],
    ids=[name for name, _, _ in QUERIES],
)
def test_query_jobs(queried: Store, query: dict[str, Any], expected: list[str]) -> None:
    assert ids(queried.query_jobs(JobQuery(**query))) == expected


def test_query_with_children_includes_them(queried: Store) -> None:
    found = ids(queried.query_jobs(JobQuery(children=True, statuses=["RUNNING"])))
    assert sorted(found) == ["a1", "arr:1", "arr:2", "pct", "pct2"]
    assert found[-3:] == ["pct2", "pct", "a1"], "children are newest; newest first"


def test_query_loads_no_history(queried: Store) -> None:
    assert all(j.history == [] for j in queried.query_jobs())


def test_query_by_definition(queried: Store) -> None:
    arn = "arn:aws:batch:local:000000000000:job-definition/def:1"
    assert len(queried.query_jobs(JobQuery(definition=arn))) == 8
    assert queried.query_jobs(JobQuery(definition=arn.replace("def:1", "other:1"))) == []


def test_query_by_definition_treats_underscore_literally(store: Store) -> None:
    mine = make_job("mine", S.RUNNING)
    mine.spec.definition_arn = "arn:aws:batch:local:000000000000:job-definition/my_def:1"
    other = make_job("other", S.RUNNING, created_at=T0 + 1)
    other.spec.definition_arn = "arn:aws:batch:local:000000000000:job-definition/myXdef:1"
    save(store, mine, other)
    prefix = "arn:aws:batch:local:000000000000:job-definition/my_def:"
    found = store.query_jobs(JobQuery(definition=prefix))
    assert ids(found) == ["mine"]


# --- reopening --------------------------------------------------------------------------------


def test_everything_is_there_after_reopening(store: Store, db_path: Path) -> None:
    job = ran_job()
    pending = full_spec("pending-one")
    transition(pending, S.PENDING, T0 + 1, "waiting")
    save(store, job, pending)
    store.save_definition(JobDefinition("def", 1, "ACTIVE", {"type": "container"}))
    store.save_queue(JobQueue("q", 1, State.ENABLED, [(1, "ce")], T0))
    store.save_ce(ComputeEnvironment("ce", "UNMANAGED", State.ENABLED, "local", 0, Resources(), T0))
    store.save_node(Node("n1", "ce", "127.0.0.2", Resources(4, 4096, 0), NodeStatus.ACTIVE))
    store.close()

    fresh = Store(db_path)
    try:
        assert_same_job(fresh.load_job("ran"), job)
        assert_same_job(fresh.load_job("pending-one"), pending)
        assert [j.job_id for j in fresh.load_active_jobs()] == ["pending-one"]
        assert [d.name for d in fresh.load_definitions()] == ["def"]
        assert [q.name for q in fresh.load_queues()] == ["q"]
        assert [c.name for c in fresh.load_ces()] == ["ce"]
        assert [n.node_id for n in fresh.load_nodes()] == ["n1"]
    finally:
        fresh.close()


def test_the_log_stream_index_holds_each_saved_current_attempt(store: Store) -> None:
    save(store, ran_job())  # its current attempt is the second one
    assert [r.name for r in store.find_streams()] == ["def/default/b"]
    ref = store.find_stream("def/default/b")
    assert ref == StreamRef("def/default/b", "ran", 2, T0 + 5, T0 + 6, T0 + 7, "SUCCEEDED")
    assert ref.complete and ref.fallback_ms == T0 + 6
    assert store.find_stream("def/default/a") is None


def test_a_store_without_the_index_fills_it_from_every_attempt_on_open(
    store: Store, db_path: Path
) -> None:
    save(store, ran_job())
    store.db.execute("DROP TABLE log_streams")
    store.close()
    fresh = Store(db_path)
    try:
        names = [r.name for r in fresh.find_streams(prefix="def/")]
        assert names == ["def/default/a", "def/default/b"]
        after = fresh.find_streams(after="def/default/b", descending=True)
        assert [r.name for r in after] == ["def/default/a"]
        assert [r.name for r in fresh.find_streams(descending=True, limit=1)] == ["def/default/b"]
        assert fresh.find_streams(prefix="other/") == []
    finally:
        fresh.close()


def wal_frames(store: Store) -> int:
    """Pages written to the WAL so far (frames of 24 + page-size bytes after its header)."""
    size = Path(store.path + "-wal").stat().st_size
    page = int(store.db.execute("PRAGMA page_size").fetchone()[0])
    return max(0, size - 32) // (page + 24)


def test_a_save_that_keeps_the_status_writes_only_the_document(store: Store) -> None:
    job = make_job("keep", S.SUBMITTED)
    save(store, job)
    transition(job, S.PENDING, T0 + 1)
    save(store, job)  # a new status: row and indexes
    store.db.execute("PRAGMA wal_autocheckpoint=0")  # frames stay countable
    job.status_reason = "a new reason"
    before = wal_frames(store)
    with store.transaction():
        store.save_jobs([job])
    assert wal_frames(store) - before <= 1  # the row's page; no index over status rewritten
    again = reopen(store)
    try:
        loaded = again.load_job("keep")
        assert loaded is not None and loaded.status_reason == "a new reason"
        assert again.count_jobs_by_status() == {"PENDING": 1}
        assert [j.job_id for j in again.load_active_jobs()] == ["keep"]
    finally:
        again.close()


def test_a_rolled_back_status_is_written_again_by_the_next_save(store: Store) -> None:
    job = make_job("back", S.SUBMITTED)
    save(store, job)
    transition(job, S.PENDING, T0 + 1)
    with pytest.raises(RuntimeError), store.transaction():
        store.save_jobs([job])
        raise RuntimeError("the write fails after the job was saved")
    save(store, job)  # the same status as the rolled-back write: the row must get it now
    assert store.job_status("back") == S.PENDING
    assert store.count_jobs_by_status() == {"PENDING": 1}
