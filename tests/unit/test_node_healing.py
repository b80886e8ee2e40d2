"""Node sessions that heal (issue 11): Kills delivered at least once and rebuilt after a head
restart, and each poll/register reconciling what the node runs with what the head placed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.spec.protocol import Poll, Register
from tests.unit.helpers_core import Head


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ready(home: Path) -> Iterator[Head]:
    h = Head.open(home)
    h.basic(("n1",))
    yield h
    h.close()


def running_job(h: Head, **body: object) -> tuple[str, str]:
    job = h.submit(**body)
    return job, h.run_next("n1").attempt_id


def test_a_kill_lost_in_one_poll_reply_goes_again(ready: Head) -> None:
    job, aid = running_job(ready)
    ready.api["terminateJob"]({"jobId": job, "reason": "stop it"})
    _, kills = ready.poll("n1")  # this reply never reaches the agent
    assert [k.attempt_id for k in kills] == [aid]
    assert ready.poll("n1") == ([], []), "not again at once"
    ready.clock.advance(3)
    _, kills = ready.poll("n1")
    assert [(k.attempt_id, k.reason) for k in kills] == [(aid, "stop it")]
    ready.exited("n1", aid, 143, reason="stop it")
    ready.clock.advance(3)
    assert ready.poll("n1") == ([], []), "the exit shows the kill took effect"
    assert ready.status(job) == "FAILED"


def test_a_terminate_decided_before_a_head_restart_kills_after_it(ready: Head, home: Path) -> None:
    job, aid = running_job(ready)
    ready.api["terminateJob"]({"jobId": job, "reason": "stop it"})
    ready.close()  # the Kill never left the head
    again = Head.open(home, clock=ready.clock)
    try:
        again.seq, again.runs = dict(ready.seq), ready.runs
        _, kills = again.poll("n1")
        assert [(k.attempt_id, k.reason) for k in kills] == [(aid, "stop it")]
        again.exited("n1", aid, 143, reason="stop it")
        assert again.describe(job)["statusReason"] == "stop it"
    finally:
        again.close()


def test_an_attempt_the_node_no_longer_runs_is_lost_and_retried(ready: Head) -> None:
    job, _ = running_job(ready, retryStrategy={"attempts": 2})
    # the agent restarted under the same node id: it registers running nothing
    ready.sessions.register(Register("n1", "ce", "127.0.0.10", 4, 4096, 0, 4343, running=[]))
    detail = ready.describe(job)
    assert detail["attempts"][0]["statusReason"] == "Host: attempt lost on node n1"
    assert detail["status"] == "RUNNABLE"
    retry = ready.run_next("n1")
    assert retry.attempt_id == f"{job}/2"


def test_a_lost_attempt_without_retries_fails_the_job(ready: Head) -> None:
    job, _ = running_job(ready)
    ready.runs["n1"].clear()  # the process is gone; the agent polls without it
    ready.poll("n1")
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "Host: attempt lost on node n1"


def test_an_assignment_in_flight_is_resent_not_lost(ready: Head) -> None:
    job = ready.submit()
    ready.ticks(2)
    assignments, _ = ready.poll("n1")  # this reply is lost: the node never lists it
    assert [a.job_id for a in assignments] == [job]
    ready.clock.advance(3)
    resent, _ = ready.poll("n1")
    assert [a.attempt_id for a in resent] == [f"{job}/1"]
    assert ready.status(job) == "STARTING"
    # listed once (the assignment arrived), then gone: now it is lost
    ready.poll("n1", [f"{job}/1"])
    ready.poll("n1", [])
    assert ready.describe(job)["statusReason"] == "Host: attempt lost on node n1"


def test_an_attempt_the_head_does_not_know_is_killed_until_gone(ready: Head) -> None:
    stray = "no-such-job/1"
    _, kills = ready.poll("n1", [stray])
    assert [k.attempt_id for k in kills] == [stray]
    ready.clock.advance(3)
    _, kills = ready.poll("n1", [stray])
    assert [k.attempt_id for k in kills] == [stray], "again while the node still runs it"
    ready.clock.advance(3)
    assert ready.poll("n1", []) == ([], [])
    ready.clock.advance(3)
    assert ready.poll("n1", []) == ([], [])


def test_an_ended_attempt_still_running_on_the_node_is_killed(ready: Head) -> None:
    job, aid = running_job(ready)
    ready.exited("n1", aid, 0)
    assert ready.status(job) == "SUCCEEDED"
    reply = ready.sessions.poll(Poll("n1", [aid], 0.0, epoch=ready.epoch("n1")))
    assert [k.attempt_id for k in reply.kills] == [aid]
