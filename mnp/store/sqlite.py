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
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnp.errors import StorageError
from mnp.spec import jsontext
from mnp.spec.definitions import JobDefinition, JobSpec
from mnp.spec.environments import ComputeEnvironment, JobQueue, Node, SchedulingPolicy
from mnp.spec.jobs import Attempt, GangAttemptState, Job
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store import events, intake, streams, tokens
from mnp.store import users as user_table
from mnp.store.keys import scrub_ended_keys
from mnp.store.queries import JOB_COLUMNS, JobQuery, PageKey, job_query_sql, page_key
from mnp.store.streams import StreamRef

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
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id, array_index)
    WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_history (
    job_id TEXT NOT NULL, at INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT);
CREATE INDEX IF NOT EXISTS job_history_job ON job_history (job_id);
CREATE TABLE IF NOT EXISTS job_numbers (
    number INTEGER PRIMARY KEY, job_id TEXT NOT NULL, last INTEGER);
"""

UNFINISHED = "status NOT IN ('FAILED', 'SUCCEEDED')"
"""A job not yet ended, spelled literally: SQLite uses a partial index only for a query whose
``WHERE`` repeats the index's own terms, and a bound parameter does not."""

INDEXES = f"""
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (created_at, array_index) WHERE {UNFINISHED};
CREATE INDEX IF NOT EXISTS jobs_top_status ON jobs (queue, status, created_at)
    WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS jobs_top_created ON jobs (queue, created_at) WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS jobs_top_name ON jobs (queue, lower(name), created_at)
    WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS jobs_top_definition ON jobs (queue, definition_arn, created_at)
    WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS jobs_top_share ON jobs (queue, share_identifier, created_at)
    WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS jobs_children_status ON jobs (parent_id, status, array_index)
    WHERE parent_id IS NOT NULL;
"""
"""What ListJobs and a restart read by, each a partial index where it can be: a listing costs
the page it returns and a restart the unfinished jobs, whatever the history. (Every row
index also holds the rowid, so ``ORDER BY created_at DESC, rowid DESC`` reads straight off
them.) Created after :func:`_migrate`: older stores gain their columns first."""

SAVE_JOB = f"""
INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, doc = excluded.doc
"""
"""An upsert, not ``INSERT OR REPLACE``: the row keeps its rowid (the listings' tie-break and
``nextToken`` position) and only the indexes over status are rewritten; the other columns
never change once a job exists."""

WAL_CHECKPOINT_PAGES = 10_000
"""The WAL is copied into the database (a checkpoint, with its two fsyncs) once it holds this
many pages (40 MiB of 4 KiB pages), not at SQLite's default of 1,000: a busy head commits
about 12–15 pages per report (a job's row and its indexes, its history, its log stream), so at
the default it checkpointed every ~70 commits, and the fsyncs stalled the loop more than the
commits cost (measured with ``python -m mnp.sim`` at 10,000 nodes). A page rewritten by many
commits is copied once per checkpoint. Each checkpoint takes longer: in that simulation the
commits' p99 went from 4.4 ms to 0.1 ms and the worst from 37 ms to 71 ms, a stall the loop's
lag guard credits (:mod:`mnp.scheduler.lag`). What a crash of the head keeps is unchanged
(every commit is in the WAL); a power loss still loses what the OS had not written back."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the ``-wal`` file is cut back to after a checkpoint (it would keep its largest size)."""
SAVE_DOC = "UPDATE jobs SET doc = ? WHERE job_id = ?"
"""A job whose status is as last saved: only its document is written. The upsert would
rewrite every index over ``status`` (the same entries, deleted and put back: three or four
pages more per job in each commit), since SQLite updates the indexes of the columns an
``UPDATE`` sets, whether or not their values change."""
FILE_MODE = 0o600
JOURNAL_SUFFIXES = ("", "-wal", "-shm", "-journal")
KEYS_SCRUBBED = "gang_keys_scrubbed"
"""Meta key: set once the ended attempts' keys an older head left were removed."""
NEXT_NUMBER = "next_job_number"
"""Meta key: the first job number not yet given out, as heads before ``job_numbers.last``
kept it (absent: 1). Read at open; no longer written."""
PAGE_KEY = "page_token_key"
"""Meta key: the secret the listings' ``nextToken`` are signed with (:mod:`mnp.store.pages`)."""
NODE_RETENTION_ENV = "MNP_NODE_RETENTION_HOURS"
DEFAULT_NODE_RETENTION_HOURS = 24.0


def node_retention_ms() -> int:
    """How long a LOST or STOPPED node's record is kept after its last sign of life:
    ``$MNP_NODE_RETENTION_HOURS`` (default 24; 0 keeps none past the next start)."""
    raw = os.environ.get(NODE_RETENTION_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_NODE_RETENTION_HOURS
    except ValueError:
        raise ValueError(f"${NODE_RETENTION_ENV}: a number of hours, got {raw!r}") from None
    if hours < 0:
        raise ValueError(f"${NODE_RETENTION_ENV}: must not be negative, got {raw!r}")
    return int(hours * 3600 * 1000)


class Store:
    def __init__(
        self, path: Path | str, *, node_retention: int | None = None, now_ms: int | None = None
    ) -> None:
        """Open (or create) the store at ``path``, migrating an older head's schema. LOST and
        STOPPED nodes last seen more than ``node_retention`` ms (default
        :func:`node_retention_ms`) before ``now_ms`` are pruned (:meth:`prune_nodes`)."""
        self.path = str(path)
        if self.path != ":memory:":
            # created 0600 before SQLite opens it: its -wal and -shm files take this mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        new_index = not streams.has_table(self.db)
        self.db.executescript(
            SCHEMA + streams.TABLE + tokens.TABLE + user_table.TABLE + events.TABLE + intake.TABLE
        )
        if new_index:
            self.db.execute(streams.BACKFILL)
        _migrate(self.db)
        _narrow_parent_index(self.db)
        _add_number_ends(self.db)
        streams.migrate(self.db, backfilled=new_index)
        streams.add_output(self.db)
        self.db.executescript(INDEXES + streams.INDEXES)
        self._next_number = self._read_next_number()
        """The first job number not given out (:meth:`intake`); a rolled-back write
        gives its numbers back."""
        self._longest_stream = self._read_longest_stream()
        """The longest placement-to-end time of an ended stream (never less: a rolled-back
        write may leave it longer, which only widens a FilterLogEvents search)."""
        self._specs: dict[str, JobSpec] = {}
        self._intake: dict[str, int] = dict(self.db.execute(intake.ROWS).fetchall())
        """The jobs the ``job_intake`` table holds (:mod:`mnp.store.intake`), each with its
        row's ``seq``, as committed or written by the open transaction (a rollback puts back
        what it began with)."""
        self._keyed: set[str] = set()
        self._saved_status: dict[str, str] = {}
        """Unfinished jobs' status as this store last wrote or read it (only ever a status
        the committed row has: emptied when a transaction rolls back; a job not here is
        written whole)."""
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
        self.node_retention = node_retention_ms() if node_retention is None else node_retention
        self.prune_nodes(now_ms)
        self._page_secret = self._load_page_secret()

    def close(self) -> None:
        """Settle the intake (a clean stop leaves none) and close; closing again does nothing."""
        try:
            self._settle_for_read()
        except sqlite3.ProgrammingError:  # closed already
            return
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
            numbers = self._next_number
            intake_rows = dict(self._intake)  # a copy: the write changes the map in place
            try:
                yield self.db
                self.before_commit()
                self.db.execute("COMMIT")
            except BaseException:
                self._next_number = numbers  # the numbers the write took are free again
                self._saved_status.clear()  # it may hold statuses of the rolled-back write
                self._intake = intake_rows
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
        # an upsert: the key's index entry stays, only the row's page is written
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- job numbers ----------------------------------------------------------------------
    def _take_numbers(self, count: int) -> tuple[int, int]:
        """The next block of ``count`` numbers (at least one), first and last."""
        first = self._next_number
        last = first + max(1, count) - 1
        self._next_number = last + 1
        return first, last

    def intake(self, job: Job) -> None:
        """Make new top-level job ``job`` durable in one row (:mod:`mnp.store.intake`): its
        block of job numbers (``spec.number`` is the first: an array of size S takes 1 + S,
        its own, then one per child, as Slurm gives each task an id of its own; a rolled-back
        submission gives them back, and nobody was told them), its spec and its document as
        they are now. Call inside the submission's transaction; the next :meth:`save_jobs`
        writes the job's rows as the job is by then, its block in ``job_numbers`` (with its
        last number: the counter is read back from the newest block at open)."""
        spec = job.spec
        first, last = self._take_numbers(1 + (spec.array_size or 0))
        spec.number = first
        row = self.db.execute(
            intake.INSERT,
            (
                job.job_id, spec.spec_id, job.parent_id, job.array_index, spec.queue, spec.name,
                job.status.value, job.created_at, _dump(job.to_doc()), spec.definition_arn,
                spec.share_identifier, _dump(spec.to_doc()), first, last,
            ),
        )  # fmt: skip
        job.history_saved = len(job.history)
        self._intake[job.job_id] = int(row.lastrowid or 0)
        self._specs[spec.spec_id] = spec

    @property
    def intake_pending(self) -> bool:
        """Whether the intake holds jobs (the :meth:`save_jobs` that names one writes it)."""
        return bool(self._intake)

    def settle(self) -> None:
        """Move the intake's rows into their tables now, as they were submitted (in the open
        transaction, or in one of their own): every read of jobs, specs or numbers does this
        first. Nothing of the head's memory is written here, and no commit hook runs: a read
        in the middle of a scheduling pass must not commit half of it (the jobs' changes since
        their submission go with the pass's own write, as every change does). Raises
        :class:`~mnp.errors.StorageError` when the store cannot be written; the intake is then
        as it was, and so is the head's memory."""
        if not self._intake:
            return
        if self.db.in_transaction:
            self._settle_rows()
            return
        rows = self._intake
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self._settle_rows()
            self.db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            self._intake = rows
            raise StorageError(e) from e

    def _settle_rows(self) -> None:
        """The intake's rows into ``job_numbers``, ``job_specs`` and ``jobs`` (a job whose row
        the open write has put there already, from memory, keeps that one), then out of the
        intake."""
        self.db.execute(intake.SETTLE_NUMBERS)
        self.db.execute(intake.SETTLE_SPECS)
        self.db.execute(intake.SETTLE_JOBS)
        self.db.execute(intake.CLEAR)
        self._intake = {}

    def _settle_for_read(self, table: str = "jobs") -> str:
        """:meth:`settle` before a read of ``table`` (``jobs``, ``job_numbers`` or
        ``job_specs``); returns what to read it as: the table itself, or, when the store could
        not be written just now, a subquery that has the intake's rows too (they stay there)."""
        try:
            self.settle()
        except StorageError as e:
            log.warning("the intake's jobs stay in the intake for now: %s", e)
        if not self._intake:
            return table
        return {"jobs": intake.WITH_JOBS, "job_numbers": intake.WITH_NUMBERS,
                "job_specs": intake.WITH_SPECS}[table]  # fmt: skip

    def _read_next_number(self) -> int:
        """The first job number not given out: past the newest block, or what an older head
        left in :data:`NEXT_NUMBER` (its blocks do not say where they end)."""
        newest = self.db.execute(
            "SELECT number, last FROM job_numbers ORDER BY number DESC LIMIT 1"
        ).fetchone()
        kept = self.get_meta(NEXT_NUMBER)
        after = int(kept) if kept is not None else 1
        if newest is not None:
            after = max(after, int(newest[0]) + 1 if newest[1] is None else int(newest[1]) + 1)
        taken = self.db.execute(intake.LAST_NUMBER).fetchone()[0]
        return after if taken is None else max(after, int(taken) + 1)

    def numbered_block(self, number: int) -> tuple[int, str] | None:
        """The top-level job whose block of numbers holds ``number`` could be: the one with
        the greatest first number not above it, as (first number, job id)."""
        numbers = self._settle_for_read("job_numbers")
        row = self.db.execute(
            f"SELECT number, job_id FROM {numbers} WHERE number <= ? "
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

    def delete_nodes(self, node_ids: list[str]) -> None:
        """Remove these nodes' records (inside a transaction)."""
        self.db.executemany("DELETE FROM nodes WHERE node_id = ?", [(n,) for n in node_ids])

    def save_node(self, n: Node) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?)", (n.node_id, _dump(n.to_doc()))
        )

    def prune_nodes(self, now_ms: int | None = None) -> int:
        """Delete the LOST and STOPPED nodes whose last sign of life (heartbeat, registration
        or launch) is more than :attr:`node_retention` before ``now_ms``; how many. ``now_ms``
        None: the newest sign of life of any stored node (the store's own clock, so a head on
        a test or simulated clock prunes by that clock; a node with no time recorded is kept).
        Run when the store opens, so a head that lived through thousands of short-lived nodes
        does not load (and keep) every one of them. A pruned node is unknown: its agent,
        should it come back, is refused (MANAGED) or joins afresh (UNMANAGED); its jobs keep
        its id."""
        if now_ms is None:
            row = self.db.execute(f"SELECT max({_NODE_SEEN}) FROM nodes").fetchone()
            if row is None or row[0] is None:
                return 0
            now_ms = int(row[0])
        with self.transaction():
            gone = self.db.execute(
                "DELETE FROM nodes WHERE json_extract(doc, '$.status') IN ('LOST', 'STOPPED') "
                f"AND {_NODE_SEEN} BETWEEN 1 AND ?",
                (now_ms - self.node_retention - 1,),
            ).rowcount
        if gone:
            log.info("pruned %d LOST/STOPPED nodes older than %d ms", gone, self.node_retention)
        return int(gone)

    def load_nodes(self) -> list[Node]:
        rows = self.db.execute("SELECT doc FROM nodes")
        return [Node.from_doc(json.loads(doc)) for (doc,) in rows]

    # --- jobs -----------------------------------------------------------------------------
    def save_spec(self, spec: JobSpec) -> None:
        self.settle()  # an intake row's spec must not overwrite this one later
        self.db.execute(
            "INSERT OR REPLACE INTO job_specs VALUES (?, ?)", (spec.spec_id, _dump(spec.to_doc()))
        )
        self._specs[spec.spec_id] = spec

    def save_jobs(self, jobs: Iterable[Job]) -> None:
        """Write each job's row, its history in its document (older heads kept a row per
        entry in ``job_history``: two more trees, a page each in every commit).

        A job given here that is still in the intake (:meth:`intake`) leaves it in the same
        write: its row as it is now, its spec and its numbers from its intake row. The intake's
        other jobs stay there until a write names them (the scheduling pass that takes them in)
        or a read settles them (:meth:`settle`): a write of other jobs (a node's report, say)
        does not write them twice, once as submitted and again as the pass changes them."""
        rows = []
        taken = self._intake  # a rollback puts back the copy transaction() kept
        settled: list[tuple[int]] = []
        docs = []
        saved = self._saved_status
        stream_rows = []
        ended_rows = []
        longest = 0
        for j in jobs:
            self._note_key(j)
            if taken:
                seq = taken.pop(j.job_id, None)
                if seq is not None:
                    settled.append((seq,))
            if j.attempts and not j.is_mnp_parent:
                ended = j.status.value in streams.TERMINAL
                a = j.attempts[-1]
                end = streams.ended_at(a.stopped_at, j.stopped_at, ended, a.placed_at)
                stream_rows.append((a.log_stream_name, j.job_id, a.number, a.placed_at, end,
                                    streams.flag(a.output)))  # fmt: skip
                if end is not None:
                    longest = max(longest, end - a.placed_at)
                if len(j.attempts) > 1:  # a retry: the attempt before may have ended unsaved
                    a = j.attempts[-2]
                    end = streams.ended_at(a.stopped_at, j.stopped_at, True, a.placed_at)
                    ended_rows.append((end, streams.flag(a.output), a.log_stream_name, j.job_id))
                    if end is not None:
                        longest = max(longest, end - a.placed_at)
            spec = j.spec
            status = j.status.value
            if saved.get(j.job_id) == status:
                docs.append((_dump(j.to_doc()), j.job_id))
            else:
                rows.append(
                    (
                        j.job_id,
                        spec.spec_id,
                        j.parent_id,
                        j.array_index,
                        spec.queue,
                        spec.name,
                        status,
                        j.created_at,
                        _dump(j.to_doc()),
                        spec.definition_arn,
                        spec.share_identifier,
                    )
                )
                if status in streams.TERMINAL:
                    saved.pop(j.job_id, None)  # not written again (a late write: whole)
                else:
                    saved[j.job_id] = status
            j.history_saved = len(j.history)  # in the document (to_doc)
        # only the statements with rows (a new job has none of the last three's)
        if rows:
            self.db.executemany(SAVE_JOB, rows)
        if docs:
            self.db.executemany(SAVE_DOC, docs)
        if stream_rows:
            self.db.executemany(streams.INSERT, stream_rows)
        if ended_rows:
            self.db.executemany(streams.END, ended_rows)
        if settled:  # after the rows above: theirs are the jobs' rows now
            self.db.executemany(intake.SETTLE_NUMBERS_OF, settled)
            self.db.executemany(intake.SETTLE_SPECS_OF, settled)
            self.db.executemany(intake.CLEAR_OF, settled)
        if longest > self._longest_stream:  # rarely: a row only when the record is beaten
            self._longest_stream = longest
            self.set_meta(streams.LONGEST_KEY, str(longest))

    def _note_key(self, job: Job) -> None:
        if job.gang_state.key is not None:
            self._keyed.add(job.job_id)
        elif job.job_id in self._keyed:
            self._keyed.discard(job.job_id)
            self._forgotten = True

    def spec(self, spec_id: str) -> JobSpec:
        spec = self._specs.get(spec_id)
        if spec is None:
            specs = self._settle_for_read("job_specs")
            row = self.db.execute(
                f"SELECT doc FROM {specs} WHERE spec_id = ?", (spec_id,)
            ).fetchone()
            if row is None:
                raise KeyError(spec_id)
            spec = JobSpec.from_doc(jsontext.loads(row[0]))
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[spec_id] = spec
        return spec

    def _job_from_row(
        self,
        row: tuple[Any, ...],
        with_history: bool,
        specs: dict[str, JobSpec] | None = None,
        table: bool = True,
    ) -> Job:
        """The job a row holds; ``with_history``: with its history, from its document or, for
        a job an older head saved, from the history table (without ``table``: left empty,
        ``history_saved`` -1, for the caller to read in bulk)."""
        job_id, spec_id, parent_id, array_index, _q, _n, status, created_at, doc_text = row[:9]
        doc = jsontext.loads(doc_text)
        spec = specs.get(spec_id) if specs is not None else None
        job = Job(
            job_id=job_id,
            spec=spec if spec is not None else self.spec(spec_id),
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
            kept = doc.get("history")
            if kept is not None:
                job.history = [HistoryEntry(JobStatus(s), at, r) for s, at, r in kept]
            elif table:
                job.history = self.history(job_id)
            else:
                job.history_saved = -1
                return job
            job.history_saved = len(job.history)
        return job

    def history(self, job_id: str) -> list[HistoryEntry]:
        """A job's history as heads before it was kept in the job's document wrote it (one
        row per entry), for the jobs they left."""
        rows = self.db.execute(
            "SELECT status, at, reason FROM job_history WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [HistoryEntry(JobStatus(s), at, r) for s, at, r in rows]

    def load_job(self, job_id: str) -> Job | None:
        jobs = self._settle_for_read()
        row = self.db.execute(
            f"SELECT {JOB_COLUMNS} FROM {jobs} WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else self._job_from_row(row, with_history=True)

    def job_status(self, job_id: str) -> JobStatus | None:
        jobs = self._settle_for_read()
        row = self.db.execute(f"SELECT status FROM {jobs} WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobStatus(row[0])

    def load_active_jobs(self) -> list[Job]:
        """Every job not yet SUCCEEDED/FAILED, in creation order (for a restart), with its
        history. Two queries (jobs with their histories, specs), and a third for the
        histories of jobs an older head saved, each through the partial index of unfinished
        jobs: the cost is the unfinished jobs, not the store's size. The intake's jobs
        (:mod:`mnp.store.intake`) are among them, read as they are (nothing is written here)."""
        rows = self.db.execute(
            f"SELECT {JOB_COLUMNS}, 0 FROM jobs WHERE {UNFINISHED} "
            f"UNION ALL SELECT {JOB_COLUMNS}, seq FROM job_intake ORDER BY created_at, array_index"
        ).fetchall()
        specs = {
            spec_id: JobSpec.from_doc(jsontext.loads(doc))
            for spec_id, doc in self.db.execute(
                "SELECT spec_id, doc FROM job_specs WHERE spec_id IN "
                f"(SELECT spec_id FROM jobs WHERE {UNFINISHED}) "
                "UNION ALL SELECT spec_id, spec FROM job_intake"
            )
        }
        jobs = []
        older: dict[str, Job] = {}  # saved by an older head: the history is in its own table
        self._intake = {}
        for row in rows:
            job = self._job_from_row(row, with_history=True, specs=specs, table=False)
            if job.history_saved < 0:
                older[job.job_id] = job
            if row[-1]:
                self._intake[job.job_id] = int(row[-1])
            else:
                self._saved_status[job.job_id] = job.status.value
            for attempt in job.attempts:  # output may have come after the last save
                if attempt.output is False:
                    attempt.output = None
            jobs.append(job)
        if older:
            history: dict[str, list[HistoryEntry]] = {}
            for job_id, s, at, r in self.db.execute(
                "SELECT job_id, status, at, reason FROM job_history WHERE job_id IN "
                f"(SELECT job_id FROM jobs WHERE {UNFINISHED}) ORDER BY rowid"
            ):
                if job_id in older:
                    history.setdefault(job_id, []).append(HistoryEntry(JobStatus(s), at, r))
            for job_id, job in older.items():
                job.history = history.get(job_id, [])
                job.history_saved = len(job.history)
        return jobs

    def query_jobs(self, query: JobQuery | None = None) -> list[Job]:
        """Jobs matching every condition of ``query`` (no history loaded)."""
        return [job for job, _ in self.query_jobs_keyed(query)]

    def query_jobs_keyed(self, query: JobQuery | None = None) -> list[tuple[Job, PageKey]]:
        """As :meth:`query_jobs`, each job with its place in the listing's order: the
        ``after`` of a query for the jobs that follow it."""
        sql, args = job_query_sql(query or JobQuery(), self._settle_for_read())
        q = query or JobQuery()
        out = []
        for r in self.db.execute(sql, args):
            out.append((self._job_from_row(r, with_history=False), page_key(q, r)))
        return out

    def page_secret(self) -> bytes:
        """The secret listings sign their ``nextToken`` with (:mod:`mnp.store.pages`)."""
        return self._page_secret

    def _load_page_secret(self) -> bytes:
        """Made once per store, when it is opened (a listing only reads), and kept in it: a
        token outlives a restart of the head."""
        value = self.get_meta(PAGE_KEY)
        if value is None:
            value = secrets.token_hex(32)
            with self.transaction():
                self.set_meta(PAGE_KEY, value)
        return bytes.fromhex(value)

    def count_jobs_by_queue_status(self) -> dict[tuple[str, str], int]:
        """(queue, status) → how many jobs the store holds so (the intake's among them)."""
        return self._count("queue, status")

    def count_jobs_by_status(self) -> dict[str, int]:
        """Status → how many jobs the store holds so (the intake's among them)."""
        return self._count("status")

    def _count(self, by: str) -> dict[Any, int]:
        """Jobs counted by the columns ``by``, the intake's added to the table's: a count
        writes nothing (a client polling the head's status would otherwise commit the
        intake as submitted between two passes, and the pass write those jobs again)."""
        counts: dict[Any, int] = {}
        tables = ("jobs", "job_intake") if self._intake else ("jobs",)
        for table in tables:
            for *key, n in self.db.execute(f"SELECT {by}, count(*) FROM {table} GROUP BY {by}"):
                k = key[0] if len(key) == 1 else tuple(key)
                counts[k] = counts.get(k, 0) + n
        return counts

    # --- log streams ------------------------------------------------------------------------
    def find_streams(
        self,
        *,
        prefix: str = "",
        after: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        during: tuple[int | None, int | None] = (None, None),
    ) -> list[StreamRef]:
        """Streams whose name starts with ``prefix``, in name order, starting past ``after``
        (``during``: see :func:`mnp.store.streams.find_streams`)."""
        return streams.find_streams(
            self.db, prefix=prefix, after=after, descending=descending, limit=limit,
            during=during,
        )  # fmt: skip

    def find_stream(self, name: str) -> StreamRef | None:
        """The stream named exactly ``name``, if an attempt has it."""
        found = streams.find_streams(self.db, name=name, limit=1)
        return found[0] if found else None

    def ended_streams(
        self, *, past: streams.TimeKey | None = None, descending: bool = False, limit: int = 50
    ) -> list[tuple[streams.TimeKey, StreamRef]]:
        """Up to ``limit`` ended streams in order of their end, past ``past``."""
        return streams.ended_streams(self.db, past=past, descending=descending, limit=limit)

    def open_streams(self) -> list[StreamRef]:
        """The streams whose attempts have not ended."""
        return streams.open_streams(self.db)

    def placed_streams(
        self,
        *,
        prefix: str = "",
        placed_from: int | None = None,
        placed_before: int | None = None,
        ended_since: int | None = None,
        after: streams.PlaceKey | None = None,
        limit: int = 200,
    ) -> list[StreamRef]:
        """Streams in placement order (see :func:`mnp.store.streams.placed_streams`)."""
        return streams.placed_streams(
            self.db, prefix=prefix, placed_from=placed_from, placed_before=placed_before,
            ended_since=ended_since, after=after, limit=limit,
        )  # fmt: skip

    def stream_has_output(self, job_id: str, attempt: int) -> None:
        """Late output of an ended job's attempt: its stream is no longer an empty one."""
        self.db.execute(streams.OUTPUT, (job_id, attempt))

    @property
    def longest_stream_ms(self) -> int:
        """The longest any ended stream took from placement to its end (0: none yet)."""
        return self._longest_stream

    def _read_longest_stream(self) -> int:
        kept = self.get_meta(streams.LONGEST_KEY)
        if kept is not None and kept.isdigit():
            return int(kept)
        longest = streams.longest_ms(self.db)  # an older store: one pass, once
        self.set_meta(streams.LONGEST_KEY, str(longest))
        return longest


_NODE_SEEN = (
    "max(coalesce(json_extract(doc, '$.last_heartbeat_ms'), 0), "
    "coalesce(json_extract(doc, '$.registered_at'), 0), "
    "coalesce(json_extract(doc, '$.launched_at'), 0))"
)
"""A stored node's last sign of life (epoch ms; 0: none recorded): ``Node.last_seen_ms``."""


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the jobs table :data:`SCHEMA` creates (as older heads did) up to this schema,
    in place and once: the jobs' definition ARN and share identifier become columns (older
    heads kept them only in the specs' JSON), filled from the specs."""
    have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    missing = [c for c in ("definition_arn", "share_identifier") if c not in have]
    if not missing:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for column in missing:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")
        db.execute(
            "UPDATE jobs SET (definition_arn, share_identifier) = (SELECT "
            "json_extract(s.doc, '$.definition_arn'), json_extract(s.doc, '$.share_identifier') "
            "FROM job_specs s WHERE s.spec_id = jobs.spec_id)"
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if db.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is not None:
        log.info("store migrated: jobs gained %s", ", ".join(missing))


PARENT_INDEX = (
    "CREATE INDEX jobs_parent ON jobs (parent_id, array_index) WHERE parent_id IS NOT NULL"
)
"""An array's children (and a multi-node job's nodes) by index. Only rows with a parent are
in it: a top-level job (every single submission) costs it no page."""


def _add_number_ends(db: sqlite3.Connection) -> None:
    """Older heads' ``job_numbers`` had no ``last`` column (their counter was a meta row)."""
    if "last" not in {row[1] for row in db.execute("PRAGMA table_info(job_numbers)")}:
        db.execute("ALTER TABLE job_numbers ADD COLUMN last INTEGER")


def _narrow_parent_index(db: sqlite3.Connection) -> None:
    """Older heads indexed every job by parent, top-level ones under NULL; rebuild that
    index with only the rows that have one (once: it then says ``WHERE``)."""
    row = db.execute("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'jobs_parent'")
    found = row.fetchone()
    if found is None or "WHERE" in str(found[0]).upper():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DROP INDEX jobs_parent")
        db.execute(PARENT_INDEX)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    log.info("store migrated: the jobs' parent index holds only jobs with a parent")


def _dump(d: dict[str, Any]) -> str:
    """A stored document's text (a document per saved job: :mod:`mnp.spec.jsontext`)."""
    return jsontext.dumps(d)
