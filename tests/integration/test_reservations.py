"""A real head: a 2-node multi-node job behind a stream of small jobs starts within its
reservation age (``MNP_RESERVE_AFTER_SECONDS``, set low), while backfill runs the small jobs
until then."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.scheduler import reasons
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

RESERVE_AFTER = 4.0
SMALL_SECONDS = 1.5
STARTED = ("STARTING", "RUNNING", "SUCCEEDED", "FAILED")


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "home", nodes=2, vcpus=2)
    c.extra_env["MNP_RESERVE_AFTER_SECONDS"] = str(RESERVE_AFTER)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_a_gang_behind_a_stream_of_small_jobs_starts_within_its_reservation_age(
    two: Cluster,
) -> None:
    c = two
    c.register(
        "small",
        ["sleep", str(SMALL_SECONDS)],
        container={"resourceRequirements": [
            {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}]},
    )  # fmt: skip
    c.client.register_job_definition({
        "jobDefinitionName": "gang", "type": "multinode",
        "nodeProperties": {"numNodes": 2, "mainNode": 0, "mnp": {"readyTimeoutSeconds": 20},
                           "nodeRangeProperties": [
                               {"targetNodes": "0", "container": {"command": ["true"]}},
                               {"targetNodes": "1", "container": {}}]}})  # fmt: skip
    first = [c.submit(f"fill{i}", "small") for i in range(6)]
    wait_for("the nodes to be busy", lambda: c.client.describe(first[0])["status"] in STARTED)
    gang = c.submit("gang", "gang")
    submitted = time.monotonic()
    stream: list[str] = []
    started_at: float | None = None
    reason_seen: set[str | None] = set()
    deadline = submitted + 30
    # 4 jobs of 1.5 s a second on 4 vCPUs: more than the nodes finish, always a backlog
    while time.monotonic() < deadline:
        stream += [c.submit(f"s{len(stream) + i}", "small") for i in range(4)]
        d = c.client.describe(gang)
        reason_seen.add(reasons.kind_of(d.get("statusReason")))
        if d["status"] in STARTED:
            started_at = time.monotonic()
            break
        time.sleep(1.0)  # the stream's pace, not a synchronisation
    assert started_at is not None, f"the gang never started; reasons {reason_seen}"
    waited = started_at - submitted
    # it reserves at the age; the small jobs on its nodes end within SMALL_SECONDS
    assert waited <= RESERVE_AFTER + SMALL_SECONDS + 6, waited
    ran = [j for j in stream if c.client.describe(j)["status"] in STARTED]
    assert ran, "backfill ran none of the jobs submitted after the gang"
    assert reasons.RESERVING in reason_seen or waited < RESERVE_AFTER + 2, reason_seen
    d = c.wait_status(gang, "SUCCEEDED", "FAILED", timeout=30)
    assert d["status"] == "SUCCEEDED", d
