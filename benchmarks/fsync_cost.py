#!/usr/bin/env python
"""What the store's fsync policy costs: commits per second of the head's real write path
(:meth:`mnp.store.sqlite.Store.save_jobs` in one transaction, as a tick or a submission
writes) with ``PRAGMA synchronous=NORMAL`` (the head's setting) and ``FULL``.

``python benchmarks/fsync_cost.py [--dir DIR] [--commits N] [--jobs-per-commit K]``; DIR must
be on the disk the head's home would use (a tmpfs does not fsync, so it shows no cost).
Prints one line per setting: commits/s, mean and p99 commit latency in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mnp.spec.definitions import JobSpec, RetryStrategy
from mnp.spec.jobs import Job
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.sqlite import Store


def _spec() -> JobSpec:
    return JobSpec(
        spec_id="bench-spec",
        name="bench",
        queue="q",
        definition_arn="arn:aws:batch:local:000000000000:job-definition/bench:1",
        definition_name="bench",
        container=ContainerSpec(["true"], {"GREETING": "hello"}, Resources(1, 256, 0)),
        parameters={},
        depends_on=[],
        retry=RetryStrategy(),
        timeout_seconds=None,
        array_size=None,
        tags={},
        platform_capabilities=[],
        submitted_at=0,
    )


def measure(folder: Path, synchronous: str, commits: int, per_commit: int) -> list[float]:
    """Latencies (seconds) of ``commits`` transactions, each saving ``per_commit`` new jobs."""
    store = Store(folder / f"bench-{synchronous.lower()}.db")
    store.db.execute(f"PRAGMA synchronous={synchronous}")
    spec = _spec()
    with store.transaction():
        store.save_spec(spec)
    out = []
    for c in range(commits):
        jobs = [
            Job(
                job_id=f"job-{c}-{k}",
                spec=spec,
                status=JobStatus.SUBMITTED,
                created_at=c,
                history=[HistoryEntry(JobStatus.SUBMITTED, c, None)],
            )
            for k in range(per_commit)
        ]
        t0 = time.perf_counter()
        with store.transaction():
            store.save_jobs(jobs)
        out.append(time.perf_counter() - t0)
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="a folder on the disk to measure")
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--jobs-per-commit", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for setting in ("NORMAL", "FULL"):
            lat = sorted(measure(Path(tmp), setting, args.commits, args.jobs_per_commit))
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(
                f"synchronous={setting:<6} {len(lat) / sum(lat):8.0f} commits/s  "
                f"mean {statistics.mean(lat) * 1000:.3f} ms  p99 {p99 * 1000:.3f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
