"""FilterLogEvents over the whole log group against the group's size: this tree's search
and the committed one (``git show REV:mnp/api/aws/logs_events.py``, run on the same reader
and data), in the same run.

``python -m benchmarks.logsearch [--sizes 1000,10000,100000] [--baseline REV]
[--out benchmarks/results-logsearch.json]``

For each size, one store written by this tree: ``size`` finished jobs one second apart,
each attempt 0.5 s long, one in 100 with two lines of output (real files, with their chunk
times), the rest with none (``true``), plus 100 running jobs, the newest, each with two
lines. Timed, median of 5, through the operation as the API calls it:

- the first page (``limit`` 100, no pattern);
- the first page from ``startTime`` in the middle of the history;
- one call with a pattern no event matches (this tree's search stops at its budget and
  returns a token; the committed one reads the group to the end).

Prints a JSON document and the README table; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from benchmarks.storecost import AT, ROOT, _say, _spec, measure, timed
from mnp.api.aws import logs_events
from mnp.api.aws.logs_request import GROUP
from mnp.nodes.logstreams import record_chunk_time
from mnp.service.logs import LogReader
from mnp.spec.jobs import Attempt, Job
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.sqlite import Store

JSON = dict[str, Any]
RUNNING = 100
LOUD_EVERY = 100
BATCH = 5_000


def committed_search(rev: str) -> Callable[[LogReader, JSON], JSON]:
    """``filter_log_events`` as commit ``rev`` has it."""
    text = subprocess.run(
        ["git", "show", f"{rev}:mnp/api/aws/logs_events.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("committed_logs_events")
    module.__file__ = f"<{rev}:mnp/api/aws/logs_events.py>"
    exec(compile(text, module.__file__, "exec"), module.__dict__)
    return cast(Callable[[LogReader, JSON], JSON], module.filter_log_events)


SPEC = _spec("spec", "t", None)


def _write(root: Path, job_id: str, at: int) -> None:
    path = root / f"{job_id}.1.stdout"
    for k, line in enumerate((f"{job_id} one\n", f"{job_id} two\n")):
        record_chunk_time(path, path.stat().st_size if path.exists() else 0, at + 100 * k)
        with open(path, "a") as f:
            f.write(line)


def build(store: Store, root: Path, size: int) -> None:
    with store.transaction():
        store.save_spec(SPEC)
    total = size + RUNNING
    for start in range(0, total, BATCH):
        jobs = []
        for i in range(start, min(total, start + BATCH)):
            at, done = AT + 1000 * i, i < size
            loud = not done or i % LOUD_EVERY == 0
            job_id = f"j{i:08d}"
            end = at + 500 if done else None
            attempt = Attempt(1, "n1", "10.0.0.1", "ce", f"t/default/{job_id}", at, at, end,
                              0 if done else None, output=loud)  # fmt: skip
            if loud:
                _write(root, job_id, at + 10)
            jobs.append(Job(
                job_id=job_id, spec=SPEC, status=JobStatus.SUCCEEDED if done else JobStatus.RUNNING,
                created_at=at, started_at=at, stopped_at=at + 500 if done else None,
                attempts=[attempt], history=[HistoryEntry(JobStatus.SUBMITTED, at, None)],
            ))  # fmt: skip
        with store.transaction():
            store.save_jobs(jobs)


def _reader(store: Store, root: Path) -> LogReader:
    def log_path(job_id: str, attempt: int, stream: str) -> Path:
        return root / f"{job_id}.{attempt}.{stream}"

    files = SimpleNamespace(log_path=log_path)
    return LogReader(cast(Any, SimpleNamespace(store=store)), cast(Any, files))


def run(sizes: list[int], baseline: str) -> JSON:
    old = committed_search(baseline)
    new = logs_events.filter_log_events
    results: JSON = {"baseline": baseline, "scan_budget": logs_events.SCAN_BUDGET, "sizes": []}
    with tempfile.TemporaryDirectory(prefix="mnp-logsearch-") as tmp:
        for size in sizes:
            root = Path(tmp) / str(size)
            root.mkdir()
            store = Store(root / "db.sqlite3")
            _say(f"logsearch: building {size:,} streams")
            build(store, root, size)
            reader = _reader(store, root)
            middle = AT + 1000 * (size // 2)
            reads: dict[str, JSON] = {
                "first_page": {"logGroupName": GROUP, "limit": 100},
                "from_the_middle": {"logGroupName": GROUP, "limit": 100, "startTime": middle},
                "no_match": {"logGroupName": GROUP, "filterPattern": "NOWHERE"},
            }
            row: JSON = {"streams": size + RUNNING}
            for label, search in (("committed", old), ("this_tree", new)):
                _say(f"logsearch: {size:,}: {label}")
                out: JSON = {}
                for read, body in reads.items():
                    seconds, answer = timed(partial(search, reader, body), 5)
                    out[read] = {"s": round(seconds, 5), "events": len(answer["events"]),
                                 "token": "nextToken" in answer}  # fmt: skip
                row[label] = out
            for read in reads:  # the same first events either way
                assert row["committed"][read]["events"] >= row["this_tree"][read]["events"]
            store.close()
            results["sizes"].append(row)
    return results


def table(results: JSON) -> str:
    lines = ["| streams | FilterLogEvents | committed | this tree |", "|---|---|---|---|"]

    def ms(value: float) -> str:
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.1f} s"

    for r in results["sizes"]:
        for key, label in (("first_page", "first page of 100"),
                           ("from_the_middle", "first page from the middle (startTime)"),
                           ("no_match", "a pattern nothing matches (one call)")):  # fmt: skip
            old, new = r["committed"][key], r["this_tree"][key]
            token = " (+ token)" if new["token"] and not old["token"] else ""
            lines.append(f"| {r['streams']:,} | {label} | {ms(old['s'])} | {ms(new['s'])}{token} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--baseline", default="HEAD")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    measure(run, table, args)


if __name__ == "__main__":
    main()
