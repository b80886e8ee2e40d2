"""The intake: where a new submission is made durable in one row, before its job has rows in
the indexed tables.

A job's own rows cost a commit about 15 pages: the ``jobs`` row and its ten indexes (its
id, status, queue, name, definition, share identifier …), its spec and the spec's id, its
block of job numbers, each a B-tree of its own, and the WAL takes every page a commit
changes (two ``pwrite`` calls each). A submission has to be durable before it is answered,
but nothing needs those indexes before the head's next scheduling pass: what the head knows
of an unfinished job, it knows from memory. So :meth:`~mnp.store.sqlite.Store.intake`
commits the job as one row of ``job_intake`` (the ``jobs`` columns, the spec's document and
the number block; one table, rowid order: one or two pages), and the next write of jobs
(:meth:`~mnp.store.sqlite.Store.save_jobs`: the pass that makes the job RUNNABLE) writes its
rows in their tables as the job is by then, with every other job of that pass, and deletes
its intake row in the same transaction. A write that does not name it (a node's report, a
poll) leaves it in the intake: written as submitted there, it would be written again by the
pass, the indexes over its status twice.
Submissions between two passes share the pages of one commit: measured by
``benchmarks/submitstore.py`` (``benchmarks/README.md``), with ten submissions per pass a
job's commit and its first status change wrote 16.3 WAL frames and took 136 µs of the
store's CPU, and with the intake (and the time-ordered ids of :mod:`mnp.spec.ids`) 5.8
frames and 73 µs.

Counting jobs by status adds the intake's own count (no write). Every other read of jobs,
specs or numbers first moves what the intake holds into the tables as it was submitted
(:meth:`~mnp.store.sqlite.Store.settle`: SQL alone, no commit hook, nothing from the head's
memory, so a read in the middle of a pass commits none of the pass), and a listing never
misses a job that was answered (a store that cannot be written just now is read through
views that add the intake's rows). A restart reads the intake's rows with the unfinished
jobs (so does the head's reload after a failed write, which must not write); the pass that
takes them in writes them.
"""

from __future__ import annotations

from mnp.store.queries import JOB_COLUMNS

TABLE = """
CREATE TABLE IF NOT EXISTS job_intake (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL, spec_id TEXT NOT NULL, parent_id TEXT, array_index INTEGER,
    queue TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    doc TEXT NOT NULL, definition_arn TEXT, share_identifier TEXT,
    spec TEXT NOT NULL, number INTEGER NOT NULL, last INTEGER NOT NULL);
"""
"""One submitted job not yet in ``jobs``: its row's columns (as when submitted), its spec's
document and its block of job numbers (``number`` … ``last``)."""

INSERT = f"""
INSERT INTO job_intake ({JOB_COLUMNS}, spec, number, last)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

SETTLE_NUMBERS = "INSERT INTO job_numbers SELECT number, job_id, last FROM job_intake"
SETTLE_SPECS = "INSERT OR REPLACE INTO job_specs SELECT spec_id, spec FROM job_intake"
"""The specs as submitted: one changed since (an update of its tags, say) was saved by
:meth:`~mnp.store.sqlite.Store.save_spec`, which settles the intake first."""
SETTLE_JOBS = (
    f"INSERT OR IGNORE INTO jobs ({JOB_COLUMNS}) SELECT {JOB_COLUMNS} FROM job_intake ORDER BY seq"
)
"""The jobs as submitted, but for those the same write has saved already (as they are now)."""
CLEAR = "DELETE FROM job_intake"
"""Every intake row goes at once (:meth:`~mnp.store.sqlite.Store.settle`)."""
SETTLE_NUMBERS_OF = SETTLE_NUMBERS + " WHERE seq = ?"
SETTLE_SPECS_OF = SETTLE_SPECS + " WHERE seq = ?"
CLEAR_OF = "DELETE FROM job_intake WHERE seq = ?"
"""One job's row out of the intake: :meth:`~mnp.store.sqlite.Store.save_jobs` has written the
job's own row (as it is now) and moves its number block and spec with these."""
ROWS = "SELECT job_id, seq FROM job_intake"

LAST_NUMBER = "SELECT max(last) FROM job_intake"

WITH_JOBS = f"""(SELECT {JOB_COLUMNS}, rowid AS rowid FROM jobs UNION ALL
SELECT {JOB_COLUMNS}, (SELECT ifnull(max(rowid), 0) FROM jobs) + seq AS rowid FROM job_intake)"""
"""The jobs and the intake's, as one table with a ``rowid`` (an intake row's after every
job's, where settling puts it): what the store reads when it could not settle (a full disk)."""
WITH_NUMBERS = (
    "(SELECT number, job_id FROM job_numbers UNION ALL SELECT number, job_id FROM job_intake)"
)
WITH_SPECS = "(SELECT spec_id, doc FROM job_specs UNION ALL SELECT spec_id, spec FROM job_intake)"
