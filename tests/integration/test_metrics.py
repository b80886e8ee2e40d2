"""``/metrics`` of a real head, scraped after running jobs and read with prometheus_client's
own parser: the job counts by status, submissions, latencies, nodes; only with a token. And
a real Prometheus server scraping it, asked in PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mnp.api import metrics
from mnp.config import HeadInfo
from tests.integration.cluster import Cluster, free_port, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path / "home", nodes=2) as c:
        yield c


def scrape(c: Cluster, **headers: str) -> httpx.Response:
    return httpx.get(f"{c.url}/metrics", headers=headers, timeout=10)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_metrics_count_what_ran(cluster: Cluster) -> None:
    c = cluster
    info = HeadInfo.read(c.home / "head.json")
    assert info is not None and info.token
    auth = {"Authorization": f"Bearer {info.token}"}
    assert scrape(c).status_code == 401
    assert scrape(c, Authorization="Bearer wrong").status_code == 401
    ok = c.register("ok", ["true"])
    bad = c.register("bad", ["false"])
    twice = c.register("twice", ["false"], retryStrategy={"attempts": 2})
    jobs = [c.submit(f"ok{i}", ok) for i in range(3)] + [c.submit("bad", bad)]
    jobs.append(c.submit("twice", twice))
    for job_id in jobs:
        c.wait_status(job_id, "SUCCEEDED", "FAILED")
    q = ("queue", "default")

    def settled() -> Samples | None:
        got = parse(scrape(c, **auth).text)
        done = got.get(("mnp_jobs", (q, ("status", "SUCCEEDED"))))
        return got if done == 3 else None

    got = wait_for("3 SUCCEEDED jobs in the metrics", settled)
    assert got[("mnp_jobs", (q, ("status", "FAILED")))] == 2
    assert got[("mnp_job_submissions_total", (q,))] == 5
    assert got[("mnp_job_transitions_total", (q, ("status", "RUNNING")))] == 6  # a retry
    assert got[("mnp_job_scheduling_latency_seconds_count", (q,))] == 5  # first RUNNING only
    assert 0 < got[("mnp_job_scheduling_latency_seconds_sum", (q,))] < 60
    assert got[("mnp_job_run_seconds_count", (q, ("status", "SUCCEEDED")))] == 3
    assert got[("mnp_job_run_seconds_count", (q, ("status", "FAILED")))] == 2
    assert got[("mnp_job_retries_total", (q,))] == 1
    ce = ("compute_environment", "local")  # the embedded default
    assert got[("mnp_nodes", (ce, ("status", "ACTIVE")))] == 2
    assert got[("mnp_compute_environment_vcpus", (ce,))] == 4  # 2 nodes × 2 vCPUs
    assert got[("mnp_compute_environment_utilisation", (ce,))] == 0
    assert got[("mnp_store_bytes", ())] > 0
    assert ("mnp_event_loop_lag_seconds", ()) in got
    assert got[("mnp_http_request_duration_seconds_count", (("door", "native"),))] > 0
    assert got[("mnp_http_request_duration_seconds_count", (("door", "agent"),))] > 0
    # the native API's token header works too
    assert scrape(c, **{"X-Mnp-Token": info.token}).status_code == 200


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package")
def test_a_real_prometheus_scrapes_the_head(tmp_path: Path) -> None:
    """Prometheus on loopback, with its own config and data folder, scrapes the head with a
    metrics-only token; PromQL counts the jobs that succeeded."""
    assert PROMETHEUS is not None
    c = Cluster(tmp_path / "home", nodes=1)
    c.extra_env[metrics.TOKEN_ENV] = "scrape-only-token"
    token_file = tmp_path / "token"
    token_file.write_text("scrape-only-token")
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "mnp", "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{c.port}"]}],
            "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        }],
    }))  # fmt: skip
    port = free_port()
    with c:
        ok = c.register("ok", ["true"])
        jobs = [c.submit(f"ok{i}", ok) for i in range(3)]
        with open(tmp_path / "prometheus.log", "wb") as log:
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            for job_id in jobs:
                c.wait_status(job_id, "SUCCEEDED")

            def succeeded() -> float | None:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'sum(mnp_jobs{queue="default",status="SUCCEEDED"})'},
                    timeout=5,
                ).json()
                result = answer["data"]["result"]
                value = float(result[0]["value"][1]) if result else None
                return value if value == 3 else None

            assert wait_for("Prometheus to see 3 succeeded jobs", succeeded, timeout=60) == 3
            targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            [target] = targets["data"]["activeTargets"]
            assert target["health"] == "up"
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(10)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(10)
