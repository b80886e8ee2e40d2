"""The store's cost of a submission: its own commit, then its first status change in the
batch of the scheduling pass after it, for the committed store (``--baseline REV``, loaded as
:mod:`benchmarks.storecost` loads it) and this tree's, in the same run and on the same data.

``python -m benchmarks.submitstore [--baseline REV] [--jobs 3000] [--rounds 3]
[--out benchmarks/results-submitstore.json]``

Three ways, each on a store already holding 20,000 finished jobs:

- *committed*: the baseline's submission (``allocate_number``, ``save_spec`` and
  ``save_jobs`` of the new job in its transaction) with random (version 4) ids;
- *intake, random ids*: this tree's (one :meth:`~mnp.store.sqlite.Store.intake` row; the
  pass's ``save_jobs`` settles it), with version 4 ids;
- *intake, ordered ids*: the same with :func:`mnp.spec.ids.new_id`, as the head makes them.

Every ``batch`` submissions one pass moves them to RUNNABLE in one transaction (the submit
benchmark's head batches 10–40 per pass; a head whose nodes take every job at once, 1).
Figures: this thread's CPU per job, checkpoints included as the store makes them (median of
the rounds; the ways alternate within a round), and the WAL frames written per job (pages:
the same on every run), counted in a run of their own with checkpoints held off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.storecost import committed_store, measure
from mnp.spec.definitions import JobSpec, RetryStrategy
from mnp.spec.ids import new_id
from mnp.spec.jobs import Job
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus, transition
from mnp.store import sqlite as this_store
from mnp.store.sqlite import Store

JSON = dict[str, Any]
AT = 1_700_000_000_000
HISTORY = 20_000
BATCHES = (1, 10, 50)
COUNTED = 500
"""Submissions whose WAL frames are counted (a run of their own)."""
FRAME = 4096 + 24
"""A WAL frame: a page and its header."""
WAYS = ("committed", "intake, random ids", "intake, ordered ids")


def _job(job_id: str, i: int, status: JobStatus = JobStatus.SUBMITTED) -> Job:
    spec = JobSpec(
        spec_id=job_id, name=f"job-{i % 97}", queue="q",
        definition_arn="arn:aws:batch:local:000000000000:job-definition/t:1",
        definition_name="t", container=ContainerSpec(["true"], {}, Resources(1, 0, 0)),
        parameters={}, depends_on=[], retry=RetryStrategy(), timeout_seconds=None,
        array_size=None, tags={}, platform_capabilities=["EC2"], submitted_at=AT + i,
    )  # fmt: skip
    return Job(job_id=job_id, spec=spec, status=status, created_at=AT + i,
               history=[HistoryEntry(status, AT + i, None)])  # fmt: skip


def _random_id() -> str:
    return str(uuid.uuid4())


def _store(module: Any, root: Path, way: str) -> Any:
    path = root / f"{way.replace(' ', '').replace(',', '-')}.db"
    store = module.Store(path)
    done = [_job(_random_id(), i, JobStatus.SUCCEEDED) for i in range(HISTORY)]
    for start in range(0, HISTORY, 5000):
        with store.transaction():
            for j in done[start : start + 5000]:
                store.save_spec(j.spec)
            store.save_jobs(done[start : start + 5000])
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return store


def frames(store: Any, submit: Callable[[Any, Job], None], make_id: Callable[[], str],
           batch: int, first: int) -> float:  # fmt: skip
    """WAL frames per job over :data:`COUNTED` submissions and their passes, counted by the
    WAL's growth (checkpoints held off meanwhile: the CPU runs keep the store's own)."""
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    (auto,) = store.db.execute("PRAGMA wal_autocheckpoint").fetchone()
    store.db.execute("PRAGMA wal_autocheckpoint=0")
    wal = Path(str(store.path) + "-wal")
    before = wal.stat().st_size
    one_way(store, submit, make_id, COUNTED, batch, first)
    grown = wal.stat().st_size - before
    store.db.execute(f"PRAGMA wal_autocheckpoint={int(auto)}")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return grown / FRAME / COUNTED


def _submit_committed(store: Any, job: Job) -> None:
    with store.transaction():
        job.spec.number = store.allocate_number(job.job_id, 1)
        store.save_spec(job.spec)
        store.save_jobs([job])


def _submit_intake(store: Store, job: Job) -> None:
    with store.transaction():
        store.intake(job)


def one_way(store: Any, submit: Callable[[Any, Job], None], make_id: Callable[[], str],
            jobs: int, batch: int, first: int) -> float:  # fmt: skip
    """µs of this thread's CPU per job for ``jobs`` submissions and their passes of
    ``batch``."""
    pending: list[Job] = []
    t0 = time.thread_time()
    for i in range(first, first + jobs):
        job = _job(make_id(), i)
        submit(store, job)
        pending.append(job)
        if len(pending) == batch:
            for j in pending:
                transition(j, JobStatus.RUNNABLE, AT + i, None)
            with store.transaction():
                store.save_jobs(pending)
            pending = []
    return (time.thread_time() - t0) * 1e6 / jobs


def run(jobs: int, rounds: int, baseline: str) -> JSON:
    committed = committed_store(baseline)
    ways: dict[str, tuple[Any, Callable[[Any, Job], None], Callable[[], str]]] = {
        WAYS[0]: (committed, _submit_committed, _random_id),
        WAYS[1]: (this_store, _submit_intake, _random_id),
        WAYS[2]: (this_store, _submit_intake, new_id),
    }
    out: JSON = {"baseline": baseline, "jobs": jobs, "rounds": rounds, "history": HISTORY,
                 "batches": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stores = {way: _store(module, root, way) for way, (module, _, _) in ways.items()}
        for batch in BATCHES:
            cpu: dict[str, list[float]] = {w: [] for w in ways}
            first = HISTORY + BATCHES.index(batch) * (rounds * jobs + COUNTED)
            counted = {way: frames(stores[way], submit, make_id, batch, first)
                       for way, (_, submit, make_id) in ways.items()}  # fmt: skip
            for r in range(rounds):
                order = list(ways) if r % 2 == 0 else list(reversed(ways))
                for way in order:
                    _, submit, make_id = ways[way]
                    start = first + COUNTED + r * jobs
                    cpu[way].append(one_way(stores[way], submit, make_id, jobs, batch, start))
            out["batches"][str(batch)] = {
                way: {
                    "cpu_us_per_job": round(statistics.median(cpu[way]), 1),
                    "cpu_us_runs": [round(x, 1) for x in cpu[way]],
                    "wal_frames_per_job": round(counted[way], 2),
                }
                for way in ways
            }
            print(f"batch {batch}: {out['batches'][str(batch)]}", file=sys.stderr, flush=True)
        for store in stores.values():
            store.close()
    return out


def table(results: JSON) -> str:
    lines = ["| jobs per pass | way | store CPU per job (runs) | WAL frames per job |",
             "|---|---|---|---|"]  # fmt: skip
    for batch, ways in results["batches"].items():
        base = ways[WAYS[0]]["cpu_us_per_job"]
        for way, r in ways.items():
            ratio = "" if way == WAYS[0] else f" ({r['cpu_us_per_job'] / base:.2f} ×)"
            runs = ", ".join(f"{x:.0f}" for x in r["cpu_us_runs"])
            lines.append(f"| {batch} | {way} | {r['cpu_us_per_job']:.0f} µs{ratio} ({runs}) "
                         f"| {r['wal_frames_per_job']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--baseline", default="HEAD", help="the commit whose store is 'committed'")
    args = ap.parse_args()
    args.sizes = ""
    measure(lambda _sizes, baseline: run(args.jobs, args.rounds, baseline), table, args)


if __name__ == "__main__":
    main()
