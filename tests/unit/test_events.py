"""Events: pattern matching, the webhook signature, the retry schedule, the dead-letter
bound, and the outbox written with (and only with) the change that made the event."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import InvalidInput
from mnp.service.events import delivery, patterns
from mnp.service.events.bus import EventBus, envelope
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus
from mnp.store.sqlite import Store
from tests.unit.helpers_core import T0, FakeClock, make_job

ARN = "arn:aws:batch:eu-west-1:123456789012:job/j-1"
QUEUE = "arn:aws:batch:eu-west-1:123456789012:job-queue/gpu"


def event(status: str = "FAILED", reason: str | None = "Essential container exited",
          queue: str = QUEUE, **detail: Any) -> dict[str, Any]:  # fmt: skip
    d: dict[str, Any] = {"jobArn": ARN, "jobId": "j-1", "jobQueue": queue, "status": status,
                         "attempts": [{"exitCode": 1}], **detail}  # fmt: skip
    if reason is not None:
        d["statusReason"] = reason
    return envelope(d, T0)


# --- patterns ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({}, True),
        ({"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}, True),
        ({"source": ["aws.ec2"]}, False),
        ({"detail": {"status": ["FAILED", "SUCCEEDED"]}}, True),
        ({"detail": {"status": ["SUCCEEDED"]}}, False),
        ({"detail": {"jobQueue": [{"suffix": ":job-queue/gpu"}]}}, True),
        ({"detail": {"jobQueue": [{"suffix": ":job-queue/cpu"}]}}, False),
        ({"detail": {"jobQueue": [QUEUE]}}, True),
        ({"detail": {"statusReason": [{"prefix": "Essential"}]}}, True),
        ({"detail": {"statusReason": [{"prefix": "Task"}]}}, False),
        ({"detail": {"status": [{"anything-but": "SUCCEEDED"}]}}, True),
        ({"detail": {"status": [{"anything-but": ["FAILED", "SUCCEEDED"]}]}}, False),
        ({"detail": {"statusReason": [{"anything-but": {"prefix": "Ess"}}]}}, False),
        ({"detail": {"statusReason": [{"exists": True}]}}, True),
        ({"detail": {"container": [{"exists": False}]}}, True),
        ({"detail": {"container": [{"exists": True}]}}, False),
        ({"detail": {"attempts": {"exitCode": [1]}}}, False),  # a list is not an object
        ({"resources": [ARN]}, True),  # a list value matches when one item does
        ({"detail": {"status": ["FAILED"], "jobQueue": [{"suffix": "/cpu"}]}}, False),  # and
        ({"detail": {"missing": ["x"]}}, False),
        ({"detail": {"status": ["failed"]}}, False),  # exact: case matters
    ],
)
def test_pattern_matching(pattern: dict[str, Any], expected: bool) -> None:
    patterns.validate(pattern)
    assert patterns.matches(pattern, event()) is expected


def test_numbers_and_booleans_match_as_json() -> None:
    e = event(isCancelled=False, schedulingPriority=1)
    assert patterns.matches({"detail": {"schedulingPriority": [1.0]}}, e)
    assert not patterns.matches({"detail": {"isCancelled": [0]}}, e)
    assert patterns.matches({"detail": {"isCancelled": [False]}}, e)


def test_a_missing_reason_matches_only_exists_false_and_no_prefix() -> None:
    e = event(reason=None)
    assert not patterns.matches({"detail": {"statusReason": [{"prefix": ""}]}}, e)
    assert not patterns.matches({"detail": {"statusReason": [{"anything-but": "x"}]}}, e)
    assert patterns.matches({"detail": {"statusReason": [{"exists": False}]}}, e)


@pytest.mark.parametrize(
    "bad",
    [[], {"detail": "FAILED"}, {"detail": {"status": []}}, {"detail": {"status": [["x"]]}},
     {"detail": {"status": [{"wildcard": "*"}]}}, {"detail": {"status": [{"prefix": 1}]}},
     {"detail": {"status": [{"exists": "yes"}]}},
     {"detail": {"status": [{"anything-but": {"suffix": "x"}}]}}],
)  # fmt: skip
def test_bad_patterns_are_refused_naming_the_place(bad: Any) -> None:
    with pytest.raises(InvalidInput) as e:
        patterns.validate(bad)
    assert "pattern" in str(e.value)


# --- signature and schedule ----------------------------------------------------------------
def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert delivery.signature("s3cret", body) == f"sha256={expected}"
    assert delivery.verify("s3cret", body, f"sha256={expected}")
    assert not delivery.verify("other", body, f"sha256={expected}")
    assert not delivery.verify("s3cret", body + b" ", f"sha256={expected}")


def test_backoff_doubles_up_to_the_cap_and_gives_up_at_the_limit() -> None:
    assert [delivery.backoff(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert delivery.backoff(1) == delivery.BASE_DELAY_SECONDS
    assert not delivery.gives_up(delivery.MAX_ATTEMPTS - 1)
    assert delivery.gives_up(delivery.MAX_ATTEMPTS)


def test_webhook_urls_are_checked() -> None:
    assert delivery.check_url("http://127.0.0.1:8080/hook") is None
    assert delivery.check_url("https://example.org/x") is None
    assert delivery.check_url("ftp://x/") is not None
    assert delivery.check_url("http:///x") is not None
    assert delivery.check_url("http://h:99999/") is not None


# --- the envelope --------------------------------------------------------------------------
def test_the_envelope_is_eventbridges() -> None:
    e = event()
    assert set(e) == {"version", "id", "detail-type", "source", "account", "time", "region",
                      "resources", "detail"}  # fmt: skip
    assert e["version"] == "0" and e["detail-type"] == "Batch Job State Change"
    assert e["source"] == "aws.batch" and e["resources"] == [ARN]
    assert (e["region"], e["account"]) == ("eu-west-1", "123456789012")
    assert e["time"] == "2023-11-14T22:13:20Z"  # T0, to the second


# --- the outbox ----------------------------------------------------------------------------
def _detail(job: Job) -> dict[str, Any]:
    return {"jobArn": f"arn:aws:batch:local:000000000000:job/{job.job_id}", "jobId": job.job_id,
            "jobQueue": f"arn:aws:batch:local:000000000000:job-queue/{job.queue}",
            "status": job.status.value, "statusReason": job.status_reason}  # fmt: skip


@pytest.fixture
def bus(tmp_path: Path) -> EventBus:
    store = Store(tmp_path / "mnp.db")
    b = EventBus(store, _detail, FakeClock())
    b.save("rule", "failed", {"name": "failed", "pattern": {"detail": {"status": ["FAILED"]}},
                              "targets": [{"kind": "webhook", "url": "http://127.0.0.1:1/",
                                           "secret": "s"}]})  # fmt: skip
    return b


def _change(bus: EventBus, job: Job, status: JobStatus) -> None:
    old, job.status = job.status, status
    bus.observe(job, old)


def test_matching_events_join_the_outbox_with_the_commit(bus: EventBus) -> None:
    job = make_job("j-1", JobStatus.RUNNING)
    _change(bus, job, JobStatus.FAILED)
    assert bus.store.events.heads() == []  # not before the change is saved
    with bus.store.transaction():
        pass
    [d] = bus.store.events.heads()
    assert d.source == "rule/failed" and d.target["url"] == "http://127.0.0.1:1/"
    assert json.loads(d.body)["detail"]["status"] == "FAILED"
    assert [b.event["detail"]["status"] for b in bus.recent] == ["FAILED"]
    _change(bus, make_job("j-2", JobStatus.RUNNING), JobStatus.SUCCEEDED)  # no rule matches
    with bus.store.transaction():
        pass
    assert len(bus.store.events.heads()) == 1 and len(bus.recent) == 2
    # a restart finds it
    again = Store(bus.store.path)
    assert [h.event_id for h in again.events.heads()] == [d.event_id]


def test_a_rolled_back_change_makes_no_event(bus: EventBus) -> None:
    _change(bus, make_job("j-1", JobStatus.RUNNING), JobStatus.FAILED)
    with pytest.raises(RuntimeError), bus.store.transaction():
        raise RuntimeError("the write failed")
    with bus.store.transaction():
        pass
    assert bus.store.events.heads() == [] and not bus.recent


def test_nothing_is_rendered_while_nobody_listens(tmp_path: Path) -> None:
    rendered: list[str] = []

    def render(job: Job) -> dict[str, Any]:
        rendered.append(job.job_id)
        return _detail(job)

    b = EventBus(Store(tmp_path / "mnp.db"), render, FakeClock())
    _change(b, make_job("j-1", JobStatus.RUNNING), JobStatus.FAILED)
    assert rendered == []
    b.followers += 1  # a tail listens
    _change(b, make_job("j-2", JobStatus.RUNNING), JobStatus.FAILED)
    assert rendered == ["j-2"]


def test_one_destination_gets_its_events_in_order(bus: EventBus) -> None:
    for i in range(3):
        _change(bus, make_job(f"j-{i}", JobStatus.RUNNING), JobStatus.FAILED)
    with bus.store.transaction():
        pass
    [head] = bus.store.events.heads()  # only the oldest may go out
    assert json.loads(head.body)["detail"]["jobId"] == "j-0"


def test_dead_letters_are_bounded_newest_kept(bus: EventBus) -> None:
    for i in range(7):
        _change(bus, make_job(f"j-{i}", JobStatus.RUNNING), JobStatus.FAILED)
    with bus.store.transaction():
        pass
    tables = bus.store.events
    for _ in range(7):
        [d] = tables.heads()
        with bus.store.transaction():
            tables.dead_letter(d.id, 8, "HTTP 500", T0, keep=3)
    dead = tables.dead_letters()
    assert [json.loads(d.body)["detail"]["jobId"] for d in dead] == ["j-6", "j-5", "j-4"]
    assert "secret" not in dead[0].public()["target"]
    assert tables.counts() == (0, 3)


def test_a_failed_try_is_retried_on_the_schedule_then_dead_lettered(bus: EventBus) -> None:
    clock = bus.clock
    assert isinstance(clock, FakeClock)
    bus.max_attempts = 3
    _change(bus, make_job("j-1", JobStatus.RUNNING), JobStatus.FAILED)
    with bus.store.transaction():
        pass
    tables = bus.store.events
    [d] = tables.heads()
    bus._record(d, "HTTP 500")
    [d] = tables.heads()
    assert (d.attempts, d.next_at) == (1, T0 + 1000)
    bus._record(d, "HTTP 500")
    [d] = tables.heads()
    assert (d.attempts, d.next_at) == (2, T0 + 2000)
    bus._record(d, "refused")
    assert tables.heads() == [] and [x.last_error for x in tables.dead_letters()] == ["refused"]


def test_the_tail_shows_users_their_own_jobs(bus: EventBus) -> None:
    mine = make_job("j-1", JobStatus.RUNNING)
    mine.spec = replace(mine.spec, submitted_by="alice")
    _change(bus, mine, JobStatus.SUCCEEDED)
    _change(bus, make_job("j-2", JobStatus.RUNNING), JobStatus.SUCCEEDED)
    with bus.store.transaction():
        pass

    async def read() -> list[str]:
        seen = bus.follow(lambda b: b.owner == "alice", 0, follow=False)
        return [e["event"]["detail"]["jobId"] async for e in seen]

    assert asyncio.run(read()) == ["j-1"]
