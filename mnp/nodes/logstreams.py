"""Log streams: which attempt a stream name is, and its output files read as events.

The head node keeps each attempt's output in ``stdout.log`` and ``stderr.log`` (append-only,
see ``Runtime._write_log``). Here they become one stream of events, one per non-empty line,
ordered by time with stdout first on ties, as the awslogs driver interleaves a container's
two streams.

**Timestamps.** The log files carry no times. If a ``<stream>.times`` file sits beside a log
(one ``<byte offset> <epoch ms>`` line per chunk appended, see :func:`record_chunk_time`),
a line's timestamp is the arrival time of the chunk holding its first byte. Otherwise every
line gets the attempt's start time (its placement time before it started).

**Positions.** A position is a pair (lines of stdout, lines of stderr) consumed: a cut of
the merged order, stable because the files only grow. Tokens are positions.

**Which attempt.** Streams are found through a ``log_streams`` table (name → job id,
attempt) when the store has one, else by scanning the jobs' attempts with SQLite's JSON
functions (reads every job: slower, but needs no change to the store).

Files are indexed incrementally (line ends, chunk times) and the indexes cached, so a
client polling a growing log reads each byte once. Single-threaded: the head's event loop.
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mnp.scheduler.loop import Runtime
    from mnp.scheduler.state import HeadState

TIMES_SUFFIX = ".times"
READ_BLOCK = 1 << 20
CACHE_FILES = 256
TERMINAL = ("SUCCEEDED", "FAILED")

Position = tuple[int, int]


def times_path(log_file: Path) -> Path:
    return log_file.with_suffix(TIMES_SUFFIX)


def record_chunk_time(log_file: Path, offset: int, time_ms: int) -> None:
    """Note that the bytes of ``log_file`` from ``offset`` on arrived at ``time_ms``.

    Call it before appending the chunk, so a reader never sees bytes without a time.
    """
    with open(times_path(log_file), "a") as f:
        f.write(f"{offset} {time_ms}\n")


class FileLines:
    """Where each line of an append-only file ends, and when each chunk of it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times_file = times_path(path)
        self._reset()

    def _reset(self) -> None:
        self.ends = array("q")
        """Offset just past each complete line's newline."""
        self.size = 0
        """Bytes of the file seen so far (the last line may be incomplete)."""
        self.chunk_offsets = array("q")
        self.chunk_times = array("q")
        self._times_read = 0
        self._buf_at = 0
        self._buf = b""

    def refresh(self) -> None:
        """Index what was appended since the last call."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.size:  # replaced or truncated: start over
            self._reset()
        if size > self.size:
            with open(self.path, "rb") as f:
                f.seek(self.size)
                at = self.size
                while at < size:
                    block = f.read(min(READ_BLOCK, size - at))
                    if not block:
                        break
                    nl = block.find(b"\n")
                    while nl >= 0:
                        self.ends.append(at + nl + 1)
                        nl = block.find(b"\n", nl + 1)
                    at += len(block)
                self.size = at
        self._buf = b""
        self._refresh_times()

    def _refresh_times(self) -> None:
        try:
            with open(self.times_file, "rb") as f:
                f.seek(self._times_read)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._times_read += len(complete)
        for row in complete.split(b"\n"):
            parts = row.split()
            if len(parts) != 2:
                continue
            try:
                offset, when = int(parts[0]), int(parts[1])
            except ValueError:
                continue
            if self.chunk_times:  # keep times non-decreasing along the file
                when = max(when, self.chunk_times[-1])
            self.chunk_offsets.append(offset)
            self.chunk_times.append(when)

    def count(self, complete: bool) -> int:
        """Lines to show: complete ones, plus a trailing partial one once output is final."""
        n = len(self.ends)
        return n + 1 if complete and self.size > (self.ends[-1] if n else 0) else n

    def start(self, i: int) -> int:
        return self.ends[i - 1] if i > 0 else 0

    def time(self, i: int, fallback: int) -> int:
        k = bisect_right(self.chunk_offsets, self.start(i)) - 1
        return self.chunk_times[k] if k >= 0 else fallback

    def read(self, i: int) -> bytes:
        """Line ``i`` without its line ending."""
        start = self.start(i)
        end = self.ends[i] if i < len(self.ends) else self.size
        if not (self._buf_at <= start and end <= self._buf_at + len(self._buf)):
            with open(self.path, "rb") as f:
                f.seek(start)
                self._buf = f.read(max(end - start, 256 * 1024))
            self._buf_at = start
        line = self._buf[start - self._buf_at : end - self._buf_at]
        return line.removesuffix(b"\n").removesuffix(b"\r")


_cache: OrderedDict[Path, FileLines] = OrderedDict()


def file_lines(path: Path) -> FileLines:
    """The cached, refreshed index of ``path``."""
    lines = _cache.pop(path, None) or FileLines(path)
    _cache[path] = lines
    while len(_cache) > CACHE_FILES:
        _cache.popitem(last=False)
    lines.refresh()
    return lines


@dataclass(frozen=True, slots=True)
class Step:
    """One line in merged order: which file (0 stdout, 1 stderr), its index, the cut around it."""

    which: int
    index: int
    before: Position
    after: Position


@dataclass(frozen=True, slots=True)
class LogEvent:
    timestamp: int
    message: str
    which: int
    index: int


class StreamLog:
    """The merged event view of one attempt's stdout and stderr."""

    def __init__(self, stdout: Path, stderr: Path, fallback_ms: int, complete: bool) -> None:
        self.files = (file_lines(stdout), file_lines(stderr))
        self.fallback_ms = fallback_ms
        self.counts = (self.files[0].count(complete), self.files[1].count(complete))

    @property
    def end(self) -> Position:
        return self.counts

    @property
    def stored_bytes(self) -> int:
        return self.files[0].size + self.files[1].size

    def clamp(self, pos: Position) -> Position:
        return (min(max(pos[0], 0), self.counts[0]), min(max(pos[1], 0), self.counts[1]))

    def time(self, which: int, index: int) -> int:
        return self.files[which].time(index, self.fallback_ms)

    def event(self, step: Step) -> LogEvent | None:
        """The step's event; None for an empty line (CloudWatch has no empty events)."""
        raw = self.files[step.which].read(step.index)
        if not raw:
            return None
        message = raw.decode("utf-8", "replace")
        return LogEvent(self.time(step.which, step.index), message, step.which, step.index)

    def forward(self, pos: Position) -> Iterator[Step]:
        i, j = self.clamp(pos)
        n_out, n_err = self.counts
        while i < n_out or j < n_err:
            if j >= n_err or (i < n_out and self.time(0, i) <= self.time(1, j)):
                yield Step(0, i, (i, j), (i + 1, j))
                i += 1
            else:
                yield Step(1, j, (i, j), (i, j + 1))
                j += 1

    def backward(self, pos: Position) -> Iterator[Step]:
        i, j = self.clamp(pos)
        while i > 0 or j > 0:
            if j == 0 or (i > 0 and self.time(0, i - 1) > self.time(1, j - 1)):
                yield Step(0, i - 1, (i - 1, j), (i, j))
                i -= 1
            else:
                yield Step(1, j - 1, (i, j - 1), (i, j))
                j -= 1

    def first_and_last(self) -> tuple[LogEvent | None, LogEvent | None]:
        first = next((e for s in self.forward((0, 0)) if (e := self.event(s))), None)
        last = next((e for s in self.backward(self.end) if (e := self.event(s))), None)
        return first, last


class LogsHead(Protocol):
    """What the Logs endpoint needs of the head node (``mnp.api.server.Head``)."""

    @property
    def state(self) -> HeadState: ...

    @property
    def runtime(self) -> Runtime: ...


# --- which attempt a stream is (the store) -------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamRef:
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


_FIELD = "json_extract(a.value, '$.{}')"
_NAME = _FIELD.format("log_stream_name")
_TABLE_SELECT = f"""
SELECT s.name, s.job_id, s.attempt, s.created_at, {_FIELD.format("started_at")},
       {_FIELD.format("stopped_at")}, j.status
FROM log_streams s JOIN jobs j ON j.job_id = s.job_id
     JOIN json_each(j.doc, '$.attempts') a ON {_FIELD.format("number")} = s.attempt
"""
_SCAN_SELECT = f"""
SELECT {_NAME}, j.job_id, {_FIELD.format("number")}, {_FIELD.format("placed_at")},
       {_FIELD.format("started_at")}, {_FIELD.format("stopped_at")}, j.status
FROM jobs j, json_each(j.doc, '$.attempts') a
"""


LOG_STREAMS_TABLE = """
CREATE TABLE IF NOT EXISTS log_streams (
    name TEXT PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
"""
"""The index proposed for ``mnp.store.sqlite.SCHEMA``: ``Store.save_jobs`` adds each saved job's
current attempt, ``INSERT OR IGNORE … VALUES (log_stream_name, job_id, number, placed_at)``,
skipping multi-node parents (they repeat their main node's stream)."""

LOG_STREAMS_BACKFILL = f"""
INSERT OR IGNORE INTO log_streams
SELECT {_NAME}, j.job_id, {_FIELD.format("number")}, {_FIELD.format("placed_at")}
FROM jobs j, json_each(j.doc, '$.attempts') a
ORDER BY instr(j.job_id, '#') = 0
"""
"""Fills the index from the jobs already stored (run once, when the table is created)."""


def _has_index(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_streams'")
    return row.fetchone() is not None


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
    indexed = _has_index(db)
    column = "s.name" if indexed else _NAME
    where: list[str] = []
    args: list[Any] = []
    if name is not None:
        where.append(f"{column} = ?")
        args.append(name)
    if prefix:
        where.append(f"{column} >= ? AND {column} < ?")
        args += [prefix, prefix + chr(0x10FFFF)]
    if after is not None:
        where.append(f"{column} {'<' if descending else '>'} ?")
        args.append(after)
    sql = (_TABLE_SELECT if indexed else _SCAN_SELECT) + (
        " WHERE " + " AND ".join(where) if where else ""
    )
    # a multi-node job's parent repeats its main node's attempt: the node (…#i) has the files
    sql += f" ORDER BY 1 {'DESC' if descending else 'ASC'}, instr(j.job_id, '#') = 0"
    if indexed and limit is not None:
        sql += f" LIMIT {int(limit)}"
    out: list[StreamRef] = []
    for row in db.execute(sql, args):
        if out and out[-1].name == row[0]:
            continue
        out.append(StreamRef(*row))
        if limit is not None and len(out) >= limit:
            break
    return out


def find_stream(db: sqlite3.Connection, name: str) -> StreamRef | None:
    found = find_streams(db, name=name, limit=1)
    return found[0] if found else None


def open_stream(head: LogsHead, ref: StreamRef) -> StreamLog:
    path = head.runtime.log_path
    return StreamLog(
        path(ref.job_id, ref.attempt, "stdout"),
        path(ref.job_id, ref.attempt, "stderr"),
        ref.fallback_ms,
        ref.complete,
    )


def last_write_ms(head: LogsHead, ref: StreamRef) -> int:
    """When the stream last grew (file times: cheap enough to sort every stream by)."""
    last = ref.created_at
    for stream in ("stdout", "stderr"):
        try:
            mtime = head.runtime.log_path(ref.job_id, ref.attempt, stream).stat().st_mtime_ns
        except FileNotFoundError:
            continue
        last = max(last, mtime // 1_000_000)
    return last
