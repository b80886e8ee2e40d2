"""A head whose event loop stalls for longer than the lost-node timeout (the process stopped
with SIGSTOP, then continued) loses no node, and the jobs on them keep running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

LOST_AFTER = 3.0
STALL = LOST_AFTER + 2


@pytest.mark.integration
def test_a_stalled_head_loses_no_node(tmp_path: Path) -> None:
    with Cluster(tmp_path / "home", nodes=2, lost_after=LOST_AFTER) as c:
        d = c.register("sleeper", ["sleep", "8"])
        job = c.submit("long", d)
        c.wait_status(job, "RUNNING")
        assert c.proc is not None
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(STALL)  # the stall itself: the head process is stopped all along
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)

        def finished_or_broken() -> tuple[dict[str, str], dict[str, Any]] | None:
            # returns at once on a lost node or a failed job (wait_for would retry an assert)
            statuses = {n["nodeId"]: n["status"] for n in c.client.nodes()}
            d = c.client.describe(job)
            broken = set(statuses.values()) != {"ACTIVE"} or d["status"] not in (
                "RUNNING",
                "SUCCEEDED",
            )
            return (statuses, d) if broken or d["status"] == "SUCCEEDED" else None

        statuses, described = wait_for("the job to finish", finished_or_broken)
        assert set(statuses.values()) == {"ACTIVE"}, f"a node was lost: {statuses}"
        assert described["status"] == "SUCCEEDED", described.get("statusReason")
        assert len(described["attempts"]) == 1
        lag = c.client.status()["loopLag"]
        assert lag["maxMs"] >= (STALL - 1) * 1000, lag
