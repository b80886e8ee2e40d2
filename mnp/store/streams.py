"""The log-stream index: which job attempt a CloudWatch-style stream name is.

One ``log_streams`` row per attempt (name → job id, attempt number, placement time), written
by :meth:`mnp.store.sqlite.Store.save_jobs` and filled from the stored jobs once, when the
table is first created. A multi-node job's parent repeats its main node's stream name; the
node (``…#i``) is the row kept, because it has the files.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from mnp.spec.states import TERMINAL_STATUSES

TABLE = """
CREATE TABLE IF NOT EXISTS log_streams (
    name TEXT PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
"""
BACKFILL = """
INSERT OR IGNORE INTO log_streams
SELECT json_extract(a.value, '$.log_stream_name'), j.job_id, json_extract(a.value, '$.number'),
       json_extract(a.value, '$.placed_at')
FROM jobs j, json_each(j.doc, '$.attempts') a
ORDER BY instr(j.job_id, '#') = 0
"""
INSERT = "INSERT OR IGNORE INTO log_streams VALUES (?, ?, ?, ?)"

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


def find_streams(
    db: sqlite3.Connection,
    *,
    name: str | None = None,
    prefix: str = "",
    after: str | None = None,
    descending: bool = False,
    limit: int | None = None,
) -> list[StreamRef]:
    """Streams by exact name, or by prefix in name order starting past ``after``."""
    where: list[str] = []
    args: list[Any] = []
    if name is not None:
        where.append("s.name = ?")
        args.append(name)
    if prefix:
        where.append("s.name >= ? AND s.name < ?")
        args += [prefix, prefix + chr(0x10FFFF)]
    if after is not None:
        where.append(f"s.name {'<' if descending else '>'} ?")
        args.append(after)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
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
