"""Log streams: an attempt's output files, read as CloudWatch-style events.

The head node keeps each attempt's output in ``stdout.log`` and ``stderr.log`` (append-only,
written by :mod:`mnp.nodes.sessions`). Here they become one stream of events, one per
non-empty line, ordered by time with stdout first on ties, as the awslogs driver interleaves
a container's two streams.

**Timestamps.** The log files carry no times. If a ``<stream>.times`` file sits beside a log
(one ``<byte offset> <epoch ms>`` line per chunk appended, see :func:`record_chunk_time`),
a line's timestamp is the arrival time of the chunk holding its first byte. Otherwise every
line gets the attempt's start time (its placement time before it started).

**Positions.** A position is a pair (lines of stdout, lines of stderr) consumed: a cut of
the merged order, stable because the files only grow. Tokens are positions.

**Which attempt** a stream name is, is the store's log-stream index
(:mod:`mnp.store.streams`); :mod:`mnp.service.logs` joins the two for the Logs API.

Files are indexed incrementally (line ends, chunk times) and the indexes cached, so a
client polling a growing log reads each byte once. Single-threaded: the head's event loop.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TIMES_SUFFIX = ".times"
READ_BLOCK = 1 << 20
CACHE_FILES = 256

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

    def seek(self, ts: int) -> Position:
        """The cut before the first line at or after ``ts`` (each file's times never go
        back, so every line before the cut is earlier): where :meth:`forward` reads on from
        to skip what came before ``ts`` unread."""
        return self._first_at(0, ts), self._first_at(1, ts)

    def _first_at(self, which: int, ts: int) -> int:
        lo, hi = 0, self.counts[which]
        while lo < hi:
            mid = (lo + hi) // 2
            if self.time(which, mid) < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

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
