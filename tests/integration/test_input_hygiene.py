"""Issue 11 through a real head node: a job no poll reply could encode is refused at the
door, and the node it would have wedged still runs the next job."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mnp.config import HeadInfo
from mnp.spec.protocol import TOKEN_HEADER
from tests.integration.cluster import Cluster


@pytest.mark.integration
def test_a_surrogate_job_is_refused_and_the_node_still_runs_jobs(tmp_path: Path) -> None:
    with Cluster(tmp_path / "home", nodes=1) as c:
        c.register("hello", ["sh", "-c", "echo ran $A"])
        info = HeadInfo.read(c.home / "head.json")
        assert info is not None and info.token is not None
        surrogate = (
            b'{"jobName": "bad", "jobQueue": "default", "jobDefinition": "hello", '
            b'"containerOverrides": {"environment": [{"name": "A", "value": "\\ud800"}]}}'
        )
        r = httpx.post(
            f"{c.url}/api/v1/submitJob", content=surrogate, headers={TOKEN_HEADER: info.token}
        )
        assert r.status_code == 400
        assert r.json()["errors"][0]["path"] == "containerOverrides.environment[0].value"
        job_id = c.submit(
            "good", "hello", containerOverrides={"environment": [{"name": "A", "value": "ok"}]}
        )
        assert c.wait_status(job_id, "SUCCEEDED", "FAILED", timeout=20)["status"] == "SUCCEEDED"
        assert "ran ok" in c.logs(job_id)
