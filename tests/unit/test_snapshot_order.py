"""GetJobQueueSnapshot lists the front of a queue in the order its jobs would start: FIFO on a
FIFO queue, share usage and priority on a fair-share queue, the same order the scheduling
pass then starts them in."""

from __future__ import annotations

from pathlib import Path

from mnp.spec.arns import job_arn
from tests.unit.helpers_core import FakeClock, Head


def fair_head(tmp_path: Path) -> Head:
    head = Head.open(tmp_path / "home", FakeClock(), lost_after_seconds=100_000)
    head.environment()
    arn = head.api["createSchedulingPolicy"](
        {
            "name": "fs",
            "fairsharePolicy": {
                "shareDecaySeconds": 600,
                "shareDistribution": [
                    {"shareIdentifier": "busy", "weightFactor": 1.0},
                    {"shareIdentifier": "idle", "weightFactor": 1.0},
                ],
            },
        }
    )["arn"]
    head.api["createJobQueue"](
        {
            "jobQueueName": "q",
            "priority": 1,
            "schedulingPolicyArn": arn,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
        }
    )
    head.definition()
    head.node("n1")  # 4 vCPUs
    return head


def front(head: Head) -> list[str]:
    got = head.api["getJobQueueSnapshot"]({"jobQueue": "q"})
    return [j["jobArn"] for j in got["frontOfQueue"]["jobs"]]


def test_fair_share_front_is_in_share_order_and_is_the_order_jobs_start(tmp_path: Path) -> None:
    head = fair_head(tmp_path)
    try:
        running = [head.submit(f"busy{i}", shareIdentifier="busy") for i in range(4)]
        head.ticks(2)
        for a in head.poll("n1")[0]:
            head.started("n1", a.attempt_id)
        assert all(head.status(j) == "RUNNING" for j in running)
        head.clock.advance(100)  # the busy share has used 400 vCPU-seconds, the idle one none
        busy = [head.submit(f"more{i}", shareIdentifier="busy") for i in range(3)]
        idle = [head.submit(f"idle{i}", shareIdentifier="idle") for i in range(2)]
        urgent = head.submit("urgent", shareIdentifier="idle", schedulingPriorityOverride=10)
        head.ticks(2)  # saturated: all of them wait
        expected = [urgent, *idle, *busy]  # the idle share first, its higher priority first
        assert front(head) == [job_arn(j) for j in expected]
        # a FIFO snapshot would have listed them as submitted
        assert front(head) != [job_arn(j) for j in (*busy, *idle, urgent)]
        # capacity comes free: the scheduling pass starts exactly the front of the snapshot
        head.node("n2")
        head.ticks(2)
        started = {a.job_id for a in head.poll("n2")[0]}
        assert started == set(expected[:4])
        assert front(head) == [job_arn(j) for j in expected[4:]]
    finally:
        head.close()


def test_fifo_queue_front_stays_in_submission_order(tmp_path: Path) -> None:
    head = Head.open(tmp_path / "home", FakeClock(), lost_after_seconds=100_000)
    try:
        head.basic(("n1",))
        ids = [head.submit(f"j{i}") for i in range(7)]
        head.ticks(2)
        assert front(head) == [job_arn(j) for j in ids[4:]]
    finally:
        head.close()
