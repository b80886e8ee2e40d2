"""Submit-once: ``mnp.idempotencyToken`` on the native SubmitJob, through the real service over
a temp SQLite store with a fake clock (retries, conflicts, a restart, expiry, the token rule)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import Conflict, InvalidInput
from mnp.service.submit import TOKEN_FIELD
from mnp.store.sqlite import Store
from mnp.store.tokens import SubmitToken
from tests.unit.helpers_core import HOSTILE, T0, Head

DAY = 24 * 3600


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def body(token: str | None, **extra: Any) -> dict[str, Any]:
    mnp: dict[str, Any] = {"user": "alice"}
    if token is not None:
        mnp["idempotencyToken"] = token
    return {"jobName": "once", "jobQueue": "q", "jobDefinition": "def", "mnp": mnp, **extra}


def job_ids(h: Head) -> list[str]:
    listed = h.api["listJobs"]({"allStatuses": True})["jobSummaryList"]
    return [j["jobId"] for j in listed]


def stored_jobs(db_path: Path) -> int:
    """Jobs on disk, read through a separate connection (what a restarted head would see)."""
    con = sqlite3.connect(str(db_path))
    try:
        return int(con.execute("SELECT count(*) FROM jobs").fetchone()[0])
    finally:
        con.close()


def test_a_retry_with_the_same_token_gets_the_first_job(head: Head) -> None:
    first = head.api["submitJob"](body("tok-1"))
    again = head.api["submitJob"](body("tok-1"))
    assert again == first
    assert job_ids(head) == [first["jobId"]]
    assert stored_jobs(head.db_path) == 1


def test_without_a_token_every_submission_is_a_job(head: Head) -> None:
    head.api["submitJob"](body(None))
    head.api["submitJob"](body(None))
    assert len(job_ids(head)) == 2


def test_the_same_token_with_another_request_is_a_conflict_naming_it(head: Head) -> None:
    token = HOSTILE.split("\n")[0]  # quotes, ;, $, backquotes: printable, so a valid token
    first = head.api["submitJob"](body(token))
    with pytest.raises(Conflict) as err:
        head.api["submitJob"](body(token, parameters={"msg": "other"}))
    assert TOKEN_FIELD in str(err.value) and repr(token) in str(err.value)
    assert first["jobId"] in str(err.value)
    assert job_ids(head) == [first["jobId"]]


def test_a_different_token_is_a_different_job(head: Head) -> None:
    a = head.api["submitJob"](body("a"))["jobId"]
    b = head.api["submitJob"](body("b"))["jobId"]
    assert a != b and sorted(job_ids(head)) == sorted([a, b])


def test_defaults_and_key_order_do_not_make_a_request_different(head: Head) -> None:
    first = head.api["submitJob"](body("tok"))
    spelled_out = body("tok")
    spelled_out["mnp"] = {"dependencyMode": "ALL", "singleton": False, **spelled_out["mnp"]}
    assert head.api["submitJob"](dict(reversed(list(spelled_out.items())))) == first
    assert len(job_ids(head)) == 1


def test_the_token_survives_a_restart(head: Head, tmp_path: Path) -> None:
    first = head.api["submitJob"](body("across-restart"))
    head.close()  # the reply was "lost": the client retries against the restarted head
    again = Head.open(tmp_path / "home", clock=head.clock)
    try:
        assert again.api["submitJob"](body("across-restart")) == first
        with pytest.raises(Conflict):
            again.api["submitJob"](body("across-restart", jobName="other"))
        assert job_ids(again) == [first["jobId"]]
    finally:
        again.close()


def test_a_retry_is_answered_even_when_the_request_would_now_be_refused(head: Head) -> None:
    first = head.api["submitJob"](body("tok"))
    head.api["updateJobQueue"]({"jobQueue": "q", "state": "DISABLED"})
    assert head.api["submitJob"](body("tok")) == first
    with pytest.raises(InvalidInput):
        head.api["submitJob"](body("fresh"))  # a new submission meets the disabled queue


def test_after_24_hours_the_token_is_free_again(head: Head) -> None:
    first = head.api["submitJob"](body("tok"))["jobId"]
    head.clock.advance(DAY - 1)
    with pytest.raises(Conflict):
        head.api["submitJob"](body("tok", jobName="changed"))
    head.clock.advance(2)
    second = head.api["submitJob"](body("tok", jobName="changed"))["jobId"]
    assert second != first
    assert head.api["submitJob"](body("tok", jobName="changed"))["jobId"] == second
    assert len(job_ids(head)) == 2


@pytest.mark.parametrize(
    "token",
    ["", "x" * 65, "caf\u00e9", "tab\there", "new\nline", "\x00"],
    ids=["empty", "65-chars", "non-ascii", "tab", "newline", "nul"],
)
def test_a_token_outside_the_rule_is_refused_naming_the_field(head: Head, token: str) -> None:
    with pytest.raises(InvalidInput) as err:
        head.api["submitJob"](body(token, jobQueue="no-such-queue"))
    paths = {e.path: e.message for e in err.value.errors}
    assert "1-64 printable ASCII" in paths[TOKEN_FIELD]
    assert "jobQueue" in paths  # reported with the other problems, at once
    assert stored_jobs(head.db_path) == 0


def test_a_token_that_is_not_a_string_is_refused_naming_the_field(head: Head) -> None:
    with pytest.raises(InvalidInput) as err:
        head.api["submitJob"](body(None, mnp={"idempotencyToken": 12}))
    assert [e.path for e in err.value.errors] == [TOKEN_FIELD]


@pytest.mark.parametrize("token", ["a", "x" * 64, " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"])
def test_tokens_inside_the_rule_are_taken(head: Head, token: str) -> None:
    first = head.api["submitJob"](body(token))
    assert head.api["submitJob"](body(token)) == first


def test_the_store_record_reads_only_inside_the_window_and_prunes_older(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    old = SubmitToken("old", "f1", "job-1", {"jobId": "job-1"}, T0)
    new = SubmitToken("new", "f2", "job-2", {"jobId": "job-2"}, T0 + 10)
    with store.transaction():
        store.submit_tokens.record(old)
    assert store.submit_tokens.find("old", since=T0) == old
    assert store.submit_tokens.find("old", since=T0 + 1) is None
    with store.transaction():
        store.submit_tokens.prune(before=T0 + 1)
        store.submit_tokens.record(new)
    store.close()
    fresh = Store(tmp_path / "db.sqlite")
    assert fresh.submit_tokens.find("old", since=0) is None  # pruned, not only out of window
    assert fresh.submit_tokens.find("new", since=0) == new
    with pytest.raises(sqlite3.IntegrityError), fresh.transaction():
        fresh.submit_tokens.record(new)  # a live token is never overwritten
    fresh.close()


def test_the_head_prunes_expired_tokens(head: Head) -> None:
    head.api["submitJob"](body("early"))
    head.clock.advance(DAY + 3600)
    head.api["submitJob"](body("late"))
    con = sqlite3.connect(str(head.db_path))
    try:
        kept = [t for (t,) in con.execute("SELECT token FROM submit_tokens")]
    finally:
        con.close()
    assert kept == ["late"]


def test_one_users_token_never_matches_anothers(head: Head) -> None:
    from mnp.service.users import Caller, Role

    head.api["createUser"]({"name": "alice"})
    head.api["createUser"]({"name": "bob"})
    alice = head.api_as(Caller("alice", Role.USER))
    bob = head.api_as(Caller("bob", Role.USER))
    first = alice["submitJob"](body("shared"))
    theirs = bob["submitJob"](body("shared"))  # the same token, the same request
    assert theirs["jobId"] != first["jobId"]  # bob's own job, not alice's answer
    assert alice["submitJob"](body("shared")) == first  # each still dedupes their own
    assert bob["submitJob"](body("shared")) == theirs
    assert len(job_ids(head)) == 2
