"""FilterLogEvents over a whole log group: streams are opened as the time-ordered merge
reaches them, a resumed page starts from the streams alive at its token's time, and a call
looks at a bounded number of events. A real Service, Scheduler and store with a fake clock,
output delivered as agents' ``log`` events (as in ``test_aws_logs.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mnp.api.aws import logs_events
from mnp.nodes.logstreams import StreamLog
from mnp.store.sqlite import Store
from mnp.store.streams import LONGEST_KEY, StreamRef
from tests.unit.helpers_core import Head
from tests.unit.test_aws_logs import RunningAttempt, call, head, messages

__all__ = ["head"]  # the fixture (two nodes, n1 and n2), shared with test_aws_logs

Body = dict[str, Any]
SHORT = 30
"""Short jobs, one after another, each writing two lines a second apart."""


class Opened:
    """Counts the streams the reader opens (the real reader does the opening)."""

    def __init__(self, h: Head) -> None:
        self.names: list[str] = []
        reader = h.service.logs
        real = reader.open_stream

        def open_stream(ref: StreamRef) -> StreamLog:
            self.names.append(ref.name)
            return real(ref)

        reader.open_stream = open_stream  # type: ignore[method-assign]


def history(h: Head) -> tuple[list[str], RunningAttempt]:
    """A long job on n1, running throughout and writing between the short jobs (which run on
    n2 one after another); every write a second after the one before. Returns every message
    in the order written (their time order) and the long job."""
    long = RunningAttempt(h, "long", node="n1")
    written: list[str] = []
    long.write("stdout", "long begins\n", after_seconds=1)
    written.append("long begins")
    for i in range(SHORT):
        h.poll("n1")  # the long job's node heartbeats
        a = RunningAttempt(h, f"short{i}", node="n2")
        for line in (f"short{i} first", f"short{i} ERROR second"):
            a.write("stdout", line + "\n", after_seconds=1)
            written.append(line)
        a.exit(0)
        if i % 10 == 9:
            long.write("stderr", f"long ERROR at {i}\n", after_seconds=1)
            written.append(f"long ERROR at {i}")
    return written, long


def pages(h: Head, **body: Any) -> Iterator[Body]:
    token: str | None = None
    while True:
        page = call(h, "FilterLogEvents", **body, **({"nextToken": token} if token else {}))
        yield page
        token = page.get("nextToken")
        if token is None:
            return


def test_paging_a_whole_group_returns_every_event_in_time_order(head: Head) -> None:
    written, _ = history(head)
    seen = [m for page in pages(head, limit=7) for m in messages(page)]
    assert seen == written
    errors = [m for page in pages(head, limit=3, filterPattern="ERROR") for m in messages(page)]
    assert errors == [m for m in written if "ERROR" in m]


def test_a_first_page_opens_only_the_streams_it_reaches(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, long = history(head)
    opened = Opened(head)
    page = call(head, "FilterLogEvents", limit=3)
    assert messages(page) == written[:3]
    # a node's clock may be five minutes off: every stream of this 1.5-minute history was
    # placed within that of the first event, so each may hold an earlier one
    assert len(opened.names) == SHORT + 1
    monkeypatch.setattr(logs_events, "CLOCK_SKEW_MS", 0)
    opened.names.clear()
    page = call(head, "FilterLogEvents", limit=3)
    assert messages(page) == written[:3]
    # the long job's, short0's, short1's (where the page stopped): not the 27 after
    assert opened.names[0] == long.stream and len(opened.names) == 3, opened.names


def test_a_resumed_page_opens_the_streams_alive_at_its_token_not_the_early_ones(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_events, "CLOCK_SKEW_MS", 0)  # nodes' clocks are the head's here
    written, long = history(head)
    token: str | None = None
    seen: list[str] = []
    opened_per_page: list[int] = []
    while True:
        opened = Opened(head)
        extra = {"nextToken": token} if token else {}
        page = call(head, "FilterLogEvents", limit=4, **extra)
        seen += messages(page)
        opened_per_page.append(len(opened.names))
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == written
    # a page of 4 events spans 2 short jobs: it opens those (and one it stops at), and the
    # long one, running since the start, never more: not the 30 streams there are
    assert max(opened_per_page) <= 5, opened_per_page
    assert long.stream in opened.names  # its last line is on the last page


def test_a_search_that_finds_little_goes_on_through_tokens_in_bounded_calls(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, _ = history(head)
    monkeypatch.setattr(logs_events, "SCAN_BUDGET", 10)
    answers = list(pages(head, filterPattern='"short29 ERROR"'))
    found = [m for page in answers for m in messages(page)]
    assert found == ["short29 ERROR second"]
    assert all(len(p["events"]) <= 1 for p in answers)
    assert len(answers) >= len(written) // 10  # each call looked at 10 events at most
    assert answers[0]["events"] == [] and "nextToken" in answers[0]


def test_the_longest_stream_is_kept_across_restarts_and_found_in_an_older_store(
    head: Head,
) -> None:
    history(head)
    store = head.store
    assert store.longest_stream_ms == 2000  # each short job ran 2 s; the long one still runs
    assert store.get_meta(LONGEST_KEY) == "2000"
    path = head.db_path
    head.close()
    again = Store(path)
    assert again.longest_stream_ms == 2000
    again.db.execute("DELETE FROM meta WHERE key = ?", (LONGEST_KEY,))  # as an older head left it
    again.close()
    older = Store(path)
    assert older.longest_stream_ms == 2000
    assert older.get_meta(LONGEST_KEY) == "2000"
    older.close()
    head.store = Store(path)  # for the fixture's close


def test_streams_that_ended_without_output_are_never_opened(head: Head) -> None:
    quiet = []
    for i in range(20):  # jobs that print nothing (``true``): most streams of a busy group
        head.poll("n2")  # n2 heartbeats
        a = RunningAttempt(head, f"quiet{i}", node="n1")
        head.clock.advance(1)
        a.exit(0)
        quiet.append(a.stream)
    loud = RunningAttempt(head, "loud", node="n1")
    loud.write("stdout", "hello\n", after_seconds=1)
    opened = Opened(head)
    assert messages(call(head, "FilterLogEvents")) == ["hello"]
    assert opened.names == [loud.stream]
    # asked for by name, an empty stream is read as before (and has no events)
    assert call(head, "FilterLogEvents", logStreamNames=quiet[:2])["events"] == []
    assert opened.names[1:] == quiet[:2]


def test_late_output_of_an_ended_job_is_found(head: Head) -> None:
    a = RunningAttempt(head, "late", node="n1")
    head.clock.advance(1)
    a.exit(0)
    assert call(head, "FilterLogEvents")["events"] == []
    a.write("stdout", "after the end\n", after_seconds=1)  # a report that came late
    assert messages(call(head, "FilterLogEvents")) == ["after the end"]


def test_a_running_attempt_without_output_is_not_known_as_empty_after_a_restart(
    head: Head,
) -> None:
    a = RunningAttempt(head, "running", node="n1")
    job = head.state.job(a.job_id)
    assert job is not None and job.attempts[-1].output is False
    with head.store.transaction():
        head.store.save_jobs([job])
    path = head.db_path
    head.close()
    again = Store(path)
    (loaded,) = [j for j in again.load_active_jobs() if j.job_id == a.job_id]
    assert loaded.attempts[-1].output is None  # output may have come after that save
    again.close()
    head.store = Store(path)


def test_a_budget_spent_opening_streams_still_gets_on(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, _ = history(head)
    monkeypatch.setattr(logs_events, "SCAN_BUDGET", 3)  # less than the streams one call opens
    answers = list(pages(head))
    assert [m for page in answers for m in messages(page)] == written
    assert all(len(p["events"]) >= 1 for p in answers)
