"""A real head node whose home is on a full disk (a small tmpfs, filled): a submission is
refused with a retryable 503 that says the head could not save, nothing of it is kept, and
once space is free again the same head works on (root only: it mounts the tmpfs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.errors import TransientError
from tests.integration.cluster import Cluster
from tests.tmpfs_support import tmpfs
from tests.unit.test_durable import fill

pytestmark = pytest.mark.integration


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "32m") as mount:
        yield mount


def test_a_full_disk_refuses_submissions_and_the_head_recovers(disk: Path) -> None:
    with Cluster(disk / "home", nodes=1) as c:
        quick = c.register("quick", ["true"])
        body = {"jobName": "on-full-disk", "jobQueue": "default", "jobDefinition": quick}
        before = c.client.status()["jobCounts"]
        filler = fill(disk)
        try:
            with pytest.raises(TransientError, match=r"could not save.*HTTP 503"):
                c.client.call("submitJob", body)
            # nothing of it: no job in memory (listed) nor on disk (counted)
            listed = c.client.call("listJobs", {"jobQueue": "default", "jobStatus": "SUBMITTED"})
            assert listed["jobSummaryList"] == []
            assert c.client.status()["jobCounts"] == before
        finally:
            filler.unlink()
        job_id = c.submit("after", quick)
        assert c.wait_status(job_id, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
