"""Indexed placement gives the answer the scan over every node gives.

Placement reads each environment's nodes from a :class:`FreeIndex` (nodes grouped by free
vCPUs) instead of looking at every node for every job; the choice must stay the scan's: the
node with the most vCPUs free that fits and is not reserved for another job, ties to the
lowest node id, in the queue's environments in order, and the same reason when nothing fits.
Random snapshots (seeded) check it job by job, and whole passes against a pass that scans.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mnp.scheduler import reconcile as rec
from mnp.scheduler.reconcile import CEView, NodeView, QueueView, Snapshot, reconcile
from mnp.scheduler.reservations import Book, FreeIndex
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, make_job

SHAPES = (
    Resources(4, 8192, 0),
    Resources(8, 16384, 1),
    Resources(2, 2048, 0),
    Resources(16, 4096, 2),
)


def _free(rng: random.Random, cap: Resources) -> Resources:
    """Some of ``cap`` busy, in steps that keep ties on free vCPUs common."""
    vcpus = rng.choice([cap.vcpus, 0.0, rng.randrange(0, int(cap.vcpus * 2) + 1) / 2])
    return Resources(vcpus, rng.randrange(0, cap.memory_mib + 1, 256), rng.randint(0, cap.gpus))


def _job(rng: random.Random, i: int, now: int) -> Job:
    need = Resources(
        rng.choice([0.5, 1, 1, 2, 3, 4, 8, 20]),
        rng.choice([0, 0, 256, 1024, 4096, 20000]),
        rng.choice([0, 0, 0, 1, 3]),
    )
    job = make_job(f"j{i:03d}", JobStatus.RUNNABLE, created_at=now - rng.choice([0, 600_000]),
                   resources=need)  # fmt: skip
    timeout = rng.choice([None, 30, 3600])
    return replace(job, spec=replace(job.spec, timeout_seconds=timeout)) if timeout else job


def _snapshot(rng: random.Random) -> Snapshot:
    now = T0 + 1_000_000
    envs = [f"ce{i}" for i in range(rng.randint(1, 3))]
    nodes = []
    for i in range(rng.randint(0, 40)):
        cap = rng.choice(SHAPES)
        ends = rng.choice([None, now + 10_000, now + 7_200_000])
        nodes.append(NodeView(
            node_id=f"n{rng.randrange(1000):03d}-{i}",
            compute_environment=rng.choice(envs),
            status=rng.choice([NodeStatus.ACTIVE] * 5 + [NodeStatus.LAUNCHING]),
            capacity=cap,
            free=(free := _free(rng, cap)),
            last_seen_ms=now,
            releases=((ends, cap.minus(free)),),
            draining=rng.random() < 0.05,
        ))  # fmt: skip
    views = {
        c: CEView(c, rng.random() < 0.9, 0, SHAPES, max_nodes=len(nodes),
                  default_memory_mib=rng.choice([None, None, 512]))
        for c in envs
    }  # fmt: skip
    order = tuple(rng.sample(envs, len(envs)))
    return Snapshot(
        now_ms=now,
        queues=[QueueView("q", 1, order)],
        compute_environments=views,
        nodes=nodes,
        submitted=[],
        pending=[],
        dependency_status={},
        runnable={"q": [_job(rng, i, now) for i in range(rng.randint(1, 30))]},
        lost_after_ms=3_600_000,
        launch_timeout_ms=3_600_000,
        reserve_after_ms=rng.choice([None, 300_000]),
        default_memory_mib=rng.choice([None, 1024]),
        explain=True,
    )


def _books(snap: Snapshot) -> tuple[Book, Book, dict[str, list[str]]]:
    by_ce: dict[str, list[str]] = {}
    free: dict[str, Resources] = {}
    for n in snap.nodes:
        if n.status == NodeStatus.ACTIVE:
            free[n.node_id] = n.free
            by_ce.setdefault(n.compute_environment, []).append(n.node_id)
    indexed = dict(free)
    return Book(snap, indexed, FreeIndex(by_ce, indexed)), Book(snap, dict(free)), by_ce


@pytest.mark.parametrize("seed", range(300))
def test_indexed_fit_equals_the_scan_job_by_job(seed: int) -> None:
    rng = random.Random(seed)
    snap = _snapshot(rng)
    indexed, scanned, by_ce = _books(snap)
    caps = {n.node_id: n.capacity for n in snap.nodes}
    ids = list(indexed.free)
    for _ in range(rng.randint(0, 3)):  # some nodes reserved for an older job
        if ids:
            nodes = tuple(rng.sample(ids, min(len(ids), rng.randint(1, 3))))
            start = rng.choice([None, snap.now_ms + 60_000])
            for book in (indexed, scanned):
                book.reserve("old", nodes, start)
    ces = list(snap.queues[0].compute_environments)
    for job in snap.runnable["q"]:
        usable = rng.sample(ces, rng.randint(0, len(ces)))
        end = indexed.end_of(job)
        got = rec._best_fit(job, job.resources, usable, by_ce, caps, indexed, end, snap)
        want = rec._scan_fit(job, job.resources, usable, by_ce, caps, scanned, end, snap)
        assert got == want
        if not isinstance(got, str):
            node, held, _ = got
            indexed.took(node, held, end)
            scanned.took(node, held, end)
        assert indexed.free == scanned.free
        index = indexed.index
        assert index is not None
        for c in ces:
            most = max((indexed.free[n].vcpus for n in by_ce.get(c, ())), default=None)
            assert index.most_free(c) == most


@pytest.mark.parametrize("seed", range(300, 500))
def test_indexed_pass_equals_a_scanning_pass(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _snapshot(random.Random(seed))
    got = reconcile(snap)
    monkeypatch.setattr(rec, "_best_fit", rec._scan_fit)
    assert got == reconcile(snap)


def test_index_files_a_node_under_its_new_free_vcpus() -> None:
    free = {"a": Resources(4, 0, 0), "b": Resources(4, 0, 0), "c": Resources(2, 0, 0)}
    index = FreeIndex({"ce": ["c", "b", "a"]}, free)
    assert [(v, list(ns)) for v, ns in index.fitting("ce", 1)] == [(4, ["a", "b"]), (2, ["c"])]
    free["a"] = Resources(2, 0, 0)
    index.moved("a", 4)
    assert [(v, list(ns)) for v, ns in index.fitting("ce", 1)] == [(4, ["b"]), (2, ["a", "c"])]
    assert [v for v, _ in index.fitting("ce", 3)] == [4]
    assert index.most_free("ce") == 4 and index.most_free("other") is None
