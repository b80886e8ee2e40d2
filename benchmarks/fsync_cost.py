#!/usr/bin/env python
"""What the store's fsync policy costs: commits per second of the head's real write path
(:meth:`mnp.store.sqlite.Store.save_jobs` in one transaction, as a tick or a submission
writes) with ``PRAGMA synchronous=NORMAL`` (the head's setting) and ``FULL``.

``python benchmarks/fsync_cost.py [--dir DIR] [--commits N] [--rounds R]``; DIR must be on
the disk the head's home would use (a tmpfs does not fsync, so it shows no cost). For 1 and
50 jobs per commit, R rounds alternating the two settings: medians of commits/s and p99
and worst-commit latency (the longest a commit holds the head's event loop), and FULL ÷ NORMAL
from the same run; writes ``results-fsync.json`` (the benchmarks
README shows it) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mnp.spec.definitions import JobSpec, RetryStrategy
from mnp.spec.jobs import Job
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.sqlite import Store

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-fsync.json"


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


def run(folder: Path, commits: int, sizes: tuple[int, ...], rounds: int) -> JSON:
    """``rounds`` alternating NORMAL/FULL runs per jobs-per-commit size: medians and the ratio
    FULL/NORMAL measured in the same run."""
    out: JSON = {"commits_per_run": commits, "rounds": rounds, "by_jobs_per_commit": {}}
    for per_commit in sizes:
        rates: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
        p99s: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
        worst: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
        for _ in range(rounds):
            for setting in ("NORMAL", "FULL"):
                lat = sorted(measure(folder, setting, commits, per_commit))
                rates[setting].append(len(lat) / sum(lat))
                p99s[setting].append(lat[int(len(lat) * 0.99) - 1] * 1000)
                worst[setting].append(lat[-1] * 1000)
                (folder / f"bench-{setting.lower()}.db").unlink()
        row: JSON = {
            k: {"median_commits_per_s": round(statistics.median(rates[k])),
                "median_p99_ms": round(statistics.median(p99s[k]), 3),
                "median_max_ms": round(statistics.median(worst[k]), 3)}
            for k in rates
        }
        row["full_to_normal_ratio"] = round(
            row["FULL"]["median_commits_per_s"] / row["NORMAL"]["median_commits_per_s"], 3
        )
        out["by_jobs_per_commit"][str(per_commit)] = row
    return out


def table(results: JSON) -> str:
    """The README's table of :func:`run`'s results."""
    lines = [
        "| jobs per commit | NORMAL commits/s (p99, max) | FULL commits/s (p99, max) "
        "| FULL ÷ NORMAL |",
        "|---|---|---|---|",
    ]
    for size, row in results["by_jobs_per_commit"].items():
        n, f = row["NORMAL"], row["FULL"]
        lines.append(
            f"| {size} | {n['median_commits_per_s']:,} ({n['median_p99_ms']}, "
            f"{n.get('median_max_ms', '–')} ms) | "
            f"{f['median_commits_per_s']:,} ({f['median_p99_ms']}, "
            f"{f.get('median_max_ms', '–')} ms) | "
            f"{row['full_to_normal_ratio']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="a folder on the disk to measure")
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = run(Path(tmp), args.commits, (1, 50), args.rounds)
    results["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
