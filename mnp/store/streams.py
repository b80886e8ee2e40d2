"""The log-stream index: which job attempt a CloudWatch-style stream name is.

One ``log_streams`` row per attempt (name → job id, attempt number, placement time, and
once it has ended its end time), written by :meth:`mnp.store.sqlite.Store.save_jobs` and
filled from the stored jobs once, when the table (or its ``ended_at`` column) is first
created. A multi-node job's parent repeats its main node's stream name; the node (``…#i``)
is the row kept, because it has the files.

Ordered by last event (DescribeLogStreams ``orderBy=LastEventTime``), an ended stream's key is
its end time, read in order off an index; only the open streams (attempts still running:
the work, not the history) are looked at one by one (:func:`open_streams`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from mnp.spec.states import TERMINAL_STATUSES

TABLE = """
CREATE TABLE IF NOT EXISTS log_streams (
    name TEXT PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL, ended_at INTEGER, output INTEGER);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS log_streams_ended ON log_streams (ended_at, name)
    WHERE ended_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS log_streams_open ON log_streams (name) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS log_streams_placed ON log_streams (created_at, name);
"""
"""Created after :func:`migrate` (an older store's table gains ``ended_at`` first)."""
BACKFILL = """
INSERT OR IGNORE INTO log_streams (name, job_id, attempt, created_at)
SELECT json_extract(a.value, '$.log_stream_name'), j.job_id, json_extract(a.value, '$.number'),
       json_extract(a.value, '$.placed_at')
FROM jobs j, json_each(j.doc, '$.attempts') a
ORDER BY instr(j.job_id, '#') = 0
"""
INSERT = """
INSERT INTO log_streams (name, job_id, attempt, created_at, ended_at, output)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET ended_at = excluded.ended_at, output = excluded.output
WHERE log_streams.job_id = excluded.job_id AND (log_streams.ended_at IS NOT excluded.ended_at
      OR log_streams.output IS NOT excluded.output)
"""
"""A stream's row, its end time and whether it has output updated as the attempt goes on
(only by its own job: a multi-node parent repeating its node's name changes nothing).
``output``: 1 some reached the head, 0 none, NULL not known
(:attr:`mnp.spec.jobs.Attempt.output`)."""
END = """
UPDATE log_streams SET ended_at = ?, output = ? WHERE name = ? AND job_id = ? AND ended_at IS NULL
"""
"""An earlier attempt's stream ends (a retry's attempt replaced it before it was saved)."""
OUTPUT = "UPDATE log_streams SET output = 1 WHERE job_id = ? AND attempt = ? AND output = 0"
"""Late output of an attempt whose job has ended (and was saved as having none)."""
ENDED = f"""
(SELECT coalesce(json_extract(a.value, '$.stopped_at'),
                 CASE WHEN j.status IN {tuple(sorted(TERMINAL_STATUSES))!r}
                 THEN coalesce(json_extract(j.doc, '$.stopped_at'),
                               json_extract(a.value, '$.placed_at')) END)
 FROM jobs j, json_each(j.doc, '$.attempts') a
 WHERE j.job_id = log_streams.job_id AND json_extract(a.value, '$.number') = log_streams.attempt)
"""
"""An attempt's end as :func:`ended_at` gives it, from the stored job (for the backfill)."""

TERMINAL = tuple(sorted(TERMINAL_STATUSES))


@dataclass(frozen=True, slots=True)
class StreamRef:
    """One stream of the index, with what its reader needs of the attempt and job."""

    name: str
    job_id: str
    attempt: int
    created_at: int
    started_at: int | None
    stopped_at: int | None
    job_status: str

    @property
    def complete(self) -> bool:
        """No more output will come (so a last line without a newline is shown)."""
        return self.stopped_at is not None or self.job_status in TERMINAL

    @property
    def fallback_ms(self) -> int:
        return self.started_at or self.created_at


def ended_at(attempt_stopped: int | None, job_stopped: int | None, job_ended: bool,
             placed_at: int) -> int | None:  # fmt: skip
    """When a stream stops growing: its attempt's end, or for an attempt that never ran to
    an end (its job cancelled or failed around it) the job's; None while it may grow."""
    if attempt_stopped is not None:
        return attempt_stopped
    if job_ended:
        return job_stopped if job_stopped is not None else placed_at
    return None


def migrate(db: sqlite3.Connection, backfilled: bool) -> None:
    """An older store's index gains ``ended_at``, filled once from the stored jobs (as is a
    table just ``backfilled`` from them)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(log_streams)")}
    if "ended_at" in have and not backfilled:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "ended_at" not in have:
            db.execute("ALTER TABLE log_streams ADD COLUMN ended_at INTEGER")
        db.execute(f"UPDATE log_streams SET ended_at = {ENDED}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def add_output(db: sqlite3.Connection) -> None:
    """An older store's index gains ``output``: NULL (not known) for every stream it has."""
    if "output" not in {row[1] for row in db.execute("PRAGMA table_info(log_streams)")}:
        db.execute("ALTER TABLE log_streams ADD COLUMN output INTEGER")


def flag(output: bool | None) -> int | None:
    """:attr:`mnp.spec.jobs.Attempt.output` as the ``output`` column holds it."""
    return None if output is None else int(output)


def has_table(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_streams'")
    return row.fetchone() is not None


_FIELD = "json_extract(a.value, '$.{}')"
_SELECT = f"""
SELECT s.name, s.job_id, s.attempt, s.created_at, {_FIELD.format("started_at")},
       {_FIELD.format("stopped_at")}, j.status
FROM log_streams s JOIN jobs j ON j.job_id = s.job_id
     JOIN json_each(j.doc, '$.attempts') a ON {_FIELD.format("number")} = s.attempt
"""


def _where(*terms: tuple[Any, ...] | None) -> tuple[str, list[Any]]:
    """`` WHERE …`` joining the terms given (``(clause, *arguments)``; None: left out), and
    the arguments in order."""
    given = [t for t in terms if t is not None]
    clause = " WHERE " + " AND ".join(t[0] for t in given) if given else ""
    return clause, [a for t in given for a in t[1:]]


def _prefixed(prefix: str) -> tuple[Any, ...] | None:
    """Names starting with ``prefix``, as a range the name index seeks to."""
    return ("s.name >= ? AND s.name < ?", prefix, prefix + chr(0x10FFFF)) if prefix else None


def find_streams(
    db: sqlite3.Connection,
    *,
    name: str | None = None,
    prefix: str = "",
    after: str | None = None,
    descending: bool = False,
    limit: int | None = None,
    during: tuple[int | None, int | None] = (None, None),
) -> list[StreamRef]:
    """Streams by exact name, or by prefix in name order starting past ``after``; with
    ``during`` (epoch ms, None: open), only those whose attempt was placed before its end
    and had not ended before its start."""
    start, end = during
    where, args = _where(
        None if start is None else ("(s.ended_at IS NULL OR s.ended_at >= ?)", start),
        None if end is None else ("s.created_at <= ?", end),
        None if name is None else ("s.name = ?", name),
        _prefixed(prefix),
        None if after is None else (f"s.name {'<' if descending else '>'} ?", after),
    )
    sql = _SELECT + where
    # a multi-node job's parent repeats its main node's attempt: the node (…#i) has the files
    sql += f" ORDER BY 1 {'DESC' if descending else 'ASC'}, instr(j.job_id, '#') = 0"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    out: list[StreamRef] = []
    for row in db.execute(sql, args):
        if out and out[-1].name == row[0]:
            continue
        out.append(StreamRef(*row))
        if limit is not None and len(out) >= limit:
            break
    return out


TimeKey = tuple[int, str]
"""A stream's place in last-event order: (time, name)."""


def ended_streams(
    db: sqlite3.Connection, *, past: TimeKey | None, descending: bool, limit: int
) -> list[tuple[TimeKey, StreamRef]]:
    """Up to ``limit`` ended streams in order of their end, starting past ``past``: one
    index range, whatever the number of streams."""
    where = ["s.ended_at IS NOT NULL"]
    args: list[Any] = []
    if past is not None:
        where.append(f"(s.ended_at, s.name) {'<' if descending else '>'} (?, ?)")
        args += list(past)
    order = "DESC" if descending else "ASC"
    sql = (
        _SELECT.replace("SELECT s.name", "SELECT s.ended_at, s.name", 1)
        + " WHERE " + " AND ".join(where)
        + f" ORDER BY s.ended_at {order}, s.name {order}, instr(j.job_id, '#') = 0"
        + f" LIMIT {int(limit) * 2 + 1}"
    )  # fmt: skip
    out: list[tuple[TimeKey, StreamRef]] = []
    for row in db.execute(sql, args):
        if out and out[-1][1].name == row[1]:
            continue  # a multi-node parent repeating its node's stream
        out.append(((row[0], row[1]), StreamRef(*row[1:])))
        if len(out) >= limit:
            break
    return out


LONGEST_KEY = "log_stream_longest_ms"
"""The meta row holding the longest time any ended stream took from placement to end."""


def longest_ms(db: sqlite3.Connection) -> int:
    """The longest placement-to-end time of the ended streams (one pass over the table: an
    older store's, once; the store keeps it in :data:`LONGEST_KEY` from then on)."""
    row = db.execute(
        "SELECT coalesce(max(ended_at - created_at), 0) FROM log_streams WHERE ended_at IS NOT NULL"
    ).fetchone()
    return max(0, int(row[0]))


PlaceKey = tuple[int, str]
"""A stream's place in placement order: (placement time, name)."""


def placed_streams(
    db: sqlite3.Connection,
    *,
    prefix: str,
    placed_from: int | None,
    placed_before: int | None,
    ended_since: int | None,
    after: PlaceKey | None,
    limit: int,
) -> list[StreamRef]:
    """Up to ``limit`` streams in placement order past ``after``, placed in
    ``[placed_from, placed_before)`` (None: open), not ended before ``ended_since`` nor ended
    without output: one range of the placement index, whatever the number of streams."""
    where, args = _where(
        None if placed_from is None else ("s.created_at >= ?", placed_from),
        None if placed_before is None else ("s.created_at < ?", placed_before),
        None if ended_since is None else ("(s.ended_at IS NULL OR s.ended_at >= ?)", ended_since),
        ("(s.ended_at IS NULL OR s.output IS NOT 0)",),  # ended with no output: empty
        _prefixed(prefix),
        None if after is None else ("(s.created_at, s.name) > (?, ?)", *after),
    )
    sql = _SELECT + where + f" ORDER BY s.created_at, s.name LIMIT {int(limit)}"
    return [StreamRef(*row) for row in db.execute(sql, args)]


def open_streams(db: sqlite3.Connection) -> list[StreamRef]:
    """The streams that may still grow (their attempts have not ended): the running work."""
    sql = _SELECT + " WHERE s.ended_at IS NULL ORDER BY 1, instr(j.job_id, '#') = 0"
    out: list[StreamRef] = []
    for row in db.execute(sql):
        if out and out[-1].name == row[0]:
            continue
        out.append(StreamRef(*row))
    return out
