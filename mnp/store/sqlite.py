"""SQLite persistence (WAL). The head node's in-memory state is written through here.

Contract: the head node calls :meth:`Store.save_jobs` (and friends) and commits before any
effect leaves the process (an answer to a client, an ack to an agent, an assignment), so a
``kill -9`` at any point loses nothing that anyone was told. Not thread-safe: one owner.

Durability (the fsync policy): WAL with ``synchronous=NORMAL``. A commit is in the WAL file
(the OS's page cache) when :meth:`Store.transaction` returns, so it survives a crash of the
head process (``kill -9``, an exception, OOM); the WAL is fsynced only at checkpoints, so a
power loss or kernel crash may lose the last commits (never corrupts the database).
``synchronous=FULL`` fsyncs the WAL at every commit and survives power loss too; measured
with ``benchmarks/fsync_cost.py`` on a virtio disk (ext4; figures in benchmarks/README.md):
one job per commit, FULL reaches 0.30 of NORMAL's commits/s (about 5k vs 17k); 50 jobs per
commit (a busy tick) 0.80 (1.3k vs 1.7k). A head on hardware without a
power-loss-safe write cache that must keep every acknowledged change should use FULL.

Why the store runs on the head's event loop, not a thread: every effect waits for its
commit anyway (the contract above), a failed commit must roll the head's memory back before
anything else runs, and one owner needs no locks. A commit with ``synchronous=NORMAL`` writes
to the page cache, no fsync: measured by ``benchmarks/fsync_cost.py`` (benchmarks/README.md)
at p99 0.3 ms for one job and 4.6 ms for 50, the worst of 2,000 commits 5–7 ms (a WAL
checkpoint) — three orders of magnitude below the lost-node allowance. A disk that stalls for
longer is a loop stall, which :mod:`mnp.scheduler.lag` credits to every node's heartbeat
allowance, so it makes no healthy node lost; what can block for seconds (provider stops,
``/proc`` sweeps, container calls) runs on a thread.

A write that fails (disk full, I/O error) is rolled back and raised as
:class:`~mnp.errors.StorageError`, after :attr:`Store.on_failure` ran: the head rebuilds its
memory from the store there, so nothing of the failed write is kept or acknowledged.

Secrets: a running MNP attempt's document holds its SSH private key (``gang_state.key``; a
restarted head needs it to re-send the nodes' assignments). So the database and its
``-wal``/``-shm`` files are mode 0600 (set here, whatever the umask; SQLite gives the
journal files the database's mode), deleted content is zeroed (``secure_delete``), and once
a key leaves a job's document the WAL is checkpointed and truncated, so the key is gone from
the files, not only from the rows. A store an older head wrote, with keys of attempts that
have ended, is scrubbed (and vacuumed) once when opened.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnp.errors import StorageError
from mnp.spec.definitions import JobDefinition, JobSpec
from mnp.spec.environments import ComputeEnvironment, JobQueue, Node, SchedulingPolicy
from mnp.spec.jobs import Attempt, GangAttemptState, Job
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store import events, streams, tokens
from mnp.store import users as user_table
from mnp.store.keys import scrub_ended_keys
from mnp.store.queries import JobQuery, job_query_sql
from mnp.store.streams import TERMINAL, StreamRef

log = logging.getLogger("mnp.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_definitions (
    name TEXT NOT NULL, revision INTEGER NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (name, revision));
CREATE TABLE IF NOT EXISTS job_queues (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS compute_environments (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scheduling_policies (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_specs (spec_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, spec_id TEXT NOT NULL, parent_id TEXT, array_index INTEGER,
    queue TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_queue_created ON jobs (queue, created_at);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id, array_index);
CREATE TABLE IF NOT EXISTS job_history (
    job_id TEXT NOT NULL, at INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT);
CREATE INDEX IF NOT EXISTS job_history_job ON job_history (job_id);
CREATE TABLE IF NOT EXISTS job_numbers (number INTEGER PRIMARY KEY, job_id TEXT NOT NULL);
"""

FILE_MODE = 0o600
JOURNAL_SUFFIXES = ("", "-wal", "-shm", "-journal")
KEYS_SCRUBBED = "gang_keys_scrubbed"
"""Meta key: set once the ended attempts' keys an older head left were removed."""
NEXT_NUMBER = "next_job_number"
"""Meta key: the first job number not yet given out (absent: 1)."""


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            # created 0600 before SQLite opens it: its -wal and -shm files take this mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.db.execute("PRAGMA secure_delete=ON")
        new_index = not streams.has_table(self.db)
        self.db.executescript(
            SCHEMA + streams.TABLE + tokens.TABLE + user_table.TABLE + events.TABLE
        )
        if new_index:
            self.db.execute(streams.BACKFILL)
        self._specs: dict[str, JobSpec] = {}
        self._keyed: set[str] = set()
        """Jobs whose document, as last written or read, holds an SSH private key."""
        self._forgotten = False
        """A key left a document in the current transaction: wipe the WAL after it."""
        self.on_failure: Callable[[], None] = lambda: None
        """Called after a write failed and was rolled back (see :meth:`transaction`)."""
        self.before_commit: Callable[[], None] = lambda: None
        """Called inside every transaction just before it commits: the event outbox writes
        the events of the changes it holds there (:mod:`mnp.store.events`)."""
        self.after_commit: Callable[[], None] = lambda: None
        self.after_rollback: Callable[[], None] = lambda: None
        """Called after any transaction was rolled back (before :attr:`on_failure`)."""
        self._protect_files()
        self._scrub_ended_keys()

    def close(self) -> None:
        self.db.close()

    def _protect_files(self) -> None:
        """Mode 0600 on the database and its journal files (a store made by an older head
        may have them world-readable)."""
        if self.path == ":memory:":
            return
        for suffix in JOURNAL_SUFFIXES:
            try:
                os.chmod(self.path + suffix, FILE_MODE)
            except FileNotFoundError:
                pass

    def _wipe_wal(self) -> None:
        """Copy the WAL into the database and truncate it: no old page (with a key that has
        since been removed) is left in the ``-wal`` file."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _scrub_ended_keys(self) -> None:
        """Once per store: drop the SSH private key from every MNP job document whose attempt
        has ended (neither the job nor any of its node jobs STARTING or RUNNING), as older
        heads left them; then vacuum (older heads did not zero deleted content) and wipe the
        WAL."""
        if self.get_meta(KEYS_SCRUBBED) is not None:
            return
        with self.transaction():
            had_keys = scrub_ended_keys(self.db)
            self.set_meta(KEYS_SCRUBBED, "1")
        if had_keys:
            self.db.execute("VACUUM")
        self._wipe_wal()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; nested use is not supported.

        On return the write is committed (durable as the module docstring says). Any
        :class:`sqlite3.Error` from the body or the commit rolls back and calls
        :attr:`on_failure` (the head rebuilds its memory from the store there); one the store
        could not write (disk full, I/O error, a damaged file: ``OperationalError`` and plain
        ``DatabaseError``) is raised as :class:`~mnp.errors.StorageError` (transient), others
        (a constraint violated) as they are. Any other exception rolls back and propagates."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.before_commit()
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                self.after_rollback()
                raise
        except sqlite3.Error as e:
            log.error("a write failed and was rolled back: %s", e)
            self._forgotten = False  # the key's removal was rolled back with the rest
            self._specs.clear()  # it may hold a spec of the rolled-back write
            self.on_failure()
            if type(e) in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise StorageError(e) from e
            raise  # a constraint or API misuse: a bug of the caller, not the disk
        self.after_commit()
        if self._forgotten:
            self._forgotten = False
            try:
                self._wipe_wal()
            except sqlite3.Error as e:  # committed already: wipe at the next commit instead
                log.warning("could not truncate the WAL after removing a key: %s", e)
                self._forgotten = True

    def _rollback(self) -> None:
        """Roll back the open transaction; SQLite may have rolled it back itself already (it
        does on SQLITE_FULL and some I/O errors), which is fine."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as e:
                log.error("rollback failed: %s", e)

    @property
    def submit_tokens(self) -> tokens.SubmitTokens:
        """The submit-once record (:mod:`mnp.store.tokens`), on this store's connection."""
        return tokens.SubmitTokens(self.db)

    @property
    def events(self) -> events.EventTables:
        """Event rules, topics and the delivery outbox (:mod:`mnp.store.events`)."""
        return events.EventTables(self.db)

    def size_bytes(self) -> int:
        """The database's files on disk (with its WAL), 0 for an in-memory store."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return total

    @property
    def users(self) -> user_table.Users:
        """The head's users besides its owner (:mod:`mnp.store.users`), on this connection."""
        return user_table.Users(self.db)

    # --- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- job numbers ----------------------------------------------------------------------
    def allocate_number(self, job_id: str, count: int = 1) -> int:
        """Give top-level job ``job_id`` the next ``count`` job numbers (an array of size S
        takes ``1 + S``: its own, then one per child, as Slurm gives each task an id of its
        own) and return the first. Call inside the transaction that saves the job: the
        counter and the job are written together, so a number is never given out twice (a
        rolled-back submission gives it back, and nobody was told it)."""
        first = int(self.get_meta(NEXT_NUMBER) or 1)
        self.set_meta(NEXT_NUMBER, str(first + max(1, count)))
        self.db.execute("INSERT INTO job_numbers VALUES (?, ?)", (first, job_id))
        return first

    def numbered_block(self, number: int) -> tuple[int, str] | None:
        """The top-level job whose block of numbers holds ``number`` could be: the one with
        the greatest first number not above it, as (first number, job id)."""
        row = self.db.execute(
            "SELECT number, job_id FROM job_numbers WHERE number <= ? "
            "ORDER BY number DESC LIMIT 1",
            (number,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    # --- definitions, queues, environments, nodes -------------------------------------------
    def save_definition(self, d: JobDefinition) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO job_definitions VALUES (?, ?, ?, ?)",
            (d.name, d.revision, d.status, json.dumps(d.doc)),
        )

    def load_definitions(self) -> list[JobDefinition]:
        rows = self.db.execute(
            "SELECT name, revision, status, doc FROM job_definitions ORDER BY name, revision"
        )
        return [JobDefinition(n, r, s, json.loads(doc)) for n, r, s, doc in rows]

    def save_queue(self, q: JobQueue) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO job_queues VALUES (?, ?)", (q.name, _dump(q.to_doc()))
        )

    def delete_queue(self, name: str) -> None:
        self.db.execute("DELETE FROM job_queues WHERE name = ?", (name,))

    def load_queues(self) -> list[JobQueue]:
        rows = self.db.execute("SELECT doc FROM job_queues")
        return [JobQueue.from_doc(json.loads(doc)) for (doc,) in rows]

    def save_ce(self, ce: ComputeEnvironment) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO compute_environments VALUES (?, ?)",
            (ce.name, _dump(ce.to_doc())),
        )

    def delete_ce(self, name: str) -> None:
        self.db.execute("DELETE FROM compute_environments WHERE name = ?", (name,))

    def load_ces(self) -> list[ComputeEnvironment]:
        rows = self.db.execute("SELECT doc FROM compute_environments")
        return [ComputeEnvironment.from_doc(json.loads(doc)) for (doc,) in rows]

    def save_policy(self, p: SchedulingPolicy) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO scheduling_policies VALUES (?, ?)", (p.name, _dump(p.to_doc()))
        )

    def delete_policy(self, name: str) -> None:
        self.db.execute("DELETE FROM scheduling_policies WHERE name = ?", (name,))

    def load_policies(self) -> list[SchedulingPolicy]:
        rows = self.db.execute("SELECT doc FROM scheduling_policies ORDER BY name")
        return [SchedulingPolicy.from_doc(json.loads(doc)) for (doc,) in rows]

    def save_node(self, n: Node) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?)", (n.node_id, _dump(n.to_doc()))
        )

    def load_nodes(self) -> list[Node]:
        rows = self.db.execute("SELECT doc FROM nodes")
        return [Node.from_doc(json.loads(doc)) for (doc,) in rows]

    # --- jobs -----------------------------------------------------------------------------
    def save_spec(self, spec: JobSpec) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO job_specs VALUES (?, ?)", (spec.spec_id, _dump(spec.to_doc()))
        )
        self._specs[spec.spec_id] = spec

    def save_jobs(self, jobs: Iterable[Job]) -> None:
        """Write each job's row and the history entries it gained since the last save."""
        rows = []
        history = []
        stream_rows = []
        for j in jobs:
            self._note_key(j)
            a = j.current_attempt
            if a is not None and not j.is_mnp_parent:
                stream_rows.append((a.log_stream_name, j.job_id, a.number, a.placed_at))
            rows.append(
                (
                    j.job_id,
                    j.spec.spec_id,
                    j.parent_id,
                    j.array_index,
                    j.queue,
                    j.name,
                    j.status.value,
                    j.created_at,
                    _dump(j.to_doc()),
                )
            )
            for h in j.history[j.history_saved :]:
                history.append((j.job_id, h.at, h.status.value, h.reason))
            j.history_saved = len(j.history)
        self.db.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT INTO job_history VALUES (?, ?, ?, ?)", history)
        self.db.executemany(streams.INSERT, stream_rows)

    def _note_key(self, job: Job) -> None:
        if job.gang_state.key is not None:
            self._keyed.add(job.job_id)
        elif job.job_id in self._keyed:
            self._keyed.discard(job.job_id)
            self._forgotten = True

    def spec(self, spec_id: str) -> JobSpec:
        spec = self._specs.get(spec_id)
        if spec is None:
            row = self.db.execute(
                "SELECT doc FROM job_specs WHERE spec_id = ?", (spec_id,)
            ).fetchone()
            if row is None:
                raise KeyError(spec_id)
            spec = JobSpec.from_doc(json.loads(row[0]))
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[spec_id] = spec
        return spec

    def _job_from_row(self, row: tuple[Any, ...], with_history: bool) -> Job:
        job_id, spec_id, parent_id, array_index, _q, _n, status, created_at, doc_text = row
        doc = json.loads(doc_text)
        job = Job(
            job_id=job_id,
            spec=self.spec(spec_id),
            status=JobStatus(status),
            created_at=created_at,
            parent_id=parent_id,
            array_index=array_index,
            status_reason=doc.get("status_reason"),
            started_at=doc.get("started_at"),
            stopped_at=doc.get("stopped_at"),
            attempts=[Attempt.from_doc(a) for a in doc.get("attempts", [])],
            is_cancelled=doc.get("is_cancelled", False),
            is_terminated=doc.get("is_terminated", False),
            held=doc.get("held"),
            status_summary=doc.get("status_summary"),
            summary_updated_at=doc.get("summary_updated_at"),
            node_index=doc.get("node_index"),
            gang=doc.get("gang", {}),
            gang_state=GangAttemptState.from_doc(doc.get("gang_state")),
        )
        if job.gang_state.key is not None:
            self._keyed.add(job_id)
        if with_history:
            job.history = self.history(job_id)
            job.history_saved = len(job.history)
        return job

    def history(self, job_id: str) -> list[HistoryEntry]:
        rows = self.db.execute(
            "SELECT status, at, reason FROM job_history WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [HistoryEntry(JobStatus(s), at, r) for s, at, r in rows]

    def load_job(self, job_id: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else self._job_from_row(row, with_history=True)

    def job_status(self, job_id: str) -> JobStatus | None:
        row = self.db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobStatus(row[0])

    def load_active_jobs(self) -> list[Job]:
        """Every job not yet SUCCEEDED/FAILED, in creation order (for a restart)."""
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE status NOT IN (?, ?) ORDER BY created_at, array_index",
            TERMINAL,
        ).fetchall()
        return [self._job_from_row(r, with_history=True) for r in rows]

    def query_jobs(self, query: JobQuery | None = None) -> list[Job]:
        """Jobs matching every condition of ``query`` (no history loaded)."""
        sql, args = job_query_sql(query or JobQuery())
        return [self._job_from_row(r, with_history=False) for r in self.db.execute(sql, args)]

    def count_jobs_by_queue_status(self) -> dict[tuple[str, str], int]:
        """(queue, status) → how many jobs the store holds so."""
        rows = self.db.execute("SELECT queue, status, count(*) FROM jobs GROUP BY queue, status")
        return {(q, s): n for q, s, n in rows}

    def count_jobs_by_status(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, count(*) FROM jobs GROUP BY status")
        return {s: n for s, n in rows}

    # --- log streams ------------------------------------------------------------------------
    def find_streams(
        self,
        *,
        prefix: str = "",
        after: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[StreamRef]:
        """Streams whose name starts with ``prefix``, in name order, starting past ``after``."""
        return streams.find_streams(
            self.db, prefix=prefix, after=after, descending=descending, limit=limit
        )

    def find_stream(self, name: str) -> StreamRef | None:
        """The stream named exactly ``name``, if an attempt has it."""
        found = streams.find_streams(self.db, name=name, limit=1)
        return found[0] if found else None


def _dump(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"))
