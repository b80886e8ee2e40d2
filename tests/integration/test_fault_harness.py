"""The seeded fault harness (issue 11, "Tests CI must run"): a real head with real agents
runs several hundred jobs (standard, array, two-node MNP) while a seeded schedule drops,
duplicates and delays head↔node messages, restarts agents under their node ids, freezes one
past the lost-node timeout, fills the head's disk, and SIGKILLs the head between committing a
SubmitJob and answering it. Afterwards: every job reached its right end, no work ran twice
(counted from the jobs' own ledger, see faults/job.py), every submission made one job, and
``PRAGMA integrity_check`` of the store is ok.

One seed in CI; ``MNP_FAULT_SEEDS=1,2,3`` runs more. Each run prints a summary line.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.client.client import Client
from mnp.config import HeadInfo
from tests.integration.cluster import Cluster, wait_for
from tests.integration.faults.driver import Driver, HeadKiller
from tests.integration.faults.fleet import Fleet
from tests.integration.faults.ledger import duplicates, read_runs
from tests.integration.faults.proxy import MESSAGE_FAULTS, FaultProxy, Rates
from tests.integration.faults.workload import CE, QUEUE, Planned, plan, setup
from tests.tmpfs_support import tmpfs

pytestmark = pytest.mark.integration

SEEDS = [int(s) for s in os.environ.get("MNP_FAULT_SEEDS", "1").split(",") if s.strip()]
SUBMISSIONS = 240
SPAN_SECONDS = 45.0
NODES, VCPUS = 4, 2
LOST_AFTER = 4.0
RATES = Rates(
    drop_request=0.03, drop_reply=0.03, duplicate=0.04, delay=0.06,
)  # fmt: skip


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "96m") as mount:
        yield mount


def test_seeded_faults_lose_nothing_and_run_nothing_twice(
    seed: int, disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(seed)
    ledger = tmp_path / "ledger"
    started = time.monotonic()
    cluster = Cluster(disk / "home", nodes=0, lost_after=LOST_AFTER).start(wait_nodes=False)
    proxies: list[FaultProxy] = []
    fleet: Fleet | None = None
    try:
        setup(cluster.client, ledger)
        agents = FaultProxy(cluster.port, seed, RATES)
        killer = HeadKiller(cluster)
        front = FaultProxy(cluster.port, seed, on_reply=killer)
        proxies += [agents, front]
        token = HeadInfo.read(cluster.home / "head.json")
        assert token is not None and token.token
        fleet = Fleet(tmp_path / "nodes", agents.url, token.token, CE, NODES, VCPUS)
        agents.enabled.set()  # the joins are faulted too (a join whose answer is lost repeats)
        fleet.start()
        wait_for("the harness's agents to join", lambda: len(active(cluster)) == NODES)
        planned = plan(rng, seed, SUBMISSIONS)
        with Client(url=front.url, token=token.token, home=cluster.home, timeout=5) as sub:
            driver = Driver(cluster, fleet, sub, killer, disk, rng)
            driver.run(planned, SPAN_SECONDS)
        details = settle(cluster, planned, driver.job_ids)
        agents.enabled.clear()
        wrong, dups, units = verdicts(cluster, planned, driver.job_ids, details, ledger)
        names = Counter(j["jobName"] for j in cluster.client.list_jobs(queue=QUEUE))
    finally:
        cluster.stop()
        if fleet is not None:
            fleet.close()
        for p in proxies:
            p.close()
    integrity = integrity_check(cluster.home / "mnp.sqlite3")
    messages = ",".join(f"{k}:{agents.counts[k]}" for k in MESSAGE_FAULTS)
    summary = (
        f"fault-harness seed={seed} jobs={units} submissions={len(planned)} "
        f"kills={killer.kills} messages={messages} "
        f"agent_restarts={driver.counts['agent_restart']} "
        f"rejoins={driver.counts['agent_rejoins']} freezes={driver.counts['freeze']} "
        f"disk_fills={driver.counts['disk_fill']} host_retries={host_retries(details)} "
        f"submit_retries={driver.counts['submit_retries']} duplicates={len(dups)} "
        f"wrong_ends={len(wrong)} integrity={integrity} "
        f"seconds={time.monotonic() - started:.0f}"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert killer.kills == driver.counts["head_kill"], "a planned head kill did not happen"
    assert not wrong, wrong[:10]
    assert not dups, dups[:10]
    assert all(n == 1 for n in names.values()) and len(names) == len(planned), names
    assert integrity == "ok"


def test_the_ledger_counts_overlaps_and_unrecorded_reruns(tmp_path: Path) -> None:
    """The checker itself: what counts as work done twice, and what does not."""
    ledger = tmp_path / "ledger"
    ledger.write_text(
        "a 1 start 1.0 10 \na 1 alive 5.0 10 \n"  # killed without an end, seen until 5.0
        "a 2 start 4.0 11 \na 2 end 4.5 11 0\n"  # started before a/1 was last seen: overlap
        "b 1 start 1.0 20 \nb 1 end 1.1 20 0\nb 2 start 2.0 21 \nb 2 end 2.1 21 0\n"
        "c 1 start 1.0 30 \nc 1 end 1.1 30 0\nc 1 start 2.0 31 \nc 1 end 2.1 31 0\n"
    )
    runs = read_runs(ledger)
    assert duplicates(runs["a"], {}) == ["a: attempts 1 and 2 overlap in time"]
    lost = {"attempts": [{"statusReason": "Host: attempt lost on node n1"}, {}]}
    assert duplicates(runs["b"], lost) == [], "a rerun after a recorded loss is allowed"
    assert duplicates(runs["b"], {"attempts": [{"container": {"exitCode": 0}}, {}]}) == [
        "b: attempts 1 and 2 both completed while the head records attempt 1 as neither "
        "failed nor lost"
    ]
    assert duplicates(runs["c"], lost) == ["c: attempt 1 ran twice (pids 30, 31)"]


def active(c: Cluster) -> list[dict[str, Any]]:
    return [n for n in c.client.nodes(CE) if n["status"] == "ACTIVE"]


def settle(c: Cluster, planned: list[Planned], ids: dict[str, str]) -> dict[str, Any]:
    """Every submission's JobDetail (and its units') once every one has ended."""
    wanted = [ids[p.name] for p in planned]

    def ended() -> dict[str, Any] | None:
        ds = {d["jobId"]: d for d in c.client.describe_jobs(wanted)}
        done = len(ds) == len(wanted) and all(
            d["status"] in ("SUCCEEDED", "FAILED") for d in ds.values()
        )
        return ds if done else None

    details = wait_for("every job to end", ended, timeout=120, interval=0.5)
    units = [u for p in planned for u in p.units(ids[p.name]) if u not in details]
    details.update({d["jobId"]: d for d in c.client.describe_jobs(units)})
    return details


def verdicts(
    c: Cluster, planned: list[Planned], ids: dict[str, str], details: dict[str, Any], ledger: Path
) -> tuple[list[str], list[str], int]:
    """(jobs at a wrong end, work done twice, units of work checked)."""
    runs = read_runs(ledger)
    wrong, dups, units = [], [], 0
    for p in planned:
        job_id = ids[p.name]
        if details[job_id]["status"] != p.expected:
            wrong.append(f"{p.name} ({p.kind}) {job_id}: {details[job_id]['status']}")
        for unit in p.units(job_id):
            units += 1
            ran = runs.get(unit, [])
            if p.expected == "SUCCEEDED" and not any(r.exit_code == 0 for r in ran):
                wrong.append(f"{unit} ({p.kind}): SUCCEEDED without a completed run")
            dups += duplicates(ran, details.get(unit, {}))
    return wrong, dups, units


def host_retries(details: dict[str, Any]) -> int:
    """Attempts the head failed for their node (lost node, lost attempt, expired lease)."""
    return sum(
        str(a.get("statusReason") or "").startswith("Host")
        for d in details.values()
        for a in d.get("attempts") or []
    )


def integrity_check(db: Path) -> str:
    """``PRAGMA integrity_check`` of the stopped head's store, opened read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
