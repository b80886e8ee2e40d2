"""What the log endpoints read: the store's stream index joined with the attempts' files.

The AWS Logs API (:mod:`mnp.api.aws.logs`) and the native log tail reach a job's output only
through :class:`LogReader` (``Service.logs``), so the HTTP edge never touches the store or the
scheduler (which places an attempt's output files). A non-admin reads through
:meth:`LogReader.for_caller`: only the streams of their own jobs (another's named stream is
AccessDenied, listings leave others' out). Reads only; not thread-safe: call from the head
node's event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnp.errors import AccessDenied
from mnp.nodes.logstreams import StreamLog
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.jobrefs import resolve_job_ref
from mnp.service.users import Caller
from mnp.spec.jobs import Job
from mnp.store.streams import PlaceKey, StreamRef, TimeKey

__all__ = ["LogReader", "StreamRef", "TimeKey"]  # what the reader returns, for the API's types

STREAMS = ("stdout", "stderr")
CHUNK = 200
"""Streams read at a time when some are left out (another user's): a page of a listing
reads on in chunks until it is full, never every stream at once."""


class LogReader:
    """Log streams by name (the store's index) and their output files (placed by the scheduler)."""

    def __init__(self, state: HeadState, scheduler: Scheduler) -> None:
        self._state = state
        self._scheduler = scheduler

    def for_caller(self, caller: Caller) -> LogReader:
        """This reader as ``caller`` may use it: itself for an admin, else one limited to the
        caller's own jobs' streams."""
        return self if caller.is_admin else _OwnStreams(self._state, self._scheduler, caller)

    def find_stream(self, name: str) -> StreamRef | None:
        """The stream named exactly ``name``, if an attempt has it."""
        return self._state.store.find_stream(name)

    def find_streams(
        self,
        *,
        prefix: str = "",
        after: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        during: tuple[int | None, int | None] = (None, None),
    ) -> list[StreamRef]:
        """Streams whose name starts with ``prefix``, in name order, starting past ``after``;
        ``during``: only those whose attempt ran at some time in that window (epoch ms)."""
        return self._state.store.find_streams(
            prefix=prefix, after=after, descending=descending, limit=limit, during=during
        )

    def streams_placed(
        self, *, prefix: str = "", since: int | None = None, before: int | None = None
    ) -> Iterator[StreamRef]:
        """The streams whose name starts with ``prefix`` that may have grown at or after
        ``since`` (None: all) and were placed before ``before`` (None: any time), in order of
        placement (then name), read from the store in chunks as the caller goes on.

        Those are the running streams and the streams placed since ``since`` less the longest
        time any stream has run (:attr:`~mnp.store.sqlite.Store.longest_stream_ms`) that had
        not ended before ``since``: a search from a time costs the streams of its span, not
        every stream there ever was, and one that stops early reads no further."""
        store = self._state.store
        placed_from = None if since is None else since - store.longest_stream_ms
        if placed_from is not None:  # running since before the span: the running work
            early = [
                r for r in store.open_streams()
                if r.created_at < placed_from and r.name.startswith(prefix)
                and (before is None or r.created_at < before)
            ]  # fmt: skip
            yield from sorted(early, key=lambda r: (r.created_at, r.name))
        after: PlaceKey | None = None
        while True:
            chunk = store.placed_streams(
                prefix=prefix, placed_from=placed_from, placed_before=before,
                ended_since=since, after=after, limit=CHUNK,
            )  # fmt: skip
            yield from chunk
            if len(chunk) < CHUNK:
                return
            after = (chunk[-1].created_at, chunk[-1].name)

    def by_last_event(
        self, *, past: TimeKey | None = None, descending: bool = False, limit: int = 50
    ) -> list[tuple[TimeKey, StreamRef]]:
        """Up to ``limit`` streams in order of their last write, starting past ``past``, each
        with its key (``(time, name)``: a page's last is where the next starts). An ended
        stream's time is its attempt's end, read in order off the store's index; only the
        open streams (running attempts) have their files looked at. So a page costs the page
        and the running work, not every stream there ever was."""
        live = [((self.last_write_ms(r), r.name), r) for r in self._state.store.open_streams()]
        if past is not None:
            live = [x for x in live if (x[0] < past if descending else x[0] > past)]
        ended = self._state.store.ended_streams(past=past, descending=descending, limit=limit)
        merged = sorted([*live, *ended], key=lambda x: x[0], reverse=descending)
        return merged[:limit]

    def open_stream(self, ref: StreamRef) -> StreamLog:
        """The merged event view of the stream's stdout and stderr."""
        return StreamLog(
            self.log_path(ref.job_id, ref.attempt, "stdout"),
            self.log_path(ref.job_id, ref.attempt, "stderr"),
            ref.fallback_ms,
            ref.complete,
        )

    def last_write_ms(self, ref: StreamRef) -> int:
        """When the stream last grew (file times: cheap enough to sort every stream by)."""
        last = ref.created_at
        for stream in STREAMS:
            try:
                mtime = self.log_path(ref.job_id, ref.attempt, stream).stat().st_mtime_ns
            except FileNotFoundError:
                continue
            last = max(last, mtime // 1_000_000)
        return last

    def job(self, job_id: str) -> Job | None:
        """The job whose output the native tail follows (None once it is unknown); ``job_id``
        may be a job number (:mod:`mnp.service.jobrefs`)."""
        return self._state.job(resolve_job_ref(self._state.store, job_id))

    def log_path(self, job_id: str, attempt: int, stream: str) -> Path:
        """Where one attempt's ``stdout`` or ``stderr`` is kept (it may not exist yet);
        ``job_id`` as :meth:`job` takes it."""
        job_id = resolve_job_ref(self._state.store, job_id)
        return self._scheduler.log_path(job_id, attempt, stream)


class _OwnStreams(LogReader):
    """A :class:`LogReader` showing one non-admin only the streams of their own jobs."""

    def __init__(self, state: HeadState, scheduler: Scheduler, caller: Caller) -> None:
        super().__init__(state, scheduler)
        self._caller = caller

    def _mine(self, ref: StreamRef) -> bool:
        job = self._state.job(ref.job_id)
        return job is not None and self._caller.owns(job.submitted_by)

    def find_stream(self, name: str) -> StreamRef | None:
        """As :meth:`LogReader.find_stream`; raises AccessDenied for another user's stream."""
        ref = super().find_stream(name)
        if ref is not None and not self._mine(ref):
            raise AccessDenied(
                f"{self._caller.name} may not read log stream {name}: job {ref.job_id} "
                "belongs to another user"
            )
        return ref

    def find_streams(
        self,
        *,
        prefix: str = "",
        after: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        during: tuple[int | None, int | None] = (None, None),
    ) -> list[StreamRef]:
        """As :meth:`LogReader.find_streams`, others' streams left out (before the limit, so
        a page is as full as it can be: read on in chunks until it is)."""
        mine: list[StreamRef] = []
        while limit is None or len(mine) < limit:
            chunk = super().find_streams(
                prefix=prefix, after=after, descending=descending, limit=CHUNK, during=during
            )
            mine += [r for r in chunk if self._mine(r)]
            if len(chunk) < CHUNK:
                break
            after = chunk[-1].name
        return mine if limit is None else mine[:limit]

    def streams_placed(
        self, *, prefix: str = "", since: int | None = None, before: int | None = None
    ) -> Iterator[StreamRef]:
        """As :meth:`LogReader.streams_placed`, others' streams left out."""
        for ref in super().streams_placed(prefix=prefix, since=since, before=before):
            if self._mine(ref):
                yield ref

    def by_last_event(
        self, *, past: TimeKey | None = None, descending: bool = False, limit: int = 50
    ) -> list[tuple[TimeKey, StreamRef]]:
        """As :meth:`LogReader.by_last_event`, others' streams left out (read on in chunks
        until the page is full)."""
        mine: list[tuple[TimeKey, StreamRef]] = []
        while len(mine) < limit:
            chunk = super().by_last_event(past=past, descending=descending, limit=CHUNK)
            mine += [x for x in chunk if self._mine(x[1])]
            if len(chunk) < CHUNK:
                break
            past = chunk[-1][0]
        return mine[:limit]


def time_key(value: Any) -> TimeKey | None:
    """A :data:`TimeKey` as a token carried it (``[time, name]``), or None if it is not one."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and isinstance(value[1], str)
    ):
        return value[0], value[1]
    return None
