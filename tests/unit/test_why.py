"""``explainJob`` and ``mnp why``: a job behind others is told how many are ahead (in the order
they would start), what they need, and the capacity of its queue's environments; on a
fair-share queue, its share against the others. The text is compared whole, ids replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mnp.cli.why import print_why
from mnp.errors import NotFound
from mnp.service.users import Caller, Role
from tests.unit.helpers_core import FakeClock, Head


def rendered(answer: dict[str, Any], names: dict[str, str]) -> str:
    console = Console(width=160, record=True)
    print_why(console, answer)
    text = console.export_text()
    for job_id, label in names.items():
        text = text.replace(job_id, label)
    return "\n".join(line.rstrip() for line in text.splitlines())


def busy_head(tmp_path: Path) -> tuple[Head, list[str], list[str]]:
    """One 4-vCPU node running four 1-vCPU jobs; three more wait behind them."""
    head = Head.open(tmp_path / "home", FakeClock(), lost_after_seconds=100_000)
    head.basic(("n1",))
    running = [head.submit(f"run{i}") for i in range(4)]
    head.ticks(2)
    for a in head.poll("n1")[0]:
        head.started("n1", a.attempt_id)
    waiting = [head.submit(f"wait{i}") for i in range(3)]
    head.ticks(2)
    return head, running, waiting


EXPECTED_FIFO = """\
job W2 (wait2) is RUNNABLE in queue q
  reason: {reason}
  needs: 1 vCPUs, 256 MiB
  position: 2 jobs ahead of it (FIFO order), needing 2 vCPUs
    ahead: W0 wait0 (1 vCPUs)
    ahead: W1 wait1 (1 vCPUs)
queue q: ENABLED, priority 1, 3 RUNNABLE jobs
compute environments:
ENVIRONMENT  STATE    STATUS  NODES  FREE vCPUs  FREE MiB      LARGEST FREE        DESIRED/MAX vCPUs
ce           ENABLED  VALID   1      0 of 4      3072 of 4096  0 vCPUs / 3072 MiB  -/-"""


def test_a_job_behind_others_is_told_its_position_and_the_capacity(tmp_path: Path) -> None:
    head, _, waiting = busy_head(tmp_path)
    try:
        answer = head.api["explainJob"]({"jobId": waiting[2]})
        assert answer["position"]["jobsAhead"] == 2
        names = {waiting[0]: "W0", waiting[1]: "W1", waiting[2]: "W2"}
        # the reason's text is the scheduling pass's (mnp.scheduler.reasons), shown as it is
        reason = answer["statusReason"] or "(none given)"
        assert rendered(answer, names) == EXPECTED_FIFO.format(reason=reason)
        first = head.api["explainJob"]({"jobId": waiting[0]})
        assert "position: first in its queue (FIFO order)" in rendered(first, {})
    finally:
        head.close()


def test_another_user_sees_the_jobs_ahead_by_id_only(tmp_path: Path) -> None:
    head, running, waiting = busy_head(tmp_path)
    try:
        bob = head.api_as(Caller("bob", Role.USER))
        answer = bob["explainJob"]({"jobId": waiting[1]})
        assert answer["position"]["ahead"] == [{"jobId": waiting[0], "vcpus": 1.0}]
        assert answer["status"] == "RUNNABLE"
        # a job that runs has no position, only its status and the picture
        started = head.api["explainJob"]({"jobId": running[0]})
        assert started["status"] == "RUNNING" and "position" not in started
        with pytest.raises(NotFound):
            head.api["explainJob"]({"jobId": "no-such-job"})
    finally:
        head.close()


def test_a_fair_share_job_sees_its_share_against_the_others(tmp_path: Path) -> None:
    head = Head.open(tmp_path / "home", FakeClock(), lost_after_seconds=100_000)
    try:
        head.environment()
        arn = head.api["createSchedulingPolicy"](
            {"name": "fs", "fairsharePolicy": {"shareDecaySeconds": 600}}
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
        head.node("n1")
        for i in range(4):
            head.submit(f"busy{i}", shareIdentifier="busy")
        head.ticks(2)
        for a in head.poll("n1")[0]:
            head.started("n1", a.attempt_id)
        head.clock.advance(10)
        later = [head.submit(f"more{i}", shareIdentifier="busy") for i in range(2)]
        mine = head.submit("mine", shareIdentifier="idle")
        head.ticks(2)
        answer = head.api["explainJob"]({"jobId": later[0]})
        # the idle share's job starts first although it was submitted last
        assert answer["position"]["jobsAhead"] == 1
        assert answer["position"]["ahead"][0]["jobId"] == mine
        text = rendered(answer, {later[0]: "L0", mine: "M"})
        assert "position: 1 job ahead of it (fair-share order), needing 1 vCPUs" in text
        assert "    ahead: M mine (1 vCPUs share idle)" in text
        assert "  share: busy, priority 0" in text
        assert "queue q: decay 600 s, compute reservation 0%" in text
        rows = [s["shareIdentifier"] for s in answer["shares"]["shares"]]
        assert rows == ["idle", "busy"]
    finally:
        head.close()
