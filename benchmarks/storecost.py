"""Store costs against history: restart, ListJobs pages and DescribeLogStreams by last event,
for a committed store (``git show REV:mnp/store/…``, loaded as a module of its own; default
HEAD) and this tree's, in the same run and on the same data.

``python -m benchmarks.storecost [--sizes 100000,1000000] [--baseline REV]
[--out benchmarks/results-storecost.json]``

For each size, one store is built by the committed code: ``size`` SUCCEEDED jobs (one attempt
and six history entries each, half of them with share identifier ``teamA`` and the other
definition; the oldest 100 a third definition and share of their own) plus 1,000 RUNNING
ones, in one queue. A copy is opened by this tree's store,
which migrates it (timed: a one-time cost), and then each store is timed on the same reads:

- restart: open the store and load the unfinished jobs with their history (what
  ``HeadState.restore`` asks of it), median of 3;
- ListJobs: the default page (RUNNING, 1,000 jobs), a page of 100 of every status at the
  start and 50,000 jobs deep (the committed code: ``OFFSET``; this tree: the key of the row
  before, as a ``nextToken`` carries it), and the first page of the JOB_DEFINITION and
  SHARE_IDENTIFIER filters (one matching half the jobs, one only the oldest 100), median of
  5;
- DescribeLogStreams ``orderBy=LastEventTime``: a page of 50 newest first (the committed
  code sorts every stream by its files' times; this tree reads ended streams off an index
  and looks at the 1,000 running ones);
- the write cost of this tree's extra indexes: 10,000 new jobs saved, then each moved to
  RUNNABLE, in transactions of 100, both stores.

Prints a JSON document and the README table; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mnp.service.logs import LogReader
from mnp.spec.definitions import JobSpec, RetryStrategy
from mnp.spec.jobs import Attempt, Job
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.queries import JobQuery
from mnp.store.sqlite import Store

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
AT = 1_700_000_000_000
RUNNING = 1_000
BATCH = 5_000
DEEP = 50_000
RARE = 100
"""The oldest jobs have a definition and share of their own: a filter a page finds only at
the end of the history."""
ARN = "arn:aws:batch:local:000000000000:job-definition/{}:1"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def committed_store(rev: str) -> Any:
    """``mnp.store.sqlite`` as commit ``rev`` has it (with its ``queries`` and ``streams``),
    as a package of its own beside this tree's."""
    pkg = types.ModuleType("committed_store")
    pkg.__path__ = []
    sys.modules["committed_store"] = pkg
    for name in ("queries", "streams", "sqlite"):
        text = subprocess.run(
            ["git", "show", f"{rev}:mnp/store/{name}.py"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        text = text.replace("from mnp.store.queries", "from committed_store.queries")
        text = text.replace("from mnp.store.streams", "from committed_store.streams")
        text = text.replace(
            "from mnp.store import events, streams, tokens",
            "from mnp.store import events, tokens\nfrom committed_store import streams",
        )
        module = types.ModuleType(f"committed_store.{name}")
        module.__file__ = f"<{rev}:mnp/store/{name}.py>"
        sys.modules[module.__name__] = module
        exec(compile(text, module.__file__, "exec"), module.__dict__)
        setattr(pkg, name, module)
    return importlib.import_module("committed_store.sqlite")


def _spec(spec_id: str, definition: str, share: str | None) -> JobSpec:
    return JobSpec(
        spec_id=spec_id, name="job", queue="q", definition_arn=ARN.format(definition),
        definition_name=definition, container=ContainerSpec(["true"], {}, Resources(1, 0, 0)),
        parameters={}, depends_on=[], retry=RetryStrategy(), timeout_seconds=None,
        array_size=None, tags={}, platform_capabilities=["EC2"], submitted_at=AT,
        share_identifier=share,
    )  # fmt: skip


def _job(job_id: str, spec: JobSpec, at: int, done: bool) -> Job:
    steps = [JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE, JobStatus.STARTING,
             JobStatus.RUNNING] + ([JobStatus.SUCCEEDED] if done else [])  # fmt: skip
    attempt = Attempt(1, "n1", "10.0.0.1", "ce", f"{spec.definition_name}/default/{job_id}",
                      at + 3, at + 4, at + 10 if done else None, 0 if done else None)  # fmt: skip
    return Job(
        job_id=job_id,
        spec=spec,
        status=steps[-1],
        created_at=at,
        started_at=at + 4,
        stopped_at=at + 10 if done else None,
        attempts=[attempt],
        history=[HistoryEntry(s, at + k * 2, None) for k, s in enumerate(steps)],
    )


def build(store: Any, finished: int) -> float:
    """``finished`` SUCCEEDED jobs, then the RUNNING ones (newest); seconds it took."""
    specs = [_spec("spec-a", "sleep", "teamA"), _spec("spec-b", "echo", None),
             _spec("spec-r", "rare", "teamR")]  # fmt: skip
    t0 = time.perf_counter()
    with store.transaction():
        for s in specs:
            store.save_spec(s)
    total = finished + RUNNING
    for start in range(0, total, BATCH):
        batch = [
            _job(f"j{i:08d}", specs[2] if i < RARE else specs[i % 2], AT + i, i < finished)
            for i in range(start, min(total, start + BATCH))
        ]
        with store.transaction():
            store.save_jobs(batch)
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def restart(module: Any, path: Path) -> tuple[float, int]:
    def once() -> int:
        store = module.Store(path)
        try:
            return len(store.load_active_jobs())
        finally:
            store.close()

    seconds, loaded = timed(once, 3)
    return seconds, int(loaded)


def listings(store: Any, new: bool, deep: int) -> JSON:
    """Seconds (median of 5) of each ListJobs read; ``new``: this tree's query fields."""
    out: JSON = {}

    def page(**q: Any) -> Callable[[], int]:
        return lambda: len(store.query_jobs(JobQuery(queue="q", **q)))

    out["default_running_1000"] = timed(page(statuses=["RUNNING"], limit=1001), 5)[0]
    out["all_first_100"] = timed(page(limit=101), 5)[0]
    if new:
        key = store.db.execute(
            "SELECT created_at, rowid FROM jobs WHERE parent_id IS NULL AND queue = 'q' "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1 OFFSET ?",
            (deep - 1,),
        ).fetchone()
        out["all_deep_100"] = timed(page(limit=101, after=tuple(key)), 5)[0]
        exact: JSON = {"definition": ARN.format("echo"), "definition_exact": True}
    else:
        out["all_deep_100"] = timed(page(limit=101, offset=deep), 5)[0]
        exact = {"definition": ARN.format("echo") + '"'}
    out["definition_first_100"] = timed(page(limit=101, **exact), 5)[0]
    out["share_first_100"] = timed(page(limit=101, share_identifier="teamA"), 5)[0]
    rare: JSON = (
        {"definition": ARN.format("rare"), "definition_exact": True}
        if new
        else {"definition": ARN.format("rare") + '"'}
    )
    out["rare_definition_first_100"] = timed(page(limit=101, **rare), 5)[0]
    out["rare_share_first_100"] = timed(page(limit=101, share_identifier="teamR"), 5)[0]
    return out


def log_streams(store: Any, root: Path, new: bool) -> float:
    files = SimpleNamespace(log_path=lambda job, attempt, stream: root / f"{job}.{stream}")
    reader = LogReader(cast(Any, SimpleNamespace(store=store)), cast(Any, files))
    if new:
        return timed(lambda: reader.by_last_event(descending=True, limit=51), 3)[0]

    def committed() -> list[Any]:  # the committed DescribeLogStreams: sort every stream
        every = sorted(
            reader.find_streams(), key=lambda r: (reader.last_write_ms(r), r.name), reverse=True
        )
        return every[:51]

    return timed(committed, 3)[0]


def writes(module: Any, root: Path) -> JSON:
    """Jobs saved per second: 10,000 new ones, then each moved to RUNNABLE (100 a commit)."""
    path = root / f"writes-{module.__name__}.sqlite3"
    store = module.Store(path)
    try:
        spec = _spec("spec-w", "sleep", "teamA")
        with store.transaction():
            store.save_spec(spec)
        jobs = [_job(f"w{i:06d}", spec, AT + i, False) for i in range(10_000)]
        for j in jobs:
            j.status, j.history, j.history_saved = JobStatus.SUBMITTED, j.history[:1], 0
        t0 = time.perf_counter()
        for k in range(0, len(jobs), 100):
            with store.transaction():
                store.save_jobs(jobs[k : k + 100])
        insert = time.perf_counter() - t0
        for j in jobs:
            j.status = JobStatus.RUNNABLE
            j.history.append(HistoryEntry(JobStatus.RUNNABLE, AT, None))
        t0 = time.perf_counter()
        for k in range(0, len(jobs), 100):
            with store.transaction():
                store.save_jobs(jobs[k : k + 100])
        update = time.perf_counter() - t0
    finally:
        store.close()
    return {"insert_jobs_per_s": round(len(jobs) / insert), "update_jobs_per_s":
            round(len(jobs) / update)}  # fmt: skip


def run(sizes: list[int], baseline: str) -> JSON:
    old = committed_store(baseline)
    new = sys.modules["mnp.store.sqlite"]
    results: JSON = {"baseline": baseline, "sizes": [], "writes": {}}
    with tempfile.TemporaryDirectory(prefix="mnp-storecost-") as tmp:
        root = Path(tmp)
        results["writes"] = {"committed": writes(old, root), "this_tree": writes(new, root)}
        for size in sizes:
            _say(f"storecost: building {size:,} finished jobs with the committed store")
            old_path, new_path = root / f"old-{size}.sqlite3", root / f"new-{size}.sqlite3"
            store = old.Store(old_path)
            try:
                built = build(store, size)
            finally:
                store.close()
            deep = min(DEEP, size // 2)
            shutil.copyfile(old_path, new_path)
            t0 = time.perf_counter()
            Store(new_path).close()  # this tree migrates the copy
            migrate = time.perf_counter() - t0
            row: JSON = {
                "finished_jobs": size,
                "running_jobs": RUNNING,
                "deep_page_at": deep,
                "build_s": round(built, 1),
                "migrate_once_s": round(migrate, 2),
                "store_mib": round(os.path.getsize(new_path) / 2**20, 1),
            }
            for label, module, path in (("committed", old, old_path), ("this_tree", new, new_path)):
                _say(f"storecost: {size:,}: {label}")
                seconds, loaded = restart(module, path)
                assert loaded == RUNNING, loaded
                store = module.Store(path)
                try:
                    row[label] = {
                        "restart_s": round(seconds, 4),
                        "list_s": {k: round(v, 5) for k, v in
                                   listings(store, label == "this_tree", deep).items()},
                        "describe_log_streams_by_time_s": round(
                            log_streams(store, root, label == "this_tree"), 4),
                    }  # fmt: skip
                finally:
                    store.close()
            results["sizes"].append(row)
            for p in root.glob(f"*-{size}.sqlite3*"):
                p.unlink()
    return results


def table(results: JSON) -> str:
    lines = [
        "| finished jobs | read | committed store | this tree |",
        "|---|---|---|---|",
    ]

    def ms(value: float) -> str:
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.1f} s"

    for r in results["sizes"]:
        n, old, new = f"{r['finished_jobs']:,}", r["committed"], r["this_tree"]
        lines.append(f"| {n} | restart (open + unfinished jobs) | {ms(old['restart_s'])} "
                     f"| {ms(new['restart_s'])} |")  # fmt: skip
        for key, label in (
            ("default_running_1000", "ListJobs default (RUNNING)"),
            ("all_first_100", "ListJobs first page of 100"),
            ("all_deep_100", f"ListJobs page {r['deep_page_at']:,} deep"),
            ("definition_first_100", "JOB_DEFINITION filter, first page"),
            ("share_first_100", "SHARE_IDENTIFIER filter, first page"),
            ("rare_definition_first_100", f"JOB_DEFINITION of the oldest {RARE} only"),
            ("rare_share_first_100", f"SHARE_IDENTIFIER of the oldest {RARE} only"),
        ):
            lines.append(f"| {n} | {label} | {ms(old['list_s'][key])} "
                         f"| {ms(new['list_s'][key])} |")  # fmt: skip
        lines.append(f"| {n} | DescribeLogStreams by last event, 50 "
                     f"| {ms(old['describe_log_streams_by_time_s'])} "
                     f"| {ms(new['describe_log_streams_by_time_s'])} |")  # fmt: skip
        lines.append(f"| {n} | migration of the committed store (once) | – "
                     f"| {r['migrate_once_s']} s |")  # fmt: skip
    w = results["writes"]
    lines += [
        "",
        "| 10,000 jobs, 100 a commit | committed store | this tree |",
        "|---|---|---|",
        f"| saved new (jobs/s) | {w['committed']['insert_jobs_per_s']:,} "
        f"| {w['this_tree']['insert_jobs_per_s']:,} |",
        f"| status changed (jobs/s) | {w['committed']['update_jobs_per_s']:,} "
        f"| {w['this_tree']['update_jobs_per_s']:,} |",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--baseline", default="HEAD",
        help="the commit whose store is 'committed' (e2d8cde: the last before these changes)",
    )  # fmt: skip
    args = ap.parse_args()
    measure(run, table, args)


def measure(
    run: Callable[[list[int], str], JSON], table: Callable[[JSON], str], args: argparse.Namespace
) -> None:
    """Run over ``args.sizes`` beside ``args.baseline``, stamp the results, print them and
    their table, and write them to ``args.out`` if given."""
    t0 = time.perf_counter()
    results = run([int(s) for s in args.sizes.split(",") if s], args.baseline)
    results["total_s"] = round(time.perf_counter() - t0, 1)
    results["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(results, indent=2)
    print(text)
    print(table(results))
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
