"""ListJobs pages by key: a page starts past the last job of the one before, so jobs
submitted between pages shift nothing, and its ``nextToken`` is signed for its own query (a
forged token, an edited one or another query's is refused)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import InvalidInput
from tests.unit.helpers_core import Head

BAD = {"nextToken": "not a token this head node gave out"}


@pytest.fixture
def ready(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def problems(call: Any, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        call(body)
    return {e.path: e.message for e in err.value.errors}


def ids(page: dict[str, Any]) -> list[str]:
    return [j["jobId"] for j in page["jobSummaryList"]]


@pytest.mark.parametrize("same_ms", [True, False])
def test_submits_between_pages_neither_repeat_nor_hide_jobs(ready: Head, same_ms: bool) -> None:
    """Newest first: what is submitted while a client pages lands before its first page, so
    the pages hold exactly the jobs there were when paging began, each once. (An offset
    shifted by the new jobs and repeated the last ones of each page.)"""
    before = []
    for i in range(23):
        before.append(ready.submit(f"j{i}"))
        if not same_ms:
            ready.clock.advance(0.001 * (i % 3))  # ties and steps both
    body: dict[str, Any] = {"jobQueue": "q", "jobStatus": "SUBMITTED", "maxResults": 5}
    seen: list[str] = []
    page = ready.api["listJobs"](body)
    pages = 1
    while True:
        seen += ids(page)
        for k in range(3):  # new work arrives while the client reads
            ready.submit(f"late{pages}-{k}")
        if "nextToken" not in page:
            break
        page = ready.api["listJobs"]({**body, "nextToken": page["nextToken"]})
        pages += 1
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert seen == list(reversed(before))
    assert pages == 5


def test_array_children_page_by_index_while_others_are_submitted(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 12})
    ready.ticks(1)
    status = ready.status(f"{parent}:0")
    body: dict[str, Any] = {"arrayJobId": parent, "jobStatus": status, "maxResults": 5}
    got: list[str] = []
    page = ready.api["listJobs"](body)
    while True:
        got += ids(page)
        ready.submit("other")
        if "nextToken" not in page:
            break
        page = ready.api["listJobs"]({**body, "nextToken": page["nextToken"]})
    assert got == [f"{parent}:{i}" for i in range(12)]


def test_forged_and_edited_tokens_are_refused(ready: Head) -> None:
    for i in range(6):
        ready.submit(f"j{i}")
    body: dict[str, Any] = {"jobQueue": "q", "jobStatus": "SUBMITTED", "maxResults": 2}
    token = ready.api["listJobs"](body)["nextToken"]
    assert not token.isdigit(), "a token is opaque, not an offset"
    forged = ["0", "2", "4", "x", "", token[:-2], token + "A", "." + token.partition(".")[2]]
    payload, _, mac = token.partition(".")
    if mac:  # the same signature on another place in the order
        place = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        moved = [place[0], place[1] - 1]
        raw = base64.urlsafe_b64encode(json.dumps(moved, separators=(",", ":")).encode())
        forged.append(raw.decode().rstrip("=") + "." + mac)
    for bad in forged:
        if bad == "":
            continue  # no token: the first page
        assert problems(ready.api["listJobs"], {**body, "nextToken": bad}) == BAD, bad
    assert problems(ready.api["listJobs"], {**body, "nextToken": 7}) == BAD


def test_a_token_is_good_only_for_the_query_that_gave_it(ready: Head) -> None:
    ready.queue("q2")
    for i in range(4):
        ready.submit(f"j{i}")
        ready.submit(f"k{i}", jobQueue="q2")
    body: dict[str, Any] = {"jobQueue": "q", "jobStatus": "SUBMITTED", "maxResults": 2}
    token = ready.api["listJobs"](body)["nextToken"]
    others: list[dict[str, Any]] = [
        {**body, "jobQueue": "q2"},
        {**body, "jobStatus": "RUNNABLE"},
        {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["j*"]}]},
    ]
    for other in others:
        assert problems(ready.api["listJobs"], {**other, "nextToken": token}) == BAD, other
    # the same query with another page size goes on from where it was
    rest = ready.api["listJobs"]({**body, "maxResults": 10, "nextToken": token})
    assert len(rest["jobSummaryList"]) == 2 and "nextToken" not in rest


def test_a_token_outlives_a_restart(ready: Head, tmp_path: Path) -> None:
    for i in range(4):
        ready.submit(f"j{i}")
    body: dict[str, Any] = {"jobQueue": "q", "jobStatus": "SUBMITTED", "maxResults": 2}
    first = ready.api["listJobs"](body)
    ready.close()
    again = Head.open(tmp_path / "home")
    try:
        rest = again.api["listJobs"]({**body, "nextToken": first["nextToken"]})
        assert len(rest["jobSummaryList"]) == 2
        assert not set(ids(rest)) & set(ids(first))
    finally:
        again.close()
